// Data parallelism on this machine: the gradient all-reduce of MiniMind2-small's whole gradient buffer
// (25.8M floats) across 2 ranks, and a 2-rank training step next to the same step on one device, with the
// share of the step the all-reduce leaves exposed (not hidden behind the backward). Ranks are worker
// threads with a device each (runtime/ranks.ts); on lavapipe both devices run on the same cores, so the
// 2-rank step is not expected to be faster, and its compute is slower than the one-device step's.
// Per rank and step the host moves the gradient 4 times (copy into the shared slot, the mean reads every
// slot's 1/W and writes it, the upload copy): ≈ 4·F·4 bytes per rank, the GB/s below.
import { startRanks } from '../runtime/ranks.js';
import { spread, type Options, type Row } from './harness.js';
import type { DdpBenchJob, DdpBenchOut } from './ddp_rank.js';
import type { ReduceTimes } from '../runtime/grad_allreduce.js';

const ENTRY = new URL(`./ddp_rank${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b), h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };

async function launch(world: number, job: DdpBenchJob): Promise<DdpBenchOut> {
  const outs = await startRanks<DdpBenchJob, DdpBenchOut>({ world, entry: ENTRY, data: job, timeoutMs: 600_000 }).done;
  return outs[0];
}

function phases(ts: ReduceTimes[]): string {
  const m = (k: keyof ReduceTimes) => median(ts.map((t) => t[k])).toFixed(1);
  return `waiting for its GPU ${m('waitMs')} ms, copy in ${m('copyMs')} ms, waiting for the other rank ${m('peerWaitMs')} ms, `
    + `mean ${m('meanMs')} ms, upload ${m('uploadMs')} ms (rank 0, medians)`;
}

/** The all-reduce's own work, not hidden behind the backward: the GPU's copies and the waits for the other
 *  rank's backward are not in it. */
const exposed = (t: ReduceTimes) => t.copyMs + t.meanMs + t.uploadMs;

export async function benchDdp(o: Options, want: (name: string) => boolean): Promise<Row[]> {
  const rows: Row[] = [];
  // A 2-rank MiniMind2-small step takes ~30 s on lavapipe: 3 timed steps after the warm-up.
  const base = { preset: 'minimind2-small', B: 4, T: 340, reps: 3, reduce: true };
  const row = (name: string, shape: string, ms: number[], note: string, bytes?: number): Row => ({
    name, shape, ms: median(ms), spread: spread(ms), samples: ms.length, clock: 'wall', hostMs: NaN, note,
    ...(bytes ? { gbps: bytes / (median(ms) / 1e3) / 1e9 } : {}),
  });
  if (want('ddp_allreduce')) {
    const r = await launch(2, { ...base, kind: 'allreduce', reps: o.quick ? 3 : 7 });
    rows.push(row('ddp_allreduce', `2 ranks × ${(r.floats / 1e6).toFixed(1)}M floats`, r.ms,
      `GPU → host → mean → GPU, to the GPU idle again; ${phases(r.times)}; GB/s: 4 host passes over the gradient per rank`, 4 * 4 * r.floats));
  }
  if (want('ddp_train_step')) {
    const shape = `B${base.B}×T${base.T} per rank`;
    const one = await launch(1, { ...base, kind: 'step', reduce: false });
    rows.push(row('ddp_train_step_minimind2-small', `1 device, ${shape}`, one.ms, 'the same step without the all-reduce'));
    const two = await launch(2, { ...base, kind: 'step' });
    const share = median(two.times.map(exposed)) / median(two.ms);
    rows.push(row('ddp_train_step_minimind2-small', `2 ranks, ${shape}`, two.ms,
      `all-reduce exposed (copy in, mean, upload) ${(100 * share).toFixed(1)}% of the step; ${phases(two.times)}`));
  }
  return rows;
}
