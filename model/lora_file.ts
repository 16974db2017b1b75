// LoRA adapter files (spec §11): MiniMind's save_lora dict `{module}.lora.{A|B}.weight` in named_modules order,
// torch.save'd (minimind-3: float16; MiniMind2: float32, the training dtype), so MiniMind's load_lora
// (torch.load + a strict load_state_dict per adapted module) reads ours; its file names; reading one back with
// the rank checked; and merge_lora's base-structure weights with the adapters folded in.
import { join } from 'node:path';
import { writeBuffer } from '../runtime/kernel.js';
import { roundF16 } from '../kernels/matmul_precision.js';
import { readPth, writePth } from './pth.js';
import { isFloatTensor, type FloatTensor } from './dtype.js';
import type { MiniMindConfig } from './config.js';
import type { MiniMind } from './minimind.js';
import { adapterKeys, generationOf, type LoRA } from './lora.js';

/** train_lora.py's adapter file: `{save_dir}/{lora_name}_{H}{_moe}.pth`; MiniMind2 adds no `_moe` (M2:59). */
export function adapterFile(saveDir: string, loraName: string, c: MiniMindConfig): string {
  const moe = c.use_moe && generationOf(c) === 'minimind3' ? '_moe' : '';
  return join(saveDir, `${loraName}_${c.hidden_size}${moe}.pth`);
}

/** eval_llm.py's --lora_weight path: minimind-3 `{save_dir}/{name}_{H}.pth`, MiniMind2 `{save_dir}/lora/{name}_{H}.pth`
 *  (neither adds `_moe`). A value ending in .pth is the file itself. */
export function evalAdapterFile(saveDir: string, loraWeight: string, c: MiniMindConfig): string {
  if (loraWeight.endsWith('.pth')) return loraWeight;
  return join(saveDir, ...(generationOf(c) === 'minimind3' ? [] : ['lora']), `${loraWeight}_${c.hidden_size}.pth`);
}

/** Write the adapters as save_lora does (only the adapter keys), atomically. */
export async function writeAdapters(path: string, lora: LoRA): Promise<void> {
  const list = [];
  for (const [name, t] of lora.entries()) list.push({ name, shape: [...t.shape], data: await t.readF32() });
  writePth(path, list, { dtype: generationOf(lora.cfg) === 'minimind3' ? 'float16' : 'float32' });
}

/** An adapter file's tensors (a DDP `module.` prefix stripped, as load_lora does); errors name the file. */
export function readAdapters(path: string): Map<string, FloatTensor> {
  const out = new Map<string, FloatTensor>();
  for (const [k, t] of readPth(path)) {
    const key = k.startsWith('module.') ? k.slice('module.'.length) : k;
    if (!isFloatTensor(t)) throw new Error(`${path}: ${key} is ${t.dtype}, not a float adapter weight`);
    out.set(key, t);
  }
  return out;
}

/** Load every adapter of `lora` from `sd` (read from `where`): load_lora's strict per-module load, and an error
 *  for a file key no adapter takes (load_lora ignores those silently). The rank is not stored: it is read from
 *  A's shape and must equal this LoRA's (MiniMind2 r8 adapters do not load into minimind-3's r16). */
export function loadAdapters(lora: LoRA, sd: Map<string, FloatTensor>, where: string): void {
  const expected = new Map(lora.entries());
  const missing = [...expected.keys()].filter((k) => !sd.has(k));
  if (missing.length) throw new Error(`${where}: missing adapter keys ${missing.join(', ')} (the rule adapts ${lora.targets.length} modules of this model)`);
  const extra = [...sd.keys()].filter((k) => !expected.has(k));
  if (extra.length) throw new Error(`${where}: keys no adapter of this model takes: ${extra.join(', ')}`);
  for (const [key, t] of expected) {
    const got = sd.get(key)!;
    if (got.shape.join() === t.shape.join()) continue;
    const isA = key.endsWith('.lora.A.weight'), fileRank = got.shape.length === 2 ? got.shape[isA ? 0 : 1] : NaN;
    const rank = fileRank !== lora.rank && got.shape[isA ? 1 : 0] === t.shape[isA ? 1 : 0]
      ? `: an adapter of rank ${fileRank}, this model's LoRA has rank ${lora.rank} (${generationOf(lora.cfg)})` : '';
    throw new Error(`${where}: ${key} is [${got.shape}] in the file, [${t.shape}] in the model${rank}`);
  }
  for (const [key, t] of expected) writeBuffer(t.buffer, t.offset, sd.get(key)!.data);
}

/** merge_lora (H:model/model_lora.py:56-65): the base state dict in float16 with each adapted Linear's weight
 *  fp16(W) + fp16(B·A) (B·A in float32, the sum rounded once to float16), no lora keys: values float16-exact,
 *  for writePth with dtype float16. An adapter on the tied lm_head would untie it: refused. */
export async function mergedStateDict(model: MiniMind, lora: LoRA): Promise<{ name: string; shape: number[]; data: Float32Array }[]> {
  if (lora.targets.some((m) => m.name === 'lm_head')) throw new Error('merge: an adapter on lm_head would untie it from embed_tokens; not supported');
  const adapted = new Map(lora.entries());
  const out = await model.exportWeights();
  for (const t of out) {
    const module = t.name.slice(0, -'.weight'.length), [a, b] = adapterKeys(module);
    const A = adapted.get(a), B = adapted.get(b);
    if (!A || !B) { t.data = t.data.map(roundF16); continue; }
    const [Ad, Bd] = [await A.readF32(), await B.readF32()], r = lora.rank, [n, m] = t.shape;
    const merged = new Float32Array(n * m);
    for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += Bd[i * r + k] * Ad[k * m + j];
      merged[i * m + j] = roundF16(roundF16(t.data[i * m + j]) + roundF16(Math.fround(s)));
    }
    t.data = merged;
  }
  return out;
}
