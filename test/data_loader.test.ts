// Sample order (torch.randperm with seed 42 + epoch, pinned by randperm.json from torch itself), resume
// skipping, the last partial batch, and the worker loader giving the same batches for any numWorkers;
// MiniMind's augmentation, seeded.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTokenizer } from '../data/bpe.js';
import { addRandomSystem, stripEmptyThink, SYSTEM_PROMPTS } from '../data/conversation.js';
import { collate, DataLoader, type Batch } from '../data/loader.js';
import { padTo } from '../data/dataset.js';
import { PretrainDataset } from '../data/pretrain.js';
import { batchCount, distributedShard, epochBatches, randperm, skipBatches } from '../data/sampler.js';
import { SFTDataset } from '../data/sft.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';

const s = suite('data_loader');
const tmp = mkdtempSync(join(tmpdir(), 'data_loader-'));
const N = 37; // not a multiple of the batch size: the last batch is partial
const sftPath = join(tmp, 'sft.jsonl'), prePath = join(tmp, 'pre.jsonl');
let tok: ChatTokenizer;

const torch = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/randperm.json'), 'utf8')) as {
  cases: { n: number; seed: number; perm: number[] }[];
};

s.before(async () => {
  writeTokenizer(join(tmp, 'tok'), Array(4).fill('what is plus the answer is <think></think> 0123456789 ?.'), { vocabSize: 300 });
  tok = await loadTokenizer(join(tmp, 'tok'));
  const lines = Array.from({ length: N }, (_, i) => JSON.stringify({ conversations: [
    { role: 'user', content: `what is ${i} plus ${i}?` }, { role: 'assistant', content: `<think>\n\n</think>\n\nthe answer is ${2 * i}.` }] }));
  writeFileSync(sftPath, lines.join('\n') + '\n');
  writeFileSync(prePath, Array.from({ length: N }, (_, i) => JSON.stringify({ text: `${i} plus ${i} is ${2 * i}.` })).join('\n') + '\n');
});

s('randperm equals torch.manual_seed(seed); torch.randperm(n) for every pinned case', () => {
  for (const { n, seed, perm } of torch.cases) assert.equal(Array.from(randperm(n, seed)), perm, `n=${n} seed=${seed}`);
});

s('epochBatches: permutation of seed + epoch in order, last partial batch kept, skipped batches dropped', () => {
  const { n, seed, perm } = torch.cases.find((c) => c.n === 1025)!;
  const epoch = seed - 42;
  const all = epochBatches(n, 64, epoch);
  assert.is(all.length, Math.ceil(n / 64));
  assert.is(all.at(-1)!.length, n % 64);
  assert.equal(all.flat(), perm);
  assert.equal(epochBatches(n, 64, epoch, 42, 5), all.slice(5));
  assert.equal(epochBatches(n, 64, epoch, 42, 16), [all[16]]);
  assert.equal(epochBatches(n, 64, epoch, 42, 17), []);
  assert.is(batchCount(n, 64, 5), all.length - 5);
  assert.not.equal(epochBatches(n, 64, epoch + 1).flat(), perm, 'next epoch draws another order');
});

async function drain(it: AsyncGenerator<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

s('SFT loader: identical batches for numWorkers 0, 1, 3, equal to collating the sampler order', async () => {
  const ds = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 5 });
  const want = epochBatches(N, 8, 2, 42).map((idx) => collate(ds, idx, 2));
  for (const numWorkers of [0, 1, 3]) {
    const dl = new DataLoader(ds, { batchSize: 8, numWorkers });
    const got = await drain(dl.epoch(2));
    await dl.close();
    assert.is(got.length, want.length, `numWorkers ${numWorkers}`);
    for (const [k, b] of got.entries()) {
      assert.equal([b.batch, b.seqLen, b.step, b.inputIds.length], [b.indices.length, 128, k, b.indices.length * 128]);
      assert.equal(b.inputIds, want[k].inputIds, `numWorkers ${numWorkers} batch ${k} ids`);
      assert.equal(b.labels, want[k].labels, `numWorkers ${numWorkers} batch ${k} labels`);
    }
    assert.is(got.at(-1)!.batch, N % 8);
  }
});

s('resume: epoch(e, skip) continues with exactly the batches epoch(e) had from step skip on', async () => {
  const ds = await PretrainDataset.open(prePath, tok, 24, { cacheDir: tmp });
  const dl = new DataLoader(ds, { batchSize: 5, numWorkers: 2 });
  const full = await drain(dl.epoch(1));
  const rest = await drain(dl.epoch(1, 3));
  assert.is(dl.batchesPerEpoch(3), full.length - 3);
  assert.equal(rest.map((b) => b.step), full.slice(3).map((b) => b.step));
  for (const [k, b] of rest.entries()) assert.equal(b.inputIds, full[k + 3].inputIds);
  // A consumer that stops early leaves no stuck requests behind.
  for await (const b of dl.epoch(0)) if (b.step === 1) break;
  await dl.close();
});

