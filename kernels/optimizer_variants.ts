// The optimizer ops' variants (elements per invocation of grad_norm and of adamw), their trials and
// the bench rows at MiniMind2-small size (25.8M parameters in 74 tensors): the global gradient norm
// and one AdamW step with the clip factor read from it, as the trainer runs them, over the 74
// separate tensors (one dispatch per few tensors) and over a flat ParamStore (views into two buffers:
// one dispatch per binding-sized chunk). Bytes: grad_norm reads 4 B per element, AdamW moves 28
// (p read+write, g read, m and v read+write); over the store, the alignment padding between views too.
import { Tensor, copyInto, gradSlot } from '../runtime/tensor.js';
import { readBuffer, writeBuffer } from '../runtime/kernel.js';
import { ParamStore } from '../runtime/param_store.js';
import type { Tunable } from '../runtime/tuner.js';
import { gradNorm, reference as normReference, bench as normBench, type GradNormVariant } from './grad_norm.js';
import { AdamW, reference as adamwReference, bench as adamwBench, type AdamWVariant } from './adamw.js';
import { preset, parameterShapes } from '../model/config.js';
import { Case, host, rand, compare, verify, scoped, fixedTrial, tunedCase } from './case.js';

/** n elements in all. */
export interface FlatShape { n: number }
const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const key = (s: FlatShape) => `n${p2(s.n)}`;

const NORM_ITEMS = [128, 32, 512];
export const gradNormTunable: Tunable<FlatShape, GradNormVariant> = {
  name: 'grad_norm', key, fallback: () => ({ items: 128 }), variants: () => NORM_ITEMS.map((items) => ({ items })), label: (v) => `items${v.items}`,
  trial(s) {
    const g = host([s.n], 101, 0.01), gt = Tensor.fromArray(g, [s.n]).keep(), out = Tensor.empty([1]).keep();
    return fixedTrial<GradNormVariant>({
      run: (variant) => { gradNorm([gt], { variant, out }); }, outputs: [out], want: () => [[normReference([g])]],
      rtol: 1e-5, atol: 0, owned: [gt, out],
    });
  },
};

const ADAMW_ITEMS = [4, 1, 16];
const HYPER = { lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, step: 1, clipCoef: 1 };
export const adamwTunable: Tunable<FlatShape, AdamWVariant> = {
  name: 'adamw', key, fallback: () => ({ items: 4 }), variants: () => ADAMW_ITEMS.map((items) => ({ items })), label: (v) => `items${v.items}`,
  trial(s) {
    // One step from fresh moments, compared on the first elements (at most 4096): the update and m.
    const ph = host([s.n], 102, 0.05), gh = host([s.n], 103, 0.01);
    const p = Tensor.fromArray(ph, [s.n], 'f32', true).keep();
    p.grad = Tensor.fromArray(gh, [s.n]).keep();
    p.hasGrad = true;
    const opt = new AdamW([p], { lr: HYPER.lr, weightDecay: HYPER.wd });
    const n = Math.min(s.n, 4096), zeros = new Float32Array(s.n);
    const { m, v } = opt.momentsOf(p);
    const trial = fixedTrial<AdamWVariant>({
      run: (variant) => opt.step(HYPER.lr, undefined, undefined, 1, variant),
      reset: () => { writeBuffer(p.buffer, 0, ph); writeBuffer(m.buffer, 0, zeros); writeBuffer(v.buffer, 0, zeros); opt.loadState({ step: 0 }); },
      outputs: [p, m],
      want: () => {
        const [pw, mw, vw] = [Float64Array.from(ph.subarray(0, n)), new Float64Array(n), new Float64Array(n)];
        adamwReference(pw, gh.subarray(0, n), mw, vw, HYPER);
        return [pw, mw];
      },
      rtol: 1e-6, atol: 1e-9, owned: [p, p.grad],
    });
    return { ...trial, dispose: () => { trial.dispose(); opt.dispose(); } };
  },
};

const named = () => parameterShapes(preset('minimind2-small'));
const LR = 1e-4, SLICE = 256;
let gradsMemo: Float32Array[] | undefined;
/** The seeded host gradients (scale 0.01), made once for all rows. */
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
async function checkStep(ps: Tensor[], opt: AdamW, norm: Tensor): Promise<void> {
  const clipCoef = Math.min(1 / (normReference(hostGrads()) + 1e-6), 1);
  opt.step(LR, norm, 1.0);
  for (const [i, p] of ps.entries()) {
    const [ph, gh] = [host(p.shape, 200 + i, 0.05), hostGrads()[i]];
    const [got, m] = [await ends(p), await ends(opt.momentsOf(p).m)];
    [0, p.size - got[0].length].forEach((e, k) => {
      const n = got[k].length;
      const [p0, mw, vw] = [Float64Array.from(ph.subarray(e, e + n)), new Float64Array(n), new Float64Array(n)];
      const pw = p0.slice();
      adamwReference(pw, gh.subarray(e, e + n), mw, vw, { lr: LR, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, step: 1, clipCoef });
      compare(`adamw tensor ${i} update`, got[k].map((x, j) => x - p0[j]), pw.map((x, j) => x - p0[j]), e);
      compare(`adamw tensor ${i} m`, m[k], mw, e);
    });
  }
}

export function cases(): Case[] {
  const n = named().reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
  const out: Case[] = [];
  for (const layout of ['tensors', 'store'] as const) {
    const shape = layout === 'tensors' ? `74 tensors, ${n} floats` : `1 ParamStore, ${n} floats`;
    const norm: Case = {
      name: 'grad_norm', shape, work: normBench.grad_norm(n), bound: 'memory',
      setup: async (held) => {
        const { ps, store } = parameters(layout, held);
        if (store) norm.work = normBench.grad_norm(store.bytes / 4);
        const grads = store ? store.chunks(store.grads) : ps.map((p) => p.grad!);
        await verify('grad_norm', () => gradNorm(grads), [normReference(hostGrads())]);
        return scoped(() => gradNorm(grads));
      },
    };
    const step: Case = {
      name: 'adamw', shape, work: adamwBench.adamw(n), bound: 'memory',
      setup: async (held) => {
        const { ps, store } = parameters(layout, held);
        if (store) step.work = adamwBench.adamw(store.bytes / 4);
        const opt = store ? new AdamW(store, { lr: LR }) : new AdamW(ps, { lr: LR });
        held.push(opt);
        const clip = gradNorm(store ? store.chunks(store.grads) : ps.map((p) => p.grad!));
        await checkStep(ps, opt, clip);
        return () => opt.step(LR, clip, 1.0);
      },
    };
    out.push(norm, step);
  }
  // The kernels alone at the store's size, at the tuner's choice and with its candidates' times.
  out.push(tunedCase(gradNormTunable, { n }, { name: 'grad_norm', shape: `1 tensor, ${n} floats`, work: normBench.grad_norm(n), bound: 'memory' }),
    tunedCase(adamwTunable, { n }, { name: 'adamw', shape: `1 tensor, ${n} floats`, work: adamwBench.adamw(n), bound: 'memory' }));
  return out;
}
