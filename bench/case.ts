// What a kernel row of `npm run bench` is (a Case) and what cases share: MiniMind2-small training
// shapes (B 16, T 340, H 512, FFN 1408, V 6400, nh 8, nkv 2, hd 64), seeded inputs, and the check
// every case runs once before timing: the op's output on a slice against its float64 reference.
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import type { Sampling } from './harness.js';

export const B = 16, T = 340, N = B * T, H = 512, I = 1408, V = 6400, NH = 8, NKV = 2, HD = 64;

export interface Case {
  name: string;
  shape: string;
  /** Builds the inputs (inside the runner's scope; what outlives scopes goes in `held`, disposed after
   *  the row), validates the op once against its float64 reference, and returns the call to time. */
  setup: (held: { dispose(): void }[]) => Promise<() => void | Promise<void>>;
  /** Work per call: FLOPs (compute rows) or bytes actually moved by the timed pass (memory rows). */
  work: { flops?: number; bytes?: number };
  bound?: 'compute' | 'memory';
  sampling?: Sampling;
  /** A slow baseline, left out of --quick. */
  slow?: boolean;
  /** setup ran the timed call (or the same op) once already: no separate warm-up call. */
  warm?: boolean;
  /** Note the pool bytes one call adds at peak. */
  peak?: boolean;
  note?: string;
}

/** Seeded uniform values in [-scale, scale). */
export function host(shape: readonly number[], seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(shape.reduce((x, y) => x * y, 1)); // a plain loop: Float32Array.from(fn) took seconds at 35M
  for (let i = 0; i < a.length; i++) a[i] = (r() * 2 - 1) * scale;
  return a;
}

export function rand(shape: readonly number[], seed: number, scale = 1, grad = false): Tensor {
  return Tensor.fromArray(host(shape, seed, scale), shape, 'f32', grad);
}

/** The first n values of a float32 array, as float64 (reference inputs). */
export const f64 = (a: Float32Array, n = a.length) => Float64Array.from(a.subarray(0, n));

/** Throws unless every value of `want` matches `got` (its first want.length values) within 1e-3 of the largest |want|. */
export function compare(name: string, got: ArrayLike<number>, want: ArrayLike<number>, from = 0): void {
  let scale = 1e-30;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= 1e-3 * scale)) throw new Error(`bench ${name}: output ${from + i} is ${got[i]}, reference ${want[i]}`);
  }
}

/** Runs `op` once in a scope of its own and compares the start of its output with the reference. */
export async function verify(name: string, op: () => Tensor, want: ArrayLike<number>): Promise<void> {
  beginScope();
  try {
    compare(name, (await op().readF32()).subarray(0, want.length), want);
  } finally {
    endScope();
  }
}

/** The call to time: `op` inside a scope, so its temporaries go back to the pool. */
export const scoped = (op: () => unknown) => () => { beginScope(); try { op(); } finally { endScope(); } };
