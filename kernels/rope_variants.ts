// rope's variants (kernels/rope.ts: one invocation per row, the fallback, or per vector of the half
// head), its trial and bench rows (forward and backward: the same kernel, the angle negated).
import { Tensor } from '../runtime/tensor.js';
import type { Tunable } from '../runtime/tuner.js';
import { launchRope, reference, ropeTable, bench, type RopeVariant } from './rope.js';
import { B, T, NH, HD, Case, input, fixedTrial, tunedCase } from './case.js';

/** x [B, T, nh, hd] as rows = B·T·nh rows of hd. */
export interface RopeShape { rows: number; T: number; nh: number; hd: number }

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const LAYOUTS: RopeVariant[] = [{ layout: 'row' }, { layout: 'elem' }];
const THETA = 1e6, POS = 3;

export const ropeTunable: Tunable<RopeShape, RopeVariant> = {
  name: 'rope', key: (s) => `hd${s.hd} rows${p2(s.rows)}`,
  fallback: () => LAYOUTS[0], variants: () => LAYOUTS, label: (v) => v.layout,
  trial(s) {
    const shape = [s.rows / (s.T * s.nh), s.T, s.nh, s.hd];
    const x = input(shape, 71), y = Tensor.empty(shape).keep();
    // Compared on the first sequence (at most 4096 rows of the reference).
    const n = Math.min(s.rows, s.T * s.nh) * s.hd;
    return fixedTrial<RopeVariant>({
      run: (v) => launchRope(x.t, y, POS, THETA, 1, v), outputs: [y],
      want: () => [reference(Float64Array.from(x.h.subarray(0, n)), [1, n / (s.nh * s.hd), s.nh, s.hd], POS, THETA, 1, ropeTable(s.hd, THETA, POS + s.T))],
      rtol: 1e-6, atol: 1e-6, owned: [x.t, y],
    });
  },
};

/** Bench rows at MiniMind2-small's q [16, 340, 8, 64]: forward and backward move the same bytes. */
export function cases(): Case[] {
  const s: RopeShape = { rows: B * T * NH, T, nh: NH, hd: HD }, shape = [B, T, NH, HD].join('x'), work = bench.rope(B * T * NH * HD);
  return [tunedCase(ropeTunable, s, { name: 'rope_forward', shape, work }), tunedCase(ropeTunable, s, { name: 'rope_backward', shape, work, note: 'the forward kernel with the angle negated' })];
}
