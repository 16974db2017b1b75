// Sample order, as MiniMind's SFT script draws it: each epoch `setup_seed(42 + epoch)` then
// `torch.randperm(n)`, cut into batches by SkipBatchSampler (the first `skip` batches dropped for a
// resume, the last partial batch kept). torch's CPU randperm is a forward Fisher-Yates shuffle driven by
// its mt19937 generator (`z = random() % (n - i)`), reproduced here so the order is the same as MiniMind's.
// Under DDP (spec §13) torch's DistributedSampler replaces that order: randperm(n) seeded 0 + epoch,
// padded with its own head to a multiple of the world size, every world-th index from the rank.

/** mt19937 (32-bit Mersenne Twister), seeded like `torch.manual_seed(seed)` / std::mt19937(seed). */
export function mt19937(seed: number): () => number {
  const mt = new Uint32Array(624);
  mt[0] = seed >>> 0;
  for (let i = 1; i < 624; i++) {
    const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
    mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
  }
  let k = 624;
  return () => {
    if (k >= 624) {
      for (let i = 0; i < 624; i++) {
        const y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7fffffff);
        mt[i] = mt[(i + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      k = 0;
    }
    let y = mt[k++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  };
}

/** `torch.manual_seed(seed); torch.randperm(n)` on the CPU (n < 2^32 / 20, where torch uses 32-bit draws). */
export function randperm(n: number, seed: number): Uint32Array {
  if (!(Number.isInteger(n) && n >= 0 && n < 0xffffffff / 20)) throw new Error(`randperm: n must be an integer in [0, 2^32/20), got ${n}`);
  const next = mt19937(seed);
  const r = new Uint32Array(n);
  for (let i = 0; i < n; i++) r[i] = i;
  for (let i = 0; i < n - 1; i++) {
    const z = next() % (n - i);
    const t = r[i];
    r[i] = r[z + i];
    r[z + i] = t;
  }
  return r;
}

/** Number of batches an epoch of n samples yields after skipping `skipBatches` (MiniMind's SkipBatchSampler). */
export function batchCount(n: number, batchSize: number, skipBatches = 0): number {
  return Math.max(0, Math.ceil(n / batchSize) - skipBatches);
}

/** MiniMind's SkipBatchSampler over `order`: chunks of batchSize, the first `skipBatches` full ones
 *  dropped, the last partial one kept (only when the skip was reached: then batchCount() chunks). */
export function skipBatches(order: ArrayLike<number>, batchSize: number, skipBatches = 0): number[][] {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`skipBatches: batch size must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(skipBatches) && skipBatches >= 0)) throw new Error(`skipBatches: skipBatches must be an integer ≥ 0, got ${skipBatches}`);
  const all = Array.from(order), out: number[][] = [];
  for (let b = skipBatches * batchSize; b < all.length; b += batchSize) out.push(all.slice(b, b + batchSize));
  return out;
}

/** Batches of sample indices for one epoch: randperm(n) seeded with seed + epoch, in order, the last
 *  partial batch kept, the first `skipBatches` dropped (resume). */
export function epochBatches(n: number, batchSize: number, epoch: number, seed = 42, skip = 0): number[][] {
  return skipBatches(randperm(n, seed + epoch), batchSize, skip);
}

/** Which rank of how many data-parallel processes a loader feeds. */
export interface Shard { rank: number; world: number }

/** Samples per rank and epoch under DistributedSampler (drop_last=False): ceil(n / world). */
export function shardLength(n: number, world: number): number {
  return Math.ceil(n / world);
}

/** `DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed)` after
 *  `set_epoch(epoch)`: randperm(n) with torch.Generator().manual_seed(seed + epoch), padded by repeating
 *  it from its start to shardLength·world entries, then entries rank, rank + world, ... */
export function distributedShard(n: number, s: Shard, epoch: number, seed = 0): Uint32Array {
  const { rank, world } = s;
  if (!(Number.isInteger(world) && world >= 1)) throw new Error(`distributedShard: world size must be a positive integer, got ${world}`);
  if (!(Number.isInteger(rank) && rank >= 0 && rank < world)) throw new Error(`distributedShard: rank must be an integer in [0, ${world}), got ${rank}`);
  const perm = randperm(n, seed + epoch);
  const m = shardLength(n, world);
  const out = new Uint32Array(m);
  for (let j = 0; j < m; j++) out[j] = perm[(rank + j * world) % n]; // position ≥ n: the padding, perm's head again
  return out;
}
