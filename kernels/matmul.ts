// matmul: y = x·Wᵀ (PyTorch Linear; W is [out, in] as PyTorch stores it), with the two backward
// products dX = dY·W and dW += dYᵀ·X (accumulated into the existing gradient).
// All three are one strided GEMM: C[m,n] (+)= Σ_k A[m·am + k·ak] · B[k·bk + n·bn], C row-major [M,N].
// FLOPs: 2·M·N·K per product.
import { defineKernel, launch } from '../runtime/kernel.js';
import { gpu } from '../runtime/device.js';
import { Tensor, needsGrad, record, gradSlot } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { registerTiled, sharedTiled, type RegisterTile, type SharedTile } from './matmul_tiled.js';

export type { RegisterTile, SharedTile };

const WG = 64;
const PARAMS = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['am', 'u32'], ['ak', 'u32'], ['bk', 'u32'], ['bn', 'u32'], ['beta', 'f32'],
  ['infBits', 'u32']] as const;
const BUFFERS = [['a', 'read', 'f32'], ['b', 'read', 'f32'], ['c', 'rw', 'f32']] as const;

/** hv/hs: what an operand or result passes through. float32: nothing. float16 (torch.autocast's
 *  matmul: float16 operands and result, float32 accumulation): rounded to the nearest float16, ties
 *  to even, with integer operations on the bits (Mesa's pack2x16float on lavapipe gave wrong
 *  roundings once lanes held different values): normal range, drop 13 mantissa bits; subnormal
 *  range (< 2^-14), round to a multiple of 2^-24; ≥ 65520 (which rounds past 65504) ±inf, so the
 *  loss scaler sees the overflow; inf and NaN pass. The infinity comes from a uniform (p.infBits):
 *  WGSL forbids an infinite constant. */
function precisionFns(h: boolean): string {
  if (!h) return 'fn hv(x: vec4<f32>) -> vec4<f32> { return x; }\nfn hs(x: f32) -> f32 { return x; }\n';
  return `fn hv(x: vec4<f32>) -> vec4<f32> {
  let u = bitcast<vec4<u32>>(x);
  let normal = bitcast<vec4<f32>>((u + vec4<u32>(0xfffu) + ((u >> vec4<u32>(13u)) & vec4<u32>(1u))) & vec4<u32>(0xffffe000u));
  let sub = round(x * 16777216.0) * 5.9604644775390625e-8;
  let r = select(normal, sub, abs(x) < vec4<f32>(6.103515625e-5));
  let big = select(r, sign(x) * bitcast<f32>(p.infBits), abs(x) >= vec4<f32>(65520.0));
  return select(big, x, (u & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u));
}
fn hs(x: f32) -> f32 { return hv(vec4<f32>(x)).x; }
`;
}

export const kernels = {
  /** v1, naive: one output element per invocation. */
  matmul_naive: defineKernel<{ h: boolean }>({
    name: 'matmul_naive', params: PARAMS, buffers: BUFFERS, workgroup: WG,
    wgsl: (v, entry) => `
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
${precisionFns(v.h === true)}`,
  }),
  /** v2, tiled: register tiles (CPU adapters) or shared-memory tiles (GPUs), per the variant
   *  (WGSL and the design notes in matmul_tiled.ts). */
  matmul_tiled: defineKernel<(RegisterTile | SharedTile) & { h: boolean }>({
    name: 'matmul_tiled', params: PARAMS, buffers: [['a', 'read', 'vec4<f32>'], ['b', 'read', 'vec4<f32>'], ['c', 'rw', 'f32']],
    workgroup: (v) => ('wg' in v ? v.wg : [v.bn / v.tn, v.bm / v.tm]),
    enable: (v) => ('wg' in v && v.a !== 's' ? ['subgroups'] : []),
    wgsl: (v, entry) => ('wg' in v ? registerTiled(v, entry) : sharedTiled(v, entry)) + precisionFns(v.h),
  }),
};

export interface Gemm {
  a: Tensor; b: Tensor; c: Tensor;
  M: number; N: number; K: number;
  am: number; ak: number; bk: number; bn: number;
  /** 1 to accumulate into c, 0 to overwrite. */
  beta: number;
}

export type MatmulImpl = 'naive' | 'tiled';
let impl: MatmulImpl = 'tiled';
/** Select the GEMM implementation (bench compares them). */
export function setMatmulImpl(i: MatmulImpl): void { impl = i; }

export type MatmulPrecision = 'f32' | 'f16';
let precision: MatmulPrecision = 'f32';
/** 'f16': every product (forward and both backward ones) takes float16-rounded operands and gives a
 *  float16-rounded result, accumulating in float32 (the trainer's --dtype float16). */
