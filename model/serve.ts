// An OpenAI-compatible server for a trained model, after MiniMind's scripts/serve_openai_api.py (its flags):
// `POST /v1/chat/completions` (non-streamed, or `stream: true` as server-sent events in OpenAI's
// chat.completion.chunk format ending with `data: [DONE]`) and `GET /v1/models`. Bad requests get OpenAI's
// error shape naming the field. One request generates at a time (model/gpu_queue.ts); a client that goes
// away stops its generation at the next token. Binds to 127.0.0.1 unless --host says otherwise.
// node:http: no HTTP framework is among the project's dependencies, and these two routes need none.
//
// CLI: npx tsx model/serve.ts [--weights FILE | --save_dir out --weight full_sft --hidden_size 512] [--port 8998]
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { generate } from './generate.js';
import { TextStream } from './text_stream.js';
import { GpuQueue } from './gpu_queue.js';
import { ApiError, parseCompletionRequest, type CompletionRequest } from './openai_request.js';
import { flagHelp, parseFlags, type FlagTable } from './cli_flags.js';
import { loadModel, MODEL_FLAGS } from './load_model.js';
import type { MiniMind } from './minimind.js';
import type { ChatTokenizer } from '../data/tokenizer.js';

export interface ServeOptions {
  model: MiniMind; tok: ChatTokenizer; host?: string; port?: number;
  /** Requests admitted at once, generating or waiting (default 20). */
  maxQueue?: number;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** The id /v1/models lists and responses carry. */
  modelName?: string;
}

export interface Served {
  url: string; server: Server; queue: GpuQueue;
  /** Requests whose client went away before their answer was complete. */
  stats: { completed: number; aborted: number };
  close(): Promise<void>;
}

export async function startServer(o: ServeOptions): Promise<Served> {
  const queue = new GpuQueue(o.maxQueue ?? 20), limit = o.maxBodyBytes ?? 1 << 20, name = o.modelName ?? 'minimind';
  const stats = { completed: 0, aborted: 0 };
  let seed = 0; // requests without a seed draw a fresh one each
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => fail(res, e instanceof ApiError ? e : new ApiError(500, (e as Error).message, null, 'server_error')));
  });
  server.on('clientError', (_e, socket) => socket.destroy()); // a malformed request line: nothing to answer

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '').split('?')[0];
    if (path === '/v1/models') {
      if (req.method !== 'GET') throw new ApiError(405, `${req.method} ${path}: only GET`);
      return json(res, 200, { object: 'list', data: [{ id: name, object: 'model', created: 0, owned_by: 'minimind-ts' }] });
    }
    if (path !== '/v1/chat/completions') throw new ApiError(404, `no route ${req.method} ${path} (POST /v1/chat/completions, GET /v1/models)`);
    if (req.method !== 'POST') throw new ApiError(405, `${req.method} ${path}: only POST`);
    const r = parseCompletionRequest(await readBody(req, limit));
    const closed = { value: false };
    res.on('close', () => { if (!res.writableFinished) closed.value = true; });
    res.on('error', () => { closed.value = true; }); // a write to a socket that just went away: the client is gone
    const run = queue.tryRun(() => complete(r, res, closed));
    if (!run) throw new ApiError(429, `the server is busy: ${queue.bound} requests are generating or waiting; retry later`, null, 'rate_limit_error');
    await run;
    if (closed.value || res.destroyed) stats.aborted++; else stats.completed++;
  }

  async function complete(r: CompletionRequest, res: ServerResponse, closed: { value: boolean }): Promise<void> {
    const gone = () => closed.value || res.destroyed;
    if (gone()) return; // gave up while waiting
    const { model, tok } = o;
    const ids = tok.encode(tok.applyChatTemplate(r.messages, { addGenerationPrompt: true, tools: r.tools, extra: { open_thinking: r.openThinking } }));
    const room = model.cfg.max_position_embeddings - ids.length;
    if (room < 1) throw new ApiError(400, `the messages are ${ids.length} tokens, at the model's max_position_embeddings ${model.cfg.max_position_embeddings}`, 'messages');
    const id = `chatcmpl-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`, created = Math.floor(Date.now() / 1000);
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: name, choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    if (r.stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      res.write(chunk({ role: 'assistant', content: '' }, null));
    }
    const text = new TextStream(tok);
    let finish = 'length';
    for await (const t of generate(model, ids, {
      maxNewTokens: Math.min(r.maxTokens, room), temperature: r.temperature, topP: r.topP, seed: r.seed ?? seed++, eosId: tok.eosId,
    })) {
      if (gone()) return; // the generator's finally frees the KV cache
      if (t === tok.eosId) { finish = 'stop'; break; }
      const add = text.push(t);
      if (r.stream && add) res.write(chunk({ content: add }, null));
    }
    if (gone()) return;
    const { rest, text: content } = text.finish();
    if (r.stream) {
      if (rest) res.write(chunk({ content: rest }, null));
      res.end(chunk({}, finish) + 'data: [DONE]\n\n');
      return;
    }
    json(res, 200, {
      id, object: 'chat.completion', created, model: name,
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish }],
      usage: { prompt_tokens: ids.length, completion_tokens: text.ids.length, total_tokens: ids.length + text.ids.length },
    });
  }

  await new Promise<void>((ok, bad) => {
    server.once('error', bad);
    server.listen(o.port ?? 8998, o.host ?? '127.0.0.1', () => { server.off('error', bad); ok(); });
  });
  const a = server.address() as AddressInfo;
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return {
    url: `http://${host}:${a.port}`, server, queue, stats,
    close: () => new Promise((ok) => { server.closeAllConnections(); server.close(() => ok()); }),
  };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** An error before the answer started is its status and body; after (a stream under way), the stream ends. */
