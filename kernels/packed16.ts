// pack16 / unpack16: a float32 tensor to 16-bit storage (float16 or bfloat16, two values to a u32
// word, low half first: runtime/packed16_wgsl.ts) and back, for the casts of mixed precision; no
// gradient. One invocation per word, 256 per workgroup, grids folded to 2-D past 65535 workgroups.
// Memory-bound: 6 bytes moved per element (4 read and 2 written, or the reverse).
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor } from '../runtime/tensor.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';

export type Format16 = 'f16' | 'bf16';
type F = { format: Format16 };

const WG = 256;
const INDEX = `let i = wgIndex(wid, nwg) * ${WG}u + lid.x;\n  if (2u * i >= p.n) { return; }`;
const fns = (format: Format16) => (format === 'f16' ? { pack: 'packF16', unpack: 'unpackF16' } : { pack: 'packBf16', unpack: 'unpackBf16' });

export const kernels = {
  /** w[i] = x[2i] in the low half, x[2i+1] in the high half, each rounded to nearest even; the
   *  high half of the last word is 0 when n is odd. n in elements. */
  pack16: defineKernel<F>({
    name: 'pack16', params: [['n', 'u32']], buffers: [['x', 'read', 'f32'], ['w', 'rw', 'u32']], workgroup: WG,
    wgsl: (v, entry) => `${entry} {
  ${INDEX}
  let hi = select(0.0, x[min(2u * i + 1u, p.n - 1u)], 2u * i + 1u < p.n);
  w[i] = ${fns(v.format).pack}(x[2u * i], hi);
}
${PACKED16_WGSL}`,
  }),
  /** y[2i], y[2i+1] = the halves of w[i], exactly; nothing is written past y[n − 1]. */
  unpack16: defineKernel<F>({
    name: 'unpack16', params: [['n', 'u32']], buffers: [['w', 'read', 'u32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (v, entry) => `${entry} {
  ${INDEX}
  let v = ${fns(v.format).unpack}(w[i]);
  y[2u * i] = v.x;
  if (2u * i + 1u < p.n) { y[2u * i + 1u] = v.y; }
}
${PACKED16_WGSL}`,
  }),
};

/** x (float32, any shape, n elements) rounded to `format`: a u32 tensor of ceil(n/2) words. */
export function pack16(x: Tensor, format: Format16): Tensor {
  x.assertLive();
  if (x.dtype !== 'f32') throw new Error(`pack16: input [${x.shape}] is ${x.dtype}, not f32`);
  const w = Tensor.empty([Math.ceil(x.size / 2)], 'u32');
  launch(kernels.pack16, { params: { n: x.size }, buffers: [x.binding(), w.binding()], workgroups: Math.ceil(w.size / WG), variant: { format } });
  return w;
}

/** The float32 tensor of `shape` held by words w (as pack16 writes them), exactly. */
export function unpack16(w: Tensor, shape: readonly number[], format: Format16): Tensor {
  w.assertLive();
  const n = shape.reduce((a, b) => a * b, 1);
  if (w.dtype !== 'u32' || w.size !== Math.ceil(n / 2)) {
    throw new Error(`unpack16: shape [${shape}] needs ${Math.ceil(n / 2)} u32 words, got ${w.dtype} [${w.shape}]`);
  }
  const y = Tensor.empty(shape);
  launch(kernels.unpack16, { params: { n }, buffers: [w.binding(), y.binding()], workgroups: Math.ceil(w.size / WG), variant: { format } });
  return y;
}
