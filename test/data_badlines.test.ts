// Bad input: each kind of bad line stops opening with `file:line: reason`, or is counted and skipped with
// skipBadLines; blank lines are neither samples nor errors; a file with no sample at all is an error naming
// it; a Windows editor's file (UTF-8 BOM, CRLF) reads like any other, in loader workers too; the line index
// and validation caches follow the file when it changes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizer } from '../data/bpe.js';
import { cachePath, LineIndex } from '../data/jsonl.js';
import { DataLoader } from '../data/loader.js';
import { PretrainDataset } from '../data/pretrain.js';
import { SFTDataset } from '../data/sft.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';

const s = suite('data_badlines');
const tmp = mkdtempSync(join(tmpdir(), 'data_badlines-'));
let tok: ChatTokenizer;
const MAX = 64;

const conv = (...turns: [string, string][]) => JSON.stringify({ conversations: turns.map(([role, content]) => ({ role, content })) });
const good = (k: number) => conv(['user', `question ${k}?`], ['assistant', `answer ${k}.`]);

// [case, line, expected reason]
const SFT_BAD: [string, string, string | RegExp][] = [
  ['not JSON', '{"conversations": [{"role": "user"', /^not valid JSON \(.+\)$/],
  ['not an object', '[1, 2]', 'not a JSON object'],
  ['no conversations', '{"text": "hello"}', 'no "conversations" array'],
  ['unknown role', conv(['user', 'hi'], ['bot', 'hello']), 'unknown role "bot" in message 2 (expected system, user, assistant, tool)'],
  ['no assistant turn', conv(['system', 'be brief'], ['user', 'hi']), 'no assistant turn'],
  ['tool_calls not JSON', JSON.stringify({ conversations: [{ role: 'user', content: 'x' }, { role: 'assistant', content: '', tool_calls: '[{"name": ' }] }),
    /^message 2: tool_calls is a string but not valid JSON \(.+\)$/],
  ['no trainable token', conv(['user', 'word '.repeat(200)], ['assistant', 'ok']), /^no trainable token \(the first assistant reply starts at token \d+, max_seq_len is 64\)$/],
];

s.before(async () => {
  writeTokenizer(join(tmp, 'tok'), Array(4).fill('question answer word hello user assistant system 0123456789 ?.'), { vocabSize: 300 });
  tok = await loadTokenizer(join(tmp, 'tok'));
});

for (const [c, [name, line, reason]] of SFT_BAD.entries()) {
  s(`SFT "${name}" stops opening with file:line: reason`, async () => {
    // c good lines, a blank line, the bad line, a good line: the bad one is line c + 2.
    const file = join(tmp, `sft-${c}.jsonl`);
    writeFileSync(file, [...Array.from({ length: c }, (_, k) => good(k)), '', line, good(99)].join('\n') + '\n');
    const err = await SFTDataset.open(file, tok, MAX, { cacheDir: tmp }).catch((e: Error) => e);
    assert.instance(err, Error);
    const m = /^(.*):(\d+): (.*); fix the data or skip bad lines \(--skip_bad_lines\)$/.exec((err as Error).message);
    assert.ok(m, (err as Error).message);
    assert.equal([m![1], Number(m![2])], [file, c + 2]);
    if (typeof reason === 'string') assert.is(m![3], reason);
    else assert.match(m![3], reason);
  });
}

s('SFT skipBadLines: counts the bad lines, keeps the good ones in order with their line numbers', async () => {
  const file = join(tmp, 'sft-mixed.jsonl');
  const lines = SFT_BAD.flatMap(([, bad], k) => [good(k), bad]).concat(['   ', good(100)]);
  writeFileSync(file, lines.join('\r\n')); // CRLF and no final newline
  const ds = await SFTDataset.open(file, tok, MAX, { cacheDir: tmp, skipBadLines: true });
  assert.is(ds.skipped, SFT_BAD.length);
  assert.is(ds.length, SFT_BAD.length + 1);
  assert.equal(ds.badLines.map((b) => b.line), SFT_BAD.map((_, k) => 2 * k + 2));
  for (let i = 0; i < ds.length; i++) {
    const k = i < SFT_BAD.length ? i : 100;
    assert.is(ds.lineNumber(i), i < SFT_BAD.length ? 2 * i + 1 : lines.length);
    const { inputIds, labels } = ds.get(i);
    assert.ok(tok.decode(inputIds).includes(`question ${k}?`), `sample ${i} is line ${ds.lineNumber(i)}`);
    assert.ok(labels.some((l) => l !== -100));
  }
});