function fail(res: ServerResponse, e: ApiError): void {
  if (res.destroyed) return;
  if (!res.headersSent) return json(res, e.status, e.body());
  res.end(`data: ${JSON.stringify(e.body())}\n\n`);
}

/** The body as text; one over `limit` bytes is read to its end (so the client, still sending, gets to read
 *  the 400), unless it runs past 16x the limit, when the connection is dropped. */
function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((ok, bad) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size <= limit) parts.push(b);
      else if (size > 16 * limit) req.destroy();
    });
    req.on('end', () => (size > limit ? bad(new ApiError(400, `the request body is ${size} bytes, over the limit of ${limit} (--max_body_bytes)`)) : ok(Buffer.concat(parts).toString('utf8'))));
    req.on('error', bad);
    req.on('close', () => { if (!req.complete) bad(new ApiError(400, 'the request body was cut off')); });
  });
}

const FLAGS = {
  ...MODEL_FLAGS,
  load_from: { ...MODEL_FLAGS.load_from, def: '../model' },
  max_seq_len: { kind: 'number', def: 8192, help: 'accepted for compatibility (a request is bounded by max_tokens and max_position_embeddings)' },
  host: { kind: 'string', def: '127.0.0.1', help: "address to bind (MiniMind's script binds 0.0.0.0: every interface)" },
  port: { kind: 'number', def: 8998, help: 'port (0 = any free one)' },
  max_queue: { kind: 'number', def: 20, help: 'requests admitted at once, generating or waiting; past it 429' },
  max_body_bytes: { kind: 'number', def: 1 << 20, help: 'largest request body; past it 400' },
  model_name: { kind: 'string', def: 'minimind', help: 'the model id /v1/models lists' },
} satisfies FlagTable;

async function main(argv: string[]): Promise<void> {
  const { values: o, given, help } = parseFlags(FLAGS, argv);
  if (help) { console.log(flagHelp('npx tsx model/serve.ts [flags]', FLAGS)); return; }
  await initGpu({ quiet: true });
  try {
    const { model, tok, weights, source } = await loadModel(o, given);
    const s = await startServer({ model, tok, host: o.host, port: o.port, maxQueue: o.max_queue, maxBodyBytes: o.max_body_bytes, modelName: o.model_name });
    console.log(`[serve] ${weights} (config from ${source}) at ${s.url}/v1/chat/completions; Ctrl-C stops`);
    await new Promise<void>((ok) => process.once('SIGINT', ok));
    await s.close();
  } finally {
    closeGpu();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`serve: ${(e as Error).message}`);
    process.exitCode = 1;
  });
}
