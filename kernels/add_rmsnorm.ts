// add_rmsnorm: a residual add fused with the RMSNorm after it (MiniMind: h = h + attn(…) then
// post_attention_layernorm(h); h = h + mlp(…) then the next layer's input_layernorm or the final norm):
//   s = x + res,   y = w ⊙ s / sqrt(mean(s²) + eps).
// Forward writes s (the new residual stream) and y in one pass over the rows. Backward adds the
// gradient that reached s from its other consumer (the next residual add) inside rmsnorm's fused
// backward, ds = g_s + dx_norm, and hands ds to both x and res: one pass instead of norm + add.
// dw as in rmsnorm.ts (partials, then a deterministic column sum). Saves rstd [rows].
// Mixed precision: res may be 16-bit (bf16 or f16: a Linear's output added into the float32 residual
// stream x): s = x + f32(res) in float32, as torch promotes float32 + bfloat16; s, y stay float32. res's
// gradient is then ds rounded to res's dtype (torch: the gradient of a 16-bit tensor is 16-bit), the
// rounding the Linear's backward would make of a float32 one anyway.
import { defineKernel } from '../runtime/kernel.js';
import { Tensor, needsGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { BACKWARD_PARAMS, FORWARD_PARAMS, WG, backwardWgsl, forwardWgsl, type RowWidth } from './rmsnorm_wgsl.js';
import { rowEnable, rowSize } from './row_layout.js';
import { dims, launchForward, rmsnormBackward, bench as rmsnormBench } from './rmsnorm.js';
import { tuner } from '../runtime/tuner.js';
import { rmsnormTunables } from './rmsnorm_variants.js';
import { cast } from './cast.js';

export const kernels = {
  add_rmsnorm_forward: defineKernel<RowWidth>({
    name: 'add_rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['res', 'read', 'VT'], ['w', 'read', 'VT'], ['s', 'rw', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v, true),
  }),
  /** The same over a 16-bit res (packed words of the variant's format: RT, 2 bytes per value). */
  add_rmsnorm_forward16: defineKernel<RowWidth & { format: DType16 }>({
    name: 'add_rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['res', 'read', 'RT'], ['w', 'read', 'VT'], ['s', 'rw', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v, true, v.format),
  }),
  add_rmsnorm_backward: defineKernel<{ vec4: boolean; dw: boolean }>({
    name: 'add_rmsnorm_backward', params: BACKWARD_PARAMS, workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'read', 'f32'],
      ['ds', 'read', 'VT'], ['dx', 'rw', 'VT'], ['part', 'rw', 'VT']],
    wgsl: (v, entry) => backwardWgsl(entry, v.vec4, true, v.dw),
  }),
};

/** [s, y]: s = x + res (same shape [..., H]), y = rmsnorm(s, w, eps); x, w float32, res float32 or 16-bit. */
export function addRmsnorm(x: Tensor, res: Tensor, w: Tensor, eps: number): [Tensor, Tensor] {
  x.assertLive(); res.assertLive(); w.assertLive();
  if (x.size !== res.size || x.shape.at(-1) !== res.shape.at(-1)) throw new Error(`add_rmsnorm: x [${x.shape}] + res [${res.shape}]`);
  const { rows, h } = dims(x, w);
  const s = Tensor.empty(x.shape), y = Tensor.empty(x.shape), rstd = Tensor.empty([rows]);
  const bufs = [x, res, w, s, y, rstd];
  if (is16(res.dtype)) {
    const v = tuner().pick(rmsnormTunables.addForward, { rows, h, res: res.dtype });
    launchForward(kernels.add_rmsnorm_forward16, v, x, w, bufs, eps, { format: res.dtype });
  } else launchForward(kernels.add_rmsnorm_forward, tuner().pick(rmsnormTunables.addForward, { rows, h }), x, w, bufs, eps);
  if (needsGrad(x, res, w)) record('add_rmsnorm', [x, res, w], [s, y], { rstd }, [w, s]);
  else rstd.dispose();
  return [s, y];
}

export const backward: Record<string, BackwardRule> = {
  add_rmsnorm: (node, [gs, gy], into) => {
    const [x, res, w] = node.inputs, s = node.outputs[0];
    const resGrad = (ds: Tensor | null) => (ds && res.requiresGrad ? cast(ds, res.dtype as 'f32' | DType16) : null);
    if (!gy) return [gs, resGrad(gs), null]; // only s was used: the add alone
    const t = into(2); // a leaf weight's gradient is summed in place
    const dw = w.requiresGrad ? t?.tensor ?? Tensor.empty(w.shape) : null;
    const ds = rmsnormBackward(s, w, node.saved.rstd as Tensor, gy, dw, t?.accumulate ? 1 : 0,
      gs ? { fused: { kernel: kernels.add_rmsnorm_backward, extra: [gs] } } : {});
    return [x.requiresGrad ? ds : null, resGrad(ds), dw];
  },
};

/** Bench metadata for rows × h: forward reads x, res and writes s, y (+ w, rstd), 4 bytes each but 2 for a
 *  16-bit res; backward as rmsnorm's plus reading ds. */
export const bench = {
  add_rmsnorm_forward: (rows: number, h: number) => ({ bytes: 4 * (4 * rows * h + h + rows) }),
  add_rmsnorm_forward16: (rows: number, h: number) => ({ bytes: 4 * (3 * rows * h + h + rows) + 2 * rows * h }),
  add_rmsnorm_backward: (rows: number, h: number) => ({ bytes: rmsnormBench.rmsnorm_backward(rows, h).bytes + 4 * rows * h }),
};
