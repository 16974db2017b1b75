// Every kernel row of `npm run bench`, at MiniMind2-small training shapes: each op's bench rows from
// the op table (kernels/index.ts), in its order. Work per call comes from each kernel module's bench
// metadata. Each case validates its output once against the float64 reference before it is timed;
// shape classes met for the first time are tuned before the timing, and every row names the
// variants it ran. A row's % roofline is
// of the median of three rates of its roofline kernel (FMA for compute rows, copy for memory rows):
// timed just before the row, just after it, and at the start of the run. The machine's speed drifts
// within a run, so a row is compared with its own moment, and one disturbed probe cannot skew it.
import { beginScope, endScope } from '../runtime/tensor.js';
import { poolStats, resetPeak } from '../runtime/buffer.js';
import { sync } from '../runtime/kernel.js';
import { Options, Probe, Row, probeRate, row, time } from './harness.js';
import { tuner } from '../runtime/tuner.js';
import { OPS } from '../kernels/index.js';

const PROBE_CALLS = 5;

export async function benchKernels(o: Options, probes: { compute: Probe; memory: Probe }, want: (name: string) => boolean): Promise<Row[]> {
  const rows: Row[] = [];
  for (const c of OPS.flatMap((op) => op.cases?.() ?? [])) {
    if (!want(c.name) || (o.quick && c.slow)) continue;
    const held: { dispose(): void }[] = [];
    const t0 = performance.now();
    beginScope();
    try {
      const call = await c.setup(held);
      // Shapes the setup met for the first time are tuned before the timing (first use).
      await tuner().tunePending();
      await sync();
      const setupMs = performance.now() - t0; // a bound on one call, for the first sleep of a case that ran it already
      const bound = c.bound ?? 'memory';
      const probe = bound === 'compute' ? probes.compute : probes.memory;
      const rates = [await probeRate(probe, PROBE_CALLS)];
      const before = poolStats().inUseBytes;
      resetPeak();
      tuner().takePicks();
      const t = await time(`${c.name} ${c.shape}`, call, o, { ...c.sampling, ...(c.warm ? { warmup: false, expectMs: setupMs } : {}) });
      const variant = c.variant ?? (tuner().takePicks().map((x) => `${x.id.split('|')[0]} ${x.label}`).join('; ') || undefined);
      // The hand-picked variant at the same moment, where the tuner chose another.
      const hp = c.handPicked && { variant: c.handPicked.label, ms: (await time(`${c.name} ${c.shape} hand-picked`, c.handPicked.call, o, c.sampling)).seconds * 1e3 };
      const peak = poolStats().peakInUseBytes - before;
      rates.push(await probeRate(probe, PROBE_CALLS));
      const rate = [...rates, probe.rate].sort((a, b) => a - b)[1];
      const roof = { fmaGflops: rate, copyGbps: rate };
      const notes = [c.note, c.peak ? `peak +${(peak / 2 ** 20).toFixed(1)} MiB per call` : undefined].filter(Boolean);
      rows.push({ ...row(c.name, c.shape, t, c.work, roof, bound), ...(variant ? { variant } : {}), ...(hp ? { handPicked: hp } : {}),
        ...(notes.length ? { note: notes.join('; ') } : {}) });
    } finally {
      endScope();
      for (const h of held) h.dispose();
    }
    const r = rows.at(-1)!;
    process.stdout.write(`  ${r.name} ${r.shape}: ${r.ms.toFixed(2)} ms (${r.clock}, n ${r.samples})`
      + `${r.pctRoofline !== undefined ? `, ${r.pctRoofline.toFixed(0)}% of roofline` : ''}`
      + `${r.handPicked ? `; hand-picked ${r.handPicked.variant}: ${r.handPicked.ms.toFixed(2)} ms` : ''} [row took ${((performance.now() - t0) / 1e3).toFixed(1)} s]\n`);
  }
  return rows;
}
