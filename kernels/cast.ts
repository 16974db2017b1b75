// cast: a tensor to another float dtype (f32, bf16, f16), on the tape. To 16 bits rounds to nearest,
// ties to even (runtime/packed16_wgsl.ts, as torch's .to()); to f32 is exact; bf16 ↔ f16 goes
// through f32 (exact, then one rounding). The backward is the cast back of the upstream gradient:
// the gradient of a 16-bit tensor is 16-bit, as torch.autocast gives it. Runs the pack16 / unpack16
// kernels of kernels/packed16.ts. Memory-bound: 6 bytes moved per element.
import { launch } from '../runtime/kernel.js';
import { gpu } from '../runtime/device.js';
import { Tensor, needsGrad, record, is16, type DType, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { kernels } from './packed16.js';
import { bf16FromF32Bits, f16FromF32Bits, decode } from '../model/dtype.js';
import { N, I, Case, host, verify, scoped } from './case.js';

const WG = 256; // invocations per workgroup of pack16 / unpack16, one u32 word each
export type FloatType = 'f32' | DType16;
const isFloat = (d: DType): d is FloatType => d === 'f32' || is16(d);

/** Launches pack16 or unpack16 (f32 ↔ 16 bits), not recorded: in chunks whose float32 side fits a storage
 *  binding (MiniMind2-small's logits, 5440 × 6400 floats, are 139 MB > 128 MiB), each a whole number of
 *  workgroups' words, so every chunk starts on a 1 KiB boundary of the 16-bit side (a valid binding offset). */
function convert(x: Tensor, to: FloatType, bindingBytes: number): Tensor {
  const y = Tensor.empty(x.shape, to);
  const [f32, h16] = is16(to) ? [x, y] : [y, x];
  x.assertLive(); y.assertLive();
  const unit = 2 * WG, per = Math.floor(bindingBytes / 4 / unit) * unit; // elements per chunk
  if (per < unit) throw new Error(`cast: a binding of ${bindingBytes} bytes is smaller than one workgroup's ${4 * unit}`);
  const kernel = is16(to) ? kernels.pack16 : kernels.unpack16, format = (is16(to) ? to : x.dtype) as DType16;
  for (let e0 = 0; e0 < x.size; e0 += per) {
    const n = Math.min(per, x.size - e0), words = Math.ceil(n / 2);
    const whole = e0 === 0 && n === x.size; // one chunk: bind as the tensor does (guard regions stay visible)
    const wide = whole ? f32.binding() : { buffer: f32.buffer, offset: f32.offset + 4 * e0, size: 4 * n };
    const narrow = whole ? h16.binding() : { buffer: h16.buffer, offset: h16.offset + 2 * e0, size: 4 * words };
    launch(kernel, { params: { n }, buffers: is16(to) ? [wide, narrow] : [narrow, wide], workgroups: Math.ceil(words / WG), variant: { format } });
  }
  return y;
}

/** x as dtype `to` (a new tensor; x itself when it already is one, as torch's .to()). `bindingBytes`:
 *  pretend storage bindings hold at most that many bytes (tests of the chunking). */
export function cast(x: Tensor, to: FloatType, o: { bindingBytes?: number } = {}): Tensor {
  x.assertLive();
  if (!isFloat(x.dtype)) throw new Error(`cast: input [${x.shape}] is ${x.dtype}, not a float dtype`);
  if (x.dtype === to) return x;
  const bytes = o.bindingBytes ?? gpu().limits.maxStorageBufferBindingSize;
  const y = x.dtype === 'f32' || to === 'f32' ? convert(x, to, bytes) : convert(convert(x, 'f32', bytes), to, bytes);
  if (needsGrad(x)) record('cast', [x], [y], {}, []);
  return y;
}

export const backward: Record<string, BackwardRule> = {
  cast: (n, [g]) => [cast(g!, n.inputs[0].dtype as FloatType)],
};

/** float64 reference: x (float32 values) as dtype `to` stores them, back as numbers. */
export function reference(x: Float32Array, to: FloatType): Float64Array {
  if (to === 'f32') return Float64Array.from(x);
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length), conv = to === 'f16' ? f16FromF32Bits : bf16FromF32Bits;
  const h = Uint16Array.from(bits, conv);
  return Float64Array.from(decode(new Uint8Array(h.buffer), to === 'f16' ? 'float16' : 'bfloat16', 'cast reference'));
}

/** Bytes moved by a cast of n elements between f32 and 16 bits: 4 read and 2 written, or the reverse. */
export const bench = { cast: (n: number) => ({ bytes: 6 * n }) };

/** Bench rows at MiniMind2-small's FFN activations 5440 × 1408: f32 → bf16, f32 → f16 and bf16 → f32. */
export function cases(): Case[] {
  const n = N * I, k = 4096; // checked on the first k elements
  const xh = host([N, I], 41);
  const want16 = reference(xh.subarray(0, k), 'bf16');
  return [...(['bf16', 'f16'] as const).map((d): Case => ({
    name: 'cast', shape: `${N}x${I} f32→${d}`, work: bench.cast(n), bound: 'memory',
    setup: async () => {
      const x = Tensor.fromArray(xh, [N, I]), want = reference(xh.subarray(0, k), d);
      await verify(`cast f32→${d}`, () => cast(x, d), want);
      return scoped(() => cast(x, d));
    },
  })), {
    name: 'cast', shape: `${N}x${I} bf16→f32`, work: bench.cast(n), bound: 'memory',
    setup: async () => {
      const x = Tensor.fromArray(xh, [N, I], 'bf16');
      await verify('cast bf16→f32', () => cast(x, 'f32'), want16);
      return scoped(() => cast(x, 'f32'));
    },
  }];
}
