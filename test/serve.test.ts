// model/serve.ts driven by the official `openai` client against a real server on 127.0.0.1 (in this process,
// with a tiny randomly initialised model): answers equal greedy generation from the same weights, streamed and
// not; bad requests get OpenAI's error shape naming the field; the queue bound gives 429; an aborted stream
// frees its slot.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import OpenAI from 'openai';
import { setupGpu } from './util.js';
import { SHARED, TOKENIZER_DIRS, missingShared, sharedTest } from './shared.js';
import { join } from 'node:path';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { generate } from '../model/generate.js';
import { startServer, type Served } from '../model/serve.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';

const s = suite('serve');
const missing = missingShared([`${TOKENIZER_DIRS.minimind2}/tokenizer.json`, `${TOKENIZER_DIRS.minimind2}/tokenizer_config.json`]);
const ctx: { served?: Served; model?: MiniMind; tok?: ChatTokenizer; client?: OpenAI } = {};
const MESSAGES = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'hello there' }];

s.before(async () => {
  if (missing) return;
  await setupGpu();
  ctx.tok = await loadTokenizer(join(SHARED, TOKENIZER_DIRS.minimind2));
  ctx.model = new MiniMind(preset('tiny', { hidden_size: 64, num_hidden_layers: 1, vocab_size: ctx.tok.vocabSize }), 7);
  ctx.served = await startServer({ model: ctx.model, tok: ctx.tok, port: 0, maxQueue: 21, maxBodyBytes: 4096 });
  ctx.client = new OpenAI({ baseURL: `${ctx.served.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
s.after(async () => { await ctx.served?.close(); });

/** What greedy decoding of the same weights answers (eos not included). */
async function greedy(maxNewTokens: number): Promise<string> {
  const { model, tok } = ctx as Required<typeof ctx>;
  const ids = tok.encode(tok.applyChatTemplate(MESSAGES, { addGenerationPrompt: true }));
  const out: number[] = [];
  for await (const id of generate(model, ids, { maxNewTokens, temperature: 0, eosId: tok.eosId })) if (id !== tok.eosId) out.push(id);
  return tok.decode(out);
}

sharedTest(s, missing, 'a non-streamed and a streamed completion at temperature 0 equal greedy generation', async () => {
  const client = ctx.client!, want = await greedy(12);
  assert.ok(want.length > 0);
  const r = await client.chat.completions.create({ model: 'minimind', messages: MESSAGES, temperature: 0, max_tokens: 12 });
  assert.is(r.object, 'chat.completion');
  assert.is(r.choices[0].message.content, want);
  assert.is(r.usage?.completion_tokens, 12);
  assert.is(r.choices[0].finish_reason, 'length');
  const chunks: string[] = [];
  let finish: string | null = null;
  for await (const c of await client.chat.completions.create({ model: 'minimind', messages: MESSAGES, temperature: 0, max_tokens: 12, stream: true })) {
    assert.is(c.object, 'chat.completion.chunk');
    chunks.push(c.choices[0].delta.content ?? '');
    finish = c.choices[0].finish_reason ?? finish;
  }
  assert.ok(chunks.length > 2, 'streamed in pieces');
  assert.is(chunks.join(''), want);
  assert.is(finish, 'length');
  const models = await client.models.list();
  assert.equal(models.data.map((m) => m.id), ['minimind']);
});

sharedTest(s, missing, 'every bad request gets its status and a message naming the field, in OpenAI\'s shape', async () => {
  const client = ctx.client!;
  const bad: [Record<string, unknown>, RegExp, string | null][] = [
    [{ model: 'm' }, /'messages' is a required property/, 'messages'],
    [{ model: 'm', messages: [{ role: 'robot', content: 'x' }] }, /'messages\[0\]\.role' must be one of 'system', 'user', 'assistant', got "robot"/, 'messages[0].role'],
    [{ model: 'm', messages: MESSAGES, temperature: 'hot' }, /'temperature' must be a number, got "hot"/, 'temperature'],
  ];
  for (const [body, re, param] of bad) {
    try {
      await client.chat.completions.create(body as never);
      assert.unreachable(JSON.stringify(body));
    } catch (e) {
      assert.instance(e, OpenAI.BadRequestError);
      const err = e as InstanceType<typeof OpenAI.BadRequestError>;
      assert.is(err.status, 400);
      assert.match(err.message, re);
      assert.is(err.param, param);
      assert.is(err.type, 'invalid_request_error');
    }
  }
  const errorOf = async (r: Response) => ((await r.json()) as { error: { message: string } }).error.message;
  const post = (body: string) => fetch(`${ctx.served!.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const notJson = await post('{"messages": [');
  assert.is(notJson.status, 400);
  assert.match(await errorOf(notJson), /^the request body is not valid JSON/);
  const big = await post(JSON.stringify({ messages: [{ role: 'user', content: 'x'.repeat(10_000) }] }));
  assert.is(big.status, 400);
  assert.match(await errorOf(big), /over the limit of 4096/);
  const route = await fetch(`${ctx.served!.url}/v1/completions`, { method: 'POST', body: '{}' });
  assert.is(route.status, 404);
  assert.match(await errorOf(route), /no route POST \/v1\/completions/);
});

sharedTest(s, missing, '20 concurrent clients all get complete answers; the 21st over the queue bound gets 429', async () => {
  const { served, client } = ctx as Required<typeof ctx>;
  const want = await greedy(6);
  // Hold the GPU so that all 20 are admitted and waiting: the bound (21) counts this job too.
  let release!: () => void;
  const held = served.queue.tryRun(() => new Promise<void>((ok) => { release = ok; }))!;
  const answers = Array.from({ length: 20 }, (_, i) => (i % 2
    ? client.chat.completions.create({ model: 'm', messages: MESSAGES, temperature: 0, max_tokens: 6 }).then((r) => r.choices[0].message.content)
    : client.chat.completions.create({ model: 'm', messages: MESSAGES, temperature: 0, max_tokens: 6, stream: true }).then(async (st) => {
      let t = '';
      for await (const c of st) t += c.choices[0].delta.content ?? '';
      return t;
    })));
  for (let i = 0; i < 200 && served.queue.size < 21; i++) await new Promise((ok) => setTimeout(ok, 10));
  assert.is(served.queue.size, 21, 'all 20 admitted');
  try {
    await client.chat.completions.create({ model: 'm', messages: MESSAGES, max_tokens: 1 });
    assert.unreachable('21st admitted');
  } catch (e) {
    assert.instance(e, OpenAI.RateLimitError);
    assert.is((e as InstanceType<typeof OpenAI.RateLimitError>).status, 429);
  }
  release();
  await held;
  assert.equal(await Promise.all(answers), Array(20).fill(want));
});

sharedTest(s, missing, 'a client that aborts mid-stream frees its slot and does not stall the next', async () => {
  const { served, client } = ctx as Required<typeof ctx>;
  const before = served.stats.aborted;
  const ac = new AbortController();
  let got = 0;
  try {
    const st = await client.chat.completions.create({ model: 'm', messages: MESSAGES, temperature: 0, max_tokens: 4000, stream: true }, { signal: ac.signal });
    for await (const c of st) if (c.choices[0].delta.content && ++got === 2) ac.abort();
    assert.unreachable('the stream ran to its end');
  } catch (e) {
    assert.ok(ac.signal.aborted, String(e));
  }
  const t0 = performance.now();
  const r = await client.chat.completions.create({ model: 'm', messages: MESSAGES, temperature: 0, max_tokens: 3 });
  assert.is(r.choices[0].message.content, await greedy(3));
  assert.is(served.stats.aborted, before + 1);
  assert.ok(performance.now() - t0 < 20_000, 'not behind 4000 tokens');
  assert.is(served.queue.size, 0);
});

s.run();
