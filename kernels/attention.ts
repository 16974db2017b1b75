// attention: causal grouped-query softmax attention, FlashAttention-2 style (Dao 2023).
//   q [B,T,nh,hd], k/v [B,T,nkv,hd] (contiguous), out [B,T,nh,hd]; query head h reads kv head
//   g = floor(h / (nh/nkv)) by indexing (K/V are never repeated); scale 1/sqrt(hd); float32 softmax.
// Forward: one query row per invocation, hd-length registers, online softmax over blocks of keys
// (a block's scores first, one rescale per block). Saves only lse [B,nh,T] (natural log-sum-exp).
// Backward recomputes p = exp(s − lse), with D = rowsum(dO∘O):
//   pass 1 (attention_backward_dq), one query row per invocation: D, dq = scale·Σ_j p(dp − D)·k_j;
//   pass 2 (attention_backward_dkv), one key row per invocation, over the group's heads and the query
//   rows i ≥ j: dv = Σ p·dO_i, dk = scale·Σ p(dp − D)·q_i. No [B,nh,T,T] buffer exists anywhere.
// The WGSL and its two tilings (lavapipe subgroups, GPU loops) are in attention_flash.ts. The naive
// materialise-T×T version (attention_naive.ts) stays selectable as second reference and baseline.
// 16-bit q, k, v (mixed precision; the training path only), as torch's SDPA under autocast: scores,
// softmax and sums in float32 from the 16-bit values, o of their dtype (rounded once), lse float32;
// backward reads the 16-bit q, k, v, o, rounds dO to 16 bits (the gradient of a 16-bit o is 16-bit),
// and gives dq, dk, dv of their dtype, each the float32 sum rounded once (SDPA's bf16 gradients).
// The naive version, the decode path and the KV cache stay float32.
import { launch, copyBuffer } from '../runtime/kernel.js';
import { Tensor, needsGrad, record, is16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { tuner } from '../runtime/tuner.js';
import * as naive from './attention_naive.js';
import { cast, type FloatType } from './cast.js';
import { kernels, kernels16, type FlashTile } from './attention_flash.js';
import { attentionTunables, type AttentionShape } from './attention_variants.js';

export { reference } from './attention_naive.js';
export { kernels } from './attention_flash.js';
export type { FlashTile, AttentionShape };

export interface AttentionOptions {
  /** 'naive' materialises the [B,nh,T,T] probabilities (the second reference and bench baseline). */
  impl?: 'flash' | 'naive';
  /** Use this tiling for every flash kernel of the call instead of the tuner's picks (tests, bench). */
  tile?: FlashTile;
}

const LOG2E = Math.LOG2E;

/** [B,T,nh,hd] and [B,T,nkv,hd] → the shape numbers, with clear errors. */
function dims(q: Tensor, k: Tensor, v: Tensor, op: string) {
  if (q.shape.length !== 4 || k.shape.length !== 4) throw new Error(`${op}: q [${q.shape}] and k [${k.shape}] must be [B,T,heads,hd]`);
  const [B, T, nh, hd] = q.shape;
  const [Bk, , nkv, hdk] = k.shape;
  if (Bk !== B || hdk !== hd || String(k.shape) !== String(v.shape)) throw new Error(`${op}: q [${q.shape}], k [${k.shape}], v [${v.shape}] disagree`);
  if (nh % nkv) throw new Error(`${op}: ${nh} query heads are not a multiple of ${nkv} kv heads`);
  if (hd % 4) throw new Error(`${op}: head_dim ${hd} must be a multiple of 4 (vec4 rows)`);
  if (k.dtype !== q.dtype || v.dtype !== q.dtype || !(q.dtype === 'f32' || is16(q.dtype))) {
    throw new Error(`${op}: q, k, v are ${q.dtype}, ${k.dtype}, ${v.dtype}; want one float dtype`);
  }
  for (const t of [q, k, v]) t.assertLive();
  return { B, T, nh, nkv, hd, scale: 1 / Math.sqrt(hd) };
}

const shapeOf = (q: Tensor, k: Tensor, kvT: number): AttentionShape => {
  const [B, T, nh, hd] = q.shape;
  return { B, T, nh, nkv: k.shape[2], hd, kvT, ...(is16(q.dtype) ? { dtype: q.dtype } : {}) };
};

/** The kernels for row tensors `rows` (one dtype: float32, or 16-bit with the variant's format). */
function storage(op: string, rows: Tensor[]) {
  const d = rows[0].dtype;
  if (rows.some((t) => t.dtype !== d)) throw new Error(`${op}: row tensors of dtypes ${rows.map((t) => t.dtype)}; want one`);
  return is16(d) ? { k: kernels16, format: { format: d } } : { k: kernels, format: {} };
}

/** The forward kernel with tile t: o and lse for queries at positions qpos0.. over kvT cached keys. */
export function launchForward(t: FlashTile, q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, kvT: number, qpos0: number): void {
  const [B, T, nh, hd] = q.shape, nkv = k.shape[2], s = storage('attention_forward', [q, k, v, o]);
  launch(s.k.attention_forward, {
    params: { B, n4: hd / 4, T, nh, nkv, kvT, qpos0, scale2: LOG2E / Math.sqrt(hd) },
    buffers: [q.binding(), k.binding(), v.binding(), o.binding(), lse.binding()],
    workgroups: B * nh * Math.ceil(T / t.wg), variant: { hd, ...t, ...s.format },
  });
}

function forwardFlash(q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, kvT: number, qpos0: number, tile?: FlashTile): void {
  launchForward(tile ?? tuner().pick(attentionTunables.forward, shapeOf(q, k, kvT)), q, k, v, o, lse, kvT, qpos0);
}

/** Causal GQA attention over float32 or 16-bit q, k, v (o of their dtype); records 'attention'
 *  (saving lse; backward reads q, k, v, o) when gradients are needed. */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const { B, T, nh } = dims(q, k, v, 'attention');
  if (k.shape[1] !== T) throw new Error(`attention: q has ${T} positions, k/v ${k.shape[1]}`);
  if (opts.impl === 'naive') {
    if (q.dtype !== 'f32') throw new Error(`attention: the naive version is float32 only, q is ${q.dtype}`);
    return naive.attentionNaive(q, k, v);
  }
  const o = Tensor.empty(q.shape, q.dtype);
  const lse = Tensor.empty([B, nh, T]);
  forwardFlash(q, k, v, o, lse, T, 0, opts.tile);
  if (needsGrad(q, k, v)) record('attention', [q, k, v], [o], { lse, tile: opts.tile });
  else lse.dispose();
  return o;
}

