// The adapter's roofline, measured: a pure-FMA throughput kernel (runtime/fma_peak.ts) and vec4 copy kernels.
// Copy: 64 MiB read + 64 MiB written per call, in three layouts (one vec4 per invocation; four per
// invocation, strided by the workgroup; a grid-stride loop over 512 workgroups); the fastest is the
// copy roofline, since the best copy a kernel can do is what memory-bound kernels are judged against.
// Probes: smaller runs of the FMA kernel and the winning copy, timed just before and after each row
// (bench/kernels.ts), because this machine's speed drifts by up to 2× within a run.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor } from '../runtime/tensor.js';
import { FMA_ITERS, fmaFlops, launchFma } from '../runtime/fma_peak.js';
import { Options, Probe, Roofline, Row, row, time } from './harness.js';

/** y = x over n vec4s: variant per = vec4s per invocation (strided by the workgroup), or 0 for a grid-stride loop. */
const copy = defineKernel<{ per: number }>({
  name: 'roofline_copy', params: [['n', 'u32'], ['stride', 'u32']], buffers: [['x', 'read', 'vec4<f32>'], ['y', 'rw', 'vec4<f32>']], workgroup: 256,
  wgsl: (v, entry) => `
${entry} {
${v.per ? `  let base = wgIndex(wid, nwg) * ${256 * v.per}u + lid.x;
  for (var k = 0u; k < ${v.per}u; k++) { let i = base + k * 256u; if (i < p.n) { y[i] = x[i]; } }`
    : '  for (var i = wgIndex(wid, nwg) * 256u + lid.x; i < p.n; i += p.stride) { y[i] = x[i]; }'}
}`,
});
const COPY_LAYOUTS = [['1 vec4/invocation', 1], ['4 vec4/invocation', 4], ['grid-stride, 512 workgroups', 0]] as const;

export async function measureRoofline(o: Options): Promise<{ roof: Roofline; rows: Row[]; probes: { compute: Probe; memory: Probe } }> {
  const n = 1 << 18; // vec4 outputs of the FMA kernel
  const y = Tensor.empty([n * 4]).keep();
  const runFma = (m: number) => () => launchFma(y, m);
  const flops = fmaFlops;
  const tf = await time('roofline_fma', runFma(n), o);
  const nv = (64 << 20) / 16, bytes = 2 * (64 << 20);
  const a = Tensor.zeros([nv * 4]).keep(), b = Tensor.empty([nv * 4]).keep();
  const runCopy = (per: number) => () => launch(copy, {
    params: { n: nv, stride: 512 * 256 }, buffers: [a.buffer, b.buffer], workgroups: per ? nv / 256 / per : 512, variant: { per },
  });
  const copies = [];
  for (const [what, per] of COPY_LAYOUTS) copies.push({ what, per, t: await time(`roofline_copy ${what}`, runCopy(per), o) });
  const best = copies.reduce((x, c) => (c.t.seconds < x.t.seconds ? c : x));
  const fmaRow = row('roofline_fma', `${n}×${FMA_ITERS}×8 vec4`, tf, { flops: flops(n) });
  const copyRow = {
    ...row('roofline_copy', `64 MiB, ${best.what}`, best.t, { bytes }),
    note: `fastest of: ${copies.map((c) => `${c.what} ${(bytes / c.t.seconds / 1e9).toFixed(2)} GB/s`).join(', ')}`,
  };
  const m = n / 4; // probe: a quarter of the FMA run
  return {
    roof: { fmaGflops: fmaRow.gflops!, copyGbps: copyRow.gbps! },
    rows: [fmaRow, copyRow],
    probes: {
      compute: { call: runFma(m), work: flops(m), ms: (tf.seconds * 1e3) / 4, rate: fmaRow.gflops! },
      memory: { call: runCopy(best.per), work: bytes, ms: best.t.seconds * 1e3, rate: copyRow.gbps! },
    },
  };
}
