// cross_entropy over 16-bit logits (bf16 or f16 [B, T, V]: the LM head's output under mixed precision),
// as torch.autocast runs F.cross_entropy: on the logits cast to float32. The loss is cross_entropy's on
// the float32 values the 16-bit ones hold (kernels/cross_entropy.ts: same shift, mask, count and
// reductions). The gradient is torch's too: the float32 gradient of the cast logits, g/count·(softmax −
// onehot) with g the upstream scalar, rounded once to the logits' dtype by the cast's backward. That needs
// g, so here the forward does not write dlogits: its row pass saves each row's lse (4 bytes per row), and
// the backward writes round16(g/count·(exp(x − lse) − onehot)) IN PLACE OF THE LOGITS in one pass (2 bytes
// read and 2 written per element). Rounding in the forward and scaling by g after would round twice, and
// under float16's loss scale (GradScaler: g = 2^16/accumulation) the small gradients (1/(V·count) ≈ 3e-8
// at MiniMind2's B16×T340×V6400, under float16's least subnormal) would flush to 0 before being scaled.
// Dispatches: cross_entropy's count, the row pass (layouts of kernels/row_layout.ts, chunks of rows under
// a storage binding), cross_entropy's loss; backward: one dispatch per chunk, in the row pass's layout.
import { defineKernel, launch } from '../runtime/kernel.js';
import { rowEnable, rowSize, type RowLayout } from './row_layout.js';
import { backward16Variant, backward16Wgsl, forward16Wgsl, type Backward16Compiled, type Forward16Compiled } from './cross_entropy_wgsl.js';
import { LABEL, chunks, slice } from './cross_entropy.js';
import type { Tensor, DType16 } from '../runtime/tensor.js';

const WG = 64; // rows per workgroup in the lane layout
const PARAMS = [['rows', 'u32'], ['r0', 'u32'], ['T', 'u32'], ['V', 'u32'], ['vv', 'u32']] as const;

export const kernels = {
  /** Per row: losses[gr] = lse − x[label], lse[gr] = log Σexp(x) (0 where the row has no valid label). */
  cross_entropy16_forward: defineKernel<Forward16Compiled>({
    name: 'cross_entropy16_forward', params: PARAMS, workgroup: (v) => rowSize(v, WG), enable: rowEnable,
    buffers: [['logits', 'read', 'LT'], ['labels', 'read', 'i32'], ['losses', 'rw', 'f32'], ['lse', 'rw', 'f32']],
    wgsl: (v, entry) => forward16Wgsl(v, entry, LABEL),
  }),
  /** d = round16(g/count·(softmax − onehot)) in place of the logits (0 on rows with no valid label). */
  cross_entropy16_backward: defineKernel<Backward16Compiled>({
    name: 'cross_entropy16_backward', params: PARAMS, workgroup: (v) => (v.rows === 'wg' ? v.wg : WG),
    buffers: [['d', 'rw', 'LT'], ['labels', 'read', 'i32'], ['lse', 'read', 'f32'], ['count', 'read', 'f32'], ['g', 'read', 'f32']],
    wgsl: (v, entry) => backward16Wgsl(v, entry, LABEL, 'g[0] / max(count[0], 1.0)'),
  }),
};

/** Params of one chunk: vv, the row's length in the kernels' array entries (4 elements with vec4, else 1). */
const params = (c: { r0: number; n: number }, T: number, V: number) => ({ rows: c.n, r0: c.r0, T, V, vv: V % 4 === 0 ? V / 4 : V });

/** The row pass with layout v over 16-bit logits [rows, V]: losses and lse [rows]. */
export function launchForward16(v: RowLayout, logits: Tensor, labels: Tensor, losses: Tensor, lse: Tensor, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!;
  const variant = { ...v, vec4: V % 4 === 0, format: logits.dtype as DType16 };
  for (const c of chunks(rows, V, logits.dtype, bindingBytes)) {
    launch(kernels.cross_entropy16_forward, {
      params: params(c, T, V), buffers: [slice(logits, V, c), labels.binding(), losses.binding(), lse.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant,
    });
  }
}

/** The backward with the forward's layout v: the 16-bit dlogits for upstream g [1] in place of the logits. */
export function launchBackward16(v: RowLayout, logits: Tensor, labels: Tensor, lse: Tensor, count: Tensor, g: Tensor, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!;
  const variant = backward16Variant(v, V % 4 === 0, logits.dtype as DType16);
  for (const c of chunks(rows, V, logits.dtype, bindingBytes)) {
    launch(kernels.cross_entropy16_backward, {
      params: params(c, T, V), buffers: [slice(logits, V, c), labels.binding(), lse.binding(), count.binding(), g.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant,
    });
  }
}

/** Bench metadata: the row pass reads the 16-bit logits once (labels, losses and lse: 12 bytes a row);
 *  the backward reads and writes them once (labels and lse: 8 bytes a row); grad: both. */
const forwardBytes = (rows: number, V: number) => 2 * rows * V + 12 * rows, backwardBytes = (rows: number, V: number) => 4 * rows * V + 8 * rows;
export const bench = {
  cross_entropy_forward: (rows: number, V: number) => ({ bytes: forwardBytes(rows, V) }),
  cross_entropy_backward: (rows: number, V: number) => ({ bytes: backwardBytes(rows, V) }),
  cross_entropy_grad: (rows: number, V: number) => ({ bytes: forwardBytes(rows, V) + backwardBytes(rows, V) }),
};
