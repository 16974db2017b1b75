// logprob over 16-bit logits (bf16 or f16 [N, T, V]: the LM head's output under mixed precision), as
// torch.autocast runs MiniMind's logits_to_log_probs (log_softmax casts to float32): s is logprob's on
// the float32 values the 16-bit ones hold (kernels/logprob.ts: same weights and per-sequence sums).
// The gradient is torch's: the float32 gradient of the cast logits, g_n·w_n·(onehot − softmax), rounded
// once to the logits' dtype. It needs g, so (as kernels/cross_entropy16.ts) the forward saves each row's
// lse and the backward writes round16(−w_n·g_n·(exp(x − lse) − onehot)) IN PLACE OF THE LOGITS in one
// pass, 2 bytes read and 2 written per element (float32: 8 in the forward and 8 more in the backward).
// Dispatches: logprob's weights, the row pass (layouts of kernels/row_layout.ts, chunks of rows under a
// storage binding), logprob's sum; backward: one dispatch per chunk, in the row pass's layout.
import { defineKernel, launch } from '../runtime/kernel.js';
import { rowEnable, rowSize, type RowLayout } from './row_layout.js';
import { backward16Variant, backward16Wgsl, forward16Wgsl, type Backward16Compiled, type Forward16Compiled } from './cross_entropy_wgsl.js';
import { chunks, slice } from './cross_entropy.js';
import { LABEL } from './logprob.js';
import type { Tensor, DType16 } from '../runtime/tensor.js';

const WG = 64; // rows per workgroup in the lane layout
const PARAMS = [['rows', 'u32'], ['r0', 'u32'], ['T', 'u32'], ['V', 'u32'], ['vv', 'u32']] as const;

export const kernels = {
  /** Per row: losses[gr] = lse − x[label] (= −lp), lse[gr] = log Σexp(x) (0 where the row has no valid label). */
  logprob16_forward: defineKernel<Forward16Compiled>({
    name: 'logprob16_forward', params: PARAMS, workgroup: (v) => rowSize(v, WG), enable: rowEnable,
    buffers: [['logits', 'read', 'LT'], ['labels', 'read', 'i32'], ['losses', 'rw', 'f32'], ['lse', 'rw', 'f32']],
    wgsl: (v, entry) => forward16Wgsl(v, entry, LABEL),
  }),
  /** d = round16(g_n·w_n·(onehot − softmax)) in place of the logits (0 on rows with no valid label). */
  logprob16_backward: defineKernel<Backward16Compiled>({
    name: 'logprob16_backward', params: PARAMS, workgroup: (v) => (v.rows === 'wg' ? v.wg : WG),
    buffers: [['d', 'rw', 'LT'], ['labels', 'read', 'i32'], ['lse', 'read', 'f32'], ['weights', 'read', 'f32'], ['g', 'read', 'f32']],
    wgsl: (v, entry) => backward16Wgsl(v, entry, LABEL, '-weights[gr / p.T] * g[gr / p.T]'),
  }),
};

/** Params of one chunk: vv, the row's length in the kernels' array entries (4 elements with vec4, else 1). */
const params = (c: { r0: number; n: number }, T: number, V: number) => ({ rows: c.n, r0: c.r0, T, V, vv: V % 4 === 0 ? V / 4 : V });

/** The row pass with layout v over 16-bit logits [rows, V]: −lp and lse [rows]. */
export function launchForward16(v: RowLayout, logits: Tensor, labels: Tensor, losses: Tensor, lse: Tensor, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!;
  const variant = { ...v, vec4: V % 4 === 0, format: logits.dtype as DType16 };
  for (const c of chunks(rows, V, logits.dtype, bindingBytes)) {
    launch(kernels.logprob16_forward, {
      params: params(c, T, V), buffers: [slice(logits, V, c), labels.binding(), losses.binding(), lse.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant,
    });
  }
}

/** The backward with the forward's layout v: the 16-bit dlogits for upstream g [N] in place of the logits. */
export function launchBackward16(v: RowLayout, logits: Tensor, labels: Tensor, lse: Tensor, weights: Tensor, g: Tensor, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!;
  const variant = backward16Variant(v, V % 4 === 0, logits.dtype as DType16);
  for (const c of chunks(rows, V, logits.dtype, bindingBytes)) {
    launch(kernels.logprob16_backward, {
      params: params(c, T, V), buffers: [slice(logits, V, c), labels.binding(), lse.binding(), weights.binding(), g.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant,
    });
  }
}

/** Bench metadata: the row pass reads the 16-bit logits once (labels, losses and lse: 12 bytes a row);
 *  the backward reads and writes them once (labels and lse: 8 bytes a row); grad: both. */
const forwardBytes = (rows: number, V: number) => 2 * rows * V + 12 * rows, backwardBytes = (rows: number, V: number) => 4 * rows * V + 8 * rows;
export const bench = {
  logprob_forward: (rows: number, V: number) => ({ bytes: forwardBytes(rows, V) }),
  logprob_backward: (rows: number, V: number) => ({ bytes: backwardBytes(rows, V) }),
  logprob_grad: (rows: number, V: number) => ({ bytes: forwardBytes(rows, V) + backwardBytes(rows, V) }),
};
