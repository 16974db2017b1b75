// What an op contributes to the one table in kernels/index.ts: its backward rules (registered with
// autograd), its kernel families with variants and the small shapes the tests force every variant
// on (test/variant_sweep.ts), and its bench rows (npm run bench).
import type { BackwardRule } from '../runtime/autograd.js';
import type { Tunable } from '../runtime/tuner.js';
import type { Case } from './case.js';

/** A kernel family and the shapes the variant sweep checks every one of its variants on. */
export interface Sweep { tunable: Tunable<unknown, unknown>; shapes: unknown[] }
export const sweep = <S, V>(tunable: Tunable<S, V>, shapes: S[]): Sweep => ({ tunable: tunable as Tunable<unknown, unknown>, shapes });

export interface Op {
  name: string;
  backward?: Record<string, BackwardRule>;
  /** Called when needed (modules of one op may import each other). */
  sweeps?: () => Sweep[];
  cases?: () => Case[];
}
