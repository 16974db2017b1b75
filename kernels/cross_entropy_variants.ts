// cross_entropy's variants (the per-row pass's layout, kernels/row_layout.ts; the lane layout is the
// fallback), its trial and its bench rows.
import { Tensor } from '../runtime/tensor.js';
import { writeBuffer } from '../runtime/kernel.js';
import { mulberry32 } from '../runtime/random.js';
import { noTargets } from '../runtime/autograd.js';
import type { Tunable } from '../runtime/tuner.js';
import { LANE, rowCandidates, rowLabel, rowLayouts, type RowLayout } from './row_layout.js';
import { crossEntropy, launchForward, backward, reference, reference16, bench } from './cross_entropy.js';
import { launchBackward16, launchForward16, bench as bench16 } from './cross_entropy16.js';
import { reference as castReference } from './cast.js';
import { copyInto, type DType16 } from '../runtime/tensor.js';
import { ULP16 } from './matmul16_variants.js';
import { B, T, N, V, Case, host, rand, f64, compare, fixedTrial, tunedCase } from './case.js';

/** rows = B·T positions over a vocabulary of V; grad: dlogits written in place of the logits; dtype:
 *  16-bit logits (kernels/cross_entropy16.ts: the pass is the same with or without grad), else float32. */
export interface CrossEntropyShape { rows: number; T: number; V: number; grad: boolean; dtype?: DType16 }

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** Seeded labels in [0, V), a fraction `ignored` of them −100. */
function labelsFor(rows: number, V: number, seed: number, ignored: number): Int32Array {
  const r = mulberry32(seed);
  return Int32Array.from({ length: rows }, () => (r() < ignored ? -100 : Math.floor(r() * V)));
}

export const crossEntropyTunable: Tunable<CrossEntropyShape, RowLayout> = {
  name: 'cross_entropy_forward',
  key: (s) => `V${s.V} rows${p2(s.rows)} ${s.dtype ? `${s.dtype} ` : ''}${s.grad ? 'grad' : 'loss'}`,
  fallback: () => LANE, variants: rowLayouts, candidates: rowCandidates, label: rowLabel,
  trial(s) {
    if (s.dtype) return trial16(s, s.dtype);
    // A fifth of the labels ignored at the tests' sizes (that path is checked); none at bench sizes,
    // whose bytes formulas count every row.
    const lh = host([s.rows, s.V], 61, 4), lab = labelsFor(s.rows, s.V, 62, s.rows * s.V <= 1 << 20 ? 0.2 : 0);
    const B1 = s.rows / s.T;
    const logits = Tensor.fromArray(lh, [B1, s.T, s.V]).keep(), labels = Tensor.fromArray(lab, [B1, s.T], 'i32').keep();
    const counted = countOf(lab, s.T);
    const count = Tensor.fromArray([counted], [1]).keep(), losses = Tensor.empty([s.rows]).keep();
    return fixedTrial<RowLayout>({
      run: (v) => launchForward(v, logits, labels, count, losses, s.grad),
      reset: () => writeBuffer(logits.buffer, 0, lh), // the grad pass overwrote them
      outputs: s.grad ? [losses, logits] : [losses],
      want: () => {
        const rowLoss = rowsRef(lh, lab, s.rows, s.T, s.V).loss;
        return s.grad ? [rowLoss, firstRows(lh, lab, s, counted)] : [rowLoss];
      },
      rtol: 2e-5, atol: 2e-6, owned: [logits, labels, count, losses],
    });
  },
};

/** Per-row losses (lse − x[label]) and lse of the shifted masked loss, from the reference's definition
 *  (0 on rows with no label), for logits lh [rows, V]. */
function rowsRef(lh: ArrayLike<number>, lab: Int32Array, rows: number, T: number, V: number) {
  const loss = new Float64Array(rows), lse = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const y = i % T + 1 < T ? lab[i + 1] : -100;
    if (y === -100) continue;
    let m = -Infinity, e = 0;
    for (let j = 0; j < V; j++) m = Math.max(m, lh[i * V + j]);
    for (let j = 0; j < V; j++) e += Math.exp(lh[i * V + j] - m);
    lse[i] = m + Math.log(e);
    loss[i] = lse[i] - lh[i * V + y];
  }
  return { loss, lse };
}

/** Rows with a label: labels[i + 1] within the same sequence, not −100. */
const countOf = (lab: Int32Array, T: number) => lab.filter((l, i) => i % T + 1 < T && lab[i + 1] !== -100).length;

/** dlogits (upstream 1) of the first rows (64 at most) of logits x [rows, V]: the reference runs on the
 *  sequences that hold them (a row depends only on its sequence's labels), rescaled from their count of
 *  counted rows to the batch's (the whole batch's reference took seconds at bench sizes). Rows with no
 *  counted row are all zero. */
function firstRows(x: Float32Array | Float64Array, lab: Int32Array, s: CrossEntropyShape, counted: number): Float64Array {
  const n = Math.min(s.rows, 64), seqs = Math.ceil(n / s.T);
  const r = reference(Float64Array.from(x.subarray(0, seqs * s.T * s.V)), lab.subarray(0, seqs * s.T), seqs, s.T, s.V);
  return r.dlogits.subarray(0, n * s.V).map((d) => (d ? (d * r.count) / counted : 0));
}

/** The 16-bit trial: the row pass (losses and lse of the logits rounded to `dtype`), and with grad the
 *  backward in the same layout (upstream 0.5: dlogits rounded to `dtype`, checked on the first rows
 *  within 2^-7 (bf16) or 2^-10 (f16) of their value: 1 ulp, 2 at the top of a binade). */
