// Weights on disk (spec §5): loading a checkpoint by extension (.pth or safetensors), and checking a
// loaded state_dict against the model's keys and shapes.
import { readPth } from './pth.js';
import { readSafetensors } from './safetensors.js';
import { isFloatTensor, type FloatTensor, type WeightTensor } from './dtype.js';

// ---- loading and checking ----

/** A checkpoint's tensors by name, by extension: .pth/.pt/.bin (torch.save zip) or .safetensors.
 *  Weights are floats: an integer tensor is an error naming it. */
export function loadWeights(path: string): Map<string, FloatTensor> {
  let all: Map<string, WeightTensor>;
  if (/\.(pth|pt|bin)$/.test(path)) all = readPth(path);
  else if (path.endsWith('.safetensors')) all = readSafetensors(path).tensors;
  else throw new Error(`${path}: unknown weights format (expected .pth, .pt, .bin or .safetensors)`);
  const out = new Map<string, FloatTensor>();
  for (const [name, t] of all) {
    if (!isFloatTensor(t)) throw new Error(`${path}: ${name} is ${t.dtype}, not a float weight`);
    out.set(name, t);
  }
  return out;
}

export interface StateDictReport {
  missing: string[];
  unexpected: string[];
  misshaped: { name: string; expected: number[]; got: number[] }[];
  /** One line naming every problem; '' when the keys and shapes match exactly. */
  summary: string;
}

/** Compare loaded keys and shapes with the model's, like torch's load_state_dict: mis-shaped keys are always
 *  an error; missing and unexpected keys are an error only with `strict` (MiniMind's --from_weight loads with
 *  strict=False and reports them). `where` (the file) prefixes errors. */
export function checkStateDict(
  loaded: Map<string, { shape: readonly number[] }>, expected: Map<string, readonly number[]>,
  { strict, where = 'state_dict' }: { strict: boolean; where?: string },
): StateDictReport {
  const missing = [...expected.keys()].filter((k) => !loaded.has(k));
  const unexpected = [...loaded.keys()].filter((k) => !expected.has(k));
  const misshaped = [...expected]
    .filter(([k, s]) => loaded.has(k) && loaded.get(k)!.shape.join() !== s.join())
    .map(([name, s]) => ({ name, expected: [...s], got: [...loaded.get(name)!.shape] }));
  const parts = [
    missing.length ? `missing keys: ${missing.join(', ')}` : '',
    unexpected.length ? `unexpected keys: ${unexpected.join(', ')}` : '',
    misshaped.length ? `mis-shaped: ${misshaped.map((m) => `${m.name} [${m.got}] in file, [${m.expected}] in model`).join(', ')}` : '',
  ];
  const summary = parts.filter(Boolean).join('; ');
  if (misshaped.length || (strict && summary)) throw new Error(`${where}: ${summary}`);
  return { missing, unexpected, misshaped, summary };
}
