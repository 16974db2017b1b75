// rmsnorm: y = w ⊙ x / sqrt(mean(x²) + eps) over the last axis (MiniMind RMSNorm, float32 throughout;
// also the per-head q/k norm of minimind-3, H = head_dim). x [..., H] is viewed as [rows, H].
// Forward saves rstd = 1/rms per row [rows]. Backward (fused) gives
//   dx = rstd·(w⊙dy) − x·rstd³·Σ(w⊙dy⊙x)/H   and   dw = Σ_rows dy⊙x·rstd.
// Backward in two passes: one invocation per row gives c[r] = rstd³·Σ(w⊙dy⊙x)/H; then one per
// (column, chunk of rows) writes dx and sums its column's dw over the chunk in a register. It reads x
// and dy twice, yet on lavapipe ran 22% faster (5440×512: 3.3 vs 4.2 ms) than one pass per chunk of
// rows, whose read-modify-write of a dw partial row for every row was the cost.
// dw is deterministic without atomics: a last kernel sums the chunks' partials per column in order.
// Row layout (the variant: rmsnorm_variants.ts picks it per shape class): 'lane', one invocation
// per row with vec4 loads when H % 4 == 0, runs at copy speed on lavapipe (a workgroup per row with a
// barrier tree was 5–10× slower there, LAVAPIPE-NOTES.md); 'wg', a workgroup of wg lanes per row
// striding over it, summed with subgroups where the variant says so: coalesced loads and enough rows
// in flight for a GPU (5440 rows are 85 workgroups of 64 in the lane layout, a fraction of one wave).
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { rowEnable, rowSize } from './row_layout.js';
import { WG, BACKWARD_PARAMS, FORWARD_PARAMS, backwardWgsl, dotWgsl, forwardWgsl, rowGroups, type BackwardVariant,
  type ForwardVariant, type RowWidth } from './rmsnorm_wgsl.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { tuner } from '../runtime/tuner.js';
import { rmsnormTunables } from './rmsnorm_variants.js';

export { WG, forwardWgsl, backwardWgsl, FORWARD_PARAMS, BACKWARD_PARAMS } from './rmsnorm_wgsl.js';
export type { ForwardVariant, BackwardVariant, RowWidth } from './rmsnorm_wgsl.js';