s('pretrain: bad lines name file and line; skipBadLines skips them; labels mask only padding', async () => {
  const file = join(tmp, 'pre.jsonl');
  writeFileSync(file, ['{"text": "hello world"}', '', '{"text": 5}', 'nope', '{"txt": "x"}', '{"text": "question 1?"}'].join('\n') + '\n');
  const err = await PretrainDataset.open(file, tok, 16, { cacheDir: tmp }).catch((e: Error) => e);
  assert.match((err as Error).message, `${file}:3: no "text" string (3 bad lines in all, next at line 4)`);
  const ds = await PretrainDataset.open(file, tok, 16, { cacheDir: tmp, skipBadLines: true });
  assert.equal([ds.length, ds.skipped], [2, 3]);
  assert.equal(ds.badLines.map((b) => b.reason.slice(0, 14)), ['no "text" stri', 'not valid JSON', 'no "text" stri']);
  const { inputIds, labels } = ds.get(0);
  const body = tok.encode('hello world');
  assert.equal(Array.from(inputIds), [tok.bosId, ...body, tok.eosId, ...Array(16 - body.length - 2).fill(tok.padId)]);
  assert.equal(Array.from(labels), [tok.bosId, ...body, tok.eosId, ...Array(16 - body.length - 2).fill(-100)]);
  const long = join(tmp, 'pre-long.jsonl');
  writeFileSync(long, JSON.stringify({ text: 'word '.repeat(100) }) + '\n');
  const cut = (await PretrainDataset.open(long, tok, 16, { cacheDir: tmp })).get(0);
  assert.is(cut.inputIds[0], tok.bosId);
  assert.is(cut.inputIds[15], tok.eosId, 'truncated to max_len − 2 tokens, then eos');
  assert.ok(cut.labels.every((l) => l !== -100));
});

s('a file with no sample (empty, only blank lines, every line bad and skipped) is an error naming it', async () => {
  const cases: [string, string, string][] = [
    ['empty', '', 'no samples: the file is empty'],
    ['blank', '\n   \r\n\t\n', 'no samples: all 3 lines are blank'],
    ['bom-only', '\ufeff\r\n', 'no samples: all 1 lines are blank'],
    ['all-bad', `${SFT_BAD[0][1]}\n\n[1, 2]\n`, 'no usable sample: all 2 non-blank lines are bad and were skipped (the first, line 1: not valid JSON'],
  ];
  for (const [name, text, reason] of cases) {
    const file = join(tmp, `none-${name}.jsonl`);
    writeFileSync(file, text);
    for (const open of [() => SFTDataset.open(file, tok, MAX, { cacheDir: tmp, skipBadLines: true }),
      () => PretrainDataset.open(file, tok, MAX, { cacheDir: tmp, skipBadLines: true })]) {
      const err = await open().catch((e: Error) => e);
      assert.instance(err, Error, name);
      assert.ok((err as Error).message.startsWith(`${file}: ${reason}`), (err as Error).message);
    }
  }
});

s("a Windows editor's file (UTF-8 BOM, CRLF) gives the same samples as a plain one, inline and in loader workers", async () => {
  const conv = [good(1), good(2), '', good(3)], text = ['{"text": "hello world"}', '{"text": "question 1?"}'];
  for (const [kind, lines] of [['sft', conv], ['pretrain', text]] as const) {
    const plain = join(tmp, `plain-${kind}.jsonl`), win = join(tmp, `win-${kind}.jsonl`);
    writeFileSync(plain, lines.join('\n') + '\n');
    writeFileSync(win, '\ufeff' + lines.join('\r\n') + '\r\n');
    const open = (f: string) => (kind === 'sft' ? SFTDataset.open(f, tok, MAX, { cacheDir: tmp }) : PretrainDataset.open(f, tok, MAX, { cacheDir: tmp }));
    const a = await open(plain), b = await open(win);
    assert.is(b.length, a.length, kind);
    const batches = async (ds: typeof a, numWorkers: number) => {
      const loader = new DataLoader(ds, { batchSize: 1, numWorkers });
      const out = [];
      for await (const x of loader.epoch(0)) out.push([...x.inputIds, ...x.labels]);
      await loader.close();
      return out;
    };
    const want = await batches(a, 0);
    assert.equal(await batches(b, 0), want, `${kind}: inline`);
    assert.equal(await batches(b, 1), want, `${kind}: loader worker`);
  }
});

s('line index: cached, reused while unchanged, rebuilt when the file changes; validation follows', async () => {
  const file = join(tmp, 'grow.jsonl');
  writeFileSync(file, `${good(1)}\n${good(2)}\n`);
  const a = LineIndex.open(file, tmp);
  assert.equal(Array.from(a.offsets), [0, good(1).length + 1, 2 * (good(1).length + 1)]);
  const idx = cachePath(file, '.idx', tmp), before = statSync(idx).mtimeMs;
  assert.equal(Array.from(LineIndex.open(file, tmp).offsets), Array.from(a.offsets));
  assert.is(statSync(idx).mtimeMs, before, 'cache not rewritten');
  assert.is((await SFTDataset.open(file, tok, MAX, { cacheDir: tmp })).length, 2);
  appendFileSync(file, `${good(3)}\n{oops\n`);
  assert.is(LineIndex.open(file, tmp).count, 4);
  const err = await SFTDataset.open(file, tok, MAX, { cacheDir: tmp }).catch((e: Error) => e);
  assert.match((err as Error).message, `${file}:4: not valid JSON`);
  assert.is(a.readLine(1), good(2));
});

s.run();
