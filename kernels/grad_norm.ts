// grad_norm: the global L2 norm of many gradients, √(Σ_t Σ_i g_t[i]²), the total_norm of
// torch.nn.utils.clip_grad_norm_. WebGPU cannot index an array of buffers, so one dispatch binds up
// to S tensors ("slots", a multi-tensor launch like PyTorch's foreach kernels): each workgroup finds
// its slot from a per-slot first-workgroup table in the uniforms, and each invocation writes the sum
// of squares of its `items` elements, read as vec4 (scalar loads run at a third of copy speed on
// lavapipe; a binding always reaches the next vec4 boundary, the tail lanes are masked), into a
// shared partials buffer (n/items floats). A final single-workgroup
// dispatch reduces the partials in a fixed order and takes the root: deterministic, no atomics.
// Dispatches: ceil(tensors / S) + 1, S = maxStorageBuffersPerShaderStage − 1 (capped at 16);
// on lavapipe (16 buffers) a 74-tensor MiniMind2-small is 5 + 1. Bytes: 4·Σn read.
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { treeSum } from '../runtime/wgsl.js';
import { Tensor } from '../runtime/tensor.js';
import { gpu } from '../runtime/device.js';
import { tuner } from '../runtime/tuner.js';
import { gradNormTunable } from './optimizer_variants.js';

const WG = 256;
const MAX_SLOTS = 16; // uniform room: 64 words per dispatch

/** Elements per invocation (one partial each, a multiple of 4): 128 (the fallback) measured at copy
 *  speed on lavapipe; a GPU may want fewer per lane and more lanes (grad_norm_variants.ts). */
export interface GradNormVariant { items: number }

// ---- multi-tensor launches (shared with adamw.ts) -------------------------------------------

/** Tensors one dispatch can bind, given `fixed` other storage buffers and `perSlot` per tensor. */
export function slotsPerDispatch(fixed: number, perSlot: number): number {
  const max = gpu().limits.maxStorageBuffersPerShaderStage;
  const s = Math.min(MAX_SLOTS, Math.floor((max - fixed) / perSlot));
  if (s < 1) throw new Error(`kernels/grad_norm.ts: the adapter allows ${max} storage buffers per stage; need ${fixed + perSlot}`);
  return s;
}

/** Split indices 0..count−1 into consecutive groups of at most S. */
export function groupSlots(count: number, S: number): number[][] {
  return Array.from({ length: Math.ceil(count / S) }, (_, g) =>
    Array.from({ length: Math.min(S, count - g * S) }, (_, i) => g * S + i));
}

/** WGSL: `wg` (linear workgroup index) and `s` (its slot, from the increasing table p.w0..p.w{S−1});
 *  returns early past the last workgroup of a folded grid. */
export function slotSearch(S: number): string {
  const steps = Array.from({ length: S - 1 }, (_, i) => `if (wg >= p.w${i + 1}) { s = ${i + 1}u; }`).join(' ');
  return `let wg = wgIndex(wid, nwg);\n  if (wg >= p.total) { return; }\n  var s = 0u; ${steps}`;
}

/** WGSL `switch` over slots, the body generated per slot (buffer names differ per slot). */
export function slotSwitch(S: number, body: (s: number) => string): string {
  const cases = Array.from({ length: S }, (_, s) => `    case ${s}u: {\n${body(s)}\n    }`).join('\n');
  return `  switch s {\n${cases}\n    default: {}\n  }`;
}

/** First workgroup of each slot (w0 = 0) and the total, for `chunk` elements per workgroup. */
export function slotTable(sizes: number[], chunk: number): { w: number[]; total: number } {
  const w: number[] = [];
  let total = 0;
  for (const n of sizes) { w.push(total); total += Math.ceil(n / chunk); }
  return { w, total };
}

// ---- kernels ----------------------------------------------------------------------------------

type Compiled = GradNormVariant & { S: number };
const cache = new Map<number, Kernel<Compiled>>();

/** partials[pbase + wg·WG + lid] = Σ g_s[i]² over the `items` elements of slot s that invocation
 *  covers. No workgroup memory or barriers: on lavapipe a barrier tree made this pass 4× slower. */
