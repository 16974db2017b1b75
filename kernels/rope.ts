// rope: rotary position embedding, rotate-half layout (NOT interleaved), on x [B, T, nh, hd]:
//   for i < hd/2:  out[i] = x[i]·cos − x[i+hd/2]·sin,   out[i+hd/2] = x[i+hd/2]·cos + x[i]·sin,
//   angle = (posOffset + t)·inv_freq_i,  inv_freq_i = theta^(−2i/hd).
// cos/sin come from a table built on the host exactly as MiniMind's precompute_freqs_cis does in
// float32 (Math.fround at each step), cached on the GPU per (hd, theta) and grown as positions
// demand. Backward is the transpose rotation (angle → −angle): nothing is saved but posOffset.
// Variants (rope_variants.ts): 'row', one invocation per row (b, t, head) looping over vec4s of the
// half when hd % 8 == 0, else scalars (on lavapipe an invocation per element spent its time on
// integer divisions: 37% of copy speed; per row ~100%+); 'elem', one invocation per vector of the
// half, with the half's length a compile-time constant (neighbouring lanes read neighbouring
// addresses: coalesced on a GPU, where one lane per row strides through memory).
import { defineKernel, launch } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { tuner } from '../runtime/tuner.js';
import { ropeTunable } from './rope_variants.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';

const WG = 64;

/** 'row' or 'elem' (see above); vec4: VT is vec4<f32> (hd % 8 == 0); hhv: half the head in VT units
 *  (compile-time in the element layout). */
export interface RopeVariant { layout: 'row' | 'elem' }
type Compiled = RopeVariant & { vec4: boolean; hhv: number };

