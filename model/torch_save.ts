// Files of torch.save (spec §5, §14): a zip holding `<archive>/data.pkl` (a pickle of any nesting of dicts,
// lists, tuples, numbers, strings and tensors, each tensor `_rebuild_tensor_v2(storage, offset, size, stride,
// ...)`), the raw little-endian storages `<archive>/data/<key>`, `byteorder` and `version`. Reading runs the
// pickle through the restricted machine of pickle.ts with only the globals tensors need (torch.load's
// weights_only allowlist, narrowed to dense tensors; the storage location, e.g. `cuda:0`, is ignored);
// writing emits the opcodes torch does, so torch.load(weights_only=True) opens the file.
// What a file may make the reader allocate is bounded (ReadTorchOptions.maxBytes), and checked before allocating.
// Values are pickle.ts's: null, boolean, number (int), PyFloat, string, array (list), frozen array (tuple),
// Map (dict), and tensors as WeightTensor (read) or TensorIn (written).
import { readFileSync } from 'node:fs';
import { readZip, writeZipFile, type ZipEntry } from './zip.js';
import { PickleWriter, PyFloat, PyGlobal, unpickle } from './pickle.js';
import { ITEM_SIZE, decode, encode, numel, type DType, type TensorIn, type WeightTensor } from './dtype.js';

const STORAGES: Record<string, DType> = {
  'torch.FloatStorage': 'float32', 'torch.HalfStorage': 'float16', 'torch.BFloat16Storage': 'bfloat16',
  'torch.IntStorage': 'int32', 'torch.LongStorage': 'int64',
};
const STORAGE_OF = Object.fromEntries(Object.entries(STORAGES).map(([k, v]) => [v, k.slice('torch.'.length)]));

interface Storage { key: string; dtype: DType; numel: number; bytes: Uint8Array }

export interface ReadTorchOptions {
  /** Bytes the reader may allocate besides the file's own: inflated entries, copies of strided views and
   *  decoded values. Default 64 MiB + 16 × the file's size: a file torch wrote (stored entries) needs at most
   *  3× its size (float16 widened to float32, after a copy), while a deflate bomb or a pickle that views one
   *  element as billions would need far more. */
  maxBytes?: number;
}

/** What a torch.save file holds, and the names errors should carry (`where`: the file; `pickle`: its data.pkl). */
export interface TorchFile { value: unknown; where: string; pickle: string }

/** Read a torch.save file or its bytes. Tensors that torch stored as the same view of one storage (tied
 *  weights) are the same WeightTensor object. */
