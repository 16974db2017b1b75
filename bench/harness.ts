// Timing for `npm run bench`. benny (benchmark.js) schedules the calls of each case: after one
// warm-up call, it keeps calling until it has `minSamples` and `maxTime` seconds have passed. Each
// call is timed here, by one of two clocks:
//  - 'gpu': timestamp queries around the call's GPU work (runtime/kernel.ts timeGpu), used when the
//    adapter has 'timestamp-query' and chooseClock() finds its timestamps agree with the wall clock;
//  - 'wall': wall clock from the call's start to queue completion (submit + GPU work + wait).
// Dawn's Node binding polls from the JS thread while a GPU promise is pending: unpaced, its spin halved
// a copy kernel's speed on 2 cores of lavapipe (20 ms awaited at once, 10 ms with the host asleep);
// runtime/gpu_wait.ts limits it to a wait's first millisecond. The host still sleeps before it awaits: past the expected GPU time on the GPU clock (the
// timestamps do not see the sleep), through half the fastest call so far on the wall clock.
// Whole training steps add the host's recording time to their GPU span ('gpu+host'). Rows report the
// median per call and the spread: the 95% margin of error of the mean, % of the mean, as benny would
// print it (large with few samples; `n` gives the count).
import { add, complete, configure, cycle, suite } from 'benny';
import { flush, hasGpuTimer, sync, timeGpu } from '../runtime/kernel.js';
import type { Sampling } from '../kernels/case.js';

/** 'gpu+host': a GPU span plus the host's recording time before the submit (whole training steps). */
export type Clock = 'gpu' | 'wall' | 'gpu+host';

export interface Row {
  name: string;
  shape: string;
  /** Median time per call, milliseconds, by `clock`. */
  ms: number;
  /** 95% margin of error of the mean, percent of the mean. */
  spread: number;
  /** Calls timed (warm-up excluded). */
  samples: number;
  clock: Clock;
  /** Median host time per call spent recording its work (before the submit), milliseconds. */
  hostMs: number;
  gflops?: number;
  gbps?: number;
  /** Percent of this adapter's measured FMA peak (compute rows) or copy bandwidth (memory rows). */
  pctRoofline?: number;
  /** The roofline that percentage is of (GFLOP/s or GB/s): see bench/kernels.ts. */
  roofline?: number;
  /** The variant(s) the timed call ran, as the tuner labels them. */
  variant?: string;
  /** Where the tuner chose another variant: the hand-picked one's median time, timed right after. */
  handPicked?: { variant: string; ms: number };
  note?: string;
}

export interface Roofline { fmaGflops: number; copyGbps: number }

export interface Options { quick: boolean }

export type { Sampling } from '../kernels/case.js';

/** A roofline kernel to re-measure around rows: `work` FLOPs or bytes per call, `ms` its expected
 *  time, `rate` the roofline's own (GFLOP/s or GB/s, from the roofline rows). */
export interface Probe { call: () => void; work: number; ms: number; rate: number }

export interface Timing { seconds: number; spread: number; samples: number; clock: Clock; hostSeconds: number }

/** Which clock rows use, and why (printed, and written to the JSON). */
export const clock: { gpu: boolean; why: string } = { gpu: false, why: 'not checked yet' };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b), h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };
/** Two-sided 95% Student t for 1..30 degrees of freedom (benchmark.js's table), 1.96 beyond. */
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];
export function spread(xs: number[]): number {
  const n = xs.length, mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return NaN;
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  return (100 * (T95[n - 2] ?? 1.96) * sd) / Math.sqrt(n) / mean;
}

/** One call of `fn` timed by `use`, the host sleeping before it waits for a call expected to take
 *  `expectMs` (0: no sleep): [ms by that clock, host ms spent in fn recording the work]. On the GPU clock
 *  it sleeps just past the expected time (the timestamps do not see it), or through 3/4 of a `rough`
 *  estimate (a warm-up's, with compilation in it); on the wall clock through half of it, a bound that
 *  stays below the call's time even if the estimate came from a call slowed 2× by the spin (an
 *  oversleep would count in the time). */
async function call(fn: () => void | Promise<void>, use: Clock, expectMs: number, rough = false): Promise<[number, number]> {
  const t0 = performance.now();
  let host = 0;
  const recorded = async () => { await fn(); host = performance.now() - t0; };
  if (use === 'gpu') {
    const sleepMs = (rough ? 0.75 : 1.1) * expectMs + 1;
    const ns = await timeGpu(recorded, { sleepMs: expectMs && sleepMs >= 2 ? sleepMs : 0 }); // setTimeout's granularity is ~1 ms
    return [ns / 1e6, host];
  }
  await recorded();
  flush();
  const left = 0.5 * expectMs - host; // the GPU started at the flush
  if (left >= 2) await sleep(left);
  await sync();
  return [performance.now() - t0, host];
}

/** The probe's rate (GFLOP/s or GB/s) over k calls: from their median time. */
export async function probeRate(p: Probe, k: number): Promise<number> {
  const use: Clock = clock.gpu ? 'gpu' : 'wall';
  const ms: number[] = [];
  for (let i = 0; i < k; i++) ms.push((await call(p.call, use, p.ms))[0]);
  return p.work / median(ms) / 1e6;
}

