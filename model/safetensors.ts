// safetensors (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N bytes of
// JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}` (offsets in
// bytes, relative to the end of the header), then the raw little-endian row-major data. No code, no pickle.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import { ITEM_SIZE, decode, encode, numel, tensorList, type DType, type FloatDType, type TensorsIn, type WeightTensor } from './dtype.js';

const DTYPES: Record<string, DType> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', I32: 'int32', I64: 'int64' };
const CODE = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v, k])) as Record<DType, string>;
const MAX_HEADER = 100 << 20; // bytes; the reference implementation's limit

export interface SafetensorsFile {
  tensors: Map<string, WeightTensor>;
  metadata?: Record<string, string>;
}

export function readSafetensors(pathOrBytes: string | Uint8Array): SafetensorsFile {
  const where = typeof pathOrBytes === 'string' ? pathOrBytes : '<safetensors bytes>';
  const bytes = typeof pathOrBytes === 'string' ? readFileSync(pathOrBytes) : pathOrBytes;
  const fail = (msg: string): never => { throw new Error(`${where}: ${msg}`); };
  if (bytes.length < 8) fail(`${bytes.length} bytes: truncated (no header length)`);
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER || 8 + n > bytes.length) fail(`header of ${n} bytes does not fit in ${bytes.length} bytes: truncated or not safetensors`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (err) {
    return fail(`header is not JSON (${(err as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) fail('header is not a JSON object');
  const data = bytes.subarray(8 + n);
  const tensors = new Map<string, WeightTensor>();
  let metadata: Record<string, string> | undefined;
  for (const [name, v] of Object.entries(header)) {
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (name === '__metadata__') {
      if (!e || typeof e !== 'object' || !Object.values(e).every((x) => typeof x === 'string')) fail('__metadata__ is not a map of strings');
      metadata = e as Record<string, string>;
      continue;
    }
    const dtype = DTYPES[String(e?.dtype)] ?? fail(`${name}: dtype ${e?.dtype} unsupported (F32, F16, BF16, I32, I64)`);
    const shape = e.shape, off = e.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) fail(`${name}: bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || !off.every(Number.isInteger) || off[0] < 0 || off[1] < off[0]) {
      fail(`${name}: bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as number[];
    if (end > data.length) fail(`${name}: data ends at byte ${end} of ${data.length}: truncated`);
    if (end - begin !== numel(shape as number[]) * ITEM_SIZE[dtype]) fail(`${name}: ${end - begin} bytes for [${shape}] ${dtype}`);
    const raw = data.subarray(begin, end);
    tensors.set(name, { dtype, shape: shape as number[], data: decode(raw, dtype, `${where}: ${name}`), raw } as WeightTensor);
  }
  return { tensors, metadata };
}

export interface WriteSafetensorsOptions {
  /** Store every float tensor as this; default: each tensor's own dtype, else float32. */
  dtype?: FloatDType;
  metadata?: Record<string, string>;
}

/** Write tensors in the given order (Int32Array data as I32, or I64 when its dtype says int64). Atomic. */
export function writeSafetensors(path: string, tensors: TensorsIn, opts: WriteSafetensorsOptions = {}): void {
  const header: Record<string, unknown> = {}, blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensorList(tensors, path)) {
    if (t.name === '__metadata__') throw new Error(`${path}: a tensor cannot be named __metadata__`);
    const dtype = t.data instanceof Int32Array ? (t.dtype ?? 'int32') : (opts.dtype ?? t.dtype ?? 'float32');
    const b = encode(t.data, dtype, `${path}: ${t.name}`);
    header[t.name] = { dtype: CODE[dtype], shape: [...t.shape], data_offsets: [offset, offset + b.length] };
    blobs.push(b);
    offset += b.length;
  }
  if (opts.metadata) {
    for (const [k, v] of Object.entries(opts.metadata)) if (typeof v !== 'string') throw new Error(`${path}: metadata ${k} is not a string`);
    header.__metadata__ = opts.metadata;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20); // spaces: data starts 8-byte aligned
  padded.set(json);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(padded.length), true);
  writeFileAtomic(path, [len, padded, ...blobs]);
}
