// Variant selection by measurement. A tunable kernel family lists the variants that can run on this
// adapter for a shape; on the first use of a (family, shape class) the tuner times them on the GPU
// clock with synthetic inputs, after checking each against its float64 reference, keeps the fastest
// and persists the choice in a cache file per adapter (and, for a CPU adapter, per CPU), so the next
// run reuses it. TVM's and Triton's autotuners, Burn/CubeCL and ONNX Runtime's WebGPU provider
// choose this way; here the candidates are few and hand-written, so every one is timed. Tuning a
// whole MiniMind2-small step is to take under a minute on lavapipe, so no run is spent twice: a
// candidate's check is its first timing, one far behind the best gets no more, and the duel with
// the hand-picked choice runs on inputs the round made (Tunable.trials).
// Ops run synchronously while they record, so a miss cannot be timed on the spot: pick() returns the
// hand-picked fallback and queues the shape; tunePending() times what is queued (the trainer does
// it after planning a step with plan(), before its first real step, so every step of a run uses
// the same variants). MINIMIND_TUNE=off uses cached or hand-picked choices and times nothing;
// MINIMIND_TUNE=force ignores the cache file and re-tunes every shape class once;
// MINIMIND_TUNE_FILE names another cache file ('none': none).
import { existsSync, readFileSync } from 'node:fs';
import { cpus, homedir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './device.js';
import { hasGpuTimer, pipelinesCreated, sync, timeGpu } from './kernel.js';
import { writeFileAtomic } from './write_file_atomic.js';

export type TuneMode = 'on' | 'off' | 'force';

/** Synthetic inputs at one shape, for timing and checking variants. */
export interface Trial<V> {
  /** Records the dispatches of variant v on the trial's inputs (same work every call). */
  run(v: V): void;
  /** Runs v once and compares its outputs with the float64 reference: null, or the first mismatch.
   *  The run goes through `exec` (default: recorded now): the tuner's times it, so the check's run
   *  is the candidate's first timing rather than one more run. */
  check(v: V, exec?: Exec): Promise<string | null>;
  dispose(): void;
}

/** Does a run that `record` records (and waits for it when it times it). */
export type Exec = (record: () => void) => Promise<void>;
export const recordNow: Exec = async (record) => { record(); };

/** A kernel family with variants (an op's forward, one backward pass...). */
export interface Tunable<S, V> {
  /** Cache key prefix and bench row name. */
  name: string;
  /** Shape class: shapes that share it share a choice. */
  key(s: S): string;
  /** Every variant valid for s on this adapter, the fallback among them (tests force each). */
  variants(s: S): V[];
  /** The hand-picked choice, used when tuning is off or before a shape is tuned. */
  fallback(s: S): V;
  /** Variants worth timing; default variants(s). */
  candidates?(s: S): V[];
  /** Variants near the round's best, timed in a second round (e.g. another traversal order). */
  neighbours?(best: V, s: S): V[];
  label(v: V): string;
  trial(s: S): Trial<V>;
  /** The problem timed when tuning s: by default s itself; a big GEMM times fewer rows of the same
   *  class (every tile does the same work, so the ranking holds at a fraction of the time). */
  tuningShape?(s: S): S;
  /** The problem of the final duel with the hand-picked choice: by default s itself. */
  duelShape?(s: S): S;
  /** Relative work of problem s (multiply-adds, say), where tuningShape and duelShape differ: it
   *  scales the round's times to the duel's problem, so the host sleeps through most of each duel
   *  run from the first one on (without it the first runs are slept as if the same size). */
  cost?(s: S): number;
  /** Trials of the round's problem and the duel's on one set of inputs, made for the duel's (the
   *  round's problem is a part of it: e.g. its first rows), so the duel needs neither inputs of its
   *  own nor a warm-up run; dispose() frees them. Default: a trial each. */
  trials?(tuning: S, duel: S): { round: Trial<V>; duel: Trial<V>; dispose(): void };
}

export interface Timing { label: string; ms?: number; dropped?: string }
export interface Choice { family: string; key: string; label: string; variant: unknown; timings: Timing[]; source: 'tuned' | 'cache' | 'fallback' }

export interface Entry { variant: unknown; label: string; timings: Timing[]; date: string }
interface CacheFile { format: string; version: number; adapter: string; entries: Record<string, Entry> }

const FORMAT = 'minimind-ts tuning cache';
const VERSION = 1;

/** The adapter as tuning sees it: its identity and driver version, and the CPU behind a software adapter. */
export function adapterFingerprint(): string {
  const { adapter, isSoftware } = gpu();
  const i = adapter.info;
  const id = [i.vendor, i.architecture, i.device, i.description].join(' / ');
  if (!isSoftware) return id;
  let avx512 = false;
  try { avx512 = /\bavx512f\b/.test(readFileSync('/proc/cpuinfo', 'utf8')); } catch { /* not Linux */ }
  return `${id} / CPU ${cpus()[0]?.model ?? '?'} ×${cpus().length}${avx512 ? ' avx512' : ''}`;
}

/** MINIMIND_TUNE_FILE (a path, or 'none' for no file), else
 *  $XDG_CACHE_HOME/minimind-ts/tuning/<adapter>.json (~/.cache when XDG_CACHE_HOME is unset). */
export function defaultCacheFile(fingerprint = adapterFingerprint()): string | null {
  const env = process.env.MINIMIND_TUNE_FILE;
  if (env) return env === 'none' ? null : env;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  const slug = fingerprint.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-|-$/g, '').slice(0, 120);
  return join(base, 'minimind-ts', 'tuning', `${slug}.json`);
}

