// cross_entropy: MiniMind's shifted, masked loss. logits [B, T, V] at t predict labels [B, T] at
// t+1 (by indexing, no copy); ignore_index −100; mean over the batch's non-ignored tokens.
// Row (b, t = T−1) has no next label and is ignored. An all-ignored batch gives loss 0 and count 0,
// never NaN (the trainer reads count to skip the step). A label outside [0, V) other than −100 makes
// the loss NaN (loud, like PyTorch's error) and its row's gradient 0.
// When a gradient is needed, the forward is also the backward: one pass per row computes the
// log-sum-exp and writes dlogits = (softmax − onehot)/count IN PLACE OF THE LOGITS. The logits are
// consumed: crossEntropy must be their last use. The backward rule only scales dlogits by the upstream
// scalar (1/accumulation_steps), in place, in a kernel that exits at once when that scalar is 1.
// Dispatches: count (1 workgroup), row pass (one invocation per row, vec4 when V % 4 == 0; rows split
// into chunks under maxStorageBufferBindingSize: 5440×6400 floats is 139 MB > 128 MiB), loss
// reduction (1 workgroup, fixed order: deterministic).
// bf16 / f16 logits (mixed precision: the LM head's 16-bit output) take kernels/cross_entropy16.ts's row
// pass and backward: the same loss, and dlogits in the logits' dtype, written by the backward.
import { defineKernel, launch, type Binding } from '../runtime/kernel.js';
import { treeSum, vecType } from '../runtime/wgsl.js';
import { rowEnable, rowSize, type RowLayout } from './row_layout.js';
import { forwardWgsl, type ForwardCompiled } from './cross_entropy_wgsl.js';
import { tuner } from '../runtime/tuner.js';
import { crossEntropyTunable } from './cross_entropy_variants.js';
import { Tensor, needsGrad, record, is16, type DType, type DType16 } from '../runtime/tensor.js';
import { launchBackward16, launchForward16 } from './cross_entropy16.js';
import { reference as castReference } from './cast.js';
import { gpu } from '../runtime/device.js';
import type { BackwardRule } from '../runtime/autograd.js';

const WG = 64;
const RED = 256; // single-workgroup reductions
const IGNORE = -100;
const SCALE_GROUPS = 512; // workgroups of the backward's strided scale loop
/** The label row gr is trained on: labels[gr + 1] within the same sequence, else ignored (also
 *  kernels/cross_entropy16.ts). */
export const LABEL = `const IGNORE = ${IGNORE};
fn labelOf(gr: u32) -> i32 { if (gr % p.T + 1u < p.T) { return labels[gr + 1u]; } return IGNORE; }`;
/** Tree sum of red[] over one workgroup of ${RED}; the total ends in red[0]. */
const TREE = treeSum('red', RED);

