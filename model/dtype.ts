// Tensor data in weight files (spec §5): the tensor type .pth and safetensors share, element sizes,
// and the float16/bfloat16 codecs. Host byte order is assumed little-endian (x86, ARM), the order of both formats.

export type FloatDType = 'float32' | 'float16' | 'bfloat16';
export type IntDType = 'int32' | 'int64';
export type DType = FloatDType | IntDType;

/** A tensor read from a file: `data` is float32 (or int32 for integer dtypes, range-checked), row-major;
 *  `raw` holds the bytes as stored (dtype, little-endian, row-major; often a view into the file's bytes), for
 *  byte-exact comparisons. */
export type WeightTensor =
  | { dtype: FloatDType; shape: number[]; data: Float32Array; raw: Uint8Array }
  | { dtype: IntDType; shape: number[]; data: Int32Array; raw: Uint8Array };
export type FloatTensor = Extract<WeightTensor, { dtype: FloatDType }>;
export const isFloatTensor = (t: WeightTensor): t is FloatTensor => t.data instanceof Float32Array;

/** What the writers take; `dtype` says how to store it when the writer is not told a dtype. */
export interface TensorIn { shape: readonly number[]; data: Float32Array | Int32Array; dtype?: DType }
export type TensorsIn = Map<string, TensorIn> | (TensorIn & { name: string })[];

export const ITEM_SIZE: Record<DType, number> = { float32: 4, float16: 2, bfloat16: 2, int32: 4, int64: 8 };

export const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Writers' input as a list, each checked: unique names, data length = numel(shape). */
export function tensorList(tensors: TensorsIn, where: string): (TensorIn & { name: string })[] {
  const list = tensors instanceof Map ? [...tensors].map(([name, t]) => ({ ...t, name })) : tensors;
  const seen = new Set<string>();
  for (const t of list) {
    if (seen.has(t.name)) throw new Error(`${where}: tensor ${t.name} given twice`);
    seen.add(t.name);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0) || numel(t.shape) !== t.data.length) {
      throw new Error(`${where}: tensor ${t.name} has ${t.data.length} values, shape [${t.shape}] wants ${numel(t.shape)}`);
    }
  }
  return list;
}

// ---- float16 / bfloat16 <-> float32, bit-exact ----
// The WGSL twins of the two conversions, with the same names and results, are in runtime/packed16_wgsl.ts.

/** float32 bits → float16 bits, round to nearest even; overflow → ±inf; NaN stays NaN (payload kept). */
export function f16FromF32Bits(u: number): number {
  const sign = (u >>> 16) & 0x8000, exp = (u >>> 23) & 0xff, mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? (mant >>> 13) || 0x200 : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 31) return sign | 0x7c00;
  if (e > 0) return sign | roundShift((e << 23) | mant, 13); // a mantissa carry bumps the exponent, up to inf
  if (e < -10) return sign; // below 2^-25, half the smallest subnormal: ±0
  return sign | roundShift(mant | 0x800000, 14 - e); // subnormal: value = m · 2^-24
}

/** m >>> s rounded to nearest, ties to even. */
function roundShift(m: number, s: number): number {
  const half = 1 << (s - 1), rem = m & ((1 << s) - 1), r = m >>> s;
  return rem > half || (rem === half && r & 1) ? r + 1 : r;
}

/** float32 bits → bfloat16 bits, round to nearest even; NaN stays NaN. */
export function bf16FromF32Bits(u: number): number {
  if ((u & 0x7f800000) === 0x7f800000 && u & 0x7fffff) return (u >>> 16) | 0x40;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | undefined;
/** All 65536 float16 values as float32 (exact), built on first use. */
export function f16ToF32Table(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536), bits = new Uint32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp === 0) t[h] = (sign ? -mant : mant) * 2 ** -24; // zero and subnormals
    else bits[h] = (sign | ((exp === 31 ? 255 : exp + 112) << 23) | (mant << 13)) >>> 0; // normal, inf, NaN
  }
  return (f16Table = t);
}

/** Stored bytes → values: float dtypes to float32 (exact), integers to int32 (int64 must fit). */
export function decode(raw: Uint8Array, dtype: DType, what: string): Float32Array | Int32Array {
  const copy = new Uint8Array(raw).buffer; // a copy: aligned, and independent of the file (Buffer.slice would not copy)
  switch (dtype) {
    case 'float32': return new Float32Array(copy);
    case 'int32': return new Int32Array(copy);
    case 'float16': {
      // Copied as bits: a NaN read into a JS number may lose its payload.
      const tab = new Uint32Array(f16ToF32Table().buffer), h = new Uint16Array(copy), out = new Float32Array(h.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = tab[h[i]];
      return out;
    }
    case 'bfloat16': {
      const h = new Uint16Array(copy), out = new Float32Array(h.length), bits = new Uint32Array(out.buffer);
      for (let i = 0; i < h.length; i++) bits[i] = h[i] << 16;
      return out;
    }
    case 'int64': {
      const w = new Int32Array(copy), out = new Int32Array(w.length / 2);
      for (let i = 0; i < out.length; i++) {
        if (w[2 * i + 1] !== w[2 * i] >> 31) throw new Error(`${what}: int64 value at ${i} does not fit in int32`);
        out[i] = w[2 * i];
      }
      return out;
    }
  }
}

/** Values → stored bytes (little-endian). Float data stores only as float dtypes, int32 data only as ints. */
export function encode(data: Float32Array | Int32Array, dtype: DType, what: string): Uint8Array {
  const isFloat = dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16';
  if (isFloat !== data instanceof Float32Array) throw new Error(`${what}: cannot store ${data.constructor.name} as ${dtype}`);
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  if (dtype === 'float32' || dtype === 'int32') return bytes(data);
  if (dtype === 'int64') {
    const out = new Int32Array(2 * data.length);
    for (let i = 0; i < data.length; i++) { out[2 * i] = data[i]; out[2 * i + 1] = data[i] >> 31; }
    return bytes(out);
  }
  const u = new Uint32Array(data.buffer, data.byteOffset, data.length), out = new Uint16Array(data.length);
  const conv = dtype === 'float16' ? f16FromF32Bits : bf16FromF32Bits;
  for (let i = 0; i < u.length; i++) out[i] = conv(u[i]);
  return bytes(out);
}
