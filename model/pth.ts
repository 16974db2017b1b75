// PyTorch .pth state_dicts as torch.save writes them (spec §5): a zip holding `<archive>/data.pkl` (a pickle of
// an OrderedDict or dict of tensors, each `_rebuild_tensor_v2(storage, offset, size, stride, ...)`), the raw
// little-endian storages `<archive>/data/<key>`, `byteorder` and `version`. Reading runs the pickle through the
// restricted machine of pickle.ts with only the globals a state_dict needs (torch.load(weights_only=True)'s
// allowlist, narrowed to dense CPU tensors); writing emits the same opcodes torch does, so torch.load opens it.
// What a file may make the reader allocate is bounded (ReadPthOptions.maxBytes), and checked before allocating.
import { readFileSync } from 'node:fs';
import { readZip, writeZipFile, type ZipEntry } from './zip.js';
import { PickleWriter, PyGlobal, unpickle } from './pickle.js';
import { ITEM_SIZE, decode, encode, numel, tensorList, type DType, type FloatDType, type TensorsIn, type WeightTensor } from './dtype.js';

const STORAGES: Record<string, DType> = {
  'torch.FloatStorage': 'float32', 'torch.HalfStorage': 'float16', 'torch.BFloat16Storage': 'bfloat16',
  'torch.IntStorage': 'int32', 'torch.LongStorage': 'int64',
};
const STORAGE_OF = Object.fromEntries(Object.entries(STORAGES).map(([k, v]) => [v, k.slice('torch.'.length)]));

interface Storage { key: string; dtype: DType; numel: number; bytes: Uint8Array }

export interface ReadPthOptions {
  /** Bytes the reader may allocate besides the file's own: inflated entries, copies of strided views and
   *  decoded values. Default 64 MiB + 16 × the file's size: a file torch wrote (stored entries) needs at most
   *  3× its size (float16 widened to float32, after a copy), while a deflate bomb or a pickle that views one
   *  element as billions would need far more. */
  maxBytes?: number;
}

/** A state_dict from a .pth file or its bytes. Keys that torch stored as the same view of one storage (tied
 *  weights) map to the same WeightTensor object; `tiedPairs` lists them. */