function gradNormKernel(S: number): Kernel<Compiled> {
  let k = cache.get(S);
  if (k) return k;
  const slots = Array.from({ length: S }, (_, s) => s);
  k = defineKernel<Compiled>({
    name: 'grad_norm', workgroup: WG,
    params: [['total', 'u32'], ['pbase', 'u32'], ...slots.flatMap((s) => [[`n${s}`, 'u32'], [`w${s}`, 'u32']] as const)],
    buffers: [['partials', 'rw', 'f32'], ...slots.map((s) => [`g${s}`, 'read', 'vec4<f32>'] as const)],
    wgsl: (v, entry) => `
${entry} {
  ${slotSearch(S)}
  var a = vec4<f32>(0.0);
${slotSwitch(S, (s) => `      let base = (wg - p.w${s}) * ${(WG * v.items) / 4}u + lid.x; // vec4 index
      let full = p.n${s} / 4u;
      for (var k = 0u; k < ${v.items / 4}u; k++) {
        let i = base + k * ${WG}u;
        if (i < full) { let v = g${s}[i]; a += v * v; }
        else if (i == full && p.n${s} % 4u != 0u) { let v = select(vec4<f32>(0.0), g${s}[i], vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n${s} % 4u)); a += v * v; }
      }`)}
  partials[p.pbase + wg * ${WG}u + lid.x] = (a.x + a.y) + (a.z + a.w);
}
`,
  });
  cache.set(S, k);
  return k;
}

export const kernels = {
  /** out[0] = √(Σ partials), one workgroup, fixed order. */
  grad_norm_final: defineKernel({
    name: 'grad_norm_final', params: [['n', 'u32']], workgroup: WG,
    buffers: [['partials', 'read', 'f32'], ['out', 'rw', 'f32']],
    wgsl: (_, entry) => `
var<workgroup> acc: array<f32, ${WG}>;
${entry} {
  var t = 0.0;
  for (var i = lid.x; i < p.n; i += ${WG}u) { t += partials[i]; }
  acc[lid.x] = t;
  ${treeSum('acc', WG)}
  if (lid.x == 0u) { out[0] = sqrt(acc[0]); }
}
`,
  }),
};

/** Global L2 norm of `grads` as a [1] tensor on the GPU (read it, or pass it to AdamW.step).
 *  Null entries (parameters without a gradient) are skipped, as clip_grad_norm_ skips them.
 *  o.variant: default the tuner's pick; o.out: where the norm goes (default a new tensor). */
export function gradNorm(all: (Tensor | null)[], o: { variant?: GradNormVariant; out?: Tensor } = {}): Tensor {
  const grads = all.filter((g): g is Tensor => g !== null && g !== undefined);
  for (const g of grads) g.assertLive();
  const S = slotsPerDispatch(1, 1);
  const total = grads.reduce((a, g) => a + g.size, 0);
  const v = o.variant ?? tuner().pick(gradNormTunable, { n: total });
  const groups = groupSlots(grads.length, S).map((idx) => ({ idx, ...slotTable(idx.map((i) => grads[i].size), WG * v.items) }));
  const nPartials = groups.reduce((a, g) => a + g.total, 0) * WG;
  const partials = Tensor.empty([Math.max(1, nPartials)]);
  const out = o.out ?? Tensor.empty([1]);
  let pbase = 0;
  for (const g of groups) {
    const params: Record<string, number> = { total: g.total, pbase };
    g.idx.forEach((t, s) => { params[`n${s}`] = grads[t].size; params[`w${s}`] = g.w[s]; });
    launch(gradNormKernel(g.idx.length), {
      params, buffers: [partials.binding(), ...g.idx.map((t) => grads[t].binding())], workgroups: g.total, variant: { ...v, S: g.idx.length },
    });
    pbase += g.total * WG;
  }
  launch(kernels.grad_norm_final, { params: { n: nPartials }, buffers: [partials.binding(), out.binding()], workgroups: 1 });
  partials.dispose();
  return out;
}

/** float64 reference: √(Σ g²) over all tensors. */
export function reference(grads: ArrayLike<number>[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/** Bench metadata: every gradient element is read once. */
export const bench = { grad_norm: (elements: number) => ({ bytes: 4 * elements, flops: 2 * elements }) };
