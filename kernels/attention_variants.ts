// attention's variants: three kernel families (forward, backward dq, backward dk/dv), each tuned on
// its own, their synthetic trials, and the bench rows. Tilings (attention_flash.ts): sg, subgroup
// broadcasts with one subgroup of fixed size S per workgroup (CPU adapters: lavapipe's S = 8), bc
// keys per unrolled step; loop, wg query rows per workgroup and blocks of bc keys, each lane reading
// the key rows itself (a GPU serves that from its cache). The fallbacks are the hand-picked ones:
// lavapipe sg with bc = 4 (as fast as 8 at T = 340 and a shorter compile), other CPU adapters loop
// 8×4, GPUs loop 64 rows × 16 keys.
import { gpu } from '../runtime/device.js';
import { Tensor, beginScope, endScope, type DType16 } from '../runtime/tensor.js';
import { backward as autogradBackward } from '../runtime/autograd.js';
import { unsupported } from '../runtime/kernel.js';
import { recordNow, type Trial, type Tunable } from '../runtime/tuner.js';
import { kernels, type FlashTile } from './attention_flash.js';
import { attention, launchForward, launchBackwardDq, launchBackwardDkv, reference, bench } from './attention.js';
import { reference as castReference } from './cast.js';
import { ULP16, readRange, storedValues } from './matmul16_variants.js';
import { NH, NKV, HD, B as BB, T as TT, Case, host, f64, compare, scoped, mismatch, tunedCase } from './case.js';

/** One attention call: q [B,T,nh,hd] at positions kvT−T.. over kvT keys/values [B,kvT,nkv,hd];
 *  dtype: 16-bit storage of q, k, v, o, dO, dq, dk, dv (absent: float32). */
export interface AttentionShape { B: number; T: number; nh: number; nkv: number; hd: number; kvT: number; dtype?: DType16 }

/** The adapter's subgroup size when it is fixed (the sg body needs one subgroup per workgroup). */
function fixedSubgroup(): number | undefined {
  const { features, adapter } = gpu();
  const { subgroupMinSize: lo, subgroupMaxSize: hi } = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return features.has('subgroups') && lo && lo === hi ? lo : undefined;
}

function fallback(): FlashTile {
  const S = fixedSubgroup(), { isSoftware } = gpu();
  if (isSoftware && S) return { sg: true, wg: S, bc: Math.min(4, S) };
  return isSoftware ? { sg: false, wg: 8, bc: 4 } : { sg: false, wg: 64, bc: 16 };
}

function candidates(): FlashTile[] {
  const S = fixedSubgroup(), { isSoftware } = gpu();
  if (isSoftware && S) return [{ sg: true, wg: S, bc: Math.min(4, S) }, { sg: true, wg: S, bc: S }];
  if (isSoftware) return [{ sg: false, wg: 8, bc: 4 }, { sg: false, wg: 16, bc: 8 }, { sg: false, wg: 4, bc: 4 }];
  return [{ sg: false, wg: 64, bc: 16 }, { sg: false, wg: 32, bc: 16 }, { sg: false, wg: 64, bc: 32 }, { sg: false, wg: 128, bc: 16 }, { sg: false, wg: 64, bc: 8 }];
}

