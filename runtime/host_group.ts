// The ranks of one process (one worker thread each, runtime/ranks.ts) meeting in shared memory: barriers
// that time out naming the ranks that did not arrive, an abort that wakes every waiter with the failed
// rank, and the mean over ranks of float32 vectors. The mean is a reduce-scatter then an all-gather, as
// NCCL's ring does it: each rank sums its 1/W part over every rank's slot, then every rank reads the whole
// result, so each rank's host work is O(F) whatever W is, and W threads do it at once.
// Waits use Atomics.waitAsync, never a blocking wait: a waiting rank's event loop stays free for its GPU
// promises and messages, and Worker.terminate() always stops it.

/** Int32 words of the control block. */
const BELL = 0; // bumped at every arrival and abort: the word waiters sleep on
const FAILED = 1; // 1 + the rank that failed, 0 while none has
const STOP = 2; // set by the launcher on Ctrl-C; ranks agree on it at their next exchange
const ARRIVALS = 3; // then one counter per rank: barriers it has entered

/** Atomics.waitAsync (in Node since 16; its types come with lib ES2024, past this project's ES2023). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, i: number, v: number, timeoutMs: number): { async: boolean; value: Promise<string> | string };
}).waitAsync;

export function controlBlock(world: number): SharedArrayBuffer {
  return new SharedArrayBuffer(4 * (ARRIVALS + world));
}

export function requestStop(control: SharedArrayBuffer): void {
  Atomics.store(new Int32Array(control), STOP, 1);
}

/** Marks `rank` failed and wakes every waiter (the first failure is kept). */
export function abortGroup(control: SharedArrayBuffer, rank: number): void {
  const c = new Int32Array(control);
  Atomics.compareExchange(c, FAILED, 0, rank + 1);
  Atomics.add(c, BELL, 1);
  Atomics.notify(c, BELL);
}

/** Raised in a rank that stops because another one failed: the launcher reports that one's error. */
export class RankAborted extends Error {
  constructor(readonly failed: number, where: string) {
    super(`stopped at ${where}: rank ${failed} failed`);
  }
}

/** Raised in a rank that waited too long for others; its message names them. */
export class RankTimeout extends Error {}

/** Where the ranks exchange vectors of `floats` float32 values and rows of `flags` int32 values. */
export interface SharedArea { floats: number; flags: number; buffer: SharedArrayBuffer }

export function sharedArea(world: number, floats: number, flags: number): SharedArea {
  return { floats, flags, buffer: new SharedArrayBuffer(4 * ((world + 1) * floats + world * flags)) };
}

export interface GroupOptions {
  rank: number;
  world: number;
  control: SharedArrayBuffer;
  /** How long a barrier waits for the last rank before failing with its name, in ms. */
  timeoutMs: number;
  /** The area of these sizes every rank of the group gets (the launcher hands all the same one). */
  share(floats: number, flags: number): Promise<SharedArea>;
}

export class HostGroup {
  readonly rank: number;
  readonly world: number;
  readonly timeoutMs: number;
  private readonly ctl: Int32Array;
  private readonly shareFn: GroupOptions['share'];

  constructor(o: GroupOptions) {
    this.rank = o.rank;
    this.world = o.world;
    this.timeoutMs = o.timeoutMs;
    this.ctl = new Int32Array(o.control);
    this.shareFn = o.share;
    if (this.ctl.length !== ARRIVALS + o.world) throw new Error(`HostGroup: control block for ${this.ctl.length - ARRIVALS} ranks, world is ${o.world}`);
  }

  /** Whether the launcher asked the ranks to stop (Ctrl-C); each rank sees it at its own moment. */
  get stopRequested(): boolean {
    return Atomics.load(this.ctl, STOP) !== 0;
  }

  /** Throws RankAborted when some rank has failed. */
  checkAbort(where: string): void {
    const f = Atomics.load(this.ctl, FAILED);
    if (f) throw new RankAborted(f - 1, where);
  }

