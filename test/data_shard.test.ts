// Data-parallel sample order: each rank's indices equal torch's DistributedSampler (seed 0 + epoch, padded to a
// multiple of the world size, rank-strided; test/fixtures/data/distributed.json from torch itself, by
// make_distributed.py), and MiniMind's SkipBatchSampler over them; the spec §13 check values.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { batchCount, distributedShard, randperm, shardLength, skipBatches } from '../data/sampler.js';

const s = suite('data_shard');
const torch = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/data/distributed.json'), 'utf8')) as {
  cases: { n: number; world: number; epoch: number; batch_size: number; skip: number; ranks: { indices: number[]; batches: number[][] }[] }[];
};

s('every rank of every pinned (n, world, epoch) gets torch DistributedSampler\'s indices', () => {
  assert.ok(torch.cases.length >= 10);
  for (const c of torch.cases) {
    c.ranks.forEach((r, rank) => {
      const what = `n=${c.n} world=${c.world} epoch=${c.epoch} rank=${rank}`;
      assert.equal(Array.from(distributedShard(c.n, { rank, world: c.world }, c.epoch)), r.indices, what);
      assert.is(shardLength(c.n, c.world), r.indices.length, what);
    });
  }
});

s('the shards batched and skipped as MiniMind\'s SkipBatchSampler, with its length', () => {
  for (const c of torch.cases) {
    c.ranks.forEach((r, rank) => {
      const what = `n=${c.n} world=${c.world} epoch=${c.epoch} rank=${rank} batch=${c.batch_size} skip=${c.skip}`;
      assert.equal(skipBatches(r.indices, c.batch_size, c.skip), r.batches, what);
      assert.is(batchCount(r.indices.length, c.batch_size, c.skip), r.batches.length, what);
    });
  }
  // A skip past the full chunks drops the short last one too (nothing is yielded before the skip is reached).
  assert.equal(skipBatches([0, 1, 2, 3, 4], 2, 3), []);
  assert.equal(skipBatches([0, 1, 2, 3, 4], 2, 2), [[4]]);
});

s('spec §13 check values: seed 0 order, the padding and the three shards of n 10 over 3 ranks', () => {
  assert.equal(Array.from(randperm(10, 0)), [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]);
  const shards = [0, 1, 2].map((rank) => Array.from(distributedShard(10, { rank, world: 3 }, 0)));
  assert.equal(shards, [[4, 5, 0, 2], [1, 3, 8, 4], [7, 9, 6, 1]]);
  // Rank-strided over one permutation: the first s batches of all ranks cover its first s·B·W positions
  // (what makes a resume under another world size skip the right samples).
  const perm = Array.from(randperm(1025, 1));
  const B = 16, W = 8, steps = 5;
  const seen = new Set(Array.from({ length: W }, (_, rank) => skipBatches(distributedShard(1025, { rank, world: W }, 1), B).slice(0, steps).flat()).flat());
  assert.equal([...seen].sort((a, b) => a - b), perm.slice(0, steps * B * W).sort((a, b) => a - b));
});

s('bad ranks and world sizes are refused by name', () => {
  assert.throws(() => distributedShard(10, { rank: 3, world: 3 }, 0), /rank must be an integer in \[0, 3\), got 3/);
  assert.throws(() => distributedShard(10, { rank: 0, world: 0 }, 0), /world size must be a positive integer, got 0/);
});

s.run();