export const kernels = {
  /** count[0] = number of rows with a label (float, exact below 2^24). */
  cross_entropy_count: defineKernel({
    name: 'cross_entropy_count', params: [['rows', 'u32'], ['T', 'u32']], workgroup: RED,
    buffers: [['labels', 'read', 'i32'], ['count', 'rw', 'f32']],
    wgsl: (_, entry) => `${LABEL}
var<workgroup> red: array<u32, ${RED}>;
${entry} {
  var c = 0u;
  for (var r = lid.x; r < p.rows; r += ${RED}u) { if (labelOf(r) != ${IGNORE}) { c++; } }
  red[lid.x] = c;
  ${TREE}
  if (lid.x == 0u) { count[0] = f32(red[0]); }
}
`,
  }),
  /** Per row: losses[gr] = lse − x[label]; with variant grad, the row becomes (softmax − onehot)/count. */
  cross_entropy_forward: defineKernel<ForwardCompiled>({
    name: 'cross_entropy_forward', params: [['rows', 'u32'], ['r0', 'u32'], ['T', 'u32'], ['V', 'u32'], ['vv', 'u32']],
    workgroup: (v) => rowSize(v, WG), enable: rowEnable,
    buffers: [['logits', 'rw', 'VT'], ['labels', 'read', 'i32'], ['count', 'read', 'f32'], ['losses', 'rw', 'f32']],
    wgsl: (v, entry) => forwardWgsl(v, entry, LABEL, '1.0 / max(count[0], 1.0)'),
  }),
  /** loss[0] = Σ losses / max(count, 1), summed in a fixed order. */
  cross_entropy_loss: defineKernel({
    name: 'cross_entropy_loss', params: [['rows', 'u32']], workgroup: RED,
    buffers: [['losses', 'read', 'f32'], ['count', 'read', 'f32'], ['loss', 'rw', 'f32']],
    wgsl: (_, entry) => `var<workgroup> red: array<f32, ${RED}>;
${entry} {
  var t = 0.0;
  for (var r = lid.x; r < p.rows; r += ${RED}u) { t += losses[r]; }
  red[lid.x] = t;
  ${TREE}
  if (lid.x == 0u) { loss[0] = red[0] / max(count[0], 1.0); }
}
`,
  }),
  /** Backward: d *= g[0] in place, skipped when g[0] == 1 (the usual case: no accumulation). A fixed
   *  grid with a strided loop, so the skip costs a few hundred invocations, not one per element. */
  cross_entropy_backward: defineKernel<{ vec4: boolean }>({
    name: 'cross_entropy_backward', params: [['n', 'u32'], ['stride', 'u32']], workgroup: RED,
    buffers: [['g', 'read', 'f32'], ['d', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let s = g[0];
  if (s == 1.0) { return; }
  for (var i = wgIndex(wid, nwg) * ${RED}u + lid.x; i < p.n; i += p.stride) { d[i] = d[i] * s; }
}
`,
  }),
};

/** Row ranges whose logits (`dtype`) fit one storage binding (`bindingBytes`: the adapter's limit unless
 *  given, for tests); rows per chunk a multiple of 64 whose bytes are a multiple of the binding offset
 *  alignment (float32: always; 16-bit rows of an odd V: 128 rows, a whole number of words).
 *  Also logprob's (kernels/logprob.ts). */
export function chunks(rows: number, V: number, dtype: DType = 'f32', bindingBytes?: number): { r0: number; n: number }[] {
  const { maxStorageBufferBindingSize, minStorageBufferOffsetAlignment } = gpu().limits;
  const rowBytes = is16(dtype) ? 2 * V : 4 * V, align = Math.max(4, minStorageBufferOffsetAlignment);
  let unit = 64;
  while ((unit * rowBytes) % align) unit *= 2;
  const per = Math.floor((bindingBytes ?? maxStorageBufferBindingSize) / rowBytes / unit) * unit;
  if (per === 0) throw new Error(`vocab ${V} too large for one storage binding`);
  const out = [];
  for (let r0 = 0; r0 < rows; r0 += per) out.push({ r0, n: Math.min(per, rows - r0) });
  return out;
}
/** The binding of one chunk's rows of the logits [rows, V] (16-bit: the words that hold them). */
export const slice = (t: Tensor, V: number, c: { r0: number; n: number }): Binding => (is16(t.dtype)
  ? { buffer: t.buffer, offset: t.offset + c.r0 * V * 2, size: 4 * Math.ceil((c.n * V) / 2) }
  : { buffer: t.buffer, offset: t.offset + c.r0 * V * 4, size: c.n * V * 4 });

/** The per-row pass with layout v over the logits [rows, V] (in chunks that fit a binding): losses,
 *  and with grad dlogits in place of the logits. */
export function launchForward(v: RowLayout, logits: Tensor, labels: Tensor, count: Tensor, losses: Tensor, grad: boolean, bindingBytes?: number): void {
  const V = logits.shape.at(-1)!, rows = logits.size / V, T = labels.shape.at(-1)!, vec4 = V % 4 === 0;
  for (const c of chunks(rows, V, 'f32', bindingBytes)) {
    launch(kernels.cross_entropy_forward, {
      params: { rows: c.n, r0: c.r0, T, V, vv: vec4 ? V / 4 : V },
      buffers: [slice(logits, V, c), labels.binding(), count.binding(), losses.binding()],
      workgroups: v.rows === 'wg' ? c.n : Math.ceil(c.n / WG), variant: { ...v, vec4, grad },
    });
  }
}

/** Shifted masked cross-entropy over logits [B, T, V] (f32, or bf16/f16: kernels/cross_entropy16.ts).
 *  loss [1] (mean over counted tokens, 0 if none), count [1] (f32). When gradients are recorded, the
 *  logits are overwritten with dlogits (float32 logits: here; 16-bit: by the backward, in their dtype):
 *  this must be their last use. `bindingBytes`: pretend storage bindings hold at most that many bytes
 *  (tests of the chunking). */
export function crossEntropy(logits: Tensor, labels: Tensor, o: { bindingBytes?: number } = {}): { loss: Tensor; count: Tensor } {
  logits.assertLive(); labels.assertLive();
  if (logits.shape.length !== 3) throw new Error(`cross_entropy: logits must be [B, T, V], got [${logits.shape}]`);
  if (logits.dtype !== 'f32' && !is16(logits.dtype)) throw new Error(`cross_entropy: logits are ${logits.dtype}, not a float dtype`);
  const [B, T, V] = logits.shape;
  if (labels.dtype !== 'i32' || labels.shape.length !== 2 || labels.shape[0] !== B || labels.shape[1] !== T) {
    throw new Error(`cross_entropy: labels must be i32 [${B}, ${T}], got ${labels.dtype} [${labels.shape}]`);
  }
  const rows = B * T, grad = needsGrad(logits), half = is16(logits.dtype);
  const count = Tensor.empty([1]), loss = Tensor.empty([1]), losses = Tensor.empty([rows]);
  launch(kernels.cross_entropy_count, { params: { rows, T }, buffers: [labels.binding(), count.binding()], workgroups: 1 });
  const shape = { rows, T, V, grad, ...(half ? { dtype: logits.dtype as DType16 } : {}) };
  const lse = half ? Tensor.empty([rows]) : null, layout = tuner().pick(crossEntropyTunable, shape);
  if (lse) launchForward16(layout, logits, labels, losses, lse, o.bindingBytes);
  else launchForward(layout, logits, labels, count, losses, grad, o.bindingBytes);
  launch(kernels.cross_entropy_loss, { params: { rows }, buffers: [losses.binding(), count.binding(), loss.binding()], workgroups: 1 });
  losses.dispose();
  if (!grad) lse?.dispose();
  else if (lse) record('cross_entropy', [logits, labels], [loss, count], { lse, count, layout, bindingBytes: o.bindingBytes }, [logits, labels]);
  else record('cross_entropy', [logits, labels], [loss, count], { bindingBytes: o.bindingBytes }, [logits]);
  return { loss, count };
}

export const backward: Record<string, BackwardRule> = {
  cross_entropy: (node, [g]) => {
    const [logits, labels] = node.inputs;
    if (!g) return [null, null];
    const { lse, count, layout, bindingBytes } = node.saved as { lse?: Tensor; count?: Tensor; layout?: RowLayout; bindingBytes?: number };
    const V = logits.shape[2], vec4 = V % 4 === 0;
    if (lse) launchBackward16(layout!, logits, labels, lse, count!, g, bindingBytes);
    else {
      for (const c of chunks(logits.size / V, V, 'f32', bindingBytes)) {
        const n = (c.n * V) / (vec4 ? 4 : 1), groups = Math.min(SCALE_GROUPS, Math.ceil(n / RED));
        launch(kernels.cross_entropy_backward, {
          params: { n, stride: groups * RED }, buffers: [g.binding(), slice(logits, V, c)], workgroups: groups, variant: { vec4 },
        });
      }
    }
    // The logits buffer now holds the gradient; autograd releases it once the LM head has used it.
    return [logits.detach(), null];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

/** loss, count and dlogits (= d loss / d logits, upstream 1) of the shifted masked mean. */
export function reference(logits: Float64Array, labels: ArrayLike<number>, B: number, T: number, V: number) {
  const dlogits = new Float64Array(logits.length);
  let total = 0, count = 0;
  const lab = (r: number) => (r % T + 1 < T ? labels[r + 1] : IGNORE);
  for (let r = 0; r < B * T; r++) if (lab(r) !== IGNORE) count++;
  for (let r = 0; r < B * T; r++) {
    const y = lab(r);
    if (y === IGNORE) continue;
    const row = logits.subarray(r * V, (r + 1) * V);
    const m = Math.max(...row);
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    total += m + Math.log(s) - row[y];
    for (let i = 0; i < V; i++) dlogits[r * V + i] = (Math.exp(row[i] - m) / s - (i === y ? 1 : 0)) / count;
  }
  return { loss: count ? total / count : 0, count, dlogits };
}

/** The 16-bit semantics (kernels/cross_entropy16.ts) for logits whose float32 values are rounded to `to`:
 *  loss and count of those values, dlogits the float64 gradient for upstream g rounded to `to` (through
 *  float32, as kernels/cast.ts's reference rounds). */
export function reference16(logits: Float32Array, labels: ArrayLike<number>, B: number, T: number, V: number, to: DType16, g = 1) {
  const r = reference(castReference(logits, to), labels, B, T, V);
  return { ...r, dlogits: castReference(Float32Array.from(r.dlogits, (d) => g * d), to) };
}

/** Bench metadata: the fused pass reads the logits once and writes dlogits once (the row stays in cache). */
export const bench = {
  cross_entropy: (rows: number, V: number, grad = true) => ({ bytes: 4 * rows * V * (grad ? 2 : 1) + 12 * rows }),
};