export const kernels = {
  /** out = rotate(x, sgn·angle); table row pos = [cos(hd/2) | sin(hd/2)]. */
  rope: defineKernel<Compiled>({
    name: 'rope', workgroup: WG,
    params: [['rows', 'u32'], ['hhv', 'u32'], ['nh', 'u32'], ['T', 'u32'], ['pos0', 'u32'], ['sgn', 'f32']],
    buffers: [['x', 'read', 'VT'], ['tab', 'read', 'VT'], ['y', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
${v.layout === 'row' ? `  let row = wgIndex(wid, nwg) * ${WG}u + lid.x;  // row = (b·T + t)·nh + head
  if (row >= p.rows) { return; }` : `  let e = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (e >= p.rows * ${v.hhv}u) { return; }
  let row = e / ${v.hhv}u;`}
  let c0 = (p.pos0 + (row / p.nh) % p.T) * 2u * p.hhv;   // table row: cos (hhv) then sin (hhv)
  let a0 = row * 2u * p.hhv;                            // hhv = half head dim in VT units
  ${v.layout === 'row' ? 'for (var j = 0u; j < p.hhv; j++) {' : `{ let j = e % ${v.hhv}u;`}
    let c = tab[c0 + j];
    let s = p.sgn * tab[c0 + p.hhv + j];
    let x0 = x[a0 + j];
    let x1 = x[a0 + p.hhv + j];
    y[a0 + j] = x0 * c - x1 * s;
    y[a0 + p.hhv + j] = x1 * c + x0 * s;
  }
}
`,
  }),
};

/** YaRN's frequency scaling, as MiniMind's precompute_freqs_cis applies its rope_scaling (inference only:
 *  --inference_rope_scaling, model/config.ts yarnOf): f'_i = f_i·((1 − γ_i) + γ_i/factor), γ a linear ramp over
 *  the frequency indices between the rotation counts betaFast and betaSlow of the original context; cos and
 *  sin times attentionFactor. Only when maxPositions > originalMax, as there. */
export interface Yarn { factor: number; originalMax: number; betaFast: number; betaSlow: number; attentionFactor: number; maxPositions: number }

/** Host table [n, hd]: per position, cos of the hd/2 angles then their sin, in float32 like MiniMind:
 *  inv_freq = 1/(theta ** (arange(0, hd, 2).float()/hd)), YaRN-scaled if given; freqs = outer(t, inv_freq); cos, sin. */
export function ropeTable(hd: number, theta: number, n: number, yarn: Yarn | null = null): Float32Array {
  const f = Math.fround, half = hd / 2;
  let invFreq = Array.from({ length: half }, (_, i) => f(1 / f(f(theta) ** f((2 * i) / hd))));
  let scale = 1;
  if (yarn && yarn.maxPositions / yarn.originalMax > 1) {
    // The frequency index that turns b times over the original context (Python floats), then a float32 ramp.
    const dimOf = (b: number) => (hd * Math.log(yarn.originalMax / (b * 2 * Math.PI))) / (2 * Math.log(theta));
    const low = Math.max(Math.floor(dimOf(yarn.betaFast)), 0), high = Math.min(Math.ceil(dimOf(yarn.betaSlow)), half - 1);
    const ramp = (i: number) => Math.min(Math.max(f(f(i - low) / f(Math.max(high - low, 0.001))), 0), 1);
    invFreq = invFreq.map((v, i) => f(v * f(f(1 - ramp(i)) + f(ramp(i) / yarn.factor))));
    scale = yarn.attentionFactor;
  }
  const tab = new Float32Array(n * hd);
  for (let t = 0; t < n; t++) {
    for (let i = 0; i < half; i++) {
      const a = f(t * invFreq[i]);
      tab[t * hd + i] = f(Math.cos(a)) * scale;
      tab[t * hd + half + i] = f(Math.sin(a)) * scale;
    }
  }
  return tab;
}

/** GPU tables per (hd, theta, yarn), grown to the next power of two ≥ the positions needed. */
const tables = new Map<string, { tab: Tensor; n: number }>();

export function ropeTableTensor(hd: number, theta: number, need: number, yarn: Yarn | null = null): Tensor {
  const key = `${hd}|${theta}|${yarn ? JSON.stringify(yarn) : ''}`;
  const old = tables.get(key);
  if (old && old.n >= need && !old.tab.disposed) return old.tab;
  const n = Math.max(512, 2 ** Math.ceil(Math.log2(need)));
  const tab = Tensor.fromArray(ropeTable(hd, theta, n, yarn), [n, hd]).keep();
  // Safe while earlier dispatches still read it: the pool hands the buffer out only to later commands.
  old?.tab.dispose();
  tables.set(key, { tab, n });
  return tab;
}

/** y = x rotated by sgn·angle with variant v (default the tuner's pick), x [B, T, nh, hd]. */
export function launchRope(x: Tensor, y: Tensor, posOffset: number, theta: number, sgn: 1 | -1, v?: RopeVariant, yarn: Yarn | null = null): void {
  const [, T, nh, hd] = x.shape;
  const vec4 = hd % 8 === 0;
  const hhv = vec4 ? hd / 8 : hd / 2;
  const rows = x.size / hd;
  const layout = v ?? tuner().pick(ropeTunable, { rows, T, nh, hd });
  const tab = ropeTableTensor(hd, theta, posOffset + T, yarn);
  launch(kernels.rope, {
    params: { rows, hhv, nh, T, pos0: posOffset, sgn }, buffers: [x.binding(), tab.binding(), y.binding()],
    workgroups: Math.ceil((layout.layout === 'row' ? rows : rows * hhv) / WG), variant: { ...layout, vec4, hhv: layout.layout === 'row' ? 0 : hhv },
  });
}

/** Rotate x [B, T, nh, hd] (hd even) by the angles of positions posOffset + t (YaRN-scaled if given). */
export function rope(x: Tensor, posOffset: number, theta: number, yarn: Yarn | null = null): Tensor {
  x.assertLive();
  if (x.shape.length !== 4 || x.shape[3] % 2 !== 0) throw new Error(`rope: x must be [B, T, nh, hd] with hd even, got [${x.shape}]`);
  if (!Number.isInteger(posOffset) || posOffset < 0) throw new Error(`rope: posOffset must be an integer ≥ 0, got ${posOffset}`);
  const y = Tensor.empty(x.shape);
  launchRope(x, y, posOffset, theta, 1, undefined, yarn);
  if (needsGrad(x)) record('rope', [x], [y], { posOffset, theta, yarn }, []);
  return y;
}

export const backward: Record<string, BackwardRule> = {
  rope: (node, [dy]) => {
    const dx = Tensor.empty(dy!.shape);
    launchRope(dy!.reshape(node.inputs[0].shape), dx, node.saved.posOffset as number, node.saved.theta as number, -1, undefined, node.saved.yarn as Yarn | null);
    return [dx];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

/** Rotation of x [B, T, nh, hd] by sgn·angle; angles in float64 unless a float32 `tab` (ropeTable) is given. */
export function reference(x: Float64Array, shape: readonly number[], posOffset: number, theta: number,
  sgn: 1 | -1 = 1, tab?: Float32Array): Float64Array {
  const [, T, nh, hd] = shape, half = hd / 2;
  const y = new Float64Array(x.length);
  for (let row = 0; row < x.length / hd; row++) {
    const pos = posOffset + (Math.floor(row / nh) % T);
    for (let i = 0; i < half; i++) {
      const ang = pos * theta ** ((-2 * i) / hd);
      const c = tab ? tab[pos * hd + i] : Math.cos(ang);
      const s = sgn * (tab ? tab[pos * hd + half + i] : Math.sin(ang));
      const a = row * hd + i;
      y[a] = x[a] * c - x[a + half] * s;
      y[a + half] = x[a + half] * c + x[a] * s;
    }
  }
  return y;
}

/** Bench metadata: x read and y written (the table is small and stays in cache). */
export const bench = { rope: (size: number) => ({ bytes: 8 * size }) };
