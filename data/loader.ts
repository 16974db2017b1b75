// Prefetching batch loader: tokenizes the next batches on worker_threads while the GPU runs the current
// step (`--num_workers`; 0 tokenizes inline). Batch k of an epoch is a pure function of the sampler's
// indices and the epoch, so the batches are identical whatever numWorkers is; they are yielded in order.
import { Worker } from 'node:worker_threads';
import { epochBatches, batchCount, distributedShard, shardLength, skipBatches as skipSampler, type Shard } from './sampler.js';
import { PretrainDataset } from './pretrain.js';
import { SFTDataset } from './sft.js';
import { DPODataset, collatePairs } from './dpo.js';
import type { DatasetOptions, DatasetSource } from './dataset.js';

export type AnyDataset = SFTDataset | PretrainDataset | DPODataset;

export interface Batch {
  /** `[batch, seqLen]` row-major token ids. */
  inputIds: Int32Array;
  /** `[batch, seqLen]` targets, −100 where not trained. */
  labels: Int32Array;
  /** Rows in this batch (the last batch of an epoch may be short); a DPO batch has 2 rows per pair,
   *  chosen rows first (data/dpo.ts). */
  batch: number;
  seqLen: number;
  /** Position of this batch in the epoch, counting skipped ones (the resume step). */
  step: number;
  /** Dataset sample indices of the rows. */
  indices: number[];
}

export interface LoaderOptions {
  batchSize: number;
  /** Worker threads tokenizing ahead (0 = inline, on the caller's thread). */
  numWorkers?: number;
  /** Batches requested ahead of the consumer (default 2 per worker). */
  prefetch?: number;
  /** Base seed of the per-epoch order (MiniMind: 42). */
  seed?: number;
  /** Data parallelism: this rank's DistributedSampler shard (seed 0 + epoch, spec §13) replaces that order. */
  shard?: Shard;
}

/** What a worker needs to rebuild the dataset; everything here is structured-cloneable. */
export interface WorkerInit {
  kind: 'sft' | 'pretrain' | 'dpo';
  source: DatasetSource;
  tokenizerDir: string;
  maxSeqLen: number;
  opts: Omit<DatasetOptions, 'onProgress'>;
}

/** Rows and row length of a batch of n samples: [n, max_seq_len], or [2n, max_seq_len − 1] for DPO pairs. */
export function batchShape(ds: AnyDataset, n: number): { rows: number; seqLen: number } {
  return ds instanceof DPODataset ? { rows: 2 * n, seqLen: ds.rowLength } : { rows: n, seqLen: ds.maxSeqLen };
}

/** Stack the samples of one batch into `[rows, seqLen]` arrays (batchShape). */
export function collate(ds: AnyDataset, indices: number[], epoch: number): { inputIds: Int32Array; labels: Int32Array } {
  if (ds instanceof DPODataset) return collatePairs(indices.map((i) => ds.get(i, epoch)), ds.rowLength);
  const T = ds.maxSeqLen;
  const inputIds = new Int32Array(indices.length * T), labels = new Int32Array(indices.length * T);
  for (const [r, i] of indices.entries()) {
    const s = ds instanceof SFTDataset ? ds.get(i, epoch) : ds.get(i);
    inputIds.set(s.inputIds, r * T);
    labels.set(s.labels, r * T);
  }
  return { inputIds, labels };
}

