// The adapter's FMA throughput, measured: each invocation runs FMA_ITERS iterations of 8 independent vec4
// multiply-adds (8·4·2 FLOPs each). bench/roofline.ts reports it as the compute roofline; the trainer
// measures it once to give its progress line a utilisation (model FLOP/s over this peak).
import { defineKernel, launch, hasGpuTimer, timeGpu, sync } from './kernel.js';
import { Tensor } from './tensor.js';

export const FMA_ITERS = 512;
const UNROLL = 16;
const BODY = Array.from({ length: UNROLL }, () => '    a0 = fma(a0, m, m); a1 = fma(a1, m, m); a2 = fma(a2, m, m); a3 = fma(a3, m, m);\n'
  + '    a4 = fma(a4, m, m); a5 = fma(a5, m, m); a6 = fma(a6, m, m); a7 = fma(a7, m, m);').join('\n');
const fma = defineKernel({
  name: 'roofline_fma', params: [['n', 'u32'], ['s', 'f32']], buffers: [['y', 'rw', 'vec4<f32>']], workgroup: 64,
  wgsl: (_, entry) => `
${entry} {
  let i = wgIndex(wid, nwg) * 64u + lid.x;
  if (i >= p.n) { return; }
  let m = vec4<f32>(p.s);
  var a0 = vec4<f32>(f32(i)); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
  var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
  // Unrolled by UNROLL: lavapipe spills loop-carried values once per iteration, not per FMA.
  for (var k = 0u; k < ${FMA_ITERS / UNROLL}u; k++) {
${BODY}
  }
  y[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}`,
});

/** FLOPs of one launchFma over n vec4 outputs. */
export const fmaFlops = (n: number): number => n * FMA_ITERS * 8 * 4 * 2;

/** Records the FMA kernel over n vec4 outputs (n a multiple of 64) of y (≥ 4n floats). */
export function launchFma(y: Tensor, n: number): void {
  launch(fma, { params: { n, s: 0.999 }, buffers: [y.buffer], workgroups: n / 64 });
}

/** GFLOP/s: the best of three runs, the work doubled until a run takes 100 ms (shorter runs read
 *  low on lavapipe, and a GPU does the smallest one in microseconds). GPU timestamps where the
 *  adapter has them, else the wall clock. */
export async function measureFmaPeak(): Promise<number> {
  const time = async (fn: () => void): Promise<number> => {
    if (hasGpuTimer()) return (await timeGpu(fn)) / 1e6;
    const t0 = performance.now();
    fn();
    await sync();
    return performance.now() - t0;
  };
  let n = 1 << 16;
  const y = Tensor.empty([4 << 22]);
  try {
    for (;;) {
      let ms = Infinity;
      for (let i = 0; i < 3; i++) ms = Math.min(ms, await time(() => launchFma(y, n)));
      if (ms >= 100 || n === 1 << 22) return fmaFlops(n) / ms / 1e6;
      n = Math.min(1 << 22, n * Math.max(2, 2 ** Math.ceil(Math.log2(100 / Math.max(ms, 1e-3)))));
    }
  } finally {
    y.dispose();
  }
}
