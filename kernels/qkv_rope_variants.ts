// qkv_rope's variants (kernels/qkv_rope.ts: one invocation per row, the fallback, or per vector of
// the half head), tuned for each direction; their trials and bench rows.
import { Tensor } from '../runtime/tensor.js';
import type { Tunable } from '../runtime/tuner.js';
import { launchQkv, bench, type QkvVariant } from './qkv_rope.js';
import { reference as ropeReference, ropeTable } from './rope.js';
import { B as BB, T as TT, NH, NKV, HD, Case, input, fixedTrial, tunedCase } from './case.js';

/** qkv [B, T, (nh + 2·nkv)·hd]. */
export interface QkvRopeShape { B: number; T: number; nh: number; nkv: number; hd: number }

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
    key: (s) => `nh${s.nh} nkv${s.nkv} hd${s.hd} rows${p2(s.B * s.T)}`,
    fallback: () => LAYOUTS[0], variants: () => LAYOUTS, label: (v) => v.layout,
    trial(s) {
      const { nh, nkv, hd } = s, W = (nh + 2 * nkv) * hd, o = { nh, nkv, hd, posOffset: POS, theta: THETA, rope: true };
      const tab = ropeTable(hd, THETA, POS + s.T);
      const n = s.T; // rows compared: the first sequence
      const rot = (x: Float64Array, heads: number, sgn: 1 | -1) => ropeReference(x, [1, n, heads, hd], POS, THETA, sgn, tab);
      if (fwd) {
        const qkv = input([s.B, s.T, W], 81);
        const outs = [nh, nkv, nkv].map((h) => Tensor.empty([s.B, s.T, h, hd]).keep());
        return fixedTrial<QkvVariant>({
          run: (v) => launchQkv(true, qkv.t, outs, o, v), outputs: outs,
          want: () => [rot(part(qkv.h, n, W, 0, nh, hd), nh, 1), rot(part(qkv.h, n, W, nh * hd, nkv, hd), nkv, 1), part(qkv.h, n, W, (nh + nkv) * hd, nkv, hd)],
          rtol: 1e-6, atol: 1e-6, owned: [qkv.t, ...outs],
        });
      }
      const grads = [nh, nkv, nkv].map((h, i) => input([s.B, s.T, h, hd], 82 + i));
      const dqkv = Tensor.empty([s.B, s.T, W]).keep();
      return fixedTrial<QkvVariant>({
        run: (v) => launchQkv(false, dqkv, grads.map((g) => g.t), o, v), outputs: [dqkv],
        want: () => {
          const [dq, dk] = [rot(Float64Array.from(grads[0].h.subarray(0, n * nh * hd)), nh, -1), rot(Float64Array.from(grads[1].h.subarray(0, n * nkv * hd)), nkv, -1)];
          return [Float64Array.from({ length: n * W }, (_, i) => {
            const t = Math.floor(i / W), c = i % W;
            return c < nh * hd ? dq[t * nh * hd + c] : c < (nh + nkv) * hd ? dk[t * nkv * hd + c - nh * hd] : grads[2].h[t * nkv * hd + c - (nh + nkv) * hd];
          })];
        },
        rtol: 1e-6, atol: 1e-6, owned: [dqkv, ...grads.map((g) => g.t)],
      });
    },
  };
}

export const qkvRopeTunables = { forward: family(true), backward: family(false) };

/** Bench rows at MiniMind2-small's qkv [16, 340, (8 + 2·2)·64]. */
export function cases(): Case[] {
  const s = { B: BB, T: TT, nh: NH, nkv: NKV, hd: HD }, W = (NH + 2 * NKV) * HD, shape = `${BB}x${TT}x${W}`, work = bench.qkv_rope(BB * TT * W);
  return [tunedCase(qkvRopeTunables.forward, s, { name: 'qkv_rope_forward', shape, work }), tunedCase(qkvRopeTunables.backward, s, { name: 'qkv_rope_backward', shape, work })];
}
