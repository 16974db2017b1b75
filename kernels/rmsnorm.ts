// rmsnorm: y = w ⊙ x / sqrt(mean(x²) + eps) over the last axis (MiniMind RMSNorm, float32 throughout;
// also the per-head q/k norm of minimind-3, H = head_dim). x [..., H] is viewed as [rows, H].
// Forward saves rstd = 1/rms per row [rows]. Backward (fused) gives
//   dx = rstd·(w⊙dy) − x·rstd³·Σ(w⊙dy⊙x)/H   and   dw = Σ_rows dy⊙x·rstd.
// Backward in two passes: one invocation per row gives c[r] = rstd³·Σ(w⊙dy⊙x)/H; then one per
// (column, chunk of rows) writes dx and sums its column's dw over the chunk in a register. It reads x
// and dy twice, yet on lavapipe ran 22% faster (5440×512: 3.3 vs 4.2 ms) than one pass per chunk of
// rows, whose read-modify-write of a dw partial row for every row was the cost.
// dw is deterministic without atomics: a last kernel sums the chunks' partials per column in order.
// Layout (lavapipe, LAVAPIPE-NOTES): one invocation per row with vec4 loads when H % 4 == 0 runs
// at copy speed; a workgroup per row with a shared-memory tree was 5–10× slower (barriers).
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { Tensor, needsGrad, record, gradSlot } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';

export const WG = 64;
/** Backward: rows per chunk chosen so about this many partial rows exist. */
const TARGET_CHUNKS = 64;

/** Variant of every rmsnorm kernel: VT is vec4<f32> when H % 4 == 0 (params hv = H/4), else f32 (hv = H). */
export interface RowWidth { vec4: boolean }

/** Forward WGSL: y[r, :] and rstd[r] for one row r per invocation, of x, or with `add` of s = x + res
 *  (also written out: the fused residual add of add_rmsnorm.ts). */
export function forwardWgsl(entry: string, vec4: boolean, add: boolean): string {
  const xv = add ? 'x[b + i] + res[b + i]' : 'x[b + i]';
  return `${vecType(vec4)}
${entry} {
  let r = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (r >= p.rows) { return; }
  let b = r * p.hv;
  var acc = VT(0.0);
  for (var i = 0u; i < p.hv; i++) { let v = ${xv}; ${add ? 's[b + i] = v; ' : ''}acc += v * v; }
  let rs = inverseSqrt(hsum(acc) / f32(p.h) + p.eps);
  for (var i = 0u; i < p.hv; i++) { y[b + i] = w[i] * (${add ? 's' : 'x'}[b + i] * rs); }
  rstd[r] = rs;
}
`;
}

/** Backward WGSL, second pass: dx[r, i] for the rows r of chunk k = [k·rpi, (k+1)·rpi) and
 *  part[k, i] = Σ_r dy·x·rstd over them, one (column i, chunk k) per invocation, i fastest (neighbouring
 *  lanes read neighbouring columns); c from rmsnorm_backward_dot. With `add`, dx also takes the
 *  gradient ds that reached the norm's input directly. */
export function backwardWgsl(entry: string, vec4: boolean, add: boolean): string {
  return `${vecType(vec4)}
${entry} {
  let t = wgIndex(wid, nwg) * ${WG}u + lid.x;
  let i = t % p.hv;
  let k = t / p.hv;
  if (k >= p.chunks) { return; }
  let wi = w[i];
  var acc = VT(0.0);
  for (var r = k * p.rpi; r < min((k + 1u) * p.rpi, p.rows); r++) {
    let j = r * p.hv + i;
    let xv = x[j];
    let g = dy[j];
    let rs = rstd[r];
    dx[j] = rs * (wi * g) - xv * c[r]${add ? ' + ds[j]' : ''};
    acc += g * (xv * rs);
  }
  part[k * p.hv + i] = acc;
}
`;
}

