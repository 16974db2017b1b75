// DPO rows (spec §12): x, y and mask of each side equal MiniMind's DPODataset on MiniMind2's and minimind-3's
// tokenizers (dpo_reference.json, made by test/fixtures/data/make_dpo_reference.py from dpo.jsonl), truncations
// included; post_processing_chat drawn once per side; batches stack chosen rows then rejected rows, for any
// numWorkers and after a resume skip; a bad row stops opening with file:line and the field at fault.
import { suite, type Callback } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizer } from '../data/bpe.js';
import { DPODataset, SIDES, type DPOSide } from '../data/dpo.js';
import { collate, DataLoader, type Batch } from '../data/loader.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';
import { SHARED, TOKENIZER_DIRS, TOKENIZER_FILES, missingShared, sharedTest } from './shared.js';

const s = suite('data_dpo');
const tmp = mkdtempSync(join(tmpdir(), 'data_dpo-'));
const FIXTURE = join(import.meta.dirname, 'fixtures/data/dpo.jsonl');
const missing = missingShared(TOKENIZER_FILES);
const test = (name: string, fn: Callback) => sharedTest(s, missing, name, fn);
type Name = keyof typeof TOKENIZER_DIRS;
type RefSide = Record<'x' | 'y' | 'mask', number[]>;
type RefRow = Record<'chosen' | 'rejected', { plain: RefSide; stripped?: RefSide }>;
const ref = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/dpo_reference.json'), 'utf8')) as {
  tokenizers: Record<Name, { samples: { max_seq_len: number; rows: RefRow[] }[] }>;
};
const toks = {} as Record<Name, ChatTokenizer>;
const plain = (side: DPOSide) => ({ x: Array.from(side.x), y: Array.from(side.y), mask: Array.from(side.mask) });
const trainable = (r: RefRow) => SIDES.every((k) => r[k].plain.mask.some((m) => m === 1));