export function readTorchSave(pathOrBytes: string | Uint8Array, opts: ReadTorchOptions = {}): TorchFile {
  const where = typeof pathOrBytes === 'string' ? pathOrBytes : '<.pth bytes>';
  const bytes = typeof pathOrBytes === 'string' ? readFileSync(pathOrBytes) : pathOrBytes;
  const limit = opts.maxBytes ?? 64 * 2 ** 20 + 16 * bytes.length;
  let allocated = 0;
  /** Count `n` bytes against the limit before allocating them. */
  const charge = (n: number, what: string) => {
    if (!(allocated + n <= limit)) {
      throw new Error(`${where}: ${what} needs ${n} bytes, past the ${limit} bytes a ${bytes.length}-byte .pth may allocate `
        + `(${allocated} so far): a corrupt file or a deflate bomb (torch.save never deflates; ReadTorchOptions.maxBytes raises the limit)`);
    }
    allocated += n;
  };
  const read = (name: string, e: ZipEntry) => {
    if (e.deflated) charge(e.size, `entry ${name} (deflated)`);
    return e.read();
  };
  const entries = readZip(bytes, where);
  const pkl = [...entries.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (pkl.length !== 1) throw new Error(`${where}: expected one data.pkl in the archive, found ${pkl.length}: not a torch.save file`);
  const prefix = pkl[0].slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(read(`${prefix}byteorder`, order)).trim() !== 'little') throw new Error(`${where}: big-endian storages unsupported`);

  const storages = new Map<string, Storage>();
  const views = new Map<string, WeightTensor>(); // tied tensors: one object per (storage, offset, size, stride)
  const fail = (msg: string): never => { throw new Error(`${where}: ${pkl[0]}: ${msg}`); };

  const persistentLoad = (pid: unknown): Storage => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage' || !(pid[1] instanceof PyGlobal)) {
      return fail(`unknown persistent id ${JSON.stringify(pid)}`);
    }
    const [, cls, key, , n] = pid as [string, PyGlobal, string, string, number];
    const dtype = STORAGES[cls.name] ?? fail(`storage type ${cls.name} unsupported`);
    const name = `${prefix}data/${key}`;
    const entry = entries.get(name) ?? fail(`storage ${name} missing from the archive`);
    if (!Number.isSafeInteger(n) || n < 0) fail(`storage ${name}: element count ${n} is not an integer ≥ 0`);
    // The declared size, checked before the entry is read (inflated).
    if (entry.size !== n * ITEM_SIZE[dtype]) fail(`storage ${name} holds ${entry.size} bytes, ${n} × ${dtype} wanted`);
    const seen = storages.get(key);
    if (seen && seen.dtype !== dtype) fail(`storage ${name} read both as ${seen.dtype} and ${dtype}`);
    if (seen) return seen;
    const s = { key, dtype, numel: n, bytes: read(name, entry) };
    storages.set(key, s);
    return s;
  };

  const rebuildTensor = ([storage, offset, size, stride]: unknown[]): WeightTensor => {
    const s = storage as Storage;
    if (!s || storages.get(s.key) !== s || !isInts(size) || !isInts(stride) || size.length !== stride.length || !Number.isInteger(offset)) {
      return fail('_rebuild_tensor_v2 arguments are not (storage, offset, size, stride, ...)');
    }
    const id = `${s.key}|${offset}|${size}|${stride}`;
    const seen = views.get(id);
    if (seen) return seen;
    const view = `tensor view [${size}] stride [${stride}] at ${offset} of storage data/${s.key}`;
    const raw = gather(s, offset as number, size, stride, (n) => charge(n, `copying the ${view}`))
      ?? fail(`${view} lies outside it (${s.numel} elements)`);
    // decode copies the bytes, then widens 2- and 8-byte elements to 4-byte values.
    const n = raw.length / ITEM_SIZE[s.dtype];
    charge(raw.length + (ITEM_SIZE[s.dtype] === 4 ? 0 : 4 * n), `decoding the ${view}`);
    const t = { dtype: s.dtype, shape: [...size], data: decode(raw, s.dtype, where), raw } as WeightTensor;
    views.set(id, t);
    return t;
  };

  const value = unpickle(read(pkl[0], entries.get(pkl[0])!), {
    where: `${where}: ${pkl[0]}`,
    globals: new Map<string, ((args: unknown[]) => unknown) | null>([
      ['collections.OrderedDict', (args) => (args.length === 0 ? new Map() : fail('OrderedDict with arguments'))],
      ['torch._utils._rebuild_tensor_v2', rebuildTensor],
      ['torch._utils._rebuild_tensor', rebuildTensor],
      ['torch._utils._rebuild_parameter', ([t]) => t], // (data, requires_grad, hooks): only the data matters here
      ...Object.keys(STORAGES).map((k) => [k, null] as [string, null]),
    ]),
    persistentLoad,
    // state_dict() pickles its module versions as OrderedDict state (`_metadata`); nothing else may BUILD.
    build: (obj, state) => {
      if (!(obj instanceof Map) || !(state instanceof Map || state === null)) fail('BUILD on something other than an OrderedDict');
    },
  });
  return { value, where, pickle: pkl[0] };
}

export const isTensor = (v: unknown): v is WeightTensor => !!v && typeof v === 'object' && (v as WeightTensor).raw instanceof Uint8Array;

const isInts = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => Number.isInteger(x) && x >= 0);

/** The bytes of a strided view, row-major; undefined if it reaches outside the storage. A non-contiguous
 *  view is copied, after `charge(bytes)` (a stride-0 view of one element can ask for any size). */
