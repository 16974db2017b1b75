// Timing for `npm run bench`: each case runs under benny (benchmark.js statistics: warm-up,
// samples, median and relative margin), timed as wall clock around queue completion (submit + GPU
// work + onSubmittedWorkDone), since lavapipe offers no timestamp queries.
import { add, complete, configure, cycle, suite } from 'benny';
import { sync } from '../runtime/kernel.js';

export interface Row {
  name: string;
  shape: string;
  /** Median time per call, milliseconds. */
  ms: number;
  /** Relative margin of error of the mean, percent. */
  spread: number;
  gflops?: number;
  gbps?: number;
  /** Percent of this adapter's measured FMA peak (compute rows) or copy bandwidth (memory rows). */
  pctRoofline?: number;
  note?: string;
}

export interface Roofline { fmaGflops: number; copyGbps: number }

export interface Options { quick: boolean }

/** Median seconds per call of `fn` (which records GPU work), with the spread in percent. */
export async function time(name: string, fn: () => void | Promise<void>, o: Options): Promise<{ seconds: number; spread: number }> {
  await fn();
  await sync(); // warm-up: compiles pipelines, fills the buffer pool
  let out = { seconds: NaN, spread: NaN };
  await suite(name,
    add(name, async () => { await fn(); await sync(); }),
    configure({ cases: o.quick ? { minSamples: 2, maxTime: 0.3, delay: 0 } : { minSamples: 8, maxTime: 3, delay: 0 } }),
    cycle(() => ''),
    complete((s) => {
      const r = s.results[0];
      out = { seconds: r.details.median, spread: r.details.relativeMarginOfError };
    }),
  );
  return out;
}

/** A row from a timing and the work done per call (FLOPs and/or bytes moved). */
export function row(name: string, shape: string, t: { seconds: number; spread: number }, work: { flops?: number; bytes?: number },
  roof?: Roofline, bound: 'compute' | 'memory' = work.flops && !work.bytes ? 'compute' : 'memory'): Row {
  const r: Row = { name, shape, ms: t.seconds * 1e3, spread: t.spread };
  if (work.flops) r.gflops = work.flops / t.seconds / 1e9;
  if (work.bytes) r.gbps = work.bytes / t.seconds / 1e9;
  if (roof) r.pctRoofline = bound === 'compute' ? (100 * (r.gflops ?? 0)) / roof.fmaGflops : (100 * (r.gbps ?? 0)) / roof.copyGbps;
  return r;
}

export function formatTable(rows: Row[]): string {
  const head = ['kernel', 'shape', 'ms/call', '±%', 'GFLOP/s', 'GB/s', '% roofline'];
  const body = rows.map((r) => [r.name, r.shape, r.ms.toFixed(3), r.spread.toFixed(1), r.gflops?.toFixed(2) ?? '', r.gbps?.toFixed(2) ?? '',
    r.pctRoofline !== undefined ? r.pctRoofline.toFixed(1) : '']);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}
