// AdamW with PyTorch 1.13 semantics (torch/optim/adamw.py, _single_tensor_adamw), the gradient
// first scaled by the clip factor of torch.nn.utils.clip_grad_norm_, read from the GPU norm buffer
// (no host round trip). Per element, in PyTorch's op order (all float32, scalars rounded to f32):
//   g = g · inv                                         (loss scaling: inv = 1/scale, exact; 1 in float32)
//   g = g · min(max_norm / (norm·inv + 1e-6), 1)       (only when a norm is given; norm of the scaled g)
//   p = p · (1 − lr·wd)
//   m = m·β1 + (1−β1)·g
//   v = v·β2 + ((1−β2)·g)·g
//   p = p + (−lr/bc1 · m) / (√v / √bc2 + eps),  bc1 = 1 − β1^t, bc2 = 1 − β2^t
// One multi-tensor dispatch updates up to S runs of elements (p, g, m, v bound per slot; see
// grad_norm.ts): S = (maxStorageBuffersPerShaderStage − 1) / 4, 3 on lavapipe, 1 on an 8-buffer
// adapter. Over a ParamStore a run is a whole binding-sized chunk of the flat buffers.
// Gradients are not modified (PyTorch's clip scales them in place; the trainer zeroes them next).
// Bytes per element: 28 (p read+write, g read, m and v read+write). FLOPs ≈ 14.
// With a working copy (mixed precision: kernels/param_copy16.ts) the step also writes every updated
// parameter rounded to bf16/f16 (nearest even), 2 more bytes per element: each invocation then
// updates pairs of elements and writes their packed word (`items` pairs, strided by the workgroup),
// into one binding of the copy per dispatch that spans its slots (so writable bindings never alias).
import { defineKernel, launch, clearBuffer, isPlanning, type Binding, type Kernel } from '../runtime/kernel.js';
import { Tensor, copyInto, type DType16 } from '../runtime/tensor.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import { ParamStore } from '../runtime/param_store.js';
import { acquireBuffer, releaseBuffer } from '../runtime/buffer.js';
import { groupSlots, slotsPerDispatch, slotSearch, slotSwitch, slotTable } from './grad_norm.js';
import { tuner } from '../runtime/tuner.js';
import { adamwTunable } from './optimizer_variants.js';

const WG = 256;

/** Elements per invocation, strided by the workgroup (adamw_variants.ts tunes it; 4 is the fallback). */
export interface AdamWVariant { items: number }
type Compiled = AdamWVariant & { S: number; copy?: DType16 };

const SCALARS = [['total', 'u32'], ['clip', 'u32'], ['maxNorm', 'f32'], ['inv', 'f32'], ['decay', 'f32'], ['b1', 'f32'], ['omb1', 'f32'],
  ['b2', 'f32'], ['omb2', 'f32'], ['bc2s', 'f32'], ['negStep', 'f32'], ['eps', 'f32']] as const;

const cache = new Map<string, Kernel<Compiled>>();

function adamwKernel(S: number, copy?: DType16): Kernel<Compiled> {
  const key = `${S}${copy ?? ''}`;
  let k = cache.get(key);
  if (k) return k;
  const slots = Array.from({ length: S }, (_, s) => s);
  k = defineKernel<Compiled>({
    name: 'adamw', workgroup: WG,
    // o_s: the word of the copy's binding c that holds slot s's element 0.
    params: [...SCALARS, ...slots.flatMap((s) => [[`n${s}`, 'u32'], [`w${s}`, 'u32'], ...(copy ? [[`o${s}`, 'u32'] as const] : [])] as const)],
    buffers: [['norm', 'read', 'f32'], ...(copy ? [['c', 'rw', 'u32'] as const] : []),
      ...slots.flatMap((s) => [[`p${s}`, 'rw', 'f32'], [`g${s}`, 'read', 'f32'], [`m${s}`, 'rw', 'f32'], [`v${s}`, 'rw', 'f32']] as const)],
    wgsl: (v, entry) => (copy ? withCopy(S, v.items, copy, entry) : `
${entry} {
  ${slotSearch(S)}
  var coef = 1.0;
  if (p.clip != 0u) { coef = min(p.maxNorm / (norm[0] * p.inv + 1e-6), 1.0); }
${slotSwitch(S, (s) => `      let base = (wg - p.w${s}) * ${WG * v.items}u + lid.x;
      for (var k = 0u; k < ${v.items}u; k++) {
        let i = base + k * ${WG}u;
        if (i < p.n${s}) {
          let g = g${s}[i] * p.inv * coef;
          let pd = p${s}[i] * p.decay;
          let m = m${s}[i] * p.b1 + p.omb1 * g;
          let v = v${s}[i] * p.b2 + (p.omb2 * g) * g;
          m${s}[i] = m;
          v${s}[i] = v;
          p${s}[i] = pd + (p.negStep * m) / (sqrt(v) / p.bc2s + p.eps);
        }
      }`)}
}
`),
  });
  cache.set(key, k);
  return k;
}

