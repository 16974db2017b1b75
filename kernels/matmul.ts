// matmul: y = x·Wᵀ (PyTorch Linear; W is [out, in] as PyTorch stores it), with the two backward
// products dX = dY·W and dW += dYᵀ·X (accumulated into the existing gradient).
// All three are one strided GEMM: C[m,n] (+)= Σ_k A[m·am + k·ak] · B[k·bk + n·bn].
// FLOPs: 2·M·N·K per product.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor, needsGrad, record, gradSlot } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';

const WG = 64;

export const kernels = {
  /** v1, naive: one output element per invocation. */
  matmul_naive: defineKernel({
    name: 'matmul_naive',
    params: [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['am', 'u32'], ['ak', 'u32'], ['bk', 'u32'], ['bn', 'u32'], ['beta', 'f32']],
    buffers: [['a', 'read', 'f32'], ['b', 'read', 'f32'], ['c', 'rw', 'f32']],
    wgsl: () => `
@compute @workgroup_size(${WG}) fn matmul_naive(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (i >= p.M * p.N) { return; }
  let m = i / p.N;
  let n = i % p.N;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc += a[m * p.am + k * p.ak] * b[k * p.bk + n * p.bn]; }
  if (p.beta != 0.0) { acc += p.beta * c[i]; }
  c[i] = acc;
}
`,
  }),
};

export interface Gemm {
  a: Tensor; b: Tensor; c: Tensor;
  M: number; N: number; K: number;
  am: number; ak: number; bk: number; bn: number;
  /** 1 to accumulate into c, 0 to overwrite. */
  beta: number;
}

export type MatmulImpl = 'naive';
let impl: MatmulImpl = 'naive';
/** Select the GEMM implementation (bench compares them). */
export function setMatmulImpl(i: MatmulImpl): void { impl = i; }

export function gemm(g: Gemm): void {
  g.a.assertLive(); g.b.assertLive(); g.c.assertLive();
  const k = kernels.matmul_naive;
  void impl;
  launch(k, {
    params: { M: g.M, N: g.N, K: g.K, am: g.am, ak: g.ak, bk: g.bk, bn: g.bn, beta: g.beta },
    buffers: [g.a.buffer, g.b.buffer, g.c.buffer], workgroups: Math.ceil((g.M * g.N) / WG),
  });
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

export const bench = { matmul: (M: number, N: number, K: number) => ({ flops: 2 * M * N * K, bytes: 4 * (M * K + N * K + M * N) }) };