export function setMatmulPrecision(p: MatmulPrecision): void { precision = p; }
export function matmulPrecision(): MatmulPrecision { return precision; }

let override: (RegisterTile | SharedTile) | undefined;
/** Force a tile configuration (probes, tests); undefined restores the per-adapter choice. */
export function setTileVariant(v: RegisterTile | SharedTile | undefined): void { override = v; }

/** The tile configuration for this adapter and operand layout. Tile sizes measured on lavapipe with
 *  a GEMM probe (now the matmul rows of bench/compute_bound.ts) with setTileVariant overrides at
 *  M=5440 K=512 N=1408 and 6400, GFLOP/s on a quiet machine: forward (a k4, b k)
 *  16×8: 59–60 vs 16×4: 52–55, 24×4: 32–55; dX (k4, n) 24×4: 58–59 vs 16×4: 50–53, 24×8: 32;
 *  dW (m4, n) 16×4: 52 vs 8×4: 38, 16×8: 37, 32×4: 41. u = 4 beat 2 and 8 (2-3× slower). */
export function tileVariant(g: Gemm): RegisterTile | SharedTile {
  if (override) return override;
  const { isSoftware, features, adapter } = gpu();
  if (!isSoftware) return { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 };
  const b = g.bk === 1 && g.bn % 4 === 0 ? 'k' : g.bn === 1 && g.bk % 4 === 0 && g.N % 4 === 0 ? 'n' : 's';
  // The broadcasts assume one subgroup of exactly 8 lanes per workgroup.
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  if (!features.has('subgroups') || info.subgroupMinSize !== 8 || info.subgroupMaxSize !== 8) return { wg: 8, tm: 8, tn: 4, u: 4, a: 's', b };
  const a = g.ak === 1 && g.am % 4 === 0 ? 'k4' : g.am === 1 && g.ak % 4 === 0 && g.M % 4 === 0 ? 'm4' : g.am === 1 ? 'm' : 'k';
  const [tm, tn] = b === 'k' ? [16, 8] : a === 'k4' ? [24, 4] : [16, 4];
  return { wg: 8, tm, tn, u: 4, a, b };
}

let bindingLimit: number | undefined;
/** Tests: pretend storage bindings are limited to `bytes` (undefined: the device's limit). */
export function setBindingLimit(bytes: number | undefined): void { bindingLimit = bytes; }

export function gemm(g: Gemm): void {
  g.a.assertLive(); g.b.assertLive(); g.c.assertLive();
  for (const [name, t] of [['a', g.a], ['b', g.b]] as const) {
    // The tiled kernel binds A and B as arrays of vec4 (the pool's buffers are multiples of 16 bytes).
    if ((t.end() - t.offset) % 16 || t.offset % 16) throw new Error(`gemm: operand ${name} [${t.shape}] spans ${t.end() - t.offset} bytes from offset ${t.offset}, not multiples of 16`);
  }
  split(g, [0, 0, 0], Math.floor((bindingLimit ?? gpu().limits.maxStorageBufferBindingSize) / 16) * 4);
}

/** Elements spanned by a strided [rows, cols] operand. */
const span = (rows: number, rs: number, cols: number, cs: number) => (rows && cols ? (rows - 1) * rs + (cols - 1) * cs + 1 : 0);
const floor64 = (n: number) => Math.floor(n / 64) * 64;

/** Launches g with A, B, C starting at element offsets `off`, split into several launches where an
 *  operand spans more than `words` elements (maxStorageBufferBindingSize: 128 MiB here, and the
 *  LM-head logits B·T×6400 are 139 MB): along M (C and row-major A shrink) or along K (column-major
 *  A and B shrink; later chunks accumulate with beta = 1). Chunks are multiples of 64 rows or
 *  k-steps, so binding offsets stay multiples of 256 bytes for these strides. */
