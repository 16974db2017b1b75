// SFT rendering, token ids and labels for MiniMind2's and minimind-3's tokenizers, against reference.json
// (transformers-style jinja2 render + Hugging Face's Rust tokenizer + MiniMind's generate_labels; regenerate
// with test/fixtures/data/make_reference.py) and against trained spans written out by hand.
import { suite, type Callback } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizer, type ChatMessage, type ChatTokenizer } from '../data/tokenizer.js';
import { IGNORE_INDEX, SFTDataset } from '../data/sft.js';
import { SHARED, TOKENIZER_DIRS, TOKENIZER_FILES, missingShared, sharedTest } from './shared.js';

const s = suite('data_sft');
const DIRS = { minimind2: join(SHARED, TOKENIZER_DIRS.minimind2), minimind3: join(SHARED, TOKENIZER_DIRS.minimind3) } as const;
const missing = missingShared(TOKENIZER_FILES);
const test = (name: string, fn: Callback) => sharedTest(s, missing, name, fn);
type Name = keyof typeof DIRS;

interface RefCase { rendered: string; ids: number[]; samples: { max_seq_len: number; labels: number[] }[] }
const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/reference.json'), 'utf8')) as {
  cases: Record<string, ChatMessage[]>;
  tokenizers: Record<Name, { assistant_header_ids: number[]; im_end_ids: number[]; cases: Record<string, RefCase> }>;
};
const CASES = Object.keys(ref.cases);

// Trained spans of the full-length sample, written out by hand from the conversations in make_reference.py.
const THINK = '<think>\n\n</think>\n\n';
const E = '<|im_end|>\n';
const CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>';
const COUNT = 'one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty';
const SPANS: Record<Name, Record<string, string[]>> = {
  minimind2: {
    single_turn: [`1+1=2。${E}`],
    with_system: [`Bonjour !${E}`],
    multi_turn: [`Paris.${E}`, `Tokyo.${E}`, `olleh${E}`],
    tool_calls: [`${CALL}${E}`, `北京今天晴，21 度。${E}`],
    thinking_and_spaces: [`<think>\n先想一想。\n</think>\n\nDone: 3 * 4 = 12.${E}`],
    long_answer: [`${COUNT}${E}`],
  },
  minimind3: {
    single_turn: [`${THINK}1+1=2。${E}`],
    with_system: [`${THINK}Bonjour !${E}`],
    multi_turn: [`${THINK}Paris.${E}`, `${THINK}Tokyo.${E}`, `${THINK}olleh${E}`],
    tool_calls: [`${THINK}${CALL}${E}`, `${THINK}北京今天晴，21 度。${E}`],
    thinking_and_spaces: [`<think>\n先想一想。\n</think>\n\nDone: 3 * 4 = 12.${E}`],
    long_answer: [`${THINK}${COUNT}${E}`],
  },
};

/** [start, end) runs of trained positions. */
function runs(labels: ArrayLike<number>): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === IGNORE_INDEX) continue;
    const start = i;
    while (i < labels.length && labels[i] !== IGNORE_INDEX) i++;
    out.push([start, i]);
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'data_sft-'));
const jsonl = join(tmp, 'cases.jsonl');
writeFileSync(jsonl, CASES.map((k) => JSON.stringify({ conversations: ref.cases[k] })).join('\n') + '\n');
const toks = {} as Record<Name, ChatTokenizer>;

if (!missing) {
  s.before(async () => {
    for (const name of Object.keys(DIRS) as Name[]) toks[name] = await loadTokenizer(DIRS[name]);
  });
}