/** Per-call timing of `fn` (which records GPU work) under benny's schedule. */
export async function time(name: string, fn: () => void | Promise<void>, o: Options, s: Sampling = {}): Promise<Timing> {
  const use: Clock = clock.gpu && s.clock !== 'wall' ? 'gpu' : 'wall';
  // Warm-up: compiles pipelines, fills the buffer pool; its time sets the first host sleep.
  let fastest = s.warmup === false ? s.expectMs ?? 0 : (await call(fn, use, 0))[0];
  const got: number[] = [], host: number[] = [];
  // benny calls the case once, unawaited, to see whether it returns a promise: calls before
  // benchmark.js starts (onStart) return at once, so no work overlaps and none goes untimed.
  let started = false;
  const sampled = async () => {
    if (!started) return;
    const [ms, h] = await call(fn, use, fastest, got.length === 0);
    got.push(ms); host.push(h);
    fastest = got.length > 1 ? Math.min(fastest, ms) : ms;
  };
  const cases = o.quick ? { minSamples: 2, maxTime: 0.3 } : { minSamples: s.minSamples ?? 8, maxTime: s.maxTime ?? 2 };
  const onStart = () => { started = true; };
  await suite(name,
    add(name, sampled, { onStart } as object),
    configure({ cases: { ...cases, delay: 0 } }),
    cycle(() => ''),
    complete(() => undefined),
  );
  if (!got.length) throw new Error(`bench ${name}: benny ran no timed call`);
  return { seconds: median(got) / 1e3, spread: spread(got), samples: got.length, clock: use, hostSeconds: median(host) / 1e3 };
}

/** Use GPU timestamps only if they agree with the wall clock on calls of `probe` (a big matmul): the GPU
 *  span must lie within the call's wall time and cover most of it. Sets `clock`. */
export async function chooseClock(probe: () => void): Promise<void> {
  if (!hasGpuTimer()) { Object.assign(clock, { gpu: false, why: "the adapter has no 'timestamp-query'" }); return; }
  const pairs: [number, number][] = [];
  const wallOf = async () => { const t0 = performance.now(); const [g] = await call(probe, 'gpu', 0); return [g, performance.now() - t0] as [number, number]; };
  await wallOf();
  for (let i = 0; i < 3; i++) pairs.push(await wallOf()); // no sleep: the wall span is the call's
  const [g, w] = [median(pairs.map((p) => p[0])), median(pairs.map((p) => p[1]))];
  const ok = pairs.every(([gp, wp]) => gp > 0 && gp <= wp) && g >= 0.7 * w;
  const what = `timestamps on a ${w.toFixed(0)} ms matmul: GPU ${g.toFixed(1)} ms vs wall ${w.toFixed(1)} ms`;
  Object.assign(clock, ok ? { gpu: true, why: `${what}: agree` } : { gpu: false, why: `${what}: not credible, wall clock used` });
}

/** A row from a timing and the work done per call (FLOPs and/or bytes moved); `roof` the roofline to
 *  take a percentage of (FMA GFLOP/s for compute rows, copy GB/s for memory rows). */
export function row(name: string, shape: string, t: Timing, work: { flops?: number; bytes?: number },
  roof?: Roofline, bound: 'compute' | 'memory' = work.flops && !work.bytes ? 'compute' : 'memory'): Row {
  const r: Row = { name, shape, ms: t.seconds * 1e3, spread: t.spread, samples: t.samples, clock: t.clock, hostMs: t.hostSeconds * 1e3 };
  if (work.flops) r.gflops = work.flops / t.seconds / 1e9;
  if (work.bytes) r.gbps = work.bytes / t.seconds / 1e9;
  if (roof) {
    r.roofline = bound === 'compute' ? roof.fmaGflops : roof.copyGbps;
    r.pctRoofline = (100 * ((bound === 'compute' ? r.gflops : r.gbps) ?? 0)) / r.roofline;
  }
  return r;
}

export function formatTable(rows: Row[]): string {
  const head = ['kernel', 'shape', 'ms/call', '±%', 'n', 'clock', 'GFLOP/s', 'GB/s', '% roofline', 'vs hand-picked', 'variant'];
  const body = rows.map((r) => [r.name, r.shape, r.ms.toFixed(3), r.spread.toFixed(1), String(r.samples), r.clock,
    r.gflops?.toFixed(2) ?? '', r.gbps?.toFixed(2) ?? '', r.pctRoofline !== undefined ? r.pctRoofline.toFixed(1) : '',
    r.handPicked ? `${(r.handPicked.ms / r.ms).toFixed(2)}×` : '', r.variant ?? '']);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 || i === 5 || i === 10 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}

/** Rows of a --filter run merged into the previous results: same name and shape replaced, others kept in order. */
export function mergeRows(old: Row[], fresh: Row[]): Row[] {
  const key = (r: Row) => `${r.name}\u0000${r.shape}`;
  const byKey = new Map(fresh.map((r) => [key(r), r]));
  const merged = old.map((r) => byKey.get(key(r)) ?? r);
  const seen = new Set(old.map(key));
  return [...merged, ...fresh.filter((r) => !seen.has(key(r)))];
}
