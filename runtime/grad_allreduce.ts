// The data-parallel gradient all-reduce of a ParamStore's flat gradient buffer: every rank's gradients
// become their mean over ranks, as torch DDP's. Buckets as DDP's (25 MiB, the first 1 MiB so that the
// exchange starts early): runs of whole parameters, from the last in the layout (whose gradients backward
// completes first) to the first. As soon as backward has recorded the last rule that adds to a bucket
// (runtime/autograd.ts hooks), its copy out is submitted, so the GPU copies it while it runs the backward
// of earlier layers, and the host exchanges it meanwhile. Per bucket and rank, host side: mapped staging
// buffer → the rank's shared slot (one copy), the mean of its 1/W part (runtime/host_group.ts), the shared
// mean → a mapped upload buffer (one copy). WebGPU devices share no memory, so these copies are the floor.
// Both buffers of a bucket are kept and mapped again as soon as the GPU is done with them: a fresh mapped
// buffer per step cost 21 ms per 25 MiB on lavapipe (allocated and zeroed each time).
// Also here: DDP's start (every rank takes rank 0's parameters) and the agreement on stopping (Ctrl-C).
import type { ParamStore } from './param_store.js';
import type { HostGroup, SharedSlots } from './host_group.js';
import type { BackwardHooks } from './autograd.js';
import type { Tensor } from './tensor.js';
import { gpu } from './device.js';
import { copyBuffer, submitAndMap, readBuffer, writeBuffer } from './kernel.js';

const MiB = 1 << 20;

interface Bucket {
  /** Byte range of the store's gradient buffer. */
  from: number; to: number;
  /** Gradients come out through `staging` (mapped for reading once copied), the mean goes in through
   *  `upload` (mapped for writing once the GPU has copied it in). */
  staging: GPUBuffer; upload: GPUBuffer;
  /** Leaves whose gradients are not yet complete in this backward. */
  pending: number;
  mapped?: Promise<void>;
  writable: Promise<void>;
}

export interface BucketOptions { bucketBytes?: number; firstBucketBytes?: number }

/** Where the last reduce() spent its time, ms: awaiting its GPU's copies out (the backward still running
 *  included), copying into the shared slot, waiting for the other ranks' slots (their backward still
 *  running), the mean with the barrier after it, and the upload. The communication proper is copy + mean + upload. */
export interface ReduceTimes { waitMs: number; copyMs: number; peerWaitMs: number; meanMs: number; uploadMs: number }

export class GradAllReduce {
  private readonly params: Tensor[];
  private covers = new Map<Tensor, Bucket[]>();
  readonly last: ReduceTimes = { waitMs: 0, copyMs: 0, peerWaitMs: 0, meanMs: 0, uploadMs: 0 };

  private constructor(readonly store: ParamStore, readonly group: HostGroup, private readonly area: SharedSlots,
    private readonly buckets: Bucket[]) {
    this.params = [...store.params.values()];
  }

  /** Every rank calls it with a store of the same layout (the launcher checks the sizes). */
  static async create(store: ParamStore, group: HostGroup, o: BucketOptions = {}): Promise<GradAllReduce> {
    const area = await group.share(store.bytes / 4, 1 + store.params.size);
    return new GradAllReduce(store, group, area, layBuckets(store, o.bucketBytes ?? 25 * MiB, o.firstBucketBytes ?? MiB));
  }

  /** Bucket byte ranges, in exchange order. */
  get ranges(): [number, number][] {
    return this.buckets.map((b) => [b.from, b.to]);
  }

  /** DDP's start: every rank's parameters become rank 0's. */
  async broadcast(): Promise<void> {
    const { store, group, area } = this;
    if (group.rank === 0) area.result.set(new Float32Array(await readBuffer(store.data, 0, store.bytes)));
    await group.barrier("the broadcast of rank 0's parameters");
    // The next write to `result` follows a barrier every rank reaches only after this upload.
    if (group.rank !== 0) writeBuffer(store.data, 0, area.result);
  }

  /** For the backward of a micro-step that ends an accumulation: each bucket's copy out starts as soon
   *  as its gradients are complete. */
  hooks(): BackwardHooks {
    return {
      begin: (leaves) => {
        this.covers.clear();
        for (const b of this.buckets) b.pending = 0;
        for (const leaf of leaves) {
          const g = leaf.grad;
          if (!g || g.buffer !== this.store.grads) continue;
          const end = g.offset + 4 * g.size;
          const bs = this.buckets.filter((b) => b.from < end && g.offset < b.to);
          for (const b of bs) b.pending++;
          this.covers.set(leaf, bs);
        }
        for (const b of this.buckets) if (!b.pending) this.copyOut(b);
      },
      final: (leaf) => {
        for (const b of this.covers.get(leaf) ?? []) if (--b.pending === 0) this.copyOut(b);
      },
    };
  }