export function modeFromEnv(v = process.env.MINIMIND_TUNE): TuneMode {
  if (v === undefined || v === '' || v === 'on') return 'on';
  if (v === 'off' || v === 'force') return v;
  throw new Error(`MINIMIND_TUNE=${v}: expected on (default), off or force`);
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export class Tuner {
  readonly mode: TuneMode;
  /** The cache file, or null for none (tests). */
  readonly file: string | null;
  private readonly fingerprint: string;
  private readonly warn: (line: string) => void;
  /** Choices by `family|key`: the file's (unless force) and this process's. */
  private readonly entries = new Map<string, Entry>();
  /** Shapes picked before being tuned, by `family|key`. */
  private readonly pending = new Map<string, () => Promise<Choice>>();
  /** What pick() returned since the last takePicks(): `family|key` → the variant's label. */
  private picks = new Map<string, string>();

  constructor(o: { mode?: TuneMode; file?: string | null; fingerprint?: string; warn?: (line: string) => void } = {}) {
    this.mode = o.mode ?? modeFromEnv();
    this.fingerprint = o.fingerprint ?? adapterFingerprint();
    this.file = o.file === undefined ? defaultCacheFile(this.fingerprint) : o.file;
    this.warn = o.warn ?? ((l) => console.warn(`[tune] ${l}`));
    if (this.file && this.mode !== 'force') this.load(this.file);
  }

  private load(file: string): void {
    if (!existsSync(file)) return;
    let c: CacheFile;
    try {
      c = JSON.parse(readFileSync(file, 'utf8')) as CacheFile;
    } catch (e) {
      this.warn(`ignoring the tuning cache ${file}: not JSON (${(e as Error).message}); it will be rewritten`);
      return;
    }
    const why = c?.format !== FORMAT ? 'not a tuning cache' : c.version !== VERSION ? `version ${c.version}, not ${VERSION}`
      : c.adapter !== this.fingerprint ? `written for another adapter (${c.adapter})` : typeof c.entries !== 'object' || !c.entries ? 'no entries' : '';
    if (why) { this.warn(`ignoring the tuning cache ${file}: ${why}; it will be rewritten`); return; }
    for (const [k, e] of Object.entries(c.entries)) if (e && typeof e.label === 'string') this.entries.set(k, e);
  }

  private save(): void {
    if (!this.file) return;
    const out: CacheFile = { format: FORMAT, version: VERSION, adapter: this.fingerprint, entries: Object.fromEntries(this.entries) };
    writeFileAtomic(this.file, JSON.stringify(out, null, 1));
  }

  /** The variant to use for s: the tuned or cached choice, else the fallback (queued for tuning). */
  pick<S, V>(t: Tunable<S, V>, s: S): V {
    const v = this.known(t, s) ?? this.miss(t, s);
    this.picks.set(`${t.name}|${t.key(s)}`, t.label(v));
    return v;
  }

  /** A valid stored choice for s (a cached variant that no longer exists is ignored). */
  private known<S, V>(t: Tunable<S, V>, s: S): V | undefined {
    const e = this.entries.get(`${t.name}|${t.key(s)}`);
    return e ? t.variants(s).find((v) => sameJson(v, e.variant)) : undefined;
  }

  private miss<S, V>(t: Tunable<S, V>, s: S): V {
    const id = `${t.name}|${t.key(s)}`;
    if (this.mode !== 'off' && !this.pending.has(id)) this.pending.set(id, () => this.tune(t, s));
    return t.fallback(s);
  }

  /** The shape classes picked since the last call (`family|key`) and the labels of the variants
   *  used (the bench names them, npm run tune lists them), then forgets them. */
  takePicks(): { id: string; label: string }[] {
    const out = [...this.picks].map(([id, label]) => ({ id, label }));
    this.picks = new Map();
    return out;
  }

  /** The stored choice of `family|key`, if any. */
  entry(id: string): Entry | undefined {
    return this.entries.get(id);
  }

  /** Shape classes waiting to be tuned. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Tunes every queued shape class, saves the cache, and returns the choices made. */
  async tunePending(): Promise<Choice[]> {
    const out: Choice[] = [];
    for (const [id, tune] of [...this.pending]) {
      this.pending.delete(id);
      out.push(await tune());
    }
    return out;
  }

  /** The choice for s: from the cache unless forced, else timed now (and saved). */
  async choose<S, V>(t: Tunable<S, V>, s: S): Promise<Choice> {
    const key = t.key(s), e = this.entries.get(`${t.name}|${key}`);
    if (e && this.known(t, s) !== undefined) return { family: t.name, key, ...e, source: 'cache' };
    if (this.mode === 'off') {
      const v = t.fallback(s);
      return { family: t.name, key, label: t.label(v), variant: v, timings: [], source: 'fallback' };
    }
    return this.tune(t, s);
  }

  /** Times every candidate for s (the fallback first), drops those that fail, keeps the fastest. */
  async tune<S, V>(t: Tunable<S, V>, s: S): Promise<Choice> {
    const key = t.key(s), fallback = t.fallback(s);
    const first = t.candidates?.(s) ?? t.variants(s);
    const list = [fallback, ...first.filter((v) => !sameJson(v, fallback))];
    const timings: Timing[] = [];
    const ms = new Map<string, number>();
    const tuningShape = t.tuningShape?.(s) ?? s, duelShape = t.duelShape?.(s) ?? s;
    const same = sameJson(duelShape, tuningShape);
    const pair = same ? undefined : t.trials?.(tuningShape, duelShape);
    const trial = pair?.round ?? t.trial(tuningShape);
    let best: { v: V; ms: number } | undefined;
    const measure = async (v: V) => {
      const label = t.label(v);
      if (timings.some((x) => x.label === label)) return;
      // The fallback sets the bar for the others' early stop, and a winner is timed twice more in
      // the duel: three runs for the first, two for the rest.
      const r = await this.measure(trial, v, best?.ms, best ? 2 : 3);
      timings.push({ label, ...r });
      if (r.dropped) this.warn(`${t.name} ${key}: variant ${label} dropped: ${r.dropped}`);
      if (r.ms !== undefined) { ms.set(label, r.ms); if (!best || r.ms < best.ms) best = { v, ms: r.ms }; }
    };
    try {
      for (const v of list) await measure(v);
      if (best && t.neighbours) for (const v of t.neighbours(best.v, s)) await measure(v);
      // On a busy machine one lucky run can crown a variant, and a capped problem can favour another
      // than the whole one: the winner must beat the hand-picked choice again on the real shape (or
      // a larger cap), the two timed in turn, by 5%, or the hand-picked choice stays. The duel runs
      // on inputs the round made and touched where it can (the same problem, or Tunable.trials).
      const fallbackMs = ms.get(t.label(fallback));
      if (best && fallbackMs !== undefined && !sameJson(best.v, fallback)) {
        const scale = same || !t.cost ? 1 : t.cost(duelShape) / t.cost(tuningShape);
        const fresh = !same && !pair;
        const duelTrial = same ? trial : pair?.duel ?? t.trial(duelShape);
        const duel = await this.duel(duelTrial, best.v, fallback, [best.ms * scale, fallbackMs * scale], fresh);
        timings.push({ label: `${t.label(best.v)} vs ${t.label(fallback)} at the real shape`, ms: duel[0] }, { label: t.label(fallback), ms: duel[1] });
        if (!(duel[0] < 0.95 * duel[1])) best = { v: fallback, ms: duel[1] };
      }
    } finally {
      trial.dispose();
      pair?.dispose();
    }
    // Nothing ran (every variant failed): the fallback stays, and the warnings said why.
    const chosen = best?.v ?? fallback;
    const entry: Entry = { variant: chosen, label: t.label(chosen), timings, date: new Date().toISOString() };
    this.entries.set(`${t.name}|${key}`, entry);
    if (best) this.save();
    return { family: t.name, key, ...entry, source: best ? 'tuned' : 'fallback' };
  }

  /** Checks v, timing the check's run, then runs it again: the fastest of up to `runs` runs. A slow
   *  variant does not earn more runs (1.3× behind the best so far); a long call does not need them.
   *  A run that created a pipeline may hold its compilation (lavapipe compiles a shader at its first
   *  dispatch, inside the GPU clock's span: seconds with a cold Mesa cache), so its time only bounds
   *  the variant's from above: where that bound would end the runs, it does not count as one. */
  private async measure<V>(trial: Trial<V>, v: V, bestMs: number | undefined, runs: number): Promise<{ ms?: number; dropped?: string }> {
    try {
      let min = Infinity;
      const created = pipelinesCreated();
      const bad = await trial.check(v, async (record) => { min = await this.time(record, (bestMs ?? 0) * 0.75); }); // a compile error is thrown here
      if (bad) return { dropped: `wrong result: ${bad}` };
      if (min === Infinity) return { dropped: 'its trial checked it without running it through exec (untimed)' };
      const stop = (n: number) => (bestMs !== undefined && min > 1.3 * bestMs) || min * n > 250;
      for (let n = pipelinesCreated() > created && stop(1) ? 0 : 1; n < runs && (n === 0 || !stop(n)); n++) {
        min = Math.min(min, await this.time(() => trial.run(v), n ? min * 0.9 : (bestMs ?? 0) * 0.75));
      }
      return { ms: min };
    } catch (e) {
      return { dropped: (e as Error).message.split('\n')[0] };
    }
  }

  /** The faster of two runs each of a and b, in turn (a b a b), on `trial`; `expect` (ms) sets how
   *  long the host sleeps before each one's first run. A fresh trial (disposed here) first runs b
   *  once untimed: a first use of new buffers ran up to 1.5× slower on lavapipe. After the first
   *  pair, a 1.3× behind b ends the duel (the round's rule): b stays. A failure counts as Infinity
   *  for a. */
  private async duel<V>(trial: Trial<V>, a: V, b: V, expect: [number, number], fresh: boolean): Promise<[number, number]> {
    const best = [Infinity, Infinity], last = [...expect];
    try {
      if (fresh) await this.time(() => trial.run(b), expect[1] * 0.9);
      for (let i = 0; i < 4; i++) {
        const k = i % 2;
        last[k] = await this.time(() => trial.run(k ? b : a), last[k] * 0.9);
        best[k] = Math.min(best[k], last[k]);
        if (i === 1 && best[0] > 1.3 * best[1]) break;
      }
    } catch {
      best[0] = Infinity;
    } finally {
      if (fresh) trial.dispose();
    }
    return [best[0], best[1]];
  }

  /** Milliseconds of one call's GPU work (GPU timestamps, else the wall clock to completion). The
   *  host sleeps through most of the expected time first: Dawn polls from the JS thread while it
   *  waits (runtime/gpu_wait.ts), which slows a CPU adapter sharing the cores. */
  private async time(fn: () => void, sleepMs: number): Promise<number> {
    if (hasGpuTimer()) return (await timeGpu(fn, { sleepMs: sleepMs >= 2 ? sleepMs : 0 })) / 1e6;
    const t0 = performance.now();
    fn();
    await sync();
    return performance.now() - t0;
  }

}

const tuners = new WeakMap<GPUDevice, Tuner>();

/** The device's tuner: mode from MINIMIND_TUNE, cache file under the user's cache directory. */
export function tuner(): Tuner {
  const { device } = gpu();
  let t = tuners.get(device);
  if (!t) tuners.set(device, (t = new Tuner()));
  return t;
}