/** The kernel with a working copy: the same update per element (upd_s), two elements per word. */
function withCopy(S: number, items: number, copy: DType16, entry: string): string {
  const slots = Array.from({ length: S }, (_, s) => s);
  const pack = copy === 'f16' ? 'packF16' : 'packBf16';
  return `${slots.map((s) => `
fn upd${s}(i: u32, coef: f32) -> f32 {
  let g = g${s}[i] * p.inv * coef;
  let pd = p${s}[i] * p.decay;
  let m = m${s}[i] * p.b1 + p.omb1 * g;
  let v = v${s}[i] * p.b2 + (p.omb2 * g) * g;
  m${s}[i] = m;
  v${s}[i] = v;
  let np = pd + (p.negStep * m) / (sqrt(v) / p.bc2s + p.eps);
  p${s}[i] = np;
  return np;
}`).join('')}
${entry} {
  ${slotSearch(S)}
  var coef = 1.0;
  if (p.clip != 0u) { coef = min(p.maxNorm / (norm[0] * p.inv + 1e-6), 1.0); }
${slotSwitch(S, (s) => `      let base = (wg - p.w${s}) * ${2 * WG * items}u + 2u * lid.x;
      for (var k = 0u; k < ${items}u; k++) {
        let i = base + k * ${2 * WG}u;
        if (i < p.n${s}) {
          let lo = upd${s}(i, coef);
          var hi = 0.0; // an odd count's last word: high half 0, as pack16 writes it
          if (i + 1u < p.n${s}) { hi = upd${s}(i + 1u, coef); }
          c[p.o${s} + i / 2u] = ${pack}(lo, hi);
        }
      }`)}
}
${PACKED16_WGSL}`;
}

/** A 16-bit copy of the parameters that each step rewrites (the weights forward and backward read
 *  under mixed precision; kernels/param_copy16.ts). */
export interface WorkingCopy {
  dtype: DType16;
  /** Where the rounded elements of ps (parameters, or chunk views of a store's data) go: one binding
   *  of the copy and the word in it that holds each one's element 0; null when they do not fit one. */
  window(ps: Tensor[]): { binding: Binding; words: number[] } | null;
}

export interface AdamWOptions { lr: number; betas?: [number, number]; eps?: number; weightDecay?: number; copy?: WorkingCopy }
export interface AdamWState { step: number; m: Tensor[]; v: Tensor[] }

/** What one slot of a dispatch updates: parameter, gradient and moments, element for element. */
type Quad = [p: Tensor, g: Tensor, m: Tensor, v: Tensor];

export class AdamW {
  lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly params: Tensor[];
  /** Optimizer steps taken (PyTorch's state['step'], one count for all parameters). */
  private t = 0;
  /** Moments per parameter (views into mFlat/vFlat for a store). */
  private readonly m: Tensor[];
  private readonly v: Tensor[];
  private readonly store?: ParamStore;
  private readonly mFlat?: GPUBuffer;
  private readonly vFlat?: GPUBuffer;
  /** Bound in place of the norm when step() gets none. */
  private readonly noNorm: Tensor;
  private readonly copy?: WorkingCopy;