/** One new query per sequence over a KV cache [B,maxT,nkv,hd] holding `len` positions (the last
 *  one is the current token's). No gradient. */
export function attentionDecode(q: Tensor, kCache: Tensor, vCache: Tensor, len: number, opts: Pick<AttentionOptions, 'tile'> = {}): Tensor {
  const { B, nh } = dims(q, kCache, vCache, 'attentionDecode');
  if (q.dtype !== 'f32') throw new Error(`attentionDecode: the KV-cache path is float32, q is ${q.dtype}`);
  if (q.shape[1] !== 1) throw new Error(`attentionDecode: q [${q.shape}] must hold one position`);
  if (!(len >= 1 && len <= kCache.shape[1])) throw new Error(`attentionDecode: len ${len} outside 1..${kCache.shape[1]}`);
  const o = Tensor.empty(q.shape);
  const lse = Tensor.empty([B, nh, 1]);
  forwardFlash(q, kCache, vCache, o, lse, kCache.shape[1], len - 1, opts.tile);
  lse.dispose();
  return o;
}

/** cache[b, pos..pos+t) = x[b] for x [B,t,nkv,hd] and cache [B,maxT,nkv,hd]: one copy per batch row. */
export function writeKV(cache: Tensor, x: Tensor, pos: number): void {
  const [B, maxT, nkv, hd] = cache.shape;
  const [Bx, t, nkvx, hdx] = x.shape;
  if (Bx !== B || nkvx !== nkv || hdx !== hd) throw new Error(`writeKV: x [${x.shape}] does not fit cache [${cache.shape}]`);
  if (pos < 0 || pos + t > maxT) throw new Error(`writeKV: positions ${pos}..${pos + t} outside the cache's ${maxT}`);
  if (cache.dtype !== 'f32' || x.dtype !== 'f32') throw new Error(`writeKV: the KV cache is float32, got ${x.dtype} into ${cache.dtype}`);
  cache.assertLive(); x.assertLive();
  const row = nkv * hd * 4; // bytes per position
  for (let b = 0; b < B; b++) copyBuffer(x.buffer, x.offset + b * t * row, cache.buffer, cache.offset + (b * maxT + pos) * row, t * row);
}

