// cross_entropy's variants (the per-row pass's layout, kernels/row_layout.ts; the lane layout is the
// fallback), its trial and its bench rows.
import { Tensor } from '../runtime/tensor.js';
import { writeBuffer } from '../runtime/kernel.js';
import { mulberry32 } from '../runtime/random.js';
import { noTargets } from '../runtime/autograd.js';
import type { Tunable } from '../runtime/tuner.js';
import { LANE, rowCandidates, rowLabel, rowLayouts, type RowLayout } from './row_layout.js';
import { crossEntropy, launchForward, backward, reference, reference16, bench } from './cross_entropy.js';
import { launchForward16, bench as bench16 } from './cross_entropy16.js';
import { reference as castReference } from './cast.js';
import type { DType16 } from '../runtime/tensor.js';
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
  key: (s) => `V${s.V} rows${p2(s.rows)} ${s.dtype ?? (s.grad ? 'grad' : 'loss')}`,
  fallback: () => LANE, variants: rowLayouts, candidates: rowCandidates, label: rowLabel,
  trial(s) {
    if (s.dtype) return trial16(s, s.dtype);
    // A fifth of the labels ignored at the tests' sizes (that path is checked); none at bench sizes,
    // whose bytes formulas count every row.
    const lh = host([s.rows, s.V], 61, 4), lab = labelsFor(s.rows, s.V, 62, s.rows * s.V <= 1 << 20 ? 0.2 : 0);
    const B1 = s.rows / s.T;
    const logits = Tensor.fromArray(lh, [B1, s.T, s.V]).keep(), labels = Tensor.fromArray(lab, [B1, s.T], 'i32').keep();
    const counted = lab.filter((l, i) => i % s.T + 1 < s.T && lab[i + 1] !== -100).length;
    const count = Tensor.fromArray([counted], [1]).keep(), losses = Tensor.empty([s.rows]).keep();
    const n = Math.min(s.rows, 64); // rows of dlogits compared
    // dlogits of the first n rows: the reference runs on the sequences that hold them (a row depends
    // only on its sequence's labels), rescaled from their count of counted rows to the batch's (the
    // whole batch's reference took seconds at bench sizes). Rows with no counted row are all zero.
    const firstRows = () => {
      const seqs = Math.ceil(n / s.T), r = reference(f64(lh, seqs * s.T * s.V), lab.subarray(0, seqs * s.T), seqs, s.T, s.V);
      return r.dlogits.subarray(0, n * s.V).map((d) => (d ? (d * r.count) / counted : 0));
    };
    return fixedTrial<RowLayout>({
      run: (v) => launchForward(v, logits, labels, count, losses, s.grad),
      reset: () => writeBuffer(logits.buffer, 0, lh), // the grad pass overwrote them
      outputs: s.grad ? [losses, logits] : [losses],
      want: () => {
        const rowLoss = rowsRef(lh, lab, s.rows, s.T, s.V).loss;
        return s.grad ? [rowLoss, firstRows()] : [rowLoss];
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

/** The 16-bit row pass's trial: losses and lse of the logits rounded to `dtype` (read only: no reset). */
function trial16(s: CrossEntropyShape, dtype: DType16) {
  const lh = host([s.rows, s.V], 61, 4), lab = labelsFor(s.rows, s.V, 62, s.rows * s.V <= 1 << 20 ? 0.2 : 0);
  const B1 = s.rows / s.T;
  const logits = Tensor.fromArray(lh, [B1, s.T, s.V], dtype).keep(), labels = Tensor.fromArray(lab, [B1, s.T], 'i32').keep();
  const losses = Tensor.empty([s.rows]).keep(), lse = Tensor.empty([s.rows]).keep();
  return fixedTrial<RowLayout>({
    run: (v) => launchForward16(v, logits, labels, losses, lse),
    outputs: [losses, lse],
    want: () => { const r = rowsRef(castReference(lh, dtype), lab, s.rows, s.T, s.V); return [r.loss, r.lse]; },
    rtol: 2e-5, atol: 2e-6, owned: [logits, labels, losses, lse],
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
    tunedCase(crossEntropyTunable, { rows: N, T, V, grad: true, dtype: 'bf16' }, {
      name: 'cross_entropy_forward', shape: shape('bf16 loss+lse'), work: bench16.cross_entropy_forward(N, V),
      note: '16-bit logits: the same pass with or without grad (dlogits come from the backward)',
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