async function drain(it: AsyncGenerator<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

if (!missing) {
  s.before(async () => {
    for (const name of Object.keys(TOKENIZER_DIRS) as Name[]) toks[name] = await loadTokenizer(join(SHARED, TOKENIZER_DIRS[name]));
  });
}

for (const name of Object.keys(TOKENIZER_DIRS) as Name[]) {
  test(`${name}: x, y and mask of both sides equal MiniMind's at every max_seq_len; a side with no trainable token drops the row`, async () => {
    for (const { max_seq_len: L, rows } of ref.tokenizers[name].samples) {
      const ds = await DPODataset.open(FIXTURE, toks[name], L, { cacheDir: tmp, skipBadLines: true });
      assert.is(ds.rowLength, L - 1);
      const lineOf = new Map(Array.from({ length: ds.length }, (_, i) => [ds.lineNumber(i), i]));
      for (const [r, want] of rows.entries()) {
        const i = lineOf.get(r + 1);
        assert.is(i !== undefined, trainable(want), `row ${r} at ${L}: kept iff both sides train a token`);
        if (i === undefined) continue;
        const got = ds.get(i);
        for (const side of SIDES) assert.equal(plain(got[side]), want[side].plain, `row ${r} ${side} at max_seq_len ${L}`);
      }
      const bad = ds.badLines.map((b) => b.reason);
      assert.ok(bad.every((why) => /^"chosen": no trainable token \(the first assistant reply starts at token \d+, max_seq_len is \d+\)$/.test(why)), bad.join('; '));
    }
  });

  test(`${name}: post_processing_chat draws once per side (chosen and rejected decide apart), seeded, kept or stripped whole`, async () => {
    const { max_seq_len: L, rows } = ref.tokenizers[name].samples[0];
    const aug = await DPODataset.open(FIXTURE, toks[name], L, { cacheDir: tmp, augment: true, seed: 7 });
    const seen = new Set<string>();
    for (let e = 0; e < 24; e++) {
      for (const [i, want] of rows.entries()) {
        const got = aug.get(i, e), forms: string[] = [];
        for (const side of SIDES) {
          const form = (['plain', 'stripped'] as const).find((f) => JSON.stringify(want[side][f]) === JSON.stringify(plain(got[side])));
          assert.ok(form, `row ${i} ${side} epoch ${e}: neither kept nor stripped`);
          forms.push(form!);
        }
        seen.add(forms.join('/'));
        assert.equal(aug.get(i, e), got, 'the same draw again');
      }
    }
    // minimind-3 renders an empty think block in every plain answer: all four combinations come up.
    // MiniMind2's template renders content as it is: nothing to strip.
    const want = name === 'minimind3' ? ['plain/plain', 'plain/stripped', 'stripped/plain', 'stripped/stripped'] : ['plain/plain'];
    assert.equal([...seen].sort(), want);
  });
}

test('batches: chosen rows then rejected rows, labels y where mask else −100; the same for any numWorkers and after a resume skip', async () => {
  const { max_seq_len: L } = ref.tokenizers.minimind3.samples[0];
  const ds = await DPODataset.open(FIXTURE, toks.minimind3, L, { cacheDir: tmp, augment: true, seed: 3 });
  const T = L - 1;
  const dl0 = new DataLoader(ds, { batchSize: 3, numWorkers: 0 }), dl2 = new DataLoader(ds, { batchSize: 3, numWorkers: 2 });
  const full = await drain(dl0.epoch(1)), viaWorkers = await drain(dl2.epoch(1)), rest = await drain(dl2.epoch(1, 1));
  await dl2.close();
  assert.equal(full.map((b) => [b.batch, b.seqLen]), [[6, T], [2, T]], '4 pairs in batches of 3: 2·3 rows, then 2·1');
  for (const [k, b] of full.entries()) {
    assert.equal(viaWorkers[k].inputIds, b.inputIds, `batch ${k}: workers`);
    assert.equal(viaWorkers[k].labels, b.labels, `batch ${k}: workers`);
    const n = b.indices.length;
    for (const [j, i] of b.indices.entries()) {
      const pair = ds.get(i, 1);
      for (const [k2, side] of SIDES.entries()) {
        const row = (k2 * n + j) * T, { x, y, mask } = pair[side];
        assert.equal(b.inputIds.subarray(row, row + T), x, `batch ${k} pair ${j} ${side}: x`);
        assert.equal(Array.from(b.labels.subarray(row, row + T)), Array.from(y, (v, t) => (mask[t] ? v : -100)), `${side}: labels`);
      }
    }
  }
  assert.equal(rest.map((b) => b.step), [1]);
  assert.equal(rest[0].inputIds, full[1].inputIds, 'resume: the skipped epoch continues with the same batch');
  assert.equal(collate(ds, full[1].indices, 1).labels, full[1].labels);
});

// [case, line, expected reason]: not needing MiniMind's files (a tokenizer trained here).
const pair = (chosen: unknown, rejected: unknown) => JSON.stringify({ chosen, rejected });
const turn = (q: string, a: string) => [{ role: 'user', content: q }, { role: 'assistant', content: a }];
const BAD: [string, string, string | RegExp][] = [
  ['not JSON', '{"chosen": [', /^not valid JSON \(.+\)$/],
  ['not an object', '"chosen"', 'not a JSON object'],
  ['no chosen', JSON.stringify({ rejected: turn('q', 'a') }), 'no "chosen" array'],
  ['rejected not an array', pair(turn('q', 'a'), 'no'), 'no "rejected" array'],
  ['unknown role', pair(turn('q', 'a'), [{ role: 'user', content: 'q' }, { role: 'bot', content: 'a' }]),
    '"rejected": unknown role "bot" in message 2 (expected system, user, assistant, tool)'],
  ['content not a string', pair([{ role: 'user', content: 'q' }, { role: 'assistant', content: 5 }], turn('q', 'a')), '"chosen": message 2: content is not a string'],
  ['no assistant turn', pair(turn('q', 'a'), [{ role: 'user', content: 'q' }]), '"rejected": no assistant turn'],
  ['no trainable token', pair(turn('question '.repeat(60), 'a'), turn('q', 'a')),
    /^"chosen": no trainable token \(the first assistant reply starts at token \d+, max_seq_len is 48\)$/],
];

s('a bad row stops opening with file:line: "side": reason; skipBadLines counts it and keeps the rest', async () => {
  writeTokenizer(join(tmp, 'tok'), Array(4).fill('question answer user assistant system q a 0123456789 ?.'), { vocabSize: 300 });
  const tok = await loadTokenizer(join(tmp, 'tok'));
  const good = (k: number) => pair(turn(`question ${k}?`, `answer ${k}.`), turn(`question ${k}?`, 'a'));
  for (const [c, [name, line, reason]] of BAD.entries()) {
    // c good lines, a blank line, the bad line, a good line: the bad one is line c + 2.
    const file = join(tmp, `bad-${c}.jsonl`);
    writeFileSync(file, [...Array.from({ length: c }, (_, k) => good(k)), '', line, good(99)].join('\n') + '\n');
    const err = await DPODataset.open(file, tok, 48, { cacheDir: tmp }).catch((e: Error) => e);
    assert.instance(err, Error, name);
    const m = /^(.*):(\d+): (.*); fix the data or skip bad lines \(--skip_bad_lines\)$/.exec((err as Error).message);
    assert.ok(m, (err as Error).message);
    assert.equal([m![1], Number(m![2])], [file, c + 2], name);
    if (typeof reason === 'string') assert.is(m![3], reason, name);
    else assert.match(m![3], reason, name);
  }
  const file = join(tmp, 'bad-mixed.jsonl');
  writeFileSync(file, BAD.flatMap(([, bad], k) => [good(k), bad]).join('\n') + '\n');
  const ds = await DPODataset.open(file, tok, 48, { cacheDir: tmp, skipBadLines: true });
  assert.equal([ds.length, ds.skipped], [BAD.length, BAD.length]);
  assert.equal(ds.badLines.map((b) => b.line), BAD.map((_, k) => 2 * k + 2));
  for (let i = 0; i < ds.length; i++) {
    assert.ok(tok.decode(ds.get(i).chosen.x).includes(`question ${i}?`), `pair ${i} is line ${ds.lineNumber(i)}`);
    for (const side of SIDES) assert.ok(ds.get(i)[side].mask.some((m) => m === 1), `pair ${i} ${side} trains a token`);
  }
});

s.run();