export const kernels = {
  rmsnorm_forward: defineKernel<RowWidth>({
    name: 'rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v, false),
  }),
  /** Backward, first pass: c[r] = rstd[r]³ · Σ_i w[i]·dy[r, i]·x[r, i] / H, one row r per invocation. */
  rmsnorm_backward_dot: defineKernel<RowWidth>({
    name: 'rmsnorm_backward_dot', params: [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32']], workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'rw', 'f32']],
    wgsl: dotWgsl,
  }),
  /** dw: false for a weight that needs no gradient (part is bound but not written). */
  rmsnorm_backward: defineKernel<{ vec4: boolean; dw: boolean }>({
    name: 'rmsnorm_backward', params: BACKWARD_PARAMS, workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'read', 'f32'],
      ['dx', 'rw', 'VT'], ['part', 'rw', 'VT']],
    wgsl: (v, entry) => backwardWgsl(entry, v.vec4, false, v.dw),
  }),
  /** dw[i] = beta·dw[i] + Σ_k part[k, i], summed in chunk order (deterministic). */
  rmsnorm_dw: defineKernel<{ vec4: boolean }>({
    name: 'rmsnorm_dw', workgroup: WG,
    params: [['hv', 'u32'], ['chunks', 'u32'], ['beta', 'f32']],
    buffers: [['part', 'read', 'VT'], ['dw', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (i >= p.hv) { return; }
  var s = VT(0.0);
  for (var k = 0u; k < p.chunks; k++) { s += part[k * p.hv + i]; }
  if (p.beta != 0.0) { s += dw[i]; }
  dw[i] = s;
}
`,
  }),
};

export function dims(x: Tensor, w: Tensor): { rows: number; h: number; hv: number; vec4: boolean } {
  const h = x.shape[x.shape.length - 1];
  if (w.shape.length !== 1 || w.shape[0] !== h) throw new Error(`rmsnorm: x [${x.shape}] with weight [${w.shape}]`);
  const vec4 = h % 4 === 0;
  return { rows: x.size / h, h, hv: vec4 ? h / 4 : h, vec4 };
}

/** The forward kernel (rmsnorm_forward, or add_rmsnorm's with its extra buffers) with variant v; `extra`: the
 *  kernel's own variant fields (add_rmsnorm's 16-bit res format). */
export function launchForward<V extends RowWidth>(k: Kernel<V>, v: ForwardVariant, x: Tensor, w: Tensor, buffers: Tensor[], eps: number,
  extra?: Omit<V, keyof RowWidth>): void {
  const { rows, h, hv, vec4 } = dims(x, w);
  launch(k, { params: { rows, hv, h, eps }, buffers: buffers.map((t) => t.binding()), workgroups: rowGroups(v, rows), variant: { ...v, vec4, ...extra } as V });
}

/** y = w ⊙ x / sqrt(mean(x², last axis) + eps); x [..., H], w [H]. */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  x.assertLive(); w.assertLive();
  const { rows, h } = dims(x, w);
  const y = Tensor.empty(x.shape);
  const rstd = Tensor.empty([rows]);
  launchForward(kernels.rmsnorm_forward, tuner().pick(rmsnormTunables.forward, { rows, h }), x, w, [x, w, y, rstd], eps);
  if (needsGrad(x, w)) record('rmsnorm', [x, w], [y], { rstd }, [x, w]);
  else rstd.dispose();
  return y;
}

export interface BackwardOptions {
  /** Another backward kernel run with these buffers plus `extra` ones before dx (add_rmsnorm's). */
  fused?: { kernel: Kernel<{ vec4: boolean; dw: boolean }>; extra: Tensor[] };
  /** The variant; default the tuner's pick (add_rmsnorm's family when fused). */
  variant?: BackwardVariant;
  /** Where dx goes; default a new tensor. */
  dx?: Tensor;
}

/** Fused backward: dx, and dw (accumulated into `dw` when beta = 1, else overwritten) unless dw is
 *  null (a frozen weight: no partials, no column sum). */
export function rmsnormBackward(x: Tensor, w: Tensor, rstd: Tensor, dy: Tensor, dw: Tensor | null, beta: 0 | 1, o: BackwardOptions = {}): Tensor {
  const { fused } = o;
  const { rows, h, hv, vec4 } = dims(x, w);
  const bv = o.variant ?? tuner().pick(fused ? rmsnormTunables.addBackward : rmsnormTunables.backward, { rows, h });
  const rpi = Math.max(1, Math.ceil(rows / bv.chunks));
  const chunks = Math.ceil(rows / rpi);
  const dx = o.dx ?? Tensor.empty(x.shape);
  const c = Tensor.empty([rows]);
  const part = Tensor.empty(dw ? [chunks, h] : [4]); // without dw: bound, never written (one vec4)
  const { chunks: _c, ...layout } = bv;
  launch(kernels.rmsnorm_backward_dot, {
    params: { rows, hv, h }, buffers: [x, w, dy, rstd, c].map((t) => t.binding()), workgroups: rowGroups(layout, rows), variant: { ...layout, vec4 },
  });
  launch(fused?.kernel ?? kernels.rmsnorm_backward, {
    params: { rows, hv, h, rpi, chunks },
    buffers: [x, w, dy, rstd, c, ...(fused?.extra ?? []), dx, part].map((t) => t.binding()),
    workgroups: Math.ceil((chunks * hv) / WG), variant: { vec4, dw: dw !== null },
  });
  if (dw) {
    launch(kernels.rmsnorm_dw, {
      params: { hv, chunks, beta }, buffers: [part.binding(), dw.binding()], workgroups: Math.ceil(hv / WG), variant: { vec4 },
    });
  }
  c.dispose(); part.dispose(); // later commands may reuse the buffers: WebGPU orders them after these
  return dx;
}

export const backward: Record<string, BackwardRule> = {
  rmsnorm: (node, [dy], into) => {
    const [x, w] = node.inputs;
    const t = into(1); // a leaf weight's gradient is summed in place
    const dw = w.requiresGrad ? t?.tensor ?? Tensor.empty(w.shape) : null;
    const dx = rmsnormBackward(x, w, node.saved.rstd as Tensor, dy!, dw, t?.accumulate ? 1 : 0);
    if (!x.requiresGrad) dx.dispose();
    return [x.requiresGrad ? dx : null, dw];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

export function reference(x: Float64Array, w: Float64Array, eps: number): { y: Float64Array; rstd: Float64Array } {
  const h = w.length, rows = x.length / h;
  const y = new Float64Array(x.length), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += x[r * h + i] ** 2;
    const rs = 1 / Math.sqrt(ss / h + eps);
    rstd[r] = rs;
    for (let i = 0; i < h; i++) y[r * h + i] = w[i] * x[r * h + i] * rs;
  }
  return { y, rstd };
}

export function referenceBackward(x: Float64Array, w: Float64Array, dy: Float64Array, eps: number): { dx: Float64Array; dw: Float64Array } {
  const h = w.length, rows = x.length / h;
  const { rstd } = reference(x, w, eps);
  const dx = new Float64Array(x.length), dw = new Float64Array(h);
  for (let r = 0; r < rows; r++) {
    const rs = rstd[r];
    let dot = 0;
    for (let i = 0; i < h; i++) dot += w[i] * dy[r * h + i] * x[r * h + i];
    for (let i = 0; i < h; i++) {
      const j = r * h + i;
      dx[j] = rs * w[i] * dy[j] - x[j] * rs ** 3 * dot / h;
      dw[i] += dy[j] * x[j] * rs;
    }
  }
  return { dx, dw };
}

/** Bench metadata: bytes moved for rows × h. Forward: x in, y out, w, rstd out. Backward (its three
 *  kernels): x and dy read twice, dx out, rstd read twice, c out and in, w twice, dW partials out and in
 *  (64 chunks, the lavapipe choice), dw read and written. The op's minimum would be
 *  4·(3·rows·h + rows + 2·h): x, dy in, dx out. */
export const bench = {
  rmsnorm_forward: (rows: number, h: number) => ({ bytes: 4 * (2 * rows * h + h + rows) }),
  rmsnorm_backward: (rows: number, h: number) => {
    const chunks = Math.ceil(rows / Math.max(1, Math.ceil(rows / 64)));
    return { bytes: 4 * (5 * rows * h + 4 * rows + 4 * h + 2 * chunks * h) };
  },
};
