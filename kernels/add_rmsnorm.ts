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
// A 16-bit residual stream (option out 'bf16' | 'f16': torch.autocast's in-place `h += residual` keeps h
// 16-bit): s stored in out's type (rounded once) and saved so, y = w·round16(x̂) float32, as MiniMind2's
// RMSNorm's type_as; kernels and roundings in kernels/add_rmsnorm16.ts.
import { defineKernel } from '../runtime/kernel.js';
import { Tensor, needsGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule, GradTarget } from '../runtime/autograd.js';
import { BACKWARD_PARAMS, FORWARD_PARAMS, WG, backwardWgsl, forwardWgsl, type Res16, type RowWidth } from './rmsnorm_wgsl.js';
import { rowEnable, rowSize } from './row_layout.js';
import { dims, launchForward, rmsnormBackward, bench as rmsnormBench } from './rmsnorm.js';
import { tuner } from '../runtime/tuner.js';
import { rmsnormTunables } from './rmsnorm_variants.js';
import { cast } from './cast.js';
import { backward16, forward16, bench as bench16 } from './add_rmsnorm16.js';

export const kernels = {
  add_rmsnorm_forward: defineKernel<RowWidth>({
    name: 'add_rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['res', 'read', 'VT'], ['w', 'read', 'VT'], ['s', 'rw', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v, true),
  }),
  /** The same over a 16-bit res (packed words of the variant's format: RT, 2 bytes per value). */
  add_rmsnorm_forward16: defineKernel<RowWidth & Res16>({
    name: 'add_rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['res', 'read', 'RT'], ['w', 'read', 'VT'], ['s', 'rw', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v, true, v),
  }),
  add_rmsnorm_backward: defineKernel<{ vec4: boolean; dw: boolean }>({
    name: 'add_rmsnorm_backward', params: BACKWARD_PARAMS, workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'read', 'f32'],
      ['ds', 'read', 'VT'], ['dx', 'rw', 'VT'], ['part', 'rw', 'VT']],
    wgsl: (v, entry) => backwardWgsl(entry, v.vec4, true, v.dw),
  }),
};

export interface AddRmsnormOptions {
  /** s's dtype: 'f32' (default), or a 16-bit type, which x and res are then each of or float32. */
  out?: 'f32' | DType16;
}

/** [s, y]: s = x + res (same shape [..., H]), y = rmsnorm(s, w, eps) float32. out 'f32': x, w float32, res float32
 *  or 16-bit. out 16-bit: s of that type, y = w·round16(x̂(s)) (see the top). */
export function addRmsnorm(x: Tensor, res: Tensor, w: Tensor, eps: number, o: AddRmsnormOptions = {}): [Tensor, Tensor] {
  x.assertLive(); res.assertLive(); w.assertLive();
  if (x.size !== res.size || x.shape.at(-1) !== res.shape.at(-1)) throw new Error(`add_rmsnorm: x [${x.shape}] + res [${res.shape}]`);
  const { rows, h } = dims(x, w), out = o.out ?? 'f32';
  if (out !== 'f32') {
    for (const [n, t] of [['x', x], ['res', res]] as const) {
      if (t.dtype !== 'f32' && t.dtype !== out) throw new Error(`add_rmsnorm: ${n} is ${t.dtype}, out ${out} takes f32 or ${out}`);
    }
    const s = Tensor.empty(x.shape, out), y = Tensor.empty(x.shape), rstd = Tensor.empty([rows]);
    const v = tuner().pick(rmsnormTunables.addForward, { rows, h, out, x16: is16(x.dtype), ...(is16(res.dtype) ? { res: out } : {}) });
    forward16(v, x, res, w, s, y, rstd, eps);
    if (needsGrad(x, res, w)) record('add_rmsnorm', [x, res, w], [s, y], { rstd }, [w, s]);
    else rstd.dispose();
    return [s, y];
  }
  const s = Tensor.empty(x.shape), y = Tensor.empty(x.shape), rstd = Tensor.empty([rows]);
  const bufs = [x, res, w, s, y, rstd];
  if (is16(res.dtype)) {
    const v = tuner().pick(rmsnormTunables.addForward, { rows, h, res: res.dtype });
    launchForward(kernels.add_rmsnorm_forward16, v, x, w, bufs, eps, res16(res.dtype, h));
  } else launchForward(kernels.add_rmsnorm_forward, tuner().pick(rmsnormTunables.addForward, { rows, h }), x, w, bufs, eps);
  if (needsGrad(x, res, w)) record('add_rmsnorm', [x, res, w], [s, y], { rstd }, [w, s]);
  else rstd.dispose();
  return [s, y];
}