function split(g: Gemm, off: [number, number, number], words: number): void {
  const aSpan = span(g.M, g.am, g.K, g.ak), bSpan = span(g.K, g.bk, g.N, g.bn);
  if (aSpan <= words && bSpan <= words && g.M * g.N <= words) { launchGemm(g, off, words); return; }
  const where = `gemm M=${g.M} N=${g.N} K=${g.K} am=${g.am} ak=${g.ak} bk=${g.bk} bn=${g.bn}`;
  if (g.M * g.N > words || (aSpan > words && g.am >= g.ak)) {
    const rows = floor64(Math.min(Math.floor(words / g.N), g.am >= g.ak ? Math.floor((words - span(1, 0, g.K, g.ak)) / g.am) + 1 : Infinity));
    if (rows < 64) throw new Error(`${where}: cannot split along M into bindings of ${words} elements`);
    for (let m = 0; m < g.M; m += rows) {
      split({ ...g, M: Math.min(rows, g.M - m) }, [off[0] + m * g.am, off[1], off[2] + m * g.N], words);
    }
    return;
  }
  if (bSpan > words && g.bn > g.bk) throw new Error(`${where}: B spans more than a binding (${words} elements) along N; not supported`);
  const ks = floor64(Math.min(Math.floor((words - span(g.M, g.am, 1, 0)) / g.ak) + 1, Math.floor((words - span(1, 0, g.N, g.bn)) / g.bk) + 1));
  if (ks < 64) throw new Error(`${where}: cannot split along K into bindings of ${words} elements`);
  for (let k = 0; k < g.K; k += ks) {
    split({ ...g, K: Math.min(ks, g.K - k), beta: k ? 1 : g.beta }, [off[0] + k * g.ak, off[1] + k * g.bk, off[2]], words);
  }
}

function launchGemm(g: Gemm, off: [number, number, number], words: number): void {
  const params = { M: g.M, N: g.N, K: g.K, am: g.am, ak: g.ak, bk: g.bk, bn: g.bn, beta: g.beta, infBits: 0x7f800000 };
  const h = precision === 'f16';
  // Bind from the offset to the buffer's end (or the limit): writes past C stay visible to tests.
  const buffers = [g.a, g.b, g.c].map((t, i) => ({ buffer: t.buffer, offset: t.offset + off[i] * 4, size: Math.min(t.end() - t.offset - off[i] * 4, words * 4) }));
  if (impl === 'naive') {
    launch(kernels.matmul_naive, { params, buffers, workgroups: Math.ceil((g.M * g.N) / WG), variant: { h } });
    return;
  }
  const v = tileVariant(g);
  const [tileM, tileN] = 'wg' in v ? [v.tm, v.wg * v.tn] : [v.bm, v.bn];
  const workgroups = Math.ceil(g.M / tileM) * Math.ceil(g.N / tileN);
  launch(kernels.matmul_tiled, { params, buffers, workgroups, variant: { ...v, h } });
}

/** y[..., N] = x[..., K] · w[N, K]ᵀ */
export function matmul(x: Tensor, w: Tensor): Tensor {
  const K = x.shape[x.shape.length - 1];
  const [N, Kw] = w.shape;
  if (w.shape.length !== 2 || K !== Kw) throw new Error(`matmul: x [${x.shape}] · w [${w.shape}]ᵀ`);
  const M = x.size / K;
  const y = Tensor.empty([...x.shape.slice(0, -1), N]);
  gemm({ a: x, b: w, c: y, M, N, K, am: K, ak: 1, bk: 1, bn: K, beta: 0 });
  if (needsGrad(x, w)) record('matmul', [x, w], [y], {});
  return y;
}

export const backward: Record<string, BackwardRule> = {
  matmul: (node, [gy]) => {
    const [x, w] = node.inputs;
    const [N, K] = w.shape;
    const M = x.size / K;
    let dx: Tensor | null = null;
    if (x.requiresGrad) {
      dx = Tensor.empty(x.shape);
      gemm({ a: gy!, b: w, c: dx, M, N: K, K: N, am: N, ak: 1, bk: K, bn: 1, beta: 0 });
    }
    let dw: Tensor | null | undefined = null;
    if (w.requiresGrad) {
      // A leaf weight accumulates dYᵀ·X straight into its gradient (beta = 1), no temporary.
      const leaf = !w.node;
      const target = leaf ? gradSlot(w) : Tensor.empty(w.shape);
      gemm({ a: gy!, b: x, c: target, M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1, beta: leaf ? 1 : 0 });
      dw = leaf ? undefined : target;
    }
    return [dx, dw];
  },
};

/** x rounded to the nearest float16 (ties to even), as a number; ±inf past float16's range. */
export function roundF16(x: number): number {
  const a = Math.abs(x);
  if (!Number.isFinite(x) || a === 0) return x;
  if (a >= 65520) return Math.sign(x) * Infinity;
  let e = Math.max(Math.floor(Math.log2(a)), -14); // below 2^-14: subnormal spacing 2^-24
  if (e > -14 && 2 ** e > a) e--;
  const ulp = 2 ** (e - 10);
  const q = a / ulp, f = Math.floor(q), r = q - f;
  const n = r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * n * ulp;
}

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
