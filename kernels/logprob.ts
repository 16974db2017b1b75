// logprob: the per-sequence log-probability of the labels that DPO compares (spec §12, MiniMind's
// logits_to_log_probs + the masked reduction of dpo_loss). logits [N, T, V] at t score labels [N, T]
// at the same t (no shift: DPO rows come shifted, data/dpo.ts); a label −100 is mask 0.
//   lp[r] = x[r, y[r]] − logsumexp(x[r, :]),   s[n] = w_n · Σ_t lp[n, t] over the labelled t,
// w_n = 1 for 'sum' (minimind-3) or 1 / max(count_n, 1e-8) for 'mean' (MiniMind2; count_n = labelled t).
// When a gradient is needed the forward also writes d s_n / d logits = w_n·(onehot − softmax) (0 on
// unlabelled rows) IN PLACE OF THE LOGITS, as cross_entropy does (kernels/cross_entropy.ts, whose row
// pass this reuses): the logits are consumed, so logprob must be their last use. The backward scales
// each row of sequence n by the upstream g[n], in place: the exps are computed once, in the forward.
// A label outside [0, V) other than −100 makes its sequence's s NaN and its row's gradient 0.
// bf16 / f16 logits (mixed precision) take kernels/logprob16.ts's row pass and backward: the same s, and
// dlogits in the logits' dtype, written by the backward.
// Dispatches: weights (a workgroup per sequence), the row pass (lane- or workgroup-per-row, rows
// chunked under maxStorageBufferBindingSize), the per-sequence sum (a workgroup per sequence, fixed
// order: deterministic).
import { defineKernel, launch } from '../runtime/kernel.js';
import { treeSum, vecType } from '../runtime/wgsl.js';
import { rowEnable, rowSize, type RowLayout } from './row_layout.js';
import { forwardWgsl, type ForwardCompiled } from './cross_entropy_wgsl.js';
import { chunks, slice } from './cross_entropy.js';
import { launchBackward16, launchForward16 } from './logprob16.js';
import { reference as castReference } from './cast.js';
import { tuner } from '../runtime/tuner.js';
import { logprobTunable } from './logprob_variants.js';
import { Tensor, needsGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';

export type LogprobReduce = 'sum' | 'mean';

const WG = 64; // rows per workgroup in the lane layout
const RED = 256; // per-sequence reductions, and the backward's elementwise pass
const IGNORE = -100;
/** The label row gr is scored on (also kernels/logprob16.ts). */
export const LABEL = `const IGNORE = ${IGNORE};
fn labelOf(gr: u32) -> i32 { return labels[gr]; }`;
const TREE = treeSum('red', RED);

export const kernels = {
  /** weights[n] = 1 ('sum'), or 1 / max(count_n, 1e-8) ('mean'): one workgroup per sequence. */
  logprob_weight: defineKernel({
    name: 'logprob_weight', params: [['T', 'u32'], ['mean', 'u32']], workgroup: RED,
    buffers: [['labels', 'read', 'i32'], ['weights', 'rw', 'f32']],
    wgsl: (_, entry) => `var<workgroup> red: array<u32, ${RED}>;
${entry} {
  let n = wgIndex(wid, nwg);
  var c = 0u;
  for (var t = lid.x; t < p.T; t += ${RED}u) { if (labels[n * p.T + t] != ${IGNORE}) { c++; } }
  red[lid.x] = c;
  ${TREE}
  if (lid.x == 0u) { weights[n] = select(1.0, 1.0 / max(f32(red[0]), 1e-8), p.mean == 1u); }
}
`,
  }),
  /** cross_entropy's row pass on unshifted labels: losses[gr] = lse − x[label] (= −lp), and with
   *  variant grad the row becomes (softmax − onehot)·(−w_n) = w_n·(onehot − softmax). */
  logprob_forward: defineKernel<ForwardCompiled>({
    name: 'logprob_forward', params: [['rows', 'u32'], ['r0', 'u32'], ['T', 'u32'], ['V', 'u32'], ['vv', 'u32']],
    workgroup: (v) => rowSize(v, WG), enable: rowEnable,
    buffers: [['logits', 'rw', 'VT'], ['labels', 'read', 'i32'], ['weights', 'read', 'f32'], ['losses', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(v, entry, LABEL, '-weights[gr / p.T]'),
  }),
  /** s[n] = −w_n · Σ_t losses[n·T + t], one workgroup per sequence, summed in a fixed order. */
  logprob_sum: defineKernel({
    name: 'logprob_sum', params: [['T', 'u32']], workgroup: RED,
    buffers: [['losses', 'read', 'f32'], ['weights', 'read', 'f32'], ['s', 'rw', 'f32']],
    wgsl: (_, entry) => `var<workgroup> red: array<f32, ${RED}>;
${entry} {
  let n = wgIndex(wid, nwg);
  var t = 0.0;
  for (var i = lid.x; i < p.T; i += ${RED}u) { t += losses[n * p.T + i]; }
  red[lid.x] = t;
  ${TREE}
  if (lid.x == 0u) { s[n] = -red[0] * weights[n]; }
}
`,
  }),
  /** Backward: d[i] *= g[n] for the elements of sequence n's rows, in place (one chunk of rows from r0;
   *  n counts VT elements, vv per row). */
  logprob_backward: defineKernel<{ vec4: boolean }>({
    name: 'logprob_backward', params: [['n', 'u32'], ['vv', 'u32'], ['r0', 'u32'], ['T', 'u32']], workgroup: RED,
    buffers: [['g', 'read', 'f32'], ['d', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let i = wgIndex(wid, nwg) * ${RED}u + lid.x;
  if (i >= p.n) { return; }
  d[i] = d[i] * g[(p.r0 + i / p.vv) / p.T];
}
`,
  }),
};

/** The per-row pass with layout v over the logits [rows, V] (in chunks that fit a binding): −lp per
 *  row into losses, and with grad w_n·(onehot − softmax) in place of the logits. */
export function launchForward(v: RowLayout, logits: Tensor, labels: Tensor, weights: Tensor, losses: Tensor, grad: boolean, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!, vec4 = V % 4 === 0;
  for (const c of chunks(rows, V, 'f32', bindingBytes)) {
    launch(kernels.logprob_forward, {
      params: { rows: c.n, r0: c.r0, T, V, vv: vec4 ? V / 4 : V },
      buffers: [slice(logits, V, c), labels.binding(), weights.binding(), losses.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant: { ...v, vec4, grad },
    });
  }
}

/** s [N]: the masked sum ('sum') or mean ('mean') over t of log p(labels[n, t]) under logits [N, T, V]
 *  (f32, or bf16/f16: kernels/logprob16.ts). When gradients are recorded, the logits are overwritten with
 *  ds/dlogits (float32 logits: here; 16-bit: by the backward, in their dtype): this must be their last
 *  use. `bindingBytes`: pretend storage bindings hold at most that many bytes (tests of the chunking). */
export function logprob(logits: Tensor, labels: Tensor, reduce: LogprobReduce, o: { bindingBytes?: number } = {}): Tensor {
  logits.assertLive(); labels.assertLive();
  if (logits.shape.length !== 3) throw new Error(`logprob: logits must be [N, T, V], got [${logits.shape}]`);
  if (logits.dtype !== 'f32' && !is16(logits.dtype)) throw new Error(`logprob: logits are ${logits.dtype}, not a float dtype`);
  const [N, T, V] = logits.shape;
  if (labels.dtype !== 'i32' || labels.shape.length !== 2 || labels.shape[0] !== N || labels.shape[1] !== T) {
    throw new Error(`logprob: labels must be i32 [${N}, ${T}], got ${labels.dtype} [${labels.shape}]`);
  }
  const rows = N * T, grad = needsGrad(logits), half = is16(logits.dtype);
  const weights = Tensor.empty([N]), losses = Tensor.empty([rows]), s = Tensor.empty([N]);
  launch(kernels.logprob_weight, { params: { T, mean: reduce === 'mean' ? 1 : 0 }, buffers: [labels.binding(), weights.binding()], workgroups: N });
  const shape = { rows, T, V, grad, ...(half ? { dtype: logits.dtype as DType16 } : {}) };
  const lse = half ? Tensor.empty([rows]) : null, layout = tuner().pick(logprobTunable, shape);
  if (lse) launchForward16(layout, logits, labels, losses, lse, o.bindingBytes);
  else launchForward(layout, logits, labels, weights, losses, grad, o.bindingBytes);
  launch(kernels.logprob_sum, { params: { T }, buffers: [losses.binding(), weights.binding(), s.binding()], workgroups: N });
  losses.dispose();
  if (grad && lse) record('logprob', [logits, labels], [s], { lse, weights, layout, bindingBytes: o.bindingBytes }, [logits, labels]);
  else {
    weights.dispose();
    lse?.dispose();
    if (grad) record('logprob', [logits, labels], [s], { bindingBytes: o.bindingBytes }, [logits]);
  }
  return s;
}

export const backward: Record<string, BackwardRule> = {
  logprob: (node, [g]) => {
    const [logits, labels] = node.inputs;
    if (!g) return [null, null];
    const { lse, weights, layout, bindingBytes } = node.saved as { lse?: Tensor; weights?: Tensor; layout?: RowLayout; bindingBytes?: number };
    const [, T, V] = logits.shape, vec4 = V % 4 === 0, vv = vec4 ? V / 4 : V;
    if (lse) launchBackward16(layout!, logits, labels, lse, weights!, g, bindingBytes);
    else {
      for (const c of chunks(logits.size / V, V, 'f32', bindingBytes)) {
        const n = c.n * vv;
        launch(kernels.logprob_backward, {
          params: { n, vv, r0: c.r0, T }, buffers: [g.binding(), slice(logits, V, c)], workgroups: Math.ceil(n / RED), variant: { vec4 },
        });
      }
    }
    // The logits buffer now holds the gradient; autograd releases it once the LM head has used it.
    return [logits.detach(), null];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

/** lp per row (0 where unlabelled), s per sequence, and dlogits = Σ_n g[n]·ds_n/dlogits (g: ones by default). */
export function reference(logits: Float64Array, labels: ArrayLike<number>, N: number, T: number, V: number, reduce: LogprobReduce, g?: ArrayLike<number>) {
  const lp = new Float64Array(N * T), s = new Float64Array(N), dlogits = new Float64Array(logits.length);
  for (let n = 0; n < N; n++) {
    let count = 0;
    for (let t = 0; t < T; t++) if (labels[n * T + t] !== IGNORE) count++;
    const w = reduce === 'mean' ? 1 / Math.max(count, 1e-8) : 1, up = g ? g[n] : 1;
    for (let t = 0; t < T; t++) {
      const r = n * T + t, y = labels[r];
      if (y === IGNORE) continue;
      const row = logits.subarray(r * V, (r + 1) * V);
      let m = -Infinity, e = 0;
      for (const x of row) m = Math.max(m, x);
      for (const x of row) e += Math.exp(x - m);
      lp[r] = row[y] - m - Math.log(e);
      s[n] += w * lp[r];
      for (let i = 0; i < V; i++) dlogits[r * V + i] = up * w * ((i === y ? 1 : 0) - Math.exp(row[i] - m) / e);
    }
  }
  return { lp, s, dlogits };
}

/** The 16-bit semantics (kernels/logprob16.ts) for logits whose float32 values are rounded to `to`: lp and
 *  s of those values, dlogits the float64 gradient (upstream g) rounded to `to` (through float32, as
 *  kernels/cast.ts's reference rounds). */
export function reference16(logits: Float32Array, labels: ArrayLike<number>, N: number, T: number, V: number, reduce: LogprobReduce, to: DType16, g?: ArrayLike<number>) {
  const r = reference(castReference(logits, to), labels, N, T, V, reduce, g);
  return { ...r, dlogits: castReference(Float32Array.from(r.dlogits), to) };
}

/** Bench metadata: the row pass reads the logits once (and with grad writes dlogits once); the
 *  backward reads and writes them once. */
export const bench = {
  logprob: (rows: number, V: number, grad = true) => ({ bytes: 4 * rows * V * (grad ? 2 : 1) + 12 * rows }),
  logprob_backward: (rows: number, V: number) => ({ bytes: 8 * rows * V }),
};