/** Every tiling that runs here: the candidates, the others' (GPU and CPU lists), odd ones for the tests. */
function variants(s: AttentionShape): FlashTile[] {
  const S = fixedSubgroup();
  const all = [fallback(), ...candidates(), { sg: false, wg: 8, bc: 4 }, { sg: false, wg: 64, bc: 16 }, { sg: false, wg: 4, bc: 3 }, { sg: false, wg: 32, bc: 16 },
    ...(S ? [{ sg: true, wg: S, bc: Math.min(4, S) }, { sg: true, wg: S, bc: S }] : [])];
  const unique = new Map(all.map((t) => [JSON.stringify(t), t]));
  return [...unique.values()].filter((t) => unsupported(kernels.attention_forward, { hd: s.hd, ...t }) === null);
}

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const label = (t: FlashTile) => `${t.sg ? 'sg' : 'loop'} ${t.wg}x${t.bc}`;
const key = (s: AttentionShape) => `hd${s.hd} r${s.nh / s.nkv} T${p2(s.T)} kv${p2(s.kvT)} bh${p2(s.B * s.nh)}${s.dtype ? ` ${s.dtype}` : ''}`;
/** Tuning times fewer batch rows (independent work) of a large call: about 2^22 query-key pairs per head. */
const tuningShape = (s: AttentionShape): AttentionShape => ({ ...s, B: Math.max(1, Math.min(s.B, Math.floor(2 ** 22 / (s.nh * s.T * s.kvT)))) });
const family = (name: string, trial: (s: AttentionShape) => Trial<FlashTile>): Tunable<AttentionShape, FlashTile> =>
  ({ name, key, fallback, candidates, variants, label, trial, tuningShape, cost: (s) => s.B * s.nh * s.T * s.kvT });

/** Inputs of a trial: q, k, v, the upstream gradient (scale 1), on the GPU (of the shape's dtype) and as
 *  float32 host copies of the stored values. */
function inputs(s: AttentionShape) {
  const d = s.dtype ?? 'f32', held = (shape: number[], seed: number) => storedValues(host(shape, seed), d);
  const qh = held([s.B, s.T, s.nh, s.hd], 41), kh = held([s.B, s.kvT, s.nkv, s.hd], 42), vh = held([s.B, s.kvT, s.nkv, s.hd], 43);
  const gh = held([s.B, s.T, s.nh, s.hd], 44);
  const up = (h: Float32Array, shape: number[]) => Tensor.fromArray(h, shape, d).keep();
  return {
    qh, kh, vh, gh,
    q: up(qh, [s.B, s.T, s.nh, s.hd]), k: up(kh, [s.B, s.kvT, s.nkv, s.hd]), v: up(vh, [s.B, s.kvT, s.nkv, s.hd]), gy: up(gh, [s.B, s.T, s.nh, s.hd]),
  };
}
/** Checks cover every batch row of small shapes and the first of large ones (rows are independent). */
const checkedBatch = (s: AttentionShape) => (s.B * s.T * s.nh * s.hd <= 1 << 16 ? s.B : 1);
/** A reference row tensor as stored (16 bits: the float64 values rounded to float32, then once to 16
 *  bits), and the relative tolerance of the rows: float32's, or one ulp of the 16-bit type (a float32
 *  result near a tie may round to the other neighbour). */
const asStored = (x: Float64Array, s: AttentionShape) => (s.dtype ? castReference(Float32Array.from(x), s.dtype) : x);
const rowTol = (s: AttentionShape, f32: number) => (s.dtype ? ULP16[s.dtype] : f32);

function forwardTrial(s: AttentionShape): Trial<FlashTile> {
  const x = inputs(s), o = Tensor.empty([s.B, s.T, s.nh, s.hd], s.dtype).keep(), lse = Tensor.empty([s.B, s.nh, s.T]).keep();
  const run = (t: FlashTile) => launchForward(t, x.q, x.k, x.v, o, lse, s.kvT, s.kvT - s.T);
  const nb = checkedBatch(s);
  let want: { out: Float64Array; lse: Float64Array } | undefined;
  return {
    run,
    async check(t, exec = recordNow) {
      await exec(() => run(t));
      want ??= reference.forward(f64(x.qh, nb * s.T * s.nh * s.hd), f64(x.kh, nb * s.kvT * s.nkv * s.hd), f64(x.vh, nb * s.kvT * s.nkv * s.hd), nb, s.T, s.nh, s.nkv, s.hd, s.kvT);
      return mismatch(await readRange(o, 0, want.out.length), asStored(want.out, s), rowTol(s, 2e-4), 2e-5)
        ?? mismatch((await lse.readF32()).subarray(0, want.lse.length), want.lse, 2e-5, 2e-5);
    },
    dispose() { for (const t of [x.q, x.k, x.v, x.gy, o, lse]) t.dispose(); },
  };
}