  /** Over a ParamStore the moments are laid out like the parameters and a step is one dispatch per
   *  three binding-sized runs of parameters that have gradients (one dispatch for MiniMind2-small);
   *  over a list of tensors, one dispatch per three tensors. */
  constructor(params: Tensor[] | ParamStore, opts: AdamWOptions) {
    this.lr = opts.lr;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.copy = opts.copy;
    // Moments: float32, zero-initialised, persistent (outlive every scope).
    if (params instanceof ParamStore) {
      if (params.frozen) throw new Error('AdamW: the parameter store is frozen (it has no gradients to step)');
      this.store = params;
      this.params = [...params.params.values()];
      this.mFlat = acquireBuffer(params.bytes);
      this.vFlat = acquireBuffer(params.bytes);
      clearBuffer(this.mFlat, params.bytes);
      clearBuffer(this.vFlat, params.bytes);
      this.m = this.params.map((p) => Tensor.view(this.mFlat!, p.offset, p.shape));
      this.v = this.params.map((p) => Tensor.view(this.vFlat!, p.offset, p.shape));
    } else {
      this.params = params;
      this.m = params.map((p) => Tensor.zeros(p.shape).keep());
      this.v = params.map((p) => Tensor.zeros(p.shape).keep());
    }
    this.noNorm = Tensor.zeros([1]).keep();
  }

  /** One step at learning rate `lr`, the gradients first clipped to `maxNorm` by the global norm
   *  `clipNorm` (from gradNorm), after unscaling by invScale (GradScaler.unscale_: gradients and
   *  their norm are of the scaled loss). Parameters without a gradient since the last zeroGrad are
   *  skipped, as PyTorch skips .grad None; the step count is shared, so a parameter skipped on some
   *  steps sees a later bias correction than PyTorch's per-parameter count would give. */
  step(lr: number = this.lr, clipNorm?: Tensor, maxNorm?: number, invScale = 1, variant?: AdamWVariant): void {
    if (clipNorm && maxNorm === undefined) throw new Error('AdamW.step: clipNorm given without maxNorm');
    if (clipNorm && clipNorm.size !== 1) throw new Error(`AdamW.step: clipNorm must be [1], got [${clipNorm.shape}]`);
    if (!isPlanning()) this.t++; // a planned step (runtime/kernel.ts plan) changes nothing
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    const scalars = {
      clip: clipNorm ? 1 : 0, maxNorm: maxNorm ?? 0, inv: invScale, decay: 1 - lr * this.weightDecay, b1, omb1: 1 - b1, b2, omb2: 1 - b2,
      bc2s: Math.sqrt(bc2), negStep: -lr / bc1, eps: this.eps,
    };
    const quads = this.quads(), copy = this.copy;
    const S = slotsPerDispatch(copy ? 2 : 1, 4);
    const v = variant ?? tuner().pick(adamwTunable, { n: quads.reduce((a, [p]) => a + p.size, 0) });
    const groups = copy ? copyGroups(quads, S, copy) : groupSlots(quads.length, S).map((gr) => ({ quads: gr.map((j) => quads[j]), copy: null }));
    for (const { quads: group, copy: win } of groups) {
      const { w, total } = slotTable(group.map(([p]) => p.size), (copy ? 2 : 1) * WG * v.items);
      const params: Record<string, number> = { total, ...scalars };
      group.forEach(([p], s) => { params[`n${s}`] = p.size; params[`w${s}`] = w[s]; });
      win?.words.forEach((o, s) => { params[`o${s}`] = o; });
      launch(adamwKernel(group.length, copy?.dtype), {
        params, workgroups: total, variant: { ...v, S: group.length, ...(copy ? { copy: copy.dtype } : {}) },
        buffers: [(clipNorm ?? this.noNorm).binding(), ...(win ? [win.binding] : []), ...group.flatMap((q) => q.map((t) => t.binding()))],
      });
    }
  }

  private quads(): Quad[] {
    const st = this.store;
    if (st) {
      return st.liveRanges().flatMap(([a, b]) => {
        const [p, g, m, v] = [st.data, st.grads, this.mFlat!, this.vFlat!].map((buf) => st.chunks(buf, a, b));
        return p.map((_, i): Quad => [p[i], g[i], m[i], v[i]]);
      });
    }
    const out: Quad[] = [];
    this.params.forEach((p, i) => {
      if (!p.hasGrad) return;
      const g = p.grad!;
      p.assertLive(); g.assertLive();
      if (g.size !== p.size) throw new Error(`AdamW.step: param ${i} [${p.shape}] has a gradient of shape [${g.shape}]`);
      out.push([p, g, this.m[i], this.v[i]]);
    });
    return out;
  }

