// sum and mean over all elements, in two passes: each workgroup of 256 reduces a strided chunk
// to one partial (tree reduction in workgroup memory), then one workgroup reduces the partials.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { fill } from './elementwise.js';
import { treeSum } from '../runtime/wgsl.js';

const WG = 256;
const MAX_PARTIALS = 1024;

export const kernels = {
  /** partials[w] = s · Σ x[i] over the elements that workgroup w covers (stride = groups·WG). */
  sum: defineKernel({
    name: 'sum', params: [['n', 'u32'], ['groups', 'u32'], ['s', 'f32']],
    buffers: [['x', 'read', 'f32'], ['partials', 'rw', 'f32']], workgroup: WG,
    wgsl: (_, entry) => `
var<workgroup> acc: array<f32, ${WG}>;
${entry} {
  var t = 0.0;
  for (var i = wid.x * ${WG}u + lid.x; i < p.n; i += p.groups * ${WG}u) { t += x[i]; }
  acc[lid.x] = t;
  ${treeSum('acc', WG)}
  if (lid.x == 0u) { partials[wid.x] = acc[0] * p.s; }
}
`,
  }),
};

function reduceAll(x: Tensor, s: number): Tensor {
  x.assertLive();
  const groups = Math.min(MAX_PARTIALS, Math.max(1, Math.ceil(x.size / (WG * 16))));
  const out = Tensor.empty([1]);
  if (groups === 1) {
    launch(kernels.sum, { params: { n: x.size, groups: 1, s }, buffers: [x.binding(), out.binding()], workgroups: 1 });
    return out;
  }
  const partials = Tensor.empty([groups]);
  launch(kernels.sum, { params: { n: x.size, groups, s }, buffers: [x.binding(), partials.binding()], workgroups: groups });
  launch(kernels.sum, { params: { n: groups, groups: 1, s: 1 }, buffers: [partials.binding(), out.binding()], workgroups: 1 });
  partials.dispose();
  return out;
}

export function sum(x: Tensor): Tensor {
  const y = reduceAll(x, 1);
  if (needsGrad(x)) record('sum', [x], [y], { s: 1 }, []);
  return y;
}

export function mean(x: Tensor): Tensor {
  const y = reduceAll(x, 1 / x.size);
  if (needsGrad(x)) record('sum', [x], [y], { s: 1 / x.size }, []);
  return y;
}

export const backward: Record<string, BackwardRule> = {
  sum: (n, [g]) => [fill(g!, n.inputs[0].shape, n.saved.s as number)],
};

export const reference = {
  sum: (x: Float64Array) => x.reduce((a, b) => a + b, 0),
  mean: (x: Float64Array) => x.reduce((a, b) => a + b, 0) / x.length,
};