/** The backward passes' trials (training shapes: kvT = T): o, lse and dsum from the fallback tiles. */
function backwardTrial(pass: 'dq' | 'dkv') {
  return (s: AttentionShape): Trial<FlashTile> => {
    const x = inputs(s), sh = [s.B, s.T, s.nh, s.hd];
    const o = Tensor.empty(sh, s.dtype).keep(), lse = Tensor.empty([s.B, s.nh, s.T]).keep(), dsum = Tensor.empty([s.B, s.nh, s.T]).keep();
    const dq = Tensor.empty(sh, s.dtype).keep(), dk = Tensor.empty(x.k.shape, s.dtype).keep(), dv = Tensor.empty(x.v.shape, s.dtype).keep();
    launchForward(fallback(), x.q, x.k, x.v, o, lse, s.T, 0);
    launchBackwardDq(fallback(), x.q, x.k, x.v, o, x.gy, lse, dq, dsum);
    const run = (t: FlashTile) => (pass === 'dq' ? launchBackwardDq(t, x.q, x.k, x.v, o, x.gy, lse, dq, dsum)
      : launchBackwardDkv(t, x.q, x.k, x.v, x.gy, lse, dsum, dk, dv));
    const nb = checkedBatch(s), n = nb * s.T;
    let want: { dq: Float64Array; dk: Float64Array; dv: Float64Array } | undefined;
    return {
      run,
      async check(t, exec = recordNow) {
        await exec(() => run(t));
        if (!want) {
          // D reads o as stored: the fallback forward's o, 16-bit rounded (within its tolerance of the reference).
          const args = [f64(x.qh, n * s.nh * s.hd), f64(x.kh, n * s.nkv * s.hd), f64(x.vh, n * s.nkv * s.hd), f64(x.gh, n * s.nh * s.hd), nb, s.T, s.nh, s.nkv, s.hd] as const;
          want = reference.backward(...args, s.dtype ? Float64Array.from(await readRange(o, 0, n * s.nh * s.hd)) : undefined);
        }
        const part = async (g: Tensor, w: Float64Array) => mismatch(await readRange(g, 0, w.length), asStored(w, s), rowTol(s, 1e-3), 1e-4);
        return pass === 'dq' ? part(dq, want.dq) : (await part(dk, want.dk)) ?? part(dv, want.dv);
      },
      dispose() { for (const t of [x.q, x.k, x.v, x.gy, o, lse, dsum, dq, dk, dv]) t.dispose(); },
    };
  };
}

export const attentionTunables = {
  forward: family('attention_forward', forwardTrial),
  dq: family('attention_backward_dq', backwardTrial('dq')),
  dkv: family('attention_backward_dkv', backwardTrial('dkv')),
};

/** Throws unless `got` agrees with the reference `want` (first want.length values): float32 as compare()
 *  does; 16 bits within one ulp of the type of want as stored, or 1e-3 of the largest |want|. */