// Worker threads do not inherit tsx's loader hooks: the worker registers them itself, then imports its body.
const WORKER_BOOT = import.meta.url.endsWith('.ts')
  ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); ` +
    `return import(${JSON.stringify(new URL('./loader_worker.ts', import.meta.url).href)}); });`
  : `import(${JSON.stringify(new URL('./loader_worker.js', import.meta.url).href)});`;

interface Pending { resolve: (v: { inputIds: Int32Array; labels: Int32Array }) => void; reject: (e: Error) => void }

class LoaderWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private failed: Error | undefined;

  constructor(init: WorkerInit) {
    this.worker = new Worker(WORKER_BOOT, { eval: true, workerData: init });
    this.worker.unref();
    this.worker.on('message', (m: { id: number; inputIds?: Int32Array; labels?: Int32Array; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.settle(m.id);
      if (m.error !== undefined) p.reject(new Error(`data loader worker: ${m.error}`));
      else p.resolve({ inputIds: m.inputIds!, labels: m.labels! });
    });
    this.worker.on('error', (e) => this.fail(e));
    this.worker.on('exit', (code) => this.fail(new Error(`data loader worker exited with code ${code}`)));
  }

  request(id: number, indices: number[], epoch: number): Promise<{ inputIds: Int32Array; labels: Int32Array }> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      // A worker with work in flight keeps the process alive; an idle one does not.
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, indices, epoch });
    });
  }

  private settle(id: number): void {
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const [id, p] of this.pending) {
      this.settle(id);
      p.reject(e);
    }
  }

  async close(): Promise<void> {
    this.failed ??= new Error('data loader closed');
    this.worker.ref(); // an unref'd worker would let the process exit before terminate() settles
    await this.worker.terminate();
  }
}

export class DataLoader {
  private readonly workers: LoaderWorker[];
  private nextId = 0;

  constructor(readonly dataset: AnyDataset, readonly opts: LoaderOptions) {
    if (!(Number.isInteger(opts.batchSize) && opts.batchSize >= 1)) throw new Error(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    const n = opts.numWorkers ?? 0;
    if (!(Number.isInteger(n) && n >= 0)) throw new Error(`DataLoader: numWorkers must be an integer ≥ 0, got ${n}`);
    const { onProgress: _, ...dsOpts } = dataset.opts;
    const init: WorkerInit = {
      kind: dataset instanceof SFTDataset ? 'sft' : dataset instanceof DPODataset ? 'dpo' : 'pretrain',
      source: dataset.source, tokenizerDir: dataset.tok.dir, maxSeqLen: dataset.maxSeqLen, opts: dsOpts,
    };
    this.workers = Array.from({ length: n }, () => new LoaderWorker(init));
  }

  /** Batches per epoch (of this rank's shard) after skipping `skipBatches`. */
  batchesPerEpoch(skipBatches = 0): number {
    const { shard } = this.opts, n = this.dataset.length;
    return batchCount(shard ? shardLength(n, shard.world) : n, this.opts.batchSize, skipBatches);
  }

  /** One epoch's batches in sampler order (seed + epoch, or the shard's), the first skipBatches left out. */
  async *epoch(epoch: number, skipBatches = 0): AsyncGenerator<Batch> {
    const { shard, batchSize } = this.opts, n = this.dataset.length;
    const batches = shard ? skipSampler(distributedShard(n, shard, epoch), batchSize, skipBatches)
      : epochBatches(n, batchSize, epoch, this.opts.seed ?? 42, skipBatches);
    const make = (k: number, arrays: { inputIds: Int32Array; labels: Int32Array }): Batch => {
      const { rows, seqLen } = batchShape(this.dataset, batches[k].length);
      return { ...arrays, batch: rows, seqLen, step: skipBatches + k, indices: batches[k] };
    };
    if (this.workers.length === 0) {
      for (let k = 0; k < batches.length; k++) yield make(k, collate(this.dataset, batches[k], epoch));
      return;
    }
    const ahead = Math.max(1, this.opts.prefetch ?? 2 * this.workers.length);
    const inflight = new Map<number, Promise<{ inputIds: Int32Array; labels: Int32Array }>>();
    let next = 0;
    const fill = () => {
      for (; next < batches.length && inflight.size < ahead; next++) {
        const p = this.workers[next % this.workers.length].request(this.nextId++, batches[next], epoch);
        p.catch(() => {}); // surfaced when awaited in order; avoids an unhandled rejection if the consumer stops early
        inflight.set(next, p);
      }
    };
    for (let k = 0; k < batches.length; k++) {
      fill();
      const arrays = await inflight.get(k)!;
      inflight.delete(k);
      fill();
      yield make(k, arrays);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
