// The adapter's roofline, measured: a pure-FMA throughput kernel and a vec4 copy kernel.
// FMA: each invocation runs R iterations of 8 independent vec4 multiply-adds (8·4·2 FLOPs each).
// Copy: 64 MiB read + 64 MiB written per call.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor } from '../runtime/tensor.js';
import { Options, Roofline, Row, row, time } from './harness.js';

const ITERS = 512;
const UNROLL = 16;
const BODY = Array.from({ length: UNROLL }, () => '    a0 = fma(a0, m, m); a1 = fma(a1, m, m); a2 = fma(a2, m, m); a3 = fma(a3, m, m);\n'
  + '    a4 = fma(a4, m, m); a5 = fma(a5, m, m); a6 = fma(a6, m, m); a7 = fma(a7, m, m);').join('\n');
const fma = defineKernel({
  name: 'roofline_fma', params: [['n', 'u32'], ['s', 'f32']], buffers: [['y', 'rw', 'vec4<f32>']],
  wgsl: () => `
@compute @workgroup_size(64) fn roofline_fma(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wgIndex(wid, nwg) * 64u + lid.x;
  if (i >= p.n) { return; }
  let m = vec4<f32>(p.s);
  var a0 = vec4<f32>(f32(i)); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
  var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
  // Unrolled by UNROLL: lavapipe spills loop-carried values once per iteration, not per FMA.
  for (var k = 0u; k < ${ITERS / UNROLL}u; k++) {
${BODY}
  }
  y[i] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}`,
});

const copy = defineKernel({
  name: 'roofline_copy', params: [['n', 'u32']], buffers: [['x', 'read', 'vec4<f32>'], ['y', 'rw', 'vec4<f32>']],
  wgsl: () => `
@compute @workgroup_size(256) fn roofline_copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wgIndex(wid, nwg) * 256u + lid.x;
  if (i < p.n) { y[i] = x[i]; }
}`,
});

export async function measureRoofline(o: Options): Promise<{ roof: Roofline; rows: Row[] }> {
  const n = 1 << 18; // vec4 outputs of the FMA kernel
  const y = Tensor.empty([n * 4]).keep();
  const tf = await time('roofline_fma', () => launch(fma, { params: { n, s: 0.999 }, buffers: [y.buffer], workgroups: n / 64 }), o);
  const flops = n * ITERS * 8 * 4 * 2;
  const nv = (64 << 20) / 16;
  const a = Tensor.zeros([nv * 4]).keep(), b = Tensor.empty([nv * 4]).keep();
  const tc = await time('roofline_copy', () => launch(copy, { params: { n: nv }, buffers: [a.buffer, b.buffer], workgroups: nv / 256 }), o);
  for (const t of [y, a, b]) t.dispose();
  const rows = [row('roofline_fma', `${n}×${ITERS}×8 vec4`, tf, { flops }), row('roofline_copy', '64 MiB', tc, { bytes: 2 * (64 << 20) })];
  return { roof: { fmaGflops: rows[0].gflops!, copyGbps: rows[1].gbps! }, rows };
}
