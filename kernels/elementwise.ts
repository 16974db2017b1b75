// Elementwise ops: add, mul, scale, silu (+ silu_backward), add_into (in-place accumulate) and fill.
// One invocation per element, 256 per workgroup, grids folded to 2-D past 65535 workgroups.
// Memory-bound: bytes moved = 4·n·(inputs + outputs).
import { defineKernel, launch, Kernel } from '../runtime/kernel.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';

const WG = 256;
const INDEX = `let i = wgIndex(wid, nwg) * ${WG}u + lid.x;\n  if (i >= p.n) { return; }`;

function binary(name: string, expr: string): Kernel {
  return defineKernel({
    name, params: [['n', 'u32']],
    buffers: [['a', 'read', 'f32'], ['b', 'read', 'f32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `${entry} {\n  ${INDEX}\n  y[i] = ${expr};\n}\n`,
  });
}

export const kernels = {
  add: binary('add', 'a[i] + b[i]'),
  mul: binary('mul', 'a[i] * b[i]'),
  silu_backward: binary('silu_backward', 'b[i] * (1.0 / (1.0 + exp(-a[i]))) * (1.0 + a[i] * (1.0 - 1.0 / (1.0 + exp(-a[i]))))'),
  scale: defineKernel({
    name: 'scale', params: [['n', 'u32'], ['s', 'f32']],
    buffers: [['a', 'read', 'f32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `${entry} {\n  ${INDEX}\n  y[i] = a[i] * p.s;\n}\n`,
  }),
  silu: defineKernel({
    name: 'silu', params: [['n', 'u32']],
    buffers: [['a', 'read', 'f32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `${entry} {\n  ${INDEX}\n  let x = a[i];\n  y[i] = x / (1.0 + exp(-x));\n}\n`,
  }),
  add_into: defineKernel({
    name: 'add_into', params: [['n', 'u32']],
    buffers: [['a', 'read', 'f32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `${entry} {\n  ${INDEX}\n  y[i] = y[i] + a[i];\n}\n`,
  }),
  /** y[i] = s · x[0]: broadcast of a scalar (the backward of sum and mean). */
  fill: defineKernel({
    name: 'fill', params: [['n', 'u32'], ['s', 'f32']],
    buffers: [['a', 'read', 'f32'], ['y', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `${entry} {\n  ${INDEX}\n  y[i] = p.s * a[0];\n}\n`,
  }),
};

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.size !== b.size) throw new Error(`${op}: shapes [${a.shape}] and [${b.shape}] differ`);
}

function run(k: Kernel, inputs: Tensor[], out: Tensor, params: Record<string, number> = {}): Tensor {
  for (const t of [...inputs, out]) {
    t.assertLive();
    if (t.dtype !== 'f32') throw new Error(`${k.name}: a ${t.dtype} tensor [${t.shape}]; these kernels read and write float32`);
  }
  launch(k, { params: { n: out.size, ...params }, buffers: [...inputs.map((t) => t.binding()), out.binding()], workgroups: Math.ceil(out.size / WG) });
  return out;
}

export function add(a: Tensor, b: Tensor): Tensor {
  sameShape('add', a, b);
  const y = run(kernels.add, [a, b], Tensor.empty(a.shape));
  if (needsGrad(a, b)) record('add', [a, b], [y], {}, []);
  return y;
}

export function mul(a: Tensor, b: Tensor): Tensor {
  sameShape('mul', a, b);
  const y = run(kernels.mul, [a, b], Tensor.empty(a.shape));
  if (needsGrad(a, b)) record('mul', [a, b], [y], {}, [a, b]);
  return y;
}

export function scale(a: Tensor, s: number): Tensor {
  const y = run(kernels.scale, [a], Tensor.empty(a.shape), { s });
  if (needsGrad(a)) record('scale', [a], [y], { s }, []);
  return y;
}

export function silu(a: Tensor): Tensor {
  const y = run(kernels.silu, [a], Tensor.empty(a.shape));
  if (needsGrad(a)) record('silu', [a], [y], {}, [a]);
  return y;
}

/** dst += src, in place, not recorded (gradient accumulation). */
export function addInto(dst: Tensor, src: Tensor): void {
  sameShape('add_into', dst, src);
  run(kernels.add_into, [src], dst);
}

/** A tensor of `shape` filled with s·x[0] (x a one-element tensor). */
export function fill(x: Tensor, shape: readonly number[], s: number): Tensor {
  return run(kernels.fill, [x], Tensor.empty(shape), { s });
}

export const backward: Record<string, BackwardRule> = {
  add: (_n, [g]) => [g, g],
  mul: (n, [g]) => [mul(g!, n.inputs[1]), mul(g!, n.inputs[0])],
  scale: (n, [g]) => [scale(g!, n.saved.s as number)],
  silu: (n, [g]) => [run(kernels.silu_backward, [n.inputs[0], g!], Tensor.empty(g!.shape))],
};

// ---- float64 CPU references -----------------------------------------------------------------
const sig = (x: number) => 1 / (1 + Math.exp(-x));
export const reference = {
  add: (a: Float64Array, b: Float64Array) => a.map((x, i) => x + b[i]),
  mul: (a: Float64Array, b: Float64Array) => a.map((x, i) => x * b[i]),
  scale: (a: Float64Array, s: number) => a.map((x) => x * s),
  silu: (a: Float64Array) => a.map((x) => x * sig(x)),
  siluBackward: (a: Float64Array, g: Float64Array) => a.map((x, i) => g[i] * sig(x) * (1 + x * (1 - sig(x)))),
};