const backwardParams = (q: Tensor, k: Tensor) => {
  const [B, T, nh, hd] = q.shape;
  return { B, n4: hd / 4, T, nh, nkv: k.shape[2], scale: 1 / Math.sqrt(hd), scale2: LOG2E / Math.sqrt(hd) };
};

/** Backward pass 1 with tile t: dq and dsum = rowsum(dO∘O). */
export function launchBackwardDq(t: FlashTile, q: Tensor, k: Tensor, v: Tensor, o: Tensor, gy: Tensor, lse: Tensor, dq: Tensor, dsum: Tensor): void {
  const [B, T, nh, hd] = q.shape, s = storage('attention_backward_dq', [q, k, v, o, gy, dq]);
  launch(s.k.attention_backward_dq, {
    params: backwardParams(q, k), variant: { hd, ...t, ...s.format }, workgroups: B * nh * Math.ceil(T / t.wg),
    buffers: [q.binding(), k.binding(), v.binding(), o.binding(), gy.binding(), lse.binding(), dq.binding(), dsum.binding()],
  });
}

/** Backward pass 2 with tile t: dk and dv. */
export function launchBackwardDkv(t: FlashTile, q: Tensor, k: Tensor, v: Tensor, gy: Tensor, lse: Tensor, dsum: Tensor, dk: Tensor, dv: Tensor): void {
  const [B, T, , hd] = q.shape, nkv = k.shape[2], s = storage('attention_backward_dkv', [q, k, v, gy, dk, dv]);
  launch(s.k.attention_backward_dkv, {
    params: backwardParams(q, k), variant: { hd, ...t, ...s.format }, workgroups: B * nkv * Math.ceil(T / t.wg),
    buffers: [q.binding(), k.binding(), v.binding(), gy.binding(), lse.binding(), dsum.binding(), dk.binding(), dv.binding()],
  });
}

function backwardFlash(q: Tensor, k: Tensor, v: Tensor, o: Tensor, lse: Tensor, gy: Tensor, tile?: FlashTile): Tensor[] {
  const [B, T, nh] = q.shape, d = q.dtype;
  const g = cast(gy, d as FloatType); // gy itself when it has q's dtype
  const dq = Tensor.empty(q.shape, d), dk = Tensor.empty(k.shape, d), dv = Tensor.empty(v.shape, d);
  const dsum = Tensor.empty([B, nh, T]);
  const s = shapeOf(q, k, T);
  launchBackwardDq(tile ?? tuner().pick(attentionTunables.dq, s), q, k, v, o, g, lse, dq, dsum);
  launchBackwardDkv(tile ?? tuner().pick(attentionTunables.dkv, s), q, k, v, g, lse, dsum, dk, dv);
  dsum.dispose(); // later commands only may reuse it (queue order)
  if (g !== gy) g.dispose();
  return [dq, dk, dv];
}

export const backward: Record<string, BackwardRule> = {
  attention: (node, [gy]) => {
    const [q, k, v] = node.inputs;
    const s = node.saved as { lse?: Tensor; p?: Tensor[]; tile?: FlashTile };
    const grads = s.p ? naive.backwardNaive(q, k, v, node.outputs[0], s.p, gy!) : backwardFlash(q, k, v, node.outputs[0], s.lse!, gy!, s.tile);
    return grads.map((g, i) => (node.inputs[i].requiresGrad ? g : (g.dispose(), null)));
  },
};

/** Bench metadata. Causal forward: QKᵀ and PV over half the T×T pairs, 2 FLOPs each; backward
 *  nominally 2.5× the forward (our passes recompute QKᵀ and dO·Vᵀ twice: ~3.5× actually done).
 *  Bytes: each row tensor once (q, k, v, o forward; q, k, v, o, dO, dq, dk, dv backward) at e bytes an
 *  element (4, or 2 for 16 bits), lse (and dsum) float32. */
export const bench = {
  attention_forward: (B: number, T: number, nh: number, nkv: number, hd: number, e = 4) => ({
    flops: (4 * B * nh * T * T * hd) / 2, bytes: e * (2 * B * T * nh * hd + 2 * B * T * nkv * hd) + 4 * B * nh * T,
  }),
  attention_backward: (B: number, T: number, nh: number, nkv: number, hd: number, e = 4) => ({
    flops: (2.5 * 4 * B * nh * T * T * hd) / 2, bytes: e * (4 * B * T * nh * hd + 4 * B * T * nkv * hd) + 4 * 2 * B * nh * T,
  }),
};
