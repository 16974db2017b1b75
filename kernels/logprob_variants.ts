// logprob's variants (the row pass's layout, kernels/row_layout.ts; the lane layout is the fallback),
// its trial and its bench rows.
import { Tensor } from '../runtime/tensor.js';
import { writeBuffer } from '../runtime/kernel.js';
import { mulberry32 } from '../runtime/random.js';
import { noTargets } from '../runtime/autograd.js';
import type { Tunable } from '../runtime/tuner.js';
import { LANE, rowCandidates, rowLabel, rowLayouts, type RowLayout } from './row_layout.js';
import { logprob, launchForward, backward, reference, reference16, bench } from './logprob.js';
import { launchBackward16, launchForward16, bench as bench16 } from './logprob16.js';
import { reference as castReference } from './cast.js';
import { copyInto, type DType16 } from '../runtime/tensor.js';
import { ULP16 } from './matmul16_variants.js';
import { V, Case, host, rand, f64, compare, fixedTrial, tunedCase } from './case.js';

/** rows = N·T positions of N sequences over a vocabulary of V; grad: dlogits written in place of the logits;
 *  dtype: 16-bit logits (kernels/logprob16.ts: the pass is the same with or without grad), else float32. */
export interface LogprobShape { rows: number; T: number; V: number; grad: boolean; dtype?: DType16 }

/** MiniMind's DPO defaults: batch 4 pairs (8 rows), max_seq_len 1024 (rows of 1023 tokens). */
export const DPO_N = 8, DPO_T = 1023;

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Seeded labels in [0, V), a fraction `ignored` of them −100. */
export function labelsFor(rows: number, V: number, seed: number, ignored: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: rows }, () => (r() < ignored ? -100 : Math.floor(r() * V)));
}

export const logprobTunable: Tunable<LogprobShape, RowLayout> = {
  name: 'logprob_forward',
  key: (s) => `V${s.V} rows${p2(s.rows)} ${s.dtype ? `${s.dtype} ` : ''}${s.grad ? 'grad' : 'lp'}`,
  fallback: () => LANE, variants: rowLayouts, candidates: rowCandidates, label: rowLabel,
  trial(s) {
    if (s.dtype) return trial16(s, s.dtype);
    // A third of the labels ignored at the tests' sizes (that path, and weights that differ per
    // sequence, are checked); none at bench sizes, whose bytes formulas count every row.
    const lh = host([s.rows, s.V], 63, 4), lab = labelsFor(s.rows, s.V, 64, s.rows * s.V <= 1 << 20 ? 0.33 : 0);
    const N = s.rows / s.T;
    // Per-sequence weights as 'mean' makes them; the row pass reads them by sequence.
    const want = () => reference(Float64Array.from(lh), lab, N, s.T, s.V, 'mean');
    const w = meanWeights(lab, N, s.T);
    const logits = Tensor.fromArray(lh, [N, s.T, s.V]).keep(), labels = Tensor.fromArray(lab, [N, s.T], 'i32').keep();
    const weights = Tensor.fromArray(w, [N]).keep(), losses = Tensor.empty([s.rows]).keep();
    const n = Math.min(s.rows, 64); // rows of dlogits compared
    return fixedTrial<RowLayout>({
      run: (v) => launchForward(v, logits, labels, weights, losses, s.grad),
      reset: () => writeBuffer(logits.buffer, 0, lh), // the grad pass overwrote them
      outputs: s.grad ? [losses, logits] : [losses],
      want: () => {
        const r = want();
        const negLp = r.lp.map((x) => -x);
        return s.grad ? [negLp, r.dlogits.subarray(0, n * s.V)] : [negLp];
      },
      rtol: 2e-5, atol: 2e-6, owned: [logits, labels, weights, losses],
    });
  },
};

/** 'mean''s weight of each of the N sequences of labels lab [N·T]. */
const meanWeights = (lab: Int32Array, N: number, T: number) =>
  Float32Array.from({ length: N }, (_, n) => 1 / Math.max(lab.subarray(n * T, (n + 1) * T).filter((l) => l !== -100).length, 1e-8));

/** The 16-bit trial: the row pass (−lp and lse, 0 on unlabelled rows, of the logits rounded to `dtype`),
 *  and with grad the backward in the same layout ('mean', upstream 0.5 per sequence: dlogits rounded to
 *  `dtype`, checked on the first rows within 2^-7 (bf16) or 2^-10 (f16) of their value: 1 ulp, 2 at the
 *  top of a binade). */
function trial16(s: LogprobShape, dtype: DType16) {
  const lh = host([s.rows, s.V], 63, 4), lab = labelsFor(s.rows, s.V, 64, s.rows * s.V <= 1 << 20 ? 0.33 : 0);
  const N = s.rows / s.T, shape = [N, s.T, s.V];
  const src = Tensor.fromArray(lh, shape, dtype).keep(), logits = Tensor.empty(shape, dtype).keep(), labels = Tensor.fromArray(lab, [N, s.T], 'i32').keep();
  const losses = Tensor.empty([s.rows]).keep(), lse = Tensor.empty([s.rows]).keep();
  const weights = Tensor.fromArray(meanWeights(lab, N, s.T), [N]).keep(), g = Tensor.fromArray(new Float32Array(N).fill(0.5), [N]).keep();
  const n = Math.min(s.rows, 64); // rows of dlogits compared
  copyInto(logits, src);
  return fixedTrial<RowLayout>({
    run: (v) => {
      launchForward16(v, logits, labels, losses, lse);
      if (s.grad) launchBackward16(v, logits, labels, lse, weights, g);
    },
    reset: () => copyInto(logits, src), // the backward overwrote them
    outputs: s.grad ? [losses, lse, logits] : [losses, lse],
    want: () => {
      const x = castReference(lh, dtype), r = reference(x, lab, N, s.T, s.V, 'mean', new Float64Array(N).fill(0.5));
      const rowLse = r.lp.map((l, i) => (lab[i] === -100 ? 0 : x[i * s.V + lab[i]] - l));
      return [r.lp.map((l) => -l), rowLse, ...(s.grad ? [castReference(Float32Array.from(r.dlogits.subarray(0, n * s.V)), dtype)] : [])];
    },
    rtol: [2e-5, 2e-5, ULP16[dtype]], atol: [2e-6, 2e-6, 2 ** -24],
    owned: [src, logits, labels, losses, lse, weights, g],
  });
}