function gather(s: Storage, offset: number, size: number[], stride: number[], charge: (bytes: number) => void): Uint8Array | undefined {
  const n = numel(size), item = ITEM_SIZE[s.dtype];
  if (n === 0) return new Uint8Array(0);
  const last = offset + size.reduce((acc, d, i) => acc + (d - 1) * stride[i], 0);
  if (offset < 0 || last >= s.numel) return undefined;
  let contiguous = true;
  for (let i = size.length - 1, want = 1; i >= 0; want *= size[i], i--) if (size[i] !== 1 && stride[i] !== want) contiguous = false;
  if (contiguous) return s.bytes.subarray(offset * item, (offset + n) * item);
  charge(n * item);
  const out = new Uint8Array(n * item), idx = new Array<number>(size.length).fill(0);
  for (let i = 0, src = offset; i < n; i++) {
    out.set(s.bytes.subarray(src * item, (src + 1) * item), i * item);
    for (let d = size.length - 1; d >= 0; d--) { // odometer step over the view's indices
      src += stride[d];
      if (++idx[d] < size[d]) break;
      src -= stride[d] * size[d];
      idx[d] = 0;
    }
  }
  return out;
}

/** What writeTorchSave takes. Numbers are ints (PyFloat for floats), frozen arrays are tuples, other
 *  arrays lists; a tensor is stored as its `dtype` (default float32 for Float32Array, int32 for Int32Array). */
export type PyValue = null | boolean | number | PyFloat | string | readonly PyValue[] | Map<string | number, PyValue> | TensorIn;

const isTensorIn = (v: object): v is TensorIn => 'data' in v && (v.data instanceof Float32Array || v.data instanceof Int32Array);

/** torch.save(value, path): a protocol-2 pickle, one contiguous storage per tensor object (the same object
 *  twice shares one storage, as tied weights do), storage location `cpu`. Atomic (temp file + rename). */
export function writeTorchSave(path: string, value: PyValue): void {
  const w = new PickleWriter();
  const storages: { name: string; data: Uint8Array }[] = [];
  const storageOf = new Map<TensorIn, { key: string; dtype: DType }>();
  const emit = (v: PyValue, at: string): void => {
    if (v === null) w.none();
    else if (typeof v === 'boolean') w.bool(v);
    else if (typeof v === 'number') w.int(v);
    else if (typeof v === 'string') w.str(v);
    else if (v instanceof PyFloat) w.float(v.value);
    else if (Array.isArray(v)) {
      if (Object.isFrozen(v)) { w.mark(); v.forEach((x, i) => emit(x, `${at}[${i}]`)); w.tuple(); } else {
        w.emptyList();
        if (v.length) { w.mark(); v.forEach((x, i) => emit(x, `${at}[${i}]`)); w.appends(); }
      }
    } else if (v instanceof Map) {
      w.emptyDict();
      if (v.size) {
        w.mark();
        for (const [k, x] of v) { if (typeof k === 'number') w.int(k); else w.str(k); emit(x, `${at}.${k}`); }
        w.setitems();
      }
    } else if (typeof v === 'object' && isTensorIn(v)) tensor(v, at);
    else throw new Error(`${path}: ${at}: cannot pickle ${String(v)}`);
  };
  const tensor = (t: TensorIn, at: string) => {
    if (numel(t.shape) !== t.data.length) throw new Error(`${path}: ${at} has ${t.data.length} values, shape [${t.shape}] wants ${numel(t.shape)}`);
    let s = storageOf.get(t);
    if (!s) {
      const dtype = t.dtype ?? (t.data instanceof Int32Array ? 'int32' : 'float32');
      s = { key: String(storages.length), dtype };
      storages.push({ name: `archive/data/${s.key}`, data: encode(t.data, dtype, `${path}: ${at}`) });
      storageOf.set(t, s);
    }
    const strides = t.shape.map((_, i) => numel(t.shape.slice(i + 1)));
    w.global('torch._utils', '_rebuild_tensor_v2').mark()
      .mark().str('storage').global('torch', STORAGE_OF[s.dtype]).str(s.key).str('cpu').int(t.data.length).tuple().persid()
      .int(0).ints([...t.shape]).ints(strides).bool(false) // offset, size, stride, requires_grad
      .global('collections', 'OrderedDict').emptyTuple().reduce() // backward hooks
      .tuple().reduce();
  };
  emit(value, 'value');
  writeZipFile(path, [
    { name: 'archive/data.pkl', data: w.stop() },
    { name: 'archive/byteorder', data: new TextEncoder().encode('little') },
    ...storages,
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ]);
}
