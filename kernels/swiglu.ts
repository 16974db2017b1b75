// swiglu: y = silu(g)·u (MiniMind MLP: down_proj(silu(gate_proj(x)) * up_proj(x))), fused, and its
// backward in one kernel: with σ = sigmoid(g),  dg = dy·u·σ·(1 + g·(1 − σ)),  du = dy·g·σ.
// Nothing is saved: backward reads g and u, the op's inputs.
// swiglu_packed takes g and u side by side in one gu [..., 2I] (the output of one matmul against
// gate_proj|up_proj stored back to back) and gives dgu in the same layout, so the projection's
// backward is one dX and one dW matmul.
// One invocation per vec4 (copy speed on lavapipe; scalar f32 loads run at a third of it); a
// trailing partial vec4 is handled element by element so n need not be a multiple of 4.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { mul, silu } from './elementwise.js';
import { noTargets } from '../runtime/autograd.js';
import { N, I, Case, host, f64, verify, scoped } from './case.js';

const WG = 256;
const HEAD = (entry: string) => `${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // vec4 index; p.n counts scalars
  if (i * 4u >= p.n) { return; }
  let full = i * 4u + 4u <= p.n;`;

export const kernels = {
  swiglu_forward: defineKernel({
    name: 'swiglu_forward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['g', 'read', 'vec4<f32>'], ['u', 'read', 'vec4<f32>'], ['y', 'rw', 'vec4<f32>']],
    wgsl: (_, entry) => `fn f(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> { return g / (1.0 + exp(-g)) * u; }
${HEAD(entry)}
  if (full) { y[i] = f(g[i], u[i]); return; }
  let v = f(g[i], u[i]);
  for (var k = 0u; i * 4u + k < p.n; k++) { y[i][k] = v[k]; }
}
`,
  }),
  swiglu_backward: defineKernel({
    name: 'swiglu_backward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['g', 'read', 'vec4<f32>'], ['u', 'read', 'vec4<f32>'], ['dy', 'read', 'vec4<f32>'],
      ['dg', 'rw', 'vec4<f32>'], ['du', 'rw', 'vec4<f32>']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let gv = g[i];
  let sg = 1.0 / (1.0 + exp(-gv));
  let d = dy[i];
  let a = d * u[i] * sg * (1.0 + gv * (1.0 - sg));
  let b = d * gv * sg;
  if (full) { dg[i] = a; du[i] = b; return; }
  for (var k = 0u; i * 4u + k < p.n; k++) { dg[i][k] = a[k]; du[i][k] = b[k]; }
}
`,
  }),
};

// One invocation per vec4 of y over a 1-D grid; the row length IV (in VT units) is a compile-time
// constant so the division finding the row is a multiply (a workgroup row per token row left a
// quarter of the lanes idle at I = 1408 and ran at 54% of copy speed).
const PACKED_HEAD = (entry: string) => `${entry} {
  let yi = wgIndex(wid, nwg) * ${WG}u + lid.x;   // index of y in VT units
  if (yi >= p.n) { return; }
  let r = yi / IV;
  let gi = yi + r * IV;                            // g[r, c] at row r of gu, then u[r, c] IV later
  let ui = gi + IV;`;
/** vec4: VT is vec4<f32> (I % 4 == 0); iv: I in VT units. */
interface Packed { vec4: boolean; iv: number }
const VT = (v: Packed) => `alias VT = ${v.vec4 ? 'vec4<f32>' : 'f32'};\nconst IV = ${v.iv}u;\n`;

export const packedKernels = {
  swiglu_packed_forward: defineKernel<Packed>({
    name: 'swiglu_packed_forward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['gu', 'read', 'VT'], ['y', 'rw', 'VT']],
    wgsl: (v, entry) => `${VT(v)}${PACKED_HEAD(entry)}
  let g = gu[gi];
  y[yi] = g / (1.0 + exp(-g)) * gu[ui];
}
`,
  }),
  swiglu_packed_backward: defineKernel<Packed>({
    name: 'swiglu_packed_backward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['gu', 'read', 'VT'], ['dy', 'read', 'VT'], ['dgu', 'rw', 'VT']],
    wgsl: (v, entry) => `${VT(v)}${PACKED_HEAD(entry)}
  let g = gu[gi];
  let sg = 1.0 / (1.0 + exp(-g));
  let d = dy[yi];
  dgu[gi] = d * gu[ui] * sg * (1.0 + g * (1.0 - sg));
  dgu[ui] = d * g * sg;
}
`,
  }),
};

function launchPacked(k: (typeof packedKernels)[keyof typeof packedKernels], gu: Tensor, bufs: Tensor[]): void {
  const I = gu.shape.at(-1)! / 2, rows = gu.size / (2 * I), vec4 = I % 4 === 0, iv = vec4 ? I / 4 : I;
  launch(k, { params: { n: rows * iv }, buffers: bufs.map((t) => t.binding()), workgroups: Math.ceil((rows * iv) / WG), variant: { vec4, iv } });
}

/** y [..., I] = silu(g)·u for gu [..., 2I] holding g then u in each row. */
export function swigluPacked(gu: Tensor): Tensor {
  gu.assertLive();
  const I2 = gu.shape.at(-1)!;
  if (I2 % 2) throw new Error(`swiglu_packed: gu must be [..., 2·I], got [${gu.shape}]`);
  const y = Tensor.empty([...gu.shape.slice(0, -1), I2 / 2]);
  launchPacked(packedKernels.swiglu_packed_forward, gu, [gu, y]);
  if (needsGrad(gu)) record('swiglu_packed', [gu], [y], {}, [gu]);
  return y;
}

const groups = (n: number) => Math.ceil(n / 4 / WG);

/** y = silu(g)·u, elementwise; g and u of the same shape. */
export function swiglu(g: Tensor, u: Tensor): Tensor {
  g.assertLive(); u.assertLive();
  if (g.size !== u.size) throw new Error(`swiglu: gate [${g.shape}] and up [${u.shape}] differ`);
  const y = Tensor.empty(g.shape);
  launch(kernels.swiglu_forward, { params: { n: y.size }, buffers: [g.binding(), u.binding(), y.binding()], workgroups: groups(y.size) });
  if (needsGrad(g, u)) record('swiglu', [g, u], [y], {}, [g, u]);
  return y;
}

/** The composite twin, from differentiable elementwise ops (tests compare against it). */
export function swigluComposite(g: Tensor, u: Tensor): Tensor {
  return mul(silu(g), u);
}

export const backward: Record<string, BackwardRule> = {
  swiglu: (node, [dy]) => {
    const [g, u] = node.inputs;
    const dg = Tensor.empty(g.shape), du = Tensor.empty(u.shape);
    launch(kernels.swiglu_backward, {
      params: { n: g.size }, buffers: [g.binding(), u.binding(), dy!.binding(), dg.binding(), du.binding()], workgroups: groups(g.size),
    });
    if (!g.requiresGrad) dg.dispose();
    if (!u.requiresGrad) du.dispose();
    return [g.requiresGrad ? dg : null, u.requiresGrad ? du : null];
  },
  swiglu_packed: (node, [dy]) => {
    const gu = node.inputs[0], dgu = Tensor.empty(gu.shape);
    launchPacked(packedKernels.swiglu_packed_backward, gu, [gu, dy!, dgu]);
    return [dgu];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------
const sig = (x: number) => 1 / (1 + Math.exp(-x));

export const reference = {
  forward: (g: Float64Array, u: Float64Array) => g.map((x, i) => x * sig(x) * u[i]),
  backward: (g: Float64Array, u: Float64Array, dy: Float64Array) => ({
    dg: g.map((x, i) => dy[i] * u[i] * sig(x) * (1 + x * (1 - sig(x)))),
    du: g.map((x, i) => dy[i] * x * sig(x)),
  }),
};

/** Bench metadata for n elements: forward reads g, u and writes y; backward reads g, u, dy, writes dg, du. */
export const bench = {
  swiglu_forward: (n: number) => ({ bytes: 12 * n }),
  swiglu_backward: (n: number) => ({ bytes: 20 * n }),
};

/** Bench rows at MiniMind2-small's FFN activations 5440 × 1408: forward and backward, separate and packed. */
export function cases(): Case[] {
  const n = N * I, k = 4096; // checked on the first k elements
  const data = () => [host([N, I], 13), host([N, I], 14), host([N, I], 15)];
  return [{
    name: 'swiglu_forward', shape: `${N}x${I}`, work: bench.swiglu_forward(n),
    setup: async () => {
      const [gh, uh] = data();
      const g = Tensor.fromArray(gh, [N, I]), u = Tensor.fromArray(uh, [N, I]);
      await verify('swiglu_forward', () => swiglu(g, u), reference.forward(f64(gh, k), f64(uh, k)));
      return scoped(() => swiglu(g, u));
    },
  }, {
    name: 'swiglu_backward', shape: `${N}x${I}`, work: bench.swiglu_backward(n),
    setup: async () => {
      const [gh, uh, dyh] = data();
      const g = Tensor.fromArray(gh, [N, I], 'f32', true), u = Tensor.fromArray(uh, [N, I], 'f32', true), dy = Tensor.fromArray(dyh, [N, I]);
      const node = swiglu(g, u).node!;
      const want = reference.backward(f64(gh, k), f64(uh, k), f64(dyh, k));
      await verify('swiglu_backward dg', () => backward.swiglu(node, [dy], noTargets)[0]!, want.dg);
      await verify('swiglu_backward du', () => backward.swiglu(node, [dy], noTargets)[1]!, want.du);
      return scoped(() => backward.swiglu(node, [dy], noTargets));
    },
  }, ...swigluPackedCases()];
}

/** g and u side by side in one gu [N, 2·I] (the fused gate/up projection's output). */
function swigluPackedCases(): Case[] {
  const n = N * I, rows = 2; // checked on the first rows
  const half = (gu: Float32Array, second: boolean) => Float64Array.from({ length: rows * I }, (_, i) => gu[Math.floor(i / I) * 2 * I + (second ? I : 0) + (i % I)]);
  return [{
    name: 'swiglu_packed_forward', shape: `${N}x2·${I}`, work: bench.swiglu_forward(n),
    setup: async () => {
      const h = host([N, 2 * I], 29), gu = Tensor.fromArray(h, [N, 2 * I]);
      await verify('swiglu_packed_forward', () => swigluPacked(gu), reference.forward(half(h, false), half(h, true)));
      return scoped(() => swigluPacked(gu));
    },
  }, {
    name: 'swiglu_packed_backward', shape: `${N}x2·${I}`, work: bench.swiglu_backward(n),
    setup: async () => {
      const h = host([N, 2 * I], 29), dyh = host([N, I], 30), dy = Tensor.fromArray(dyh, [N, I]);
      const node = swigluPacked(Tensor.fromArray(h, [N, 2 * I], 'f32', true)).node!;
      const { dg, du } = reference.backward(half(h, false), half(h, true), f64(dyh, rows * I));
      const want = Float64Array.from({ length: rows * 2 * I }, (_, i) => {
        const r = Math.floor(i / (2 * I)), c = i % (2 * I);
        return c < I ? dg[r * I + c] : du[r * I + c - I];
      });
      await verify('swiglu_packed_backward', () => backward.swiglu_packed(node, [dy], noTargets)[0]!, want);
      return scoped(() => backward.swiglu_packed(node, [dy], noTargets));
    },
  }];
}
