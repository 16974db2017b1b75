// Optimizer-side rows at MiniMind2-small size (25.8M parameters in 74 tensors): the global gradient
// norm and one AdamW step with the clip factor read from it, as the trainer runs them, over the 74
// separate tensors (one dispatch per few tensors) and over a flat ParamStore (views into two buffers:
// one dispatch per binding-sized chunk). Bytes: grad_norm reads 4 B per element, AdamW moves 28
// (p read+write, g read, m and v read+write); over the store, the alignment padding between views too
// (the passes cover it).
import { Tensor, copyInto, gradSlot } from '../runtime/tensor.js';
import { readBuffer } from '../runtime/kernel.js';
import { ParamStore } from '../runtime/param_store.js';
import * as adamw from '../kernels/adamw.js';
import * as gn from '../kernels/grad_norm.js';
import { preset, parameterShapes } from '../model/config.js';
import { Case, host, rand, compare, verify, scoped } from '../kernels/case.js';

const named = () => parameterShapes(preset('minimind2-small'));
const LR = 1e-4, SLICE = 256;
let gradsMemo: Float32Array[] | undefined;
/** The seeded host gradients (scale 0.01), made once for all four rows. */
const hostGrads = () => (gradsMemo ??= named().map(([, s], i) => host(s, 300 + i, 0.01)));

/** Parameters (seeded, scale 0.05) with gradients (scale 0.01): 74 tensors, or views of one store. */
function parameters(layout: 'tensors' | 'store', held: { dispose(): void }[]): { ps: Tensor[]; store?: ParamStore } {
  const shapes = named();
  let store: ParamStore | undefined;
  let ps: Tensor[];
  if (layout === 'store') {
    store = new ParamStore(shapes);
    ps = [...store.params.values()];
    ps.forEach((p, i) => copyInto(p, rand(shapes[i][1], 200 + i, 0.05)));
  } else {
    ps = shapes.map(([, s], i) => rand(s, 200 + i, 0.05, true));
  }
  ps.forEach((p, i) => copyInto(gradSlot(p), Tensor.fromArray(hostGrads()[i], shapes[i][1])));
  held.push(...(store ? [store] : ps.map((p) => p.grad!)));
  return { ps, store };
}

/** First and last SLICE elements of a tensor, from the GPU. */
async function ends(t: Tensor): Promise<Float32Array[]> {
  const n = Math.min(SLICE, t.size);
  return Promise.all([0, t.size - n].map(async (e) => new Float32Array(await readBuffer(t.buffer, t.offset + 4 * e, 4 * n))));
}

/** One step from fresh moments against the float64 reference, on the first and last elements of every
 *  tensor: the update p' − p (|update| ≈ lr, far below |p|) and the first moment. */
async function checkStep(ps: Tensor[], opt: adamw.AdamW, norm: Tensor): Promise<void> {
  const clipCoef = Math.min(1 / (gn.reference(hostGrads()) + 1e-6), 1);
  opt.step(LR, norm, 1.0);
  for (const [i, p] of ps.entries()) {
    const [ph, gh] = [host(p.shape, 200 + i, 0.05), hostGrads()[i]];
    const [got, m] = [await ends(p), await ends(opt.momentsOf(p).m)];
    [0, p.size - got[0].length].forEach((e, k) => {
      const n = got[k].length;
      const [p0, mw, vw] = [Float64Array.from(ph.subarray(e, e + n)), new Float64Array(n), new Float64Array(n)];
      const pw = p0.slice();
      adamw.reference(pw, gh.subarray(e, e + n), mw, vw, { lr: LR, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, step: 1, clipCoef });
      compare(`adamw tensor ${i} update`, got[k].map((x, j) => x - p0[j]), pw.map((x, j) => x - p0[j]), e);
      compare(`adamw tensor ${i} m`, m[k], mw, e);
    });
  }
}

export function optimizerCases(): Case[] {
  const n = named().reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  const out: Case[] = [];
  for (const layout of ['tensors', 'store'] as const) {
    const shape = layout === 'tensors' ? `74 tensors, ${n} floats` : `1 ParamStore, ${n} floats`;
    const norm: Case = {
      name: 'grad_norm', shape, work: gn.bench.grad_norm(n), bound: 'memory',
      setup: async (held) => {
        const { ps, store } = parameters(layout, held);
        if (store) norm.work = gn.bench.grad_norm(store.bytes / 4);
        const grads = store ? store.chunks(store.grads) : ps.map((p) => p.grad!);
        await verify('grad_norm', () => gn.gradNorm(grads), [gn.reference(hostGrads())]);
        return scoped(() => gn.gradNorm(grads));
      },
    };
    const step: Case = {
      name: 'adamw', shape, work: adamw.bench.adamw(n), bound: 'memory',
      setup: async (held) => {
        const { ps, store } = parameters(layout, held);
        if (store) step.work = adamw.bench.adamw(store.bytes / 4);
        const opt = store ? new adamw.AdamW(store, { lr: LR }) : new adamw.AdamW(ps, { lr: LR });
        held.push(opt);
        const clip = gn.gradNorm(store ? store.chunks(store.grads) : ps.map((p) => p.grad!));
        await checkStep(ps, opt, clip);
        return () => opt.step(LR, clip, 1.0);
      },
    };
    out.push(norm, step);
  }
  return out;
}