export const FORWARD_PARAMS = [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32'], ['eps', 'f32']] as const;
export const BACKWARD_PARAMS = [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32'], ['rpi', 'u32'], ['chunks', 'u32']] as const;

export const kernels = {
  rmsnorm_forward: defineKernel<RowWidth>({
    name: 'rmsnorm_forward', params: FORWARD_PARAMS, workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(entry, v.vec4, false),
  }),
  /** Backward, first pass: c[r] = rstd[r]³ · Σ_i w[i]·dy[r, i]·x[r, i] / H, one row r per invocation. */
  rmsnorm_backward_dot: defineKernel<RowWidth>({
    name: 'rmsnorm_backward_dot', params: [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32']], workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'rw', 'f32']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let r = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (r >= p.rows) { return; }
  let b = r * p.hv;
  var acc = VT(0.0);
  for (var i = 0u; i < p.hv; i++) { acc += w[i] * dy[b + i] * x[b + i]; }
  let rs = rstd[r];
  c[r] = rs * rs * rs * hsum(acc) / f32(p.h);
}
`,
  }),
  rmsnorm_backward: defineKernel<RowWidth>({
    name: 'rmsnorm_backward', params: BACKWARD_PARAMS, workgroup: WG,
    buffers: [['x', 'read', 'VT'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'read', 'f32'],
      ['dx', 'rw', 'VT'], ['part', 'rw', 'VT']],
    wgsl: (v, entry) => backwardWgsl(entry, v.vec4, false),
  }),
  /** dw[i] = beta·dw[i] + Σ_k part[k, i], summed in chunk order (deterministic). */
  rmsnorm_dw: defineKernel<RowWidth>({
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

/** y = w ⊙ x / sqrt(mean(x², last axis) + eps); x [..., H], w [H]. */
export function rmsnorm(x: Tensor, w: Tensor, eps: number): Tensor {
  x.assertLive(); w.assertLive();
  const { rows, h, hv, vec4 } = dims(x, w);
  const y = Tensor.empty(x.shape);
  const rstd = Tensor.empty([rows]);
  launch(kernels.rmsnorm_forward, {
    params: { rows, hv, h, eps }, buffers: [x.binding(), w.binding(), y.binding(), rstd.binding()],
    workgroups: Math.ceil(rows / WG), variant: { vec4 },
  });
  if (needsGrad(x, w)) record('rmsnorm', [x, w], [y], { rstd });
  else rstd.dispose();
  return y;
}

/** Fused backward: dx (new tensor) and dw (accumulated into `dw` when beta = 1, else overwritten).
 *  `fused` runs another backward kernel with these buffers plus extra ones before dx (add_rmsnorm). */
export function rmsnormBackward(x: Tensor, w: Tensor, rstd: Tensor, dy: Tensor, dw: Tensor, beta: 0 | 1,
  fused?: { kernel: Kernel<RowWidth>; extra: Tensor[] }): Tensor {
  const { rows, h, hv, vec4 } = dims(x, w);
  const rpi = Math.max(1, Math.ceil(rows / TARGET_CHUNKS));
  const chunks = Math.ceil(rows / rpi);
  const dx = Tensor.empty(x.shape);
  const c = Tensor.empty([rows]);
  const part = Tensor.empty([chunks, h]);
  launch(kernels.rmsnorm_backward_dot, {
    params: { rows, hv, h }, buffers: [x, w, dy, rstd, c].map((t) => t.binding()), workgroups: Math.ceil(rows / WG), variant: { vec4 },
  });
  launch(fused?.kernel ?? kernels.rmsnorm_backward, {
    params: { rows, hv, h, rpi, chunks },
    buffers: [x, w, dy, rstd, c, ...(fused?.extra ?? []), dx, part].map((t) => t.binding()),
    workgroups: Math.ceil((chunks * hv) / WG), variant: { vec4 },
  });
  launch(kernels.rmsnorm_dw, {
    params: { hv, chunks, beta }, buffers: [part.binding(), dw.binding()], workgroups: Math.ceil(hv / WG), variant: { vec4 },
  });
  c.dispose(); part.dispose(); // later commands may reuse the buffers: WebGPU orders them after these
  return dx;
}

export const backward: Record<string, BackwardRule> = {
  rmsnorm: (node, [dy]) => {
    const [x, w] = node.inputs;
    const leaf = w.requiresGrad && !w.node;
    const dw = leaf ? gradSlot(w) : Tensor.empty(w.shape);
    const dx = rmsnormBackward(x, w, node.saved.rstd as Tensor, dy!, dw, leaf ? 1 : 0);
    if (!w.requiresGrad) dw.dispose();
    // A leaf weight got its gradient accumulated in place (undefined: nothing more to add).
    return [x.requiresGrad ? dx : null, leaf ? undefined : w.requiresGrad ? dw : null];
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
 *  kernels): x and dy read twice, dx out, rstd read twice, c out and in, w twice, dW partials out and in,
 *  dw read and written. The op's minimum would be 4·(3·rows·h + rows + 2·h): x, dy in, dx out. */
export const bench = {
  rmsnorm_forward: (rows: number, h: number) => ({ bytes: 4 * (2 * rows * h + h + rows) }),
  rmsnorm_backward: (rows: number, h: number) => {
    const chunks = Math.ceil(rows / Math.max(1, Math.ceil(rows / TARGET_CHUNKS)));
    return { bytes: 4 * (5 * rows * h + 4 * rows + 4 * h + 2 * chunks * h) };
  },
};