/** Bench rows at MiniMind's DPO shape: the row pass of the reference model (log-probs only) and of the
 *  policy (log-probs and dlogits), and the backward's in-place per-sequence scale; at bf16 the pass
 *  (log-probs and lse) and the backward that writes the 16-bit dlogits. */
export function cases(): Case[] {
  const rows = DPO_N * DPO_T, labels = labelsFor(rows, V, 29, 0);
  const shape = (what: string) => `${DPO_N}x${DPO_T}x${V} ${what}`;
  return [
    tunedCase(logprobTunable, { rows, T: DPO_T, V, grad: false }, { name: 'logprob_forward', shape: shape('reference: lp only'), work: bench.logprob(rows, V, false) }),
    tunedCase(logprobTunable, { rows, T: DPO_T, V, grad: true }, {
      name: 'logprob_forward', shape: shape('policy: lp+dlogits'), work: bench.logprob(rows, V, true),
      note: 'writes dlogits over the logits: later calls run on the previous dlogits (same work)',
    }),
    {
      name: 'logprob_backward', shape: shape('upstream per sequence'), work: bench.logprob_backward(rows, V),
      note: 'dlogits scaled in place by the DPO loss gradient of their sequence (±0.5 and ±2 in turn: no denormals)',
      setup: async () => {
        // Upstream ±x alternating over the sequences, as chosen and rejected rows get opposite signs.
        const upstream = (n: number, x: number) => Tensor.fromArray(Array.from({ length: n }, (_, i) => (i % 2 ? -x : x)), [n]);
        const small = { logits: rand([2, DPO_T, V], 30, 1, true), lab: Tensor.fromArray(labels.subarray(0, 2 * DPO_T), [2, DPO_T], 'i32') };
        backward.logprob(logprob(small.logits, small.lab, 'sum').node!, [upstream(2, 0.5), null], noTargets);
        compare('logprob_backward', await small.logits.readF32(), reference(f64(host([2, DPO_T, V], 30)), labels, 2, DPO_T, V, 'sum', [0.5, -0.5]).dlogits);
        const logits = rand([DPO_N, DPO_T, V], 31, 1, true);
        const node = logprob(logits, Tensor.fromArray(labels, [DPO_N, DPO_T], 'i32'), 'sum').node!;
        const g = [upstream(DPO_N, 0.5), upstream(DPO_N, 2)];
        let k = 0;
        return () => { backward.logprob(node, [g[k++ % 2], null], noTargets); };
      },
    },
    tunedCase(logprobTunable, { rows, T: DPO_T, V, grad: false, dtype: 'bf16' }, {
      name: 'logprob_forward', shape: shape('bf16 reference: lp only'), work: bench16.logprob_forward(rows, V),
    }),
    tunedCase(logprobTunable, { rows, T: DPO_T, V, grad: true, dtype: 'bf16' }, {
      name: 'logprob_forward', shape: shape('bf16 policy: lp+dlogits+backward'), work: bench16.logprob_grad(rows, V),
      note: '16-bit logits: the row pass (lp, lse) and the backward (dlogits, upstream 0.5) in one layout, the work of float32\'s policy row and its backward; later calls run on the previous dlogits (same work)',
    }),
    {
      name: 'logprob_backward', shape: shape('bf16 dlogits, upstream per sequence'), work: bench16.logprob_backward(rows, V),
      note: '16-bit logits: dlogits from the saved lse, in place (±0.5 and ±2 in turn); later calls run on the previous dlogits (same work)',
      setup: async () => {
        const upstream = (n: number, x: number) => Tensor.fromArray(Array.from({ length: n }, (_, i) => (i % 2 ? -x : x)), [n]);
        const xs = host([2, DPO_T, V], 30);
        const small = { logits: Tensor.fromArray(xs, [2, DPO_T, V], 'bf16', true), lab: Tensor.fromArray(labels.subarray(0, 2 * DPO_T), [2, DPO_T], 'i32') };
        backward.logprob(logprob(small.logits, small.lab, 'sum').node!, [upstream(2, 0.5), null], noTargets);
        compare('logprob_backward bf16', await small.logits.readF32(), reference16(xs, labels, 2, DPO_T, V, 'sum', 'bf16', [0.5, -0.5]).dlogits);
        const logits = Tensor.fromArray(host([DPO_N, DPO_T, V], 31), [DPO_N, DPO_T, V], 'bf16', true);
        const node = logprob(logits, Tensor.fromArray(labels, [DPO_N, DPO_T], 'i32'), 'sum').node!;
        const g = [upstream(DPO_N, 0.5), upstream(DPO_N, 2)];
        let k = 0;
        return () => { backward.logprob(node, [g[k++ % 2], null], noTargets); };
      },
    },
  ];
}