s('shard: a rank\'s loader yields its DistributedSampler batches, skipped on resume, for any numWorkers', async () => {
  const ds = await PretrainDataset.open(prePath, tok, 24, { cacheDir: tmp });
  const shard = { rank: 1, world: 3 };
  const want = skipBatches(distributedShard(N, shard, 2), 4, 2);
  for (const numWorkers of [0, 2]) {
    const dl = new DataLoader(ds, { batchSize: 4, numWorkers, shard });
    const got = await drain(dl.epoch(2, 2));
    await dl.close();
    assert.is(dl.batchesPerEpoch(2), want.length);
    assert.equal(got.map((b) => b.indices), want, `numWorkers ${numWorkers}`);
    assert.equal(got.map((b) => b.step), want.map((_, k) => k + 2));
    assert.equal(got[0].inputIds, collate(ds, want[0], 2).inputIds);
  }
});

s('augmentation: seeded per (seed, epoch, sample); adds system prompts and strips empty think blocks', async () => {
  const aug = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 1 });
  const again = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 1 });
  const text = (i: number, e: number) => tok.decode(aug.get(i, e).inputIds);
  let changed = 0;
  for (let i = 0; i < N; i++) {
    assert.equal(aug.get(i, 3).inputIds, again.get(i, 3).inputIds, 'same seed, same sample');
    if (text(i, 0) !== text(i, 1)) changed++;
  }
  assert.ok(changed > 0, 'another epoch draws again');
  const seq = (...xs: number[]) => () => xs.shift()!;
  const conv = [{ role: 'user', content: 'hi' }];
  assert.equal(addRandomSystem(conv, seq(0.19, 0.55)), [{ role: 'system', content: SYSTEM_PROMPTS[5] }, ...conv]);
  assert.is(addRandomSystem(conv, seq(0.2)), conv);
  assert.is(addRandomSystem([{ role: 'user', content: 'x', tools: '[]' }], seq(0)).length, 1, 'tool data untouched');
  const r = 'a<think>\n\n</think>\n\nb<think>\n\n</think>\n\nc';
  assert.is(stripEmptyThink(r, seq(0.21)), 'abc');
  assert.is(stripEmptyThink(r, seq(0.2)), r);
});

s('augmentation: a share of samples near MiniMind\'s (20% get a system prompt, 80% lose the empty think block)', async () => {
  const aug = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 42 });
  let draws = 0, system = 0, stripped = 0;
  for (let e = 0; e < 30; e++) {
    for (let i = 0; i < N; i++) {
      const text = tok.decode(aug.get(i, e).inputIds);
      draws++;
      if (SYSTEM_PROMPTS.some((p) => text.includes(p))) system++;
      if (!text.includes('<think>\n\n</think>\n\n')) stripped++;
    }
  }
  const share = (n: number) => n / draws; // 1110 draws: one standard deviation is about 0.012
  assert.ok(Math.abs(share(system) - 0.2) < 0.04, `system prompt added to ${share(system)}`);
  assert.ok(Math.abs(share(stripped) - 0.8) < 0.04, `empty think stripped from ${share(stripped)}`);
});

s('augmentation: a resumed epoch gets the same augmented samples as the uninterrupted one', async () => {
  const aug = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 42 });
  const dl = new DataLoader(aug, { batchSize: 4, numWorkers: 2 });
  const full = await drain(dl.epoch(1));
  const rest = await drain(dl.epoch(1, 3));
  await dl.close();
  for (const [k, b] of rest.entries()) assert.equal(b.inputIds, full[k + 3].inputIds, `batch ${k + 3}`);
  const fresh = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: true, seed: 42 });
  assert.equal(collate(fresh, full[5].indices, 1).inputIds, full[5].inputIds, 'another process, the same draws');
});

s('augmentation off: every sample is the rendered template as it is, whatever the epoch', async () => {
  const plain = await SFTDataset.open(sftPath, tok, 128, { cacheDir: tmp, augment: false, seed: 42 });
  const lines = readFileSync(sftPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l).conversations);
  for (let i = 0; i < N; i++) {
    const want = tok.encode(tok.applyChatTemplate(lines[plain.lineNumber(i) - 1]));
    for (const e of [0, 7]) assert.equal(plain.get(i, e).inputIds, padTo(want, 128, tok.padId), `sample ${i} epoch ${e}`);
  }
});

s.run();