function trial16(s: CrossEntropyShape, dtype: DType16) {
  const lh = host([s.rows, s.V], 61, 4), lab = labelsFor(s.rows, s.V, 62, s.rows * s.V <= 1 << 20 ? 0.2 : 0);
  const shape = [s.rows / s.T, s.T, s.V];
  const src = Tensor.fromArray(lh, shape, dtype).keep(), logits = Tensor.empty(shape, dtype).keep(), labels = Tensor.fromArray(lab, shape.slice(0, 2), 'i32').keep();
  const losses = Tensor.empty([s.rows]).keep(), lse = Tensor.empty([s.rows]).keep();
  const counted = countOf(lab, s.T), count = Tensor.fromArray([counted], [1]).keep(), g = Tensor.fromArray([0.5], [1]).keep();
  copyInto(logits, src);
  return fixedTrial<RowLayout>({
    run: (v) => {
      launchForward16(v, logits, labels, losses, lse);
      if (s.grad) launchBackward16(v, logits, labels, lse, count, g);
    },
    reset: () => copyInto(logits, src), // the backward overwrote them
    outputs: s.grad ? [losses, lse, logits] : [losses, lse],
    want: () => {
      const x = castReference(lh, dtype), r = rowsRef(x, lab, s.rows, s.T, s.V);
      return s.grad ? [r.loss, r.lse, castReference(Float32Array.from(firstRows(x, lab, s, counted), (d) => 0.5 * d), dtype)] : [r.loss, r.lse];
    },
    rtol: [2e-5, 2e-5, ULP16[dtype]], atol: [2e-6, 2e-6, 2 ** -24],
    owned: [src, logits, labels, losses, lse, count, g],
  });
}

/** Bench rows at B16 T340 V6400: the per-row pass (loss only; loss and dlogits), and the backward's
 *  in-place scale by the upstream gradient (accumulation); at bf16 the pass (loss and lse) and the
 *  backward that writes the 16-bit dlogits. */
export function cases(): Case[] {
  const labels = labelsFor(N, V, 19, 0);
  const shape = (what: string) => `${B}x${T}x${V} ${what}`;
  return [
    tunedCase(crossEntropyTunable, { rows: N, T, V, grad: false }, { name: 'cross_entropy_forward', shape: shape('loss only'), work: bench.cross_entropy(N, V, false) }),
    tunedCase(crossEntropyTunable, { rows: N, T, V, grad: true }, {
      name: 'cross_entropy_forward', shape: shape('loss+dlogits'), work: bench.cross_entropy(N, V, true),
      note: 'writes dlogits over the logits: later calls run on the previous dlogits (same work)',
    }),
    tunedCase(crossEntropyTunable, { rows: N, T, V, grad: false, dtype: 'bf16' }, {
      name: 'cross_entropy_forward', shape: shape('bf16 loss only'), work: bench16.cross_entropy_forward(N, V),
    }),
    tunedCase(crossEntropyTunable, { rows: N, T, V, grad: true, dtype: 'bf16' }, {
      name: 'cross_entropy_forward', shape: shape('bf16 loss+dlogits'), work: bench16.cross_entropy_grad(N, V),
      note: '16-bit logits: the row pass (loss, lse) and the backward (dlogits, upstream 0.5) in one layout; later calls run on the previous dlogits (same work)',
    }),
    {
      name: 'cross_entropy_backward', shape: shape('upstream 0.5/2'), work: { bytes: 8 * N * V },
      note: 'dlogits scaled in place (gradient accumulation), by 0.5 and 2 in turn (no denormals); at upstream 1 the pass is skipped',
      setup: async () => {
        const [half, two] = [Tensor.fromArray([0.5], [1]), Tensor.fromArray([2], [1])];
        const small = { logits: rand([2, T, V], 20, 1, true), lab: Tensor.fromArray(labels.subarray(0, 2 * T), [2, T], 'i32') };
        backward.cross_entropy(crossEntropy(small.logits, small.lab).loss.node!, [half, null], noTargets);
        compare('cross_entropy_backward', await small.logits.readF32(), reference(f64(host([2, T, V], 20)), labels, 2, T, V).dlogits.map((d) => d / 2));
        const logits = rand([B, T, V], 20, 1, true);
        const node = crossEntropy(logits, Tensor.fromArray(labels, [B, T], 'i32')).loss.node!;
        let k = 0;
        return () => { backward.cross_entropy(node, [k++ % 2 ? two : half, null], noTargets); };
      },
    },
    {
      name: 'cross_entropy_backward', shape: shape('bf16 dlogits, upstream 0.5/2'), work: bench16.cross_entropy_backward(N, V),
      note: '16-bit logits: dlogits from the saved lse, in place; later calls run on the previous dlogits (same work)',
      setup: async () => {
        const [half, two] = [Tensor.fromArray([0.5], [1]), Tensor.fromArray([2], [1])];
        const xs = host([2, T, V], 20);
        const small = { logits: Tensor.fromArray(xs, [2, T, V], 'bf16', true), lab: Tensor.fromArray(labels.subarray(0, 2 * T), [2, T], 'i32') };
        backward.cross_entropy(crossEntropy(small.logits, small.lab).loss.node!, [half, null], noTargets);
        compare('cross_entropy_backward bf16', await small.logits.readF32(), reference16(xs, labels, 2, T, V, 'bf16', 0.5).dlogits);
        const logits = Tensor.fromArray(host([B, T, V], 20), [B, T, V], 'bf16', true);
        const node = crossEntropy(logits, Tensor.fromArray(labels, [B, T], 'i32')).loss.node!;
        let k = 0;
        return () => { backward.cross_entropy(node, [k++ % 2 ? two : half, null], noTargets); };
      },
    },
  ];
}
