// PyTorch .pth state_dicts (spec §5): a torch.save file (torch_save.ts) whose pickle is an OrderedDict or
// dict of tensors. MiniMind saves `{k: v.half()}` of its state_dict: a plain dict, the two tied keys in
// storages of their own; torch's own state_dict() keeps them in one.
import { readTorchSave, writeTorchSave, isTensor, type ReadTorchOptions } from './torch_save.js';
import { encode, tensorList, type DType, type FloatDType, type TensorIn, type TensorsIn, type WeightTensor } from './dtype.js';

/** A state_dict from a .pth file or its bytes. Keys that torch stored as the same view of one storage (tied
 *  weights) map to the same WeightTensor object; `tiedPairs` lists them. */
export function readPth(pathOrBytes: string | Uint8Array, opts: ReadTorchOptions = {}): Map<string, WeightTensor> {
  const { value: sd, where, pickle } = readTorchSave(pathOrBytes, opts);
  const fail = (msg: string): never => { throw new Error(`${where}: ${pickle}: ${msg}`); };
  if (!(sd instanceof Map)) return fail('the pickle is not a dict of tensors');
  for (const [k, v] of sd) {
    if (typeof k !== 'string') fail(`key ${String(k)} is not a string`);
    if (!isTensor(v)) fail(`${k} is not a tensor (a full training checkpoint, not a state_dict?)`);
  }
  return sd as Map<string, WeightTensor>;
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
  /** [a, b]: b is saved as a view of a's storage (both keys stay in the file). */
  tied?: [string, string][];
}

/** Write a state_dict that torch.load(path, weights_only=True) opens: a dict of contiguous tensors in the
 *  given order, each with its own storage except tied keys. Atomic (temp file + rename). */
export function writePth(path: string, tensors: TensorsIn, opts: WritePthOptions = {}): void {
  const list = tensorList(tensors, path);
  const dtypeOf = (t: TensorIn): DType => (t.data instanceof Int32Array ? (t.dtype ?? 'int32') : (opts.dtype ?? t.dtype ?? 'float32'));
  const out = new Map<string, TensorIn>(list.map((t) => [t.name, { shape: t.shape, data: t.data, dtype: dtypeOf(t) }]));
  for (const [a, b] of opts.tied ?? []) {
    const ta = out.get(a), tb = out.get(b);
    if (!ta || !tb) throw new Error(`${path}: tied key ${ta ? b : a} is not among the tensors`);
    const same = ta.shape.join() === tb.shape.join() && ta.dtype === tb.dtype
      && Buffer.from(encode(ta.data, ta.dtype!, path)).equals(encode(tb.data, tb.dtype!, path));
    if (!same) throw new Error(`${path}: tied keys ${a} and ${b} differ in shape, dtype or values`);
    out.set(b, ta); // the same object: one storage
  }
  writeTorchSave(path, out);
}