  /** Zero every gradient in place (the buffers stay; matmul accumulates dW into them). */
  zeroGrad(): void {
    if (this.store) { this.store.zeroGrad(); return; }
    for (const p of this.params) {
      if (p.grad) clearBuffer(p.grad.buffer, p.grad.size * 4, p.grad.offset);
      p.hasGrad = false;
    }
  }

  /** Release the moments (the parameters belong to the caller). */
  dispose(): void {
    if (this.mFlat) { releaseBuffer(this.mFlat); releaseBuffer(this.vFlat!); } else for (const t of [...this.m, ...this.v]) t.dispose();
    this.noNorm.dispose();
  }

  /** The moments of one of this optimizer's parameters. */
  momentsOf(p: Tensor): { m: Tensor; v: Tensor } {
    const i = this.params.indexOf(p);
    if (i < 0) throw new Error(`AdamW.momentsOf: tensor [${p.shape}] is not one of this optimizer's parameters`);
    return { m: this.m[i], v: this.v[i] };
  }

  /** The live state: moment tensors (write into them to restore) and the step count. */
  state(): AdamWState {
    return { step: this.t, m: this.m, v: this.v };
  }

  /** Restore the step count, and the moments when given (copied into the live tensors). */
  loadState(s: { step: number; m?: Tensor[]; v?: Tensor[] }): void {
    if (!Number.isInteger(s.step) || s.step < 0) throw new Error(`AdamW.loadState: step must be an integer ≥ 0, got ${s.step}`);
    for (const [name, src, dst] of [['m', s.m, this.m], ['v', s.v, this.v]] as const) {
      if (!src) continue;
      if (src.length !== dst.length) throw new Error(`AdamW.loadState: ${src.length} ${name} tensors for ${dst.length} parameters`);
      src.forEach((t, i) => {
        if (t.size !== dst[i].size) throw new Error(`AdamW.loadState: ${name}[${i}] is [${t.shape}], parameter is [${dst[i].shape}]`);
        copyInto(dst[i], t);
      });
    }
    this.t = s.step;
  }
}

/** Consecutive quads in groups of at most S whose copies fit one binding of the working copy. */
function copyGroups(quads: Quad[], S: number, copy: WorkingCopy): { quads: Quad[]; copy: { binding: Binding; words: number[] } }[] {
  const out: { quads: Quad[]; copy: { binding: Binding; words: number[] } }[] = [];
  for (const q of quads) {
    const last = out.at(-1);
    const joined = last && last.quads.length < S ? copy.window([...last.quads, q].map(([p]) => p)) : null;
    if (last && joined) { last.quads.push(q); last.copy = joined; continue; }
    const alone = copy.window([q[0]]);
    if (!alone) throw new Error(`AdamW.step: the working copy of a tensor [${q[0].shape}] does not fit one binding`);
    out.push({ quads: [q], copy: alone });
  }
  return out;
}

export interface AdamWHyper { lr: number; b1: number; b2: number; eps: number; wd: number; step: number; clipCoef: number }

/** float64 reference of one step on one parameter, in place; clipCoef = min(max/(norm+1e-6), 1) or 1. */
export function reference(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, h: AdamWHyper): void {
  const bc1 = 1 - h.b1 ** h.step, bc2 = 1 - h.b2 ** h.step;
  for (let i = 0; i < p.length; i++) {
    const gi = g[i] * h.clipCoef;
    p[i] *= 1 - h.lr * h.wd;
    m[i] = m[i] * h.b1 + (1 - h.b1) * gi;
    v[i] = v[i] * h.b2 + (1 - h.b2) * gi * gi;
    p[i] -= (h.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps);
  }
}

/** Bench metadata for one step over n parameters. */
export const bench = { adamw: (n: number) => ({ bytes: 28 * n, flops: 14 * n }) };
