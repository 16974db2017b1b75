// Shared test helpers: seeded random data, float64 comparisons with tolerances scaled by
// magnitude (printing the first mismatches), central finite differences, and GPU setup.
import * as assert from 'uvu/assert';
import { initGpu } from '../runtime/device.js';
import { readSafetensors } from '../model/safetensors.js';
import '../kernels/index.js';

/** Acquire the device: a suite's before hook. uvu drops the error of a before hook that throws (test/run.ts
 *  counts the suite's tests as failed, without knowing why), so it is printed here. */
export async function setupGpu(): Promise<void> {
  try {
    await initGpu({ quiet: true });
  } catch (e) {
    console.error(`setupGpu: no GPU device for this suite: ${(e as Error).message}`);
    throw e;
  }
}

export { mulberry32 as rng } from '../runtime/random.js';
import { mulberry32 as rng } from '../runtime/random.js';

/** n values uniform in [-scale, scale), rounded to float32 so GPU and reference see the same inputs. */
export function randn(n: number, seed: number, scale = 1): Float64Array {
  const r = rng(seed);
  return Float64Array.from(Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale));
}

/** Assert |got − want| ≤ atol + rtol·|want| elementwise; reports NMSE and the first mismatches. */
export function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, rtol = 1e-5, atol = 1e-6): void {
  assert.is(got.length, want.length, `${what}: length`);
  const bad: string[] = [];
  let err = 0, ref = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    err += d * d; ref += want[i] * want[i];
    if (!(d <= atol + rtol * Math.abs(want[i]))) {
      if (bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]}`);
      else if (bad.length === 5) bad.push('...');
    }
  }
  if (bad.length) assert.unreachable(`${what}: mismatches (nmse ${(err / (ref || 1)).toExponential(2)}): ${bad.join(', ')}`);
}

/** One unit in the last place of a 16-bit float at |x| (float16: subnormal spacing 2^-24 below 2^-14). */
export function ulp16(x: number, dtype: 'bf16' | 'f16'): number {
  const e = x === 0 ? -Infinity : Math.floor(Math.log2(Math.abs(x)));
  return dtype === 'bf16' ? 2 ** (Math.max(e, -126) - 7) : 2 ** (Math.max(e, -14) - 10);
}

/** Assert |got − want| ≤ ulps·ulp16(want) elementwise (16-bit outputs against a rounded float64 reference). */
export function assertUlps16(got: ArrayLike<number>, want: ArrayLike<number>, dtype: 'bf16' | 'f16', what: string, ulps = 1): void {
  assert.is(got.length, want.length, `${what}: length`);
  const bad: string[] = [];
  let off = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    off++;
    if (!(Math.abs(got[i] - want[i]) <= ulps * ulp16(want[i], dtype)) && bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]}`);
  }
  if (bad.length) assert.unreachable(`${what}: more than ${ulps} ulp of ${dtype} off (${off} of ${want.length} differ): ${bad.join(', ')}`);
}

/** Central finite-difference gradient of a scalar float64 function f at x. */
export function numericGrad(f: (x: Float64Array) => number, x: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const old = x[i];
    x[i] = old + h; const fp = f(x);
    x[i] = old - h; const fm = f(x);
    x[i] = old;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Shapes that are not multiples of any workgroup or tile size. */
export const AWKWARD = [1, 7, 33, 65, 1025];

/** The F32/I32 tensors of a safetensors fixture, as float64 (for comparisons with references). */
export function readFixture(file: string): Record<string, { shape: number[]; data: Float64Array }> {
  return Object.fromEntries([...readSafetensors(file).tensors].map(([k, t]) => [k, { shape: t.shape, data: Float64Array.from(t.data) }]));
}