/** The 16-bit forward's own variant fields for a res of `format` and rows of h values. */
export const res16 = (format: DType16, h: number): Res16 => ({ format, pairs: h % 8 === 0 });

export const backward: Record<string, BackwardRule> = {
  add_rmsnorm: (node, [gs, gy], into) => {
    const [x, res, w] = node.inputs, s = node.outputs[0];
    if (is16(s.dtype)) return backward16Rule(node.inputs, s, node.saved.rstd as Tensor, gs, gy, into);
    const resGrad = (ds: Tensor | null) => (ds && res.requiresGrad ? cast(ds, res.dtype as 'f32' | DType16) : null);
    if (!gy) return [gs, resGrad(gs), null]; // only s was used: the add alone
    const t = into(2); // a leaf weight's gradient is summed in place
    const dw = w.requiresGrad ? t?.tensor ?? Tensor.empty(w.shape) : null;
    const ds = rmsnormBackward(s, w, node.saved.rstd as Tensor, gy, dw, t?.accumulate ? 1 : 0,
      gs ? { fused: { kernel: kernels.add_rmsnorm_backward, extra: [gs] } } : {});
    const dres = resGrad(ds);
    if (!x.requiresGrad && dres !== ds) ds.dispose(); // the cast is recorded: the pool reuses ds only for later commands
    return [x.requiresGrad ? ds : null, dres, dw];
  },
};

/** The backward of a 16-bit s: total = round16(g + ds) (16-bit), handed to x and res in their dtypes (widened
 *  exactly for a float32 one). gs, s's gradient from its other consumer, is rounded to s's type first when it
 *  comes float32 (or 16-bit of the other format), as torch's engine casts the gradient of a 16-bit tensor. */
function backward16Rule([x, res, w]: Tensor[], s: Tensor, rstd: Tensor, gs: Tensor | null, gy: Tensor | null,
  into: (i: number) => GradTarget | null): (Tensor | null)[] {
  const out = s.dtype as DType16, ds = gs && cast(gs, out);
  let total = ds!, dw: Tensor | null = null;
  if (gy) {
    const t = into(2), { rows, h } = dims(s, w);
    dw = w.requiresGrad ? t?.tensor ?? Tensor.empty(w.shape) : null;
    total = backward16(s, w, rstd, gy, ds, dw, t?.accumulate ? 1 : 0, tuner().pick(rmsnormTunables.addBackward, { rows, h, out }));
    if (ds && ds !== gs) ds.dispose();
  }
  const dx = x.requiresGrad ? cast(total, x.dtype as 'f32' | DType16) : null;
  const dres = res.requiresGrad ? cast(total, res.dtype as 'f32' | DType16) : null;
  if (total !== gs && total !== dx && total !== dres) total.dispose();
  return [dx, dres, dw];
}

/** Bench metadata for rows × h: forward reads x, res and writes s, y (+ w, rstd), 4 bytes each but 2 for a
 *  16-bit res; backward as rmsnorm's plus reading ds; with out 16-bit add_rmsnorm16.ts's. */
export const bench = {
  add_rmsnorm_forward: (rows: number, h: number) => ({ bytes: 4 * (4 * rows * h + h + rows) }),
  add_rmsnorm_forward16: (rows: number, h: number) => ({ bytes: 4 * (3 * rows * h + h + rows) + 2 * rows * h }),
  add_rmsnorm_backward: (rows: number, h: number) => ({ bytes: rmsnormBench.rmsnorm_backward(rows, h).bytes + 4 * rows * h }),
  // Called, not copied: add_rmsnorm16.ts is on an import cycle with this module and may not be initialised yet.
  add_rmsnorm_forward_out16: (rows: number, h: number) => bench16.forward(rows, h),
  add_rmsnorm_backward_out16: (rows: number, h: number) => bench16.backward(rows, h),
};
