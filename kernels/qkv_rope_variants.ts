// qkv_rope's variants (kernels/qkv_rope.ts: one invocation per row, the fallback, or per vector of
// the half head), tuned for each direction and storage; their trials and bench rows.
import { Tensor, type DType16 } from '../runtime/tensor.js';
import type { Tunable } from '../runtime/tuner.js';
import { launchQkv, bench, type QkvVariant } from './qkv_rope.js';
import { reference as ropeReference, ropeTable } from './rope.js';
import { reference as castReference } from './cast.js';
import { ULP16 } from './matmul16_variants.js';
import { B as BB, T as TT, NH, NKV, HD, Case, host, fixedTrial, tunedCase } from './case.js';

/** qkv [B, T, (nh + 2·nkv)·hd]; dtype: 16-bit storage of qkv, q, k, v and their gradients (absent: float32). */
export interface QkvRopeShape { B: number; T: number; nh: number; nkv: number; hd: number; dtype?: DType16 }

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const LAYOUTS: QkvVariant[] = [{ layout: 'row' }, { layout: 'elem' }];
const THETA = 1e6, POS = 2;

/** The rows of head group [from, from + heads) of a packed [rows, W] array, as [1, rows, heads, hd] float64. */
function part(a: Float32Array, rows: number, W: number, from: number, heads: number, hd: number): Float64Array {
  return Float64Array.from({ length: rows * heads * hd }, (_, i) => a[Math.floor(i / (heads * hd)) * W + from + (i % (heads * hd))]);
}

function family(fwd: boolean): Tunable<QkvRopeShape, QkvVariant> {
  return {
    name: fwd ? 'qkv_rope_forward' : 'qkv_rope_backward',
    key: (s) => `nh${s.nh} nkv${s.nkv} hd${s.hd} rows${p2(s.B * s.T)}${s.dtype ? ` ${s.dtype}` : ''}`,
    fallback: () => LAYOUTS[0], variants: () => LAYOUTS, label: (v) => v.layout,
    trial(s) {
      const { nh, nkv, hd, dtype: d = 'f32' } = s, W = (nh + 2 * nkv) * hd, o = { nh, nkv, hd, posOffset: POS, theta: THETA, rope: true };
      const tab = ropeTable(hd, THETA, POS + s.T);
      const n = s.T; // rows compared: the first sequence
      const rot = (x: Float64Array, heads: number, sgn: 1 | -1) => ropeReference(x, [1, n, heads, hd], POS, THETA, sgn, tab);
      // 16 bits: inputs hold 16-bit values; rotated parts are the float64 result rounded to float32 then
      // to 16 bits, as stored, within 1 ulp of the 16-bit type (a float32 result near a rounding tie
      // may round the other way); copies are exact. float32: float32 round-off.
      const stored = (h: Float32Array) => (d === 'f32' ? h : Float32Array.from(castReference(h, d)));
      const round = (x: Float64Array) => (d === 'f32' ? x : castReference(Float32Array.from(x), d));
      const [rtol, atol] = d === 'f32' ? [1e-6, 1e-6] : [ULP16[d], 1e-6];
      const held = (shape: number[], seed: number) => {
        const h = stored(host(shape, seed));
        return { t: Tensor.fromArray(h, shape, d).keep(), h };
      };
      if (fwd) {
        const qkv = held([s.B, s.T, W], 81);
        const outs = [nh, nkv, nkv].map((h) => Tensor.empty([s.B, s.T, h, hd], d).keep());
        return fixedTrial<QkvVariant>({
          run: (v) => launchQkv(true, qkv.t, outs, o, v), outputs: outs,
          want: () => [round(rot(part(qkv.h, n, W, 0, nh, hd), nh, 1)), round(rot(part(qkv.h, n, W, nh * hd, nkv, hd), nkv, 1)), part(qkv.h, n, W, (nh + nkv) * hd, nkv, hd)],
          rtol, atol, owned: [qkv.t, ...outs],
        });
      }
      const grads = [nh, nkv, nkv].map((h, i) => held([s.B, s.T, h, hd], 82 + i));
      const dqkv = Tensor.empty([s.B, s.T, W], d).keep();
      return fixedTrial<QkvVariant>({
        run: (v) => launchQkv(false, dqkv, grads.map((g) => g.t), o, v), outputs: [dqkv],
        want: () => {
          const [dq, dk] = [rot(Float64Array.from(grads[0].h.subarray(0, n * nh * hd)), nh, -1), rot(Float64Array.from(grads[1].h.subarray(0, n * nkv * hd)), nkv, -1)];
          return [round(Float64Array.from({ length: n * W }, (_, i) => {
            const t = Math.floor(i / W), c = i % W;
            return c < nh * hd ? dq[t * nh * hd + c] : c < (nh + nkv) * hd ? dk[t * nkv * hd + c - nh * hd] : grads[2].h[t * nkv * hd + c - (nh + nkv) * hd];
          }))];
        },
        rtol, atol, owned: [dqkv, ...grads.map((g) => g.t)],
      });
    },
  };
}

export const qkvRopeTunables = { forward: family(true), backward: family(false) };

/** Bench rows at MiniMind2-small's qkv [16, 340, (8 + 2·2)·64], float32 and bfloat16 storage. */
export function cases(): Case[] {
  const W = (NH + 2 * NKV) * HD;
  return ([['qkv_rope_forward', qkvRopeTunables.forward], ['qkv_rope_backward', qkvRopeTunables.backward]] as const).flatMap(([name, t]) =>
    ([undefined, 'bf16'] as const).map((dtype) => tunedCase(t, { B: BB, T: TT, nh: NH, nkv: NKV, hd: HD, ...(dtype ? { dtype } : {}) },
      { name, shape: `${BB}x${TT}x${W}${dtype ? ` ${dtype}` : ''}`, work: bench.qkv_rope(BB * TT * W, dtype ? 2 : 4) })));
}
