// linear16: torch.autocast's Linear over a 16-bit weight, for mixed precision (model/minimind.ts linear()).
// x [..., K] float32 or 16-bit, w [N, K] bf16 or f16 (the working copy of a weight: kernels/param_copy16.ts):
//   y16 = round16(round16(x)·wᵀ)   [..., N], summed in float32 and rounded once to 16 bits (the 16-bit output
//   torch gives); returned as is (out16: the next op reads 16-bit storage) or widened (exact) to float32 for
//   float32 ops that read it.
// A w that spans several Linear modules stored back to back (q|k|v, gate|up: `rows` rows each) is one matmul
// forward (columns are independent: the same values as separate ones); backward does what torch does for
// the separate modules, with gy16 = round16(gy) (the gradient of a 16-bit output; gy itself when 16-bit):
//   dw = round16(gy16ᵀ·x16)                               [N, K], 16-bit: w's gradient (its cast adds it
//                                                          into the float32 master gradient)
//   dx = Σ_m f32(round16(gy16[:, cols of m]·w_m))          [..., K] float32: each module's product rounded to
//                                                          16 bits, the modules summed in float32 (x 16-bit: the
//                                                          sum rounded to 16 bits, one module's product as is)
// Saved for backward: x16 = round16(x) (2 bytes per element; float32 x is not kept), x itself when 16-bit.
// Kernels: cast's pack16/unpack16, matmul's 16-bit GEMMs, add_columns' slice_columns.
import { Tensor, needsGrad, noGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { gpu } from '../runtime/device.js';
import { cast, reference as castReference } from './cast.js';
import { gemm } from './matmul.js';
import { sliceColumns } from './add_columns.js';
import { addInto } from './elementwise.js';

export interface Linear16Options {
  /** Return the 16-bit y16 itself (w's dtype) instead of its float32 widening. */
  out16?: boolean;
}

/** y = x·wᵀ as above; rows: the row counts of the modules w spans (sum N), [N] for one module. */
export function linear16(x: Tensor, w: Tensor, rows: number[] = [w.shape[0]], o: Linear16Options = {}): Tensor {
  const K = x.shape[x.shape.length - 1];
  const [N, Kw] = w.shape;
  if (w.shape.length !== 2 || K !== Kw) throw new Error(`linear16: x [${x.shape}] · w [${w.shape}]ᵀ`);
  if (!is16(w.dtype) || (x.dtype !== 'f32' && x.dtype !== w.dtype)) throw new Error(`linear16: x is ${x.dtype}, w ${w.dtype}; want a 16-bit w and x float32 or w's dtype`);
  if (rows.reduce((a, b) => a + b, 0) !== N) throw new Error(`linear16: module rows [${rows}] do not add up to w's ${N}`);
  const M = x.size / K;
  const x16 = x.dtype === w.dtype ? x : noGrad(() => cast(x, w.dtype as DType16));
  const y16 = Tensor.empty([...x.shape.slice(0, -1), N], w.dtype);
  gemm({ a: x16, b: w, c: y16, M, N, K, am: K, ak: 1, bk: 1, bn: K, beta: 0 });
  let y = y16;
  if (!o.out16) {
    y = noGrad(() => cast(y16, 'f32'));
    y16.dispose(); // recorded work keeps its buffer valid: the pool reuses it only for later commands
  }
  if (needsGrad(x, w)) record('linear16', [x, w], [y], { x16, rows }, [w]); // and x16; a float32 x is not read
  else if (x16 !== x) x16.dispose();
  return y;
}

/** Rows [r0, r0 + n) of w as a view; a GEMM binds it from its first byte, so that must be a valid binding offset. */
function rowsOf(w: Tensor, r0: number, n: number): Tensor {
  if (r0 === 0 && n === w.shape[0]) return w;
  const K = w.shape[1], offset = w.offset + 2 * r0 * K, align = Math.max(16, gpu().limits.minStorageBufferOffsetAlignment);
  if (offset % align) throw new Error(`linear16: rows ${r0}.. of w [${w.shape}] start at byte ${offset}, not a multiple of the adapter's binding alignment ${align}`);
  return Tensor.view(w.buffer, offset, [n, K], false, w.dtype);
}

export const backward: Record<string, BackwardRule> = {
  linear16: (node, [gy]) => {
    const [x, w] = node.inputs;
    const { x16, rows } = node.saved as { x16: Tensor; rows: number[] };
    const d = w.dtype as DType16;
    const [N, K] = w.shape;
    const M = x.size / K;
    const gy16 = cast(gy!, d); // gy itself when 16-bit
    let dw: Tensor | null = null, dx: Tensor | null = null;
    if (w.requiresGrad) {
      dw = Tensor.empty(w.shape, d);
      gemm({ a: gy16, b: x16, c: dw, M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1, beta: 0 });
    }
    if (x.requiresGrad) {
      let c0 = 0;
      for (const n of rows) {
        const g = rows.length === 1 ? gy16 : sliceColumns(gy16, c0, n); // [M, n], 16-bit
        const part = Tensor.empty(x.shape, d);
        gemm({ a: g, b: rowsOf(w, c0, n), c: part, M, N: K, K: n, am: n, ak: 1, bk: K, bn: 1, beta: 0 });
        if (rows.length === 1 && x.dtype === d) dx = part; // one module's 16-bit product is a 16-bit x's gradient
        else {
          const wide = cast(part, 'f32');
          if (dx) { addInto(dx, wide); wide.dispose(); } else dx = wide;
          part.dispose();
        }
        if (g !== gy16) g.dispose();
        c0 += n;
      }
      if (dx!.dtype !== x.dtype) { const sum = dx!; dx = cast(sum, d); sum.dispose(); }
    }
    if (gy16 !== gy) gy16.dispose(); // the engine owns gy
    return [dx, dw];
  },
};

/** float64 reference of y and both gradients for x [M,K] (float32 values), w [N,K] (16-bit values), gy [M,N]
 *  (float32): the float64 sums rounded to float32 and then to `d`, as the GPU's float32 sums are stored. */
export function reference(x: Float32Array, w: Float32Array, gy: Float32Array, M: number, N: number, K: number, rows: number[], d: DType16) {
  const r16 = (v: Float64Array) => castReference(Float32Array.from(v), d);
  const x16 = castReference(x, d), gy16 = castReference(gy, d);
  const y = new Float64Array(M * N), dw = new Float64Array(N * K), dx = new Float64Array(M * K);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x16[m * K + k] * w[n * K + k];
    y[m * N + n] = s;
  }
  for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) {
    let s = 0;
    for (let m = 0; m < M; m++) s += gy16[m * N + n] * x16[m * K + k];
    dw[n * K + k] = s;
  }
  let r0 = 0;
  for (const n of rows) {
    const part = new Float64Array(M * K);
    for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) {
      let s = 0;
      for (let j = r0; j < r0 + n; j++) s += gy16[m * N + j] * w[j * K + k];
      part[m * K + k] = s;
    }
    r16(part).forEach((v, i) => { dx[i] += v; });
    r0 += n;
  }
  return { y: r16(y), dw: r16(dw), dx };
}
