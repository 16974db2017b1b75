// The tokenizer against Hugging Face's Rust tokenizer (the core Python's transformers uses): fuzz strings
// where JavaScript and Oniguruma regexes disagree (tokenizer_fuzz.json), realistic text against
// @huggingface/tokenizers, the fallback to the library for tokenizer.json files the fast encoder does not
// model, and chat-template options (generation prompt, tools and tool_calls as JSON strings).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { ByteLevelBpe } from '../data/bytelevel.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';
import { SHARED, TOKENIZER_DIRS, TOKENIZER_FILES, missingShared, sharedTest } from './shared.js';

const s = suite('data_tokenizer');
const DIRS = { minimind2: join(SHARED, TOKENIZER_DIRS.minimind2), minimind3: join(SHARED, TOKENIZER_DIRS.minimind3) } as const;
const TEXTS = ['minimind/samples_pr802/tiny_sft.jsonl', 'minimind/samples_pr802/tiny_pretrain.jsonl', 'docs/MINIMIND-SPEC.md'];
const missing = missingShared(TOKENIZER_FILES), missingTexts = missingShared([...TOKENIZER_FILES, ...TEXTS]);
type Name = keyof typeof DIRS;
const fuzz = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/tokenizer_fuzz.json'), 'utf8')) as
  { texts: string[] } & Record<Name, number[][]>;
const toks = {} as Record<Name, ChatTokenizer>;
const lib = {} as Record<Name, Tokenizer>;

if (!missing) {
  s.before(async () => {
    for (const name of Object.keys(DIRS) as Name[]) {
      toks[name] = await loadTokenizer(DIRS[name]);
      const read = (f: string) => JSON.parse(readFileSync(join(DIRS[name], f), 'utf8'));
      lib[name] = new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
    }
  });
}

for (const name of Object.keys(DIRS) as Name[]) {
  sharedTest(s, missing, `${name}: ids equal the Rust tokenizer's on ${fuzz.texts.length} fuzz strings, and decode back`, () => {
    for (const [i, t] of fuzz.texts.entries()) {
      assert.equal(toks[name].encode(t), fuzz[name][i], JSON.stringify(t));
      assert.is(toks[name].decode(fuzz[name][i]), t);
    }
  });

  sharedTest(s, missingTexts, `${name}: on realistic text the fast encoder agrees with @huggingface/tokenizers`, () => {
    const texts = [
      ...readFileSync(join(SHARED, TEXTS[0]), 'utf8').split('\n'),
      ...readFileSync(join(SHARED, TEXTS[1]), 'utf8').split('\n'),
      readFileSync(join(SHARED, TEXTS[2]), 'utf8'),
    ];
    for (const t of texts) assert.equal(toks[name].encode(t), lib[name].encode(t, { add_special_tokens: false }).ids, t.slice(0, 60));
  });
}

sharedTest(s, missing, 'generation prompt, and tools / tool_calls given as JSON strings render like parsed ones', () => {
  const tok = toks.minimind2;
  const msgs = [{ role: 'user', content: 'hi' }];
  assert.is(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }),
    '<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
  const calls = [{ name: 'f', arguments: { x: '中' } }];
  const call = [...msgs, { role: 'assistant', content: '', tool_calls: calls }];
  const asObjects = tok.applyChatTemplate(call, { tools });
  assert.is(tok.applyChatTemplate([...msgs, { role: 'assistant', content: '', tool_calls: JSON.stringify(calls) }], { tools: JSON.stringify(tools) }), asObjects);
  assert.ok(asObjects.includes('{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}'), 'tojson like Python json.dumps');
  assert.ok(asObjects.includes('<tool_call>\n{"name": "f", "arguments": {"x": "中"}}\n</tool_call><|im_end|>\n'));
  assert.throws(() => tok.applyChatTemplate(msgs, { tools: '[{' }), /tools is a string but not valid JSON/);
  assert.is(toks.minimind3.applyChatTemplate(msgs, { addGenerationPrompt: true, extra: { open_thinking: true } }),
    '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n');
});

s('a tokenizer.json the fast encoder does not model falls back to the library, with the reason', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'data_tokenizer-'));
  mkdirSync(dir, { recursive: true });
  const chars = Array.from({ length: 26 }, (_, i) => String.fromCharCode(97 + i));
  const json = {
    version: '1.0', added_tokens: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'].map((content, id) =>
      ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Lowercase' }, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null,
    model: { type: 'BPE', vocab: Object.fromEntries([...chars, 'ab', '\n'].map((c, i) => [c, i + 3])), merges: ['a b'] },
  };
  assert.is(ByteLevelBpe.fromTokenizerJson(json), 'has a normalizer');
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|im_start|>', eos_token: '<|im_end|>', pad_token: '<|endoftext|>' }));
  const tok = await loadTokenizer(dir);
  assert.equal(tok.encode('AB c<|im_end|>'), [29, 5, 2]);
  assert.equal([tok.bosId, tok.eosId, tok.padId], [1, 2, 0]);
  assert.throws(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }]), /no "chat_template"/);
});

s.run();
