// matmul: y = x·Wᵀ (PyTorch Linear; W is [out, in] as PyTorch stores it), with the two backward
// products dX = dY·W and dW += dYᵀ·X (accumulated into the existing gradient).
// All three are one strided GEMM: C[m,n] (+)= Σ_k A[m·am + k·ak] · B[k·bk + n·bn], C row-major [M,N].
// FLOPs: 2·M·N·K per product.
// Variants (the tuner picks per layout and shape class, kernels/matmul_variants.ts): naive (one output
// per invocation: the baseline), register tiles with subgroup broadcasts (CPU adapters:
// kernels/matmul_register.ts) and workgroup-memory tiles (GPUs: kernels/matmul_shared.ts).
// Over 16-bit tensors (both operands bf16 or both f16; the output float32 or the operands' dtype)
// the same variants run as kernels/matmul16.ts compiles them: float32 sums, one rounding at the end.
import { defineKernel, launch } from '../runtime/kernel.js';
import { gpu } from '../runtime/device.js';
import { Tensor, needsGrad, record, is16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { tuner } from '../runtime/tuner.js';
import { registerTiled, type RegisterTile } from './matmul_register.js';
import { sharedTiled, type SharedTile } from './matmul_shared.js';
import { matmulTunable, compiledShared, type GemmShape } from './matmul_variants.js';
import { kernels16, storeRounded, WG as WG16 } from './matmul16.js';
import { GEMM_PARAMS as PARAMS, pairs, type GemmIO, type Storage16 } from './matmul_io.js';

export type { RegisterTile, SharedTile, GemmShape };
export type MatmulVariant = ({ kind: 'naive' } | RegisterTile | SharedTile) & {
  /** f16 operands read as WGSL f16 (adapters with shader-f16) instead of packed u32 words. */
  native?: true;
};

const WG = 64;
const VEC_BUFFERS = [['a', 'read', 'vec4<f32>'], ['b', 'read', 'vec4<f32>'], ['c', 'rw', 'f32']] as const;

/** hv/hs: what the tile generators pass every float32 operand load and result through (the 16-bit storage
 *  kernels of kernels/matmul_io.ts define them as their loads instead). */
const F32_IO = 'fn hv(x: vec4<f32>) -> vec4<f32> { return x; }\nfn hs(x: f32) -> f32 { return x; }\n';

export const kernels = {
  /** v1, naive: one output element per invocation. */
  matmul_naive: defineKernel({
    name: 'matmul_naive', params: PARAMS, buffers: [['a', 'read', 'f32'], ['b', 'read', 'f32'], ['c', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `
${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (i >= p.M * p.N) { return; }
  let m = i / p.N;
  let n = i % p.N;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc += hs(a[m * p.am + k * p.ak]) * hs(b[k * p.bk + n * p.bn]); }
  acc = hs(acc);
  if (p.beta != 0.0) { acc += p.beta * c[i]; }
  c[i] = acc;
}
${F32_IO}`,
  }),
  /** v2, register tiles (CPU adapters). */
  matmul_register: defineKernel<Omit<RegisterTile, 'kind' | 'g'>>({
    name: 'matmul_register', params: PARAMS, buffers: VEC_BUFFERS, workgroup: (v) => v.wg,
    enable: (v) => (v.a !== 's' ? ['subgroups'] : []),
    wgsl: (v, entry) => registerTiled(v, entry) + F32_IO,
  }),
  /** v3, workgroup-memory tiles (GPUs). */
  matmul_shared: defineKernel<ReturnType<typeof compiledShared>>({
    name: 'matmul_shared', params: PARAMS, buffers: VEC_BUFFERS, workgroup: (v) => [v.bn / v.tn, v.bm / v.tm],
    wgsl: (v, entry) => sharedTiled(v, entry) + F32_IO,
  }),
};

export interface Gemm extends GemmShape {
  a: Tensor; b: Tensor; c: Tensor;
  /** 1 to accumulate into c, 0 to overwrite. */
  beta: number;
}

export interface MatmulOptions {
  /** Use this variant instead of the tuner's pick (tests, bench). A tile variant is only valid for
   *  the layout it was made for, so backward uses it only when it is the naive one. */
  variant?: MatmulVariant;
  /** Pretend storage bindings hold at most this many bytes (tests of the splitting). */
  bindingBytes?: number;
}

export function gemm(g: Gemm, o: MatmulOptions = {}): void {
  g.a.assertLive(); g.b.assertLive(); g.c.assertLive();
  for (const [name, t] of [['a', g.a], ['b', g.b]] as const) {
    // The tiled kernels bind A and B as arrays of vec4 (the pool's buffers are multiples of 16 bytes).
    if ((t.end() - t.offset) % 16 || t.offset % 16) throw new Error(`gemm: operand ${name} [${t.shape}] spans ${t.end() - t.offset} bytes from offset ${t.offset}, not multiples of 16`);
  }
  const st = storage(g);
  const v = o.variant ?? tuner().pick(matmulTunable, { M: g.M, N: g.N, K: g.K, am: g.am, ak: g.ak, bk: g.bk, bn: g.bn, ...(st ? { io: st } : {}) });
  if (v.native && st?.ab !== 'f16') throw new Error(`gemm: a native f16 variant for ${st?.ab ?? 'f32'} operands`);
  split(g, [0, 0, 0], o.bindingBytes ?? gpu().limits.maxStorageBufferBindingSize, (part, off, words) => launchGemm(part, off, words, v));
}

/** The 16-bit storage of g's tensors, or null when all three are float32. */
function storage(g: Gemm): Storage16 | null {
  const { a, b, c } = g;
  if (a.dtype === 'f32' && b.dtype === 'f32' && c.dtype === 'f32') return null;
  if (!is16(a.dtype) || b.dtype !== a.dtype || (c.dtype !== 'f32' && c.dtype !== a.dtype)) {
    throw new Error(`gemm: operands ${a.dtype} and ${b.dtype}, output ${c.dtype}; want all f32, or both operands bf16 (or f16) and the output f32 or the same`);
  }
  return { ab: a.dtype, c: c.dtype };
}

/** Elements spanned by a strided [rows, cols] operand. */
export const span = (rows: number, rs: number, cols: number, cs: number) => (rows && cols ? (rows - 1) * rs + (cols - 1) * cs + 1 : 0);
type Offsets = [number, number, number];
type Run = (g: Gemm, off: Offsets, words: number) => void;

/** Runs g with A, B, C starting at element offsets `off`, split into several runs where an operand
 *  spans more than a binding's `bytes` (maxStorageBufferBindingSize: 128 MiB here, and the LM-head
 *  logits B·T×6400 are 139 MB in float32): along M (C and row-major A shrink) or along K
 *  (column-major A and B shrink; later chunks accumulate with beta = 1). Chunks are multiples of 64
 *  rows or k-steps (128 with 16-bit tensors), so binding offsets stay multiples of 256 bytes for
 *  these strides. A 16-bit C split along K is summed in a float32 scratch and rounded once. */
function split(g: Gemm, off: Offsets, bytes: number, run: Run): void {
  const tensors = [g.a, g.b, g.c];
  // Elements per binding: 8 per 16 bytes when all are 16-bit, unless an odd N may need a float32 scratch C (launchGemm).
  const words = Math.floor(bytes / 16) * (tensors.every((t) => is16(t.dtype)) && g.N % 2 === 0 ? 8 : 4);
  const unit = tensors.some((t) => is16(t.dtype)) ? 128 : 64;
  const floorUnit = (n: number) => Math.floor(n / unit) * unit;
  const aSpan = span(g.M, g.am, g.K, g.ak), bSpan = span(g.K, g.bk, g.N, g.bn);
  if (aSpan <= words && bSpan <= words && g.M * g.N <= words) { run(g, off, words); return; }
  const where = `gemm M=${g.M} N=${g.N} K=${g.K} am=${g.am} ak=${g.ak} bk=${g.bk} bn=${g.bn}`;
  if (g.M * g.N > words || (aSpan > words && g.am >= g.ak)) {
    const rows = floorUnit(Math.min(Math.floor(words / g.N), g.am >= g.ak ? Math.floor((words - span(1, 0, g.K, g.ak)) / g.am) + 1 : Infinity));
    if (rows < unit) throw new Error(`${where}: cannot split along M into bindings of ${words} elements`);
    for (let m = 0; m < g.M; m += rows) {
      split({ ...g, M: Math.min(rows, g.M - m) }, [off[0] + m * g.am, off[1], off[2] + m * g.N], bytes, run);
    }
    return;
  }
  if (bSpan > words && g.bn > g.bk) throw new Error(`${where}: B spans more than a binding (${words} elements) along N; not supported`);
  if (is16(g.c.dtype)) {
    const sum = Tensor.empty([g.M * g.N]);
    split({ ...g, c: sum, beta: 0 }, [off[0], off[1], 0], bytes, run);
    storeRounded(sum, g.c, off[2], g.M * g.N, g.beta, g.c.dtype);
    return;
  }
  const ks = floorUnit(Math.min(Math.floor((words - span(g.M, g.am, 1, 0)) / g.ak) + 1, Math.floor((words - span(1, 0, g.N, g.bn)) / g.bk) + 1));
  if (ks < unit) throw new Error(`${where}: cannot split along K into bindings of ${words} elements`);
  for (let k = 0; k < g.K; k += ks) {
    split({ ...g, K: Math.min(ks, g.K - k), beta: k ? 1 : g.beta }, [off[0] + k * g.ak, off[1] + k * g.bk, off[2]], bytes, run);
  }
}

/** One launch of variant v. */
function launchGemm(g: Gemm, off: Offsets, words: number, v: MatmulVariant): void {
  const st = storage(g), io: GemmIO | null = st && { ...st, native: v.native === true };
  if (io && pairs(io) && g.N % 2 && v.kind !== 'naive') {
    // Word pairs straddle rows, which the tile kernels do not own together: a float32 result, rounded after.
    const sum = Tensor.empty([g.M * g.N]);
    launchGemm({ ...g, c: sum, beta: 0 }, [off[0], off[1], 0], words, v);
    storeRounded(sum, g.c, off[2], g.M * g.N, g.beta, io.ab);
    return;
  }
  const params = { M: g.M, N: g.N, K: g.K, am: g.am, ak: g.ak, bk: g.bk, bn: g.bn, beta: g.beta, group: 1 };
  // Bind from the offset to the buffer's end (or the limit): writes past C stay visible to tests.
  const buffers = [g.a, g.b, g.c].map((t, i) => {
    const e = is16(t.dtype) ? 2 : 4; // bytes per element
    return { buffer: t.buffer, offset: t.offset + off[i] * e, size: Math.min(t.end() - t.offset - off[i] * e, words * e) };
  });
  const k16 = io ? kernels16(io) : null;
  if (v.kind === 'naive') {
    if (k16) launch(k16.naive, { params, buffers, workgroups: Math.ceil((pairs(io!) ? Math.ceil((g.M * g.N) / 2) : g.M * g.N) / WG16), variant: { io: io! } });
    else launch(kernels.matmul_naive, { params, buffers, workgroups: Math.ceil((g.M * g.N) / WG), });
    return;
  }
  params.group = v.g;
  if (v.kind === 'register') {
    const { kind: _k, g: _g, native: _n, ...tile } = v;
    const workgroups = Math.ceil(g.M / v.tm) * Math.ceil(g.N / (v.wg * v.tn));
    if (k16) launch(k16.register, { params, buffers, workgroups, variant: { ...tile, io: io! } });
    else launch(kernels.matmul_register, { params, buffers, workgroups, variant: tile });
    return;
  }
  const { native: _n, ...tile } = v;
  const workgroups = Math.ceil(g.M / v.bm) * Math.ceil(g.N / v.bn);
  if (k16) launch(k16.shared, { params, buffers, workgroups, variant: { ...compiledShared(tile, g), io: io! } });
  else launch(kernels.matmul_shared, { params, buffers, workgroups, variant: compiledShared(tile, g) });
}

/** y[..., N] = x[..., K] · w[N, K]ᵀ; y has the operands' dtype (16-bit operands: torch.autocast's
 *  matmul, whose gradients are 16-bit too). */
export function matmul(x: Tensor, w: Tensor, o: MatmulOptions = {}): Tensor {
  const K = x.shape[x.shape.length - 1];
  const [N, Kw] = w.shape;
  if (w.shape.length !== 2 || K !== Kw) throw new Error(`matmul: x [${x.shape}] · w [${w.shape}]ᵀ`);
  const M = x.size / K;
  const y = Tensor.empty([...x.shape.slice(0, -1), N], x.dtype);
  gemm({ a: x, b: w, c: y, M, N, K, am: K, ak: 1, bk: 1, bn: K, beta: 0 }, o);
  if (needsGrad(x, w)) record('matmul', [x, w], [y], { o }, [...(x.requiresGrad ? [w] : []), ...(w.requiresGrad ? [x] : [])]);
  return y;
}

export const backward: Record<string, BackwardRule> = {
  matmul: (node, [gy], into) => {
    const [x, w] = node.inputs;
    const fwd = node.saved.o as MatmulOptions;
    const o: MatmulOptions = { ...fwd, variant: fwd.variant?.kind === 'naive' ? fwd.variant : undefined };
    const [N, K] = w.shape;
    const M = x.size / K;
    // A leaf's gradient is written (or summed, beta = 1) in place: no temporary, no extra add.
    const out = (i: number) => {
      const t = into(i);
      return { c: t?.tensor ?? Tensor.empty(node.inputs[i].shape, node.inputs[i].dtype), beta: t?.accumulate ? 1 : 0 };
    };
    let dx: Tensor | null = null, dw: Tensor | null = null;
    if (x.requiresGrad) {
      const t = out(0);
      gemm({ a: gy!, b: w, ...t, M, N: K, K: N, am: N, ak: 1, bk: K, bn: 1 }, o);
      dx = t.c;
    }
    if (w.requiresGrad) {
      const t = out(1);
      gemm({ a: gy!, b: x, ...t, M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1 }, o);
      dw = t.c;
    }
    return [dx, dw];
  },
};

/** float64 reference of y = x·wᵀ for x [M,K], w [N,K]. */
export function reference(x: Float64Array, w: Float64Array, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    let s = 0;
    for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
    y[m * N + n] = s;
  }
  return y;
}

/** float64 reference of the backward products for x [M,K], w [N,K], upstream gy [M,N]:
 *  dx = gy·w [M,K], dw = gyᵀ·x [N,K]. */
export function referenceBackward(x: Float64Array, w: Float64Array, gy: Float64Array, M: number, N: number, K: number): { dx: Float64Array; dw: Float64Array } {
  const dx = new Float64Array(M * K), dw = new Float64Array(N * K);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) {
    const g = gy[m * N + n];
    for (let k = 0; k < K; k++) { dx[m * K + k] += g * w[n * K + k]; dw[n * K + k] += g * x[m * K + k]; }
  }
  return { dx, dw };
}

export const bench = { matmul: (M: number, N: number, K: number) => ({ flops: 2 * M * N * K, bytes: 4 * (M * K + N * K + M * N) }) };
export { roundF16 } from './matmul_precision.js';