  /** Completes the all-reduce (starting the copies backward's hooks did not): the store's gradients are
   *  the mean over ranks, and a parameter has a gradient (hasGrad) where any rank's had one. `stop` is
   *  this rank's wish to stop after this step; returns whether any rank (or the launcher) wished it, the
   *  same answer on every rank. `where` names the step in a timeout's message. */
  async reduce(stop: boolean, where: string): Promise<boolean> {
    const { group, area, store } = this, me = group.rank;
    for (const b of this.buckets) if (!b.mapped) this.copyOut(b);
    const live = liveParams(store, this.params);
    const row = area.flagRows[me];
    row[0] = stop || group.stopRequested ? 1 : 0;
    live.forEach((l, i) => { row[1 + i] = l ? 1 : 0; });
    let flags: Int32Array | undefined;
    const t = this.last;
    t.waitMs = t.copyMs = t.peerWaitMs = t.meanMs = t.uploadMs = 0;
    let t0 = performance.now();
    const lap = (k: keyof ReduceTimes) => { const now = performance.now(); t[k] += now - t0; t0 = now; };
    for (const [k, b] of this.buckets.entries()) {
      await b.mapped;
      b.mapped = undefined;
      lap('waitMs');
      const at = b.from / 4, n = (b.to - b.from) / 4;
      area.slots[me].set(new Float32Array(b.staging.getMappedRange(0, b.to - b.from)), at);
      b.staging.unmap();
      lap('copyMs');
      const what = `${where}, gradient bucket ${k + 1}/${this.buckets.length}`;
      await group.barrier(`the all-reduce of ${what}`);
      lap('peerWaitMs');
      flags ??= area.orFlags();
      area.meanPart(at, at + n);
      await group.barrier(`the mean of ${what}`);
      lap('meanMs');
      await b.writable;
      new Float32Array(b.upload.getMappedRange(0, b.to - b.from)).set(area.result.subarray(at, at + n));
      b.upload.unmap();
      copyBuffer(b.upload, 0, store.grads, b.from, b.to - b.from);
      b.writable = mapped(b.upload, GPUMapMode.WRITE, b.to - b.from);
      lap('uploadMs');
    }
    this.params.forEach((p, i) => { if (flags![1 + i] && !live[i]) p.hasGrad = true; });
    return flags![0] !== 0;
  }

  private copyOut(b: Bucket): void {
    copyBuffer(this.store.grads, b.from, b.staging, 0, b.to - b.from);
    b.mapped = mapped(b.staging, GPUMapMode.READ, b.to - b.from);
  }

  /** Destroyed, not pooled: they may be mapped, or waiting to be. */
  dispose(): void {
    for (const b of this.buckets) { b.staging.destroy(); b.upload.destroy(); }
  }
}

/** The buffer mapped in `mode` after the work recorded so far; awaited in reduce(), which throws a failure. */
function mapped(buf: GPUBuffer, mode: number, bytes: number): Promise<void> {
  const p = submitAndMap(buf, mode, bytes);
  p.catch(() => {});
  return p;
}

/** Runs of whole parameters (with the padding after each) from the last to the first: a bucket closes
 *  once it holds `cap` bytes, the first once it holds `first`. */
function layBuckets(store: ParamStore, cap: number, first: number): Bucket[] {
  const ps = [...store.params.values()];
  const out: Bucket[] = [];
  let to = store.bytes, from = store.bytes;
  for (let i = ps.length - 1; i >= 0; i--) {
    from = ps[i].offset;
    if (to - from >= (out.length ? cap : first) || i === 0) {
      const start = i === 0 ? 0 : from, { device } = gpu();
      const upload = device.createBuffer({ size: to - start, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC });
      out.push({
        from: start, to, pending: 0, upload, writable: mapped(upload, GPUMapMode.WRITE, to - start),
        staging: device.createBuffer({ size: to - start, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      });
      to = from;
    }
  }
  return out;
}

/** Whether each parameter got a gradient since the last zeroGrad (directly or through a span). */
function liveParams(store: ParamStore, params: Tensor[]): boolean[] {
  const ranges = store.liveRanges();
  return params.map((p) => ranges.some(([a, b]) => p.offset >= a && p.offset < b));
}