  /** Marks this rank failed and wakes the others. */
  abort(): void {
    abortGroup(this.ctl.buffer as SharedArrayBuffer, this.rank);
  }

  /** Resolves once every rank has entered its matching barrier; `where` names it in the errors. */
  async barrier(where: string): Promise<void> {
    const c = this.ctl;
    const gen = Atomics.add(c, ARRIVALS + this.rank, 1) + 1;
    Atomics.add(c, BELL, 1);
    Atomics.notify(c, BELL);
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      this.checkAbort(where);
      const bell = Atomics.load(c, BELL);
      const missing = [];
      for (let r = 0; r < this.world; r++) if (Atomics.load(c, ARRIVALS + r) < gen) missing.push(r);
      if (!missing.length) return;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new RankTimeout(`rank ${missing.join(', rank ')} did not arrive at ${where} within ${+(this.timeoutMs / 1000).toFixed(1)} s `
          + `(rank ${this.rank} waited; --ddp_timeout sets the limit)`);
      }
      // A timer keeps the event loop alive while waiting (a pending waitAsync alone does not).
      const keep = setTimeout(() => {}, left + 10);
      const w = waitAsync(c, BELL, bell, left);
      if (w.async) await w.value;
      clearTimeout(keep);
    }
  }

  /** Runs `fn` on rank 0, then on the others: what rank 0 prepares and caches (data, tuned kernels),
   *  they find ready. `where` names the wait in a timeout's message. */
  async rank0First<T>(where: string, fn: () => Promise<T>): Promise<T> {
    if (this.rank !== 0) await this.barrier(`rank 0's ${where}`);
    const out = await fn();
    if (this.rank === 0) await this.barrier(`rank 0's ${where}`);
    return out;
  }

  /** The shared area of these sizes (every rank must ask for the same; the launcher checks). */
  async share(floats: number, flags: number): Promise<SharedSlots> {
    const a = await this.shareFn(floats, flags);
    if (a.floats !== floats || a.flags !== flags) throw new Error(`HostGroup.share: asked for ${floats} floats and ${flags} flags, got ${a.floats} and ${a.flags}`);
    return new SharedSlots(a, this.rank, this.world);
  }
}

/** Views of a shared area: a float slot and a flag row per rank, and the result vector. */
export class SharedSlots {
  /** slots[r]: what rank r contributes. */
  readonly slots: Float32Array[];
  /** The mean (or rank 0's broadcast), read by every rank. */
  readonly result: Float32Array;
  readonly flagRows: Int32Array[];

  constructor(a: SharedArea, readonly rank: number, readonly world: number) {
    const { floats: F, flags: G, buffer } = a;
    this.slots = Array.from({ length: world }, (_, r) => new Float32Array(buffer, 4 * r * F, F));
    this.result = new Float32Array(buffer, 4 * world * F, F);
    this.flagRows = Array.from({ length: world }, (_, r) => new Int32Array(buffer, 4 * ((world + 1) * F + r * G), G));
  }

  /** result[from, to) = mean over ranks of slots[·][from, to), for this rank's 1/W part of the range
   *  only (every rank calls it between two barriers). Summed in rank order in float64, rounded once. */
  meanPart(from: number, to: number): void {
    const W = this.world, n = to - from;
    const lo = from + Math.floor((n * this.rank) / W), hi = from + Math.floor((n * (this.rank + 1)) / W);
    const out = this.result, s = this.slots;
    if (W === 2) {
      const a = s[0], b = s[1];
      for (let i = lo; i < hi; i++) out[i] = (a[i] + b[i]) / 2;
      return;
    }
    for (let i = lo; i < hi; i++) {
      let sum = 0;
      for (let r = 0; r < W; r++) sum += s[r][i];
      out[i] = sum / W;
    }
  }

  /** Element-wise OR of every rank's flag row (after a barrier that follows the writes). */
  orFlags(): Int32Array {
    const out = new Int32Array(this.flagRows[0].length);
    for (const row of this.flagRows) for (let i = 0; i < out.length; i++) out[i] |= row[i];
    return out;
  }
}
