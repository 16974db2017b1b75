// What a kernel row of `npm run bench` is (a Case, exported by each op's module and gathered by
// kernels/index.ts) and what cases and tuning trials share: MiniMind2-small training shapes (B 16,
// T 340, H 512, FFN 1408, V 6400, nh 8, nkv 2, hd 64), seeded inputs, and the comparisons with the
// float64 reference (on a slice for bench shapes, on everything for the tests' small shapes).
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import { tuner, recordNow, type Trial, type Tunable } from '../runtime/tuner.js';
import { readRange } from './matmul16_variants.js';

/** Per-case sampling (bench/harness.ts): fewer samples for calls of seconds, no warm-up call where
 *  the case already ran the call, 'wall' where host time is the point, the expected call time. */
export interface Sampling { minSamples?: number; maxTime?: number; warmup?: boolean; clock?: 'wall'; expectMs?: number }

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
  /** The variant(s) the timed call runs, set by setup (tunedCase, or the tuner's picks). */
  variant?: string;
  /** Set by setup when the tuner chose another variant than the hand-picked one: that one's call,
   *  timed right after the row's (bench/kernels.ts) so the two compare in the same moment. */
  handPicked?: { label: string; call: () => void };
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

/** The first element where |got − want| > atol + rtol·|want| (NaN never matches), described; null if none. */
export function mismatch(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number, at: (i: number) => number = (i) => i): string | null {
  if (got.length < want.length) return `${got.length} values for ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= atol + rtol * Math.abs(want[i]))) return `element ${at(i)}: ${got[i]} instead of ${want[i]}`;
  }
  return null;
}

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

/** A bench row for a tunable kernel family at one shape: the tuner's choice (tuned now if new),
 *  checked once against the reference, then timed; the note lists the candidates' times. */
export function tunedCase<S, V>(t: Tunable<S, V>, s: S, c: Omit<Case, 'setup' | 'variant'> & { variant?: V }): Case {
  const { variant, ...rest } = c;
  const k: Case = {
    ...rest,
    setup: async (held) => {
      const choice = variant === undefined ? await tuner().choose(t, s) : undefined;
      const v = variant ?? (choice!.variant as V);
      const trial = t.trial(s);
      held.push(trial);
      const bad = await trial.check(v);
      if (bad) throw new Error(`bench ${c.name} ${c.shape} (${t.label(v)}): ${bad}`);
      k.variant = `${t.label(v)}${choice ? ` (${choice.source})` : ''}`;
      const fb = t.fallback(s);
      if (choice && JSON.stringify(fb) !== JSON.stringify(v)) k.handPicked = { label: t.label(fb), call: () => trial.run(fb) };
      const timed = choice?.timings.map((x) => `${x.label} ${x.ms !== undefined ? x.ms.toFixed(2) : 'dropped'}`).join(', ');
      if (timed) k.note = [c.note, `candidates (ms): ${timed}`].filter(Boolean).join('; ');
      return () => trial.run(v);
    },
  };
  return k;
}

/** A trial over fixed inputs (runtime/tuner.ts Trial): `run` launches variant v; check(v) runs it,
 *  reads each output (16-bit ones decoded) and compares its first want[i].length values with the float64 reference
 *  (computed once, on the whole output for small shapes or a slice for large ones), within rtol and
 *  atol (one for all outputs, or one per output). */
export function fixedTrial<V>(o: {
  run: (v: V) => void; outputs: Tensor[]; want: () => ArrayLike<number>[]; rtol: number | number[]; atol: number | number[];
  /** Tensors to release with the trial (inputs and outputs). */
  owned: Tensor[];
  /** Called before each check's run: restore inputs the kernel overwrites. */
  reset?: () => void;
}): Trial<V> {
  let want: ArrayLike<number>[] | undefined;
  return {
    run: o.run,
    async check(v, exec = recordNow) {
      o.reset?.();
      await exec(() => o.run(v));
      want ??= o.want();
      for (const [i, t] of o.outputs.entries()) {
        const w = want[i];
        const at = (x: number | number[]) => (typeof x === 'number' ? x : x[i]);
        const bad = mismatch(await readRange(t, 0, w.length), w, at(o.rtol), at(o.atol));
        if (bad) return o.outputs.length > 1 ? `output ${i}, ${bad}` : bad;
      }
      return null;
    },
    dispose() { for (const t of o.owned) t.dispose(); },
  };
}

/** A persistent tensor of seeded values in [-scale, scale) and its host copy. */
export function input(shape: readonly number[], seed: number, scale = 1): { t: Tensor; h: Float32Array } {
  const h = host(shape, seed, scale);
  return { t: Tensor.fromArray(h, shape).keep(), h };
}