export function readPth(pathOrBytes: string | Uint8Array, opts: ReadPthOptions = {}): Map<string, WeightTensor> {
  const where = typeof pathOrBytes === 'string' ? pathOrBytes : '<.pth bytes>';
  const bytes = typeof pathOrBytes === 'string' ? readFileSync(pathOrBytes) : pathOrBytes;
  const limit = opts.maxBytes ?? 64 * 2 ** 20 + 16 * bytes.length;
  let allocated = 0;
  /** Count `n` bytes against the limit before allocating them. */
  const charge = (n: number, what: string) => {
    if (!(allocated + n <= limit)) {
      throw new Error(`${where}: ${what} needs ${n} bytes, past the ${limit} bytes a ${bytes.length}-byte .pth may allocate `
        + `(${allocated} so far): a corrupt file or a deflate bomb (torch.save never deflates; ReadPthOptions.maxBytes raises the limit)`);
    }
    allocated += n;
  };
  const read = (name: string, e: ZipEntry) => {
    if (e.deflated) charge(e.size, `entry ${name} (deflated)`);
    return e.read();
  };
  const entries = readZip(bytes, where);
  const pkl = [...entries.keys()].filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  if (pkl.length !== 1) throw new Error(`${where}: expected one data.pkl in the archive, found ${pkl.length}: not a torch.save state_dict`);
  const prefix = pkl[0].slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(read(`${prefix}byteorder`, order)).trim() !== 'little') throw new Error(`${where}: big-endian storages unsupported`);

  const storages = new Map<string, Storage>();
  const views = new Map<string, WeightTensor>(); // tied keys: one object per (storage, offset, size, stride)
  const fail = (msg: string): never => { throw new Error(`${where}: ${prefix}data.pkl: ${msg}`); };

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
    const t = { dtype: s.dtype, shape: size, data: decode(raw, s.dtype, where), raw } as WeightTensor;
    views.set(id, t);
    return t;
  };

  const sd = unpickle(read(pkl[0], entries.get(pkl[0])!), {
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

  if (!(sd instanceof Map)) return fail('the pickle is not a dict of tensors');
  for (const [k, v] of sd) {
    if (typeof k !== 'string') fail(`key ${String(k)} is not a string`);
    if (!(v && typeof v === 'object' && 'raw' in v)) fail(`${k} is not a tensor (a full training checkpoint, not a state_dict?)`);
  }
  return sd as Map<string, WeightTensor>;
}

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

/** Pairs of keys that readPth returned as one tensor (tied weights), to pass back to writePth's `tied`. */
export function tiedPairs(sd: Map<string, WeightTensor>): [string, string][] {
  const first = new Map<WeightTensor, string>(), pairs: [string, string][] = [];
  for (const [k, t] of sd) {
    const f = first.get(t);
    if (f === undefined) first.set(t, k);
    else pairs.push([f, k]);
  }
  return pairs;
}

export interface WritePthOptions {
  /** Store every float tensor as this; default: each tensor's own dtype, else float32. MiniMind saves float16. */
  dtype?: FloatDType;
  /** [a, b]: b is saved as a view of a's storage (both keys stay in the file, as MiniMind's tied embedding). */
  tied?: [string, string][];
}

/** Write a state_dict that torch.load(path, weights_only=True) opens: an OrderedDict of contiguous tensors
 *  in the given order, each with its own storage except tied keys. Atomic (temp file + rename). */
export function writePth(path: string, tensors: TensorsIn, opts: WritePthOptions = {}): void {
  const list = tensorList(tensors, path);
  const byName = new Map(list.map((t) => [t.name, t]));
  const dtypeOf = (t: (typeof list)[number]): DType =>
    t.data instanceof Int32Array ? (t.dtype ?? 'int32') : (opts.dtype ?? t.dtype ?? 'float32');
  const bytesOf = new Map(list.map((t) => [t.name, encode(t.data, dtypeOf(t), `${path}: ${t.name}`)]));

  const owner = new Map<string, string>(); // tied key → the key whose storage it shares
  for (const [a, b] of opts.tied ?? []) {
    const ta = byName.get(a), tb = byName.get(b);
    if (!ta || !tb) throw new Error(`${path}: tied key ${ta ? b : a} is not among the tensors`);
    if (ta.shape.join() !== tb.shape.join() || dtypeOf(ta) !== dtypeOf(tb) || !equalBytes(bytesOf.get(a)!, bytesOf.get(b)!)) {
      throw new Error(`${path}: tied keys ${a} and ${b} differ in shape, dtype or values`);
    }
    owner.set(b, owner.get(a) ?? a);
  }

  const storageKey = new Map<string, string>(), zipEntries: { name: string; data: Uint8Array }[] = [];
  for (const t of list) {
    if (owner.has(t.name)) continue;
    storageKey.set(t.name, String(storageKey.size));
    zipEntries.push({ name: `archive/data/${storageKey.size - 1}`, data: bytesOf.get(t.name)! });
  }

  const w = new PickleWriter().global('collections', 'OrderedDict').emptyTuple().reduce().mark();
  for (const t of list) {
    const dtype = dtypeOf(t), key = storageKey.get(owner.get(t.name) ?? t.name)!;
    const strides = t.shape.map((_, i) => numel(t.shape.slice(i + 1)));
    w.str(t.name).global('torch._utils', '_rebuild_tensor_v2').mark()
      .mark().str('storage').global('torch', STORAGE_OF[dtype]).str(key).str('cpu').int(t.data.length).tuple().persid()
      .int(0).ints([...t.shape]).ints(strides).bool(false) // offset, size, stride, requires_grad
      .global('collections', 'OrderedDict').emptyTuple().reduce() // backward hooks
      .tuple().reduce();
  }
  const pkl = w.setitems().stop();
  writeZipFile(path, [
    { name: 'archive/data.pkl', data: pkl },
    { name: 'archive/byteorder', data: new TextEncoder().encode('little') },
    ...zipEntries,
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ]);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}