for (const name of Object.keys(DIRS) as Name[]) {
  test(`${name}: special ids, vocab size and the span markers computed from the tokenizer`, () => {
    const tok = toks[name], r = ref.tokenizers[name];
    assert.equal([tok.padId, tok.bosId, tok.eosId, tok.vocabSize], [0, 1, 2, 6400]);
    assert.equal(tok.assistantHeaderIds, r.assistant_header_ids);
    assert.equal(tok.imEndIds, r.im_end_ids);
  });

  test(`${name}: rendered text and token ids equal the reference for every case`, async () => {
    const tok = toks[name];
    const ds = await SFTDataset.open(jsonl, tok, 4096, { cacheDir: tmp });
    for (const [i, k] of CASES.entries()) {
      const want = ref.tokenizers[name].cases[k];
      const ids = ds.tokenize(ref.cases[k]);
      assert.is(tok.decode(ids), want.rendered, `${k}: render`);
      assert.equal(ids, want.ids, `${k}: ids`);
      assert.equal(Array.from(ds.get(i).inputIds.subarray(0, ids.length)), want.ids, `${k}: get()`);
    }
  });

  test(`${name}: labels equal MiniMind's at every max_seq_len, truncations included`, async () => {
    const lens = new Set(CASES.flatMap((k) => ref.tokenizers[name].cases[k].samples.map((x) => x.max_seq_len)));
    for (const L of lens) {
      const ds = await SFTDataset.open(jsonl, toks[name], L, { cacheDir: tmp, skipBadLines: true });
      const lineOf = new Map(Array.from({ length: ds.length }, (_, i) => [ds.lineNumber(i), i]));
      for (const [c, k] of CASES.entries()) {
        const want = ref.tokenizers[name].cases[k].samples.find((x) => x.max_seq_len === L);
        if (!want) continue;
        const i = lineOf.get(c + 1);
        const trainable = want.labels.some((l) => l !== IGNORE_INDEX);
        assert.is(i !== undefined, trainable, `${k} at ${L}: kept iff it has a trainable token`);
        if (i === undefined) continue;
        const { inputIds, labels } = ds.get(i);
        assert.equal(Array.from(labels), want.labels, `${k} at max_seq_len ${L}: labels`);
        assert.is(inputIds.length, L);
        const ids = ref.tokenizers[name].cases[k].ids;
        for (let j = ids.length; j < L; j++) assert.is(inputIds[j], 0, `${k}: right padding with 0 at ${j}`);
      }
    }
  });

  test(`${name}: trained spans decode to exactly the hand-written assistant replies`, async () => {
    const ds = await SFTDataset.open(jsonl, toks[name], 512, { cacheDir: tmp });
    for (const [i, k] of CASES.entries()) {
      const { inputIds, labels } = ds.get(i);
      const got = runs(labels).map(([a, b]) => toks[name].decode(inputIds.subarray(a, b)));
      assert.equal(got, SPANS[name][k], k);
    }
  });

  test(`${name}: truncated mid-answer trains the answer's head up to max_seq_len, nothing after`, async () => {
    const tok = toks[name], full = ref.tokenizers[name].cases.long_answer.ids;
    const start = full.length - tok.encode(SPANS[name].long_answer[0]).length;
    for (const L of [start + 1, start + 7, full.length - 1]) {
      const ds = await SFTDataset.open(jsonl, tok, L, { cacheDir: tmp, skipBadLines: true });
      const i = Array.from({ length: ds.length }, (_, j) => j).find((j) => ds.lineNumber(j) === CASES.indexOf('long_answer') + 1)!;
      const { inputIds, labels } = ds.get(i);
      assert.equal(runs(labels), [[start, L]], `span at max_seq_len ${L}`);
      const text = tok.decode(inputIds.subarray(start, L));
      assert.ok(SPANS[name].long_answer[0].startsWith(text), `${JSON.stringify(text)} is the answer's head`);
    }
  });

  test(`${name}: a prompt longer than max_seq_len is "no trainable token" on its line`, async () => {
    const start = ref.tokenizers[name].cases.long_answer.ids.length - toks[name].encode(SPANS[name].long_answer[0]).length;
    const file = join(tmp, `long-${name}.jsonl`);
    const line = JSON.stringify({ conversations: ref.cases.long_answer });
    writeFileSync(file, `${line}\n\n${line}\n`);
    const err = await SFTDataset.open(file, toks[name], start, { cacheDir: tmp }).catch((e: Error) => e);
    assert.instance(err, Error);
    assert.match((err as Error).message,
      `${file}:1: no trainable token (the first assistant reply starts at token ${start}, max_seq_len is ${start}) ` +
      '(2 bad lines in all, next at line 3)');
  });
}

s.run();
