// Saving: float16 weights as MiniMind writes them ({save_dir}/{save_weight}_{hidden}[_moe].pth),
// and a resume checkpoint (float32 weights, AdamW moments and step, epoch/step position, config)
// in one safetensors file. Both are written to a temp file and renamed, so a kill at any moment
// leaves the previous file intact.
import { existsSync } from 'node:fs';
import { writePth } from '../model/pth.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { writeBuffer } from '../runtime/kernel.js';
import type { MiniMind } from '../model/minimind.js';
import type { AdamW } from '../kernels/adamw.js';
import type { MiniMindConfig } from '../model/config.js';
import type { GradScaler, ScalerState } from './grad_scaler.js';

export async function saveWeights(model: MiniMind, path: string): Promise<void> {
  const tensors = await model.exportWeights();
  await writePth(path, tensors, { dtype: 'float16', tied: [['model.embed_tokens.weight', 'lm_head.weight']] });
}

export interface Position { epoch: number; step: number; iters: number; config: MiniMindConfig; scaler?: ScalerState }

export interface ResumeState extends Position {
  restore(model: MiniMind, opt: AdamW, scaler: GradScaler | null): Promise<void>;
}

const FORMAT = 'minimind-ts-resume-1';

export async function saveResume(path: string, model: MiniMind, opt: AdamW, pos: Position): Promise<void> {
  const st = opt.state();
  const entries = [];
  for (const [name, p] of model.params) {
    const { m, v } = opt.momentsOf(p);
    entries.push({ name: `param.${name}`, shape: [...p.shape], data: await p.readF32() });
    entries.push({ name: `adam.m.${name}`, shape: [...p.shape], data: await m.readF32() });
    entries.push({ name: `adam.v.${name}`, shape: [...p.shape], data: await v.readF32() });
  }
  const meta = { format: FORMAT, epoch: pos.epoch, step: pos.step, iters: pos.iters, adam_step: st.step, world_size: 1, config: pos.config, scaler: pos.scaler };
  await writeSafetensors(path, entries, { metadata: { resume: JSON.stringify(meta) } });
}

/** Read a resume checkpoint; errors name the file and what does not match. */
export async function loadResume(path: string, config: MiniMindConfig): Promise<ResumeState> {
  if (!existsSync(path)) throw new Error(`--from_resume 1: no resume checkpoint at ${path}`);
  const file = await readSafetensors(path);
  const raw = file.metadata?.resume;
  if (!raw) throw new Error(`${path}: not a resume checkpoint (no 'resume' metadata)`);
  const meta = JSON.parse(raw);
  if (meta.format !== FORMAT) throw new Error(`${path}: unknown resume format '${meta.format}'`);
  for (const k of ['hidden_size', 'num_hidden_layers', 'use_moe', 'vocab_size'] as const) {
    if (meta.config[k] !== config[k]) throw new Error(`${path}: saved with ${k}=${meta.config[k]}, but this run has ${k}=${config[k]}`);
  }
  const get = (name: string) => {
    const t = file.tensors.get(name);
    if (!t) throw new Error(`${path}: missing tensor ${name}`);
    return t.data as Float32Array;
  };
  return {
    epoch: meta.epoch, step: meta.step, iters: meta.iters, config: meta.config,
    async restore(model, opt, scaler) {
      // A float32 run resumed in float16 starts the scaler afresh; a float16 one in float32 drops it.
      if (scaler && meta.scaler) scaler.load(meta.scaler, path);
      for (const [name, p] of model.params) {
        const { m, v } = opt.momentsOf(p);
        writeBuffer(p.buffer, p.offset, get(`param.${name}`));
        writeBuffer(m.buffer, m.offset, get(`adam.m.${name}`));
        writeBuffer(v.buffer, v.offset, get(`adam.v.${name}`));
      }
      opt.loadState({ step: meta.adam_step });
    },
  };
}