function agrees(name: string, got: Float32Array, want: Float64Array, d?: DType16): void {
  if (!d) return compare(name, got, want);
  const bad = mismatch(got, castReference(Float32Array.from(want), d), ULP16[d], 1e-3 * want.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
  if (bad) throw new Error(`bench ${name}: ${bad}`);
}

/** Bench rows at B16 T340 (training; float32 and bfloat16 beside it) and B2 T1024: each family at the
 *  tuner's choice, forward+backward through the tape (its picks), and the naive version (the baseline,
 *  float32 only; pool bytes at peak noted). Bytes: each row tensor once (bench.attention_*). */
export function cases(): Case[] {
  const out: Case[] = [];
  for (const [Bq, Tq] of [[BB, TT], [2, 1024]] as const) {
    const dtypes = Bq === BB ? [undefined, 'bf16' as const] : [undefined];
    const at = (dtype?: DType16) => ({
      s: { B: Bq, T: Tq, nh: NH, nkv: NKV, hd: HD, kvT: Tq, ...(dtype ? { dtype } : {}) } as AttentionShape,
      shape: `B${Bq} T${Tq} ${NH}/${NKV}×${HD}${dtype ? ` ${dtype}` : ''}`,
      f: bench.attention_forward(Bq, Tq, NH, NKV, HD, dtype ? 2 : 4), b: bench.attention_backward(Bq, Tq, NH, NKV, HD, dtype ? 2 : 4),
    });
    for (const dtype of dtypes) {
      const { s, shape, f } = at(dtype);
      out.push(tunedCase(attentionTunables.forward, s, { name: 'attention_forward', shape, bound: 'compute', work: f }));
    }
    for (const [fam, name] of [[attentionTunables.dq, 'attention_backward_dq'], [attentionTunables.dkv, 'attention_backward_dkv']] as const) {
      for (const dtype of dtypes) {
        const { s, shape, b } = at(dtype);
        out.push(tunedCase(fam, s, { name, shape, bound: 'compute', work: { flops: b.flops / 2, bytes: b.bytes / 2 }, note: 'half the backward FLOPs and bytes each (nominal)' }));
      }
    }
    for (const [impl, dtype] of [...dtypes.map((d) => ['flash', d] as const), ['naive', undefined] as const]) {
      const name = `attention${impl === 'naive' ? '_naive' : ''}_forward+backward`, { shape, f, b } = at(dtype), d = dtype ?? 'f32';
      out.push({
        name, shape, bound: 'compute', work: { flops: f.flops + b.flops, bytes: f.bytes + b.bytes }, slow: impl === 'naive', peak: true, warm: true,
        sampling: impl === 'naive' ? { minSamples: 2, maxTime: 0 } : undefined,
        setup: async (held) => {
          const stored = (shape: number[], seed: number) => storedValues(host(shape, seed), d);
          const [qh, kh, vh, gyh] = [stored([Bq, Tq, NH, HD], 4), stored([Bq, Tq, NKV, HD], 5), stored([Bq, Tq, NKV, HD], 6), stored([Bq, Tq, NH, HD], 7)];
          const [q, k, v] = [Tensor.fromArray(qh, [Bq, Tq, NH, HD], d, true), Tensor.fromArray(kh, [Bq, Tq, NKV, HD], d, true),
            Tensor.fromArray(vh, [Bq, Tq, NKV, HD], d, true)];
          const gy = Tensor.fromArray(gyh, [Bq, Tq, NH, HD], d);
          // 16 bits: each call's gradients replace the last (autograd's accumulation, add_into, is float32).
          const leaves = [q, k, v], drop = () => leaves.forEach((t) => { t.grad?.dispose(); t.grad = null; });
          const call = scoped(() => { if (dtype) drop(); autogradBackward(attention(q, k, v, { impl }), gy); });
          call();
          held.push({ dispose: drop });
          // Checked on the first sequence (batch element 0): the gradients of q and v, and the output.
          const [nq, nk] = [Tq * NH * HD, Tq * NKV * HD];
          const args = [f64(qh, nq), f64(kh, nk), f64(vh, nk)] as const;
          const want = reference.backward(...args, f64(gyh, nq), 1, Tq, NH, NKV, HD);
          agrees(`${name} dq`, (await q.grad!.readF32()).subarray(0, nq), want.dq, dtype);
          agrees(`${name} dv`, (await v.grad!.readF32()).subarray(0, nk), want.dv, dtype);
          const wantOut = reference.forward(...args, 1, Tq, NH, NKV, HD).out;
          beginScope();
          try { agrees(`${name} out`, (await attention(q, k, v, { impl }).readF32()).subarray(0, nq), wantOut, dtype); } finally { endScope(); }
          return call;
        },
      });
    }
  }
  return out;
}
