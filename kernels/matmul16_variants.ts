// What matmul's tunable (kernels/matmul_variants.ts) adds for a 16-bit shape class: the native-f16
// twins of the variants, and the trial's 16-bit inputs, NaN-filled output and tolerance.
import { gpu } from '../runtime/device.js';
import { readBuffer } from '../runtime/kernel.js';
import { Tensor, is16 } from '../runtime/tensor.js';
import { decode } from '../model/dtype.js';
import { reference as castReference } from './cast.js';
import type { MatmulVariant } from './matmul.js';
import type { Storage16 } from './matmul_io.js';

/** With f16 operands on an adapter with shader-f16, each variant also as a native-f16 one (WGSL
 *  f16 loads and stores instead of packed words: kernels/matmul_io.ts). */
export function withNative(io: Storage16 | undefined, list: MatmulVariant[]): MatmulVariant[] {
  if (io?.ab !== 'f16' || !gpu().features.has('shader-f16')) return list;
  return [...list, ...list.map((v): MatmulVariant => ({ ...v, native: true }))];
}

/** x as the trial stores it: rounded to the operands' dtype (so the float64 reference sees the
 *  stored values, whose products are exact in float32). */
export const storedValues = (x: Float32Array, d: Storage16['ab'] | 'f32') => (d === 'f32' ? x : Float32Array.from(castReference(x, d)));

/** Words that fill C with NaN (a skipped tile shows): float32 NaN, or two 16-bit quiet NaNs. */
export function nanFill(c: Tensor): Uint32Array | Float32Array {
  if (c.dtype === 'f32') return new Float32Array(c.size).fill(NaN);
  return new Uint32Array(c.bytes / 4).fill(c.dtype === 'bf16' ? 0x7fc07fc0 : 0x7e007e00);
}

/** Elements [from, from + n) of a float tensor, as float32 (16-bit decoded, exact). */
export async function readRange(t: Tensor, from: number, n: number): Promise<Float32Array> {
  if (!is16(t.dtype)) return new Float32Array(await readBuffer(t.buffer, t.offset + 4 * from, 4 * n));
  const w0 = Math.floor(from / 2), w1 = Math.ceil((from + n) / 2);
  const raw = new Uint8Array(await readBuffer(t.buffer, t.offset + 4 * w0, 4 * (w1 - w0)));
  const all = decode(raw, t.dtype === 'bf16' ? 'bfloat16' : 'float16', 'readRange') as Float32Array;
  return all.subarray(from - 2 * w0, from - 2 * w0 + n);
}

/** Relative tolerance of an output stored in 16 bits: one ulp of the type (2^-7 of |x| for bf16's
 *  8 significant bits, 2^-10 for f16's 11): a float32-accurate sum rounded once is within it. */
export const ULP16 = { bf16: 2 ** -7, f16: 2 ** -10 } as const;
