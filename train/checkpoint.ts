// Saving: float16 weights as MiniMind writes them ({save_dir}/{save_weight}_{hidden}[_moe].pth), and the
// resume checkpoint in MiniMind's own format ({checkpoint_dir}/{save_weight}_{hidden}[_moe]_resume.pth,
// model/resume_pth.ts), so MiniMind's trainer continues our run with --from_resume 1 and we continue its.
// Ours stores the weights in float32 (MiniMind loads them as they are), so our own resume is exact; one
// written by MiniMind holds float16 weights, and resuming from it starts from those, as MiniMind does.
// Both files are written to a temp file and renamed, so a kill at any moment leaves the previous file intact.
// A model with LoRA adapters (model.lora) trains only them: its resume file's `model` holds the base and the
// adapter keys and its optimizer the adapters' state (spec §14: per layer qA, qB, oA, oB), as train_lora.py saves.
import { existsSync } from 'node:fs';
import { writePth } from '../model/pth.js';
import { writeConfigFor } from '../model/config_file.js';
import { optimizerOrder, readMiniMindResume, writeMiniMindResume, type MiniMindResume } from '../model/resume_pth.js';
import { checkStateDict } from '../model/weights.js';
import { parameterShapes } from '../model/config.js';
import { writeBuffer, clearBuffer } from '../runtime/kernel.js';
import type { MiniMind } from '../model/minimind.js';
import type { Tensor } from '../runtime/tensor.js';
import type { AdamW } from '../kernels/adamw.js';
import type { Position, Resume } from './task.js';

/** The float16 weights and, beside them, their config.json (model/config_file.ts), written first so that no
 *  weight file is ever without its config. */
export async function saveWeights(model: MiniMind, path: string): Promise<void> {
  const tensors = await model.exportWeights();
  writeConfigFor(path, model.cfg);
  writePth(path, tensors, { dtype: 'float16', tied: [['model.embed_tokens.weight', 'lm_head.weight']] });
}

/** The GradScaler settings this trainer uses (torch's defaults); a file with others is refused. */
const SCALER = { growthFactor: 2, backoffFactor: 0.5, growthInterval: 2000 };

/** What the optimizer trains, in MiniMind's index order: the adapters of a LoRA model, else every parameter. */
function trained(model: MiniMind): [string, Tensor][] {
  return model.lora ? model.lora.entries() : optimizerOrder(model.cfg).map((n) => [n, model.p(n)]);
}

export async function saveResume(path: string, model: MiniMind, opt: AdamW, pos: Position): Promise<void> {
  const { step: t } = opt.state();
  const state = [];
  for (const [, p] of trained(model)) {
    const { m, v } = opt.momentsOf(p);
    state.push({ step: t, expAvg: { shape: [...p.shape], data: await m.readF32() }, expAvgSq: { shape: [...p.shape], data: await v.readF32() } });
  }
  const adapters = [];
  for (const [name, p] of model.lora?.entries() ?? []) adapters.push({ name, shape: [...p.shape], data: await p.readF32() });
  const r: MiniMindResume<{ shape: number[]; data: Float32Array }> = {
    model: new Map([...await model.exportWeights(), ...adapters].map((w) => [w.name, w])),
    optimizer: { lr: opt.lr, betas: opt.betas, eps: opt.eps, weightDecay: opt.weightDecay, state: t ? state : state.map(() => null) },
    epoch: pos.epoch, step: pos.step, worldSize: pos.world ?? 1, wandbId: null,
    scaler: pos.scaler ? { ...SCALER, scale: pos.scaler.scale, growthTracker: pos.scaler.growth_tracker } : null,
  };
  writeMiniMindResume(path, r);
}

/** Read a resume checkpoint (ours or MiniMind's) of `model`'s shape, to continue on `world` data-parallel
 *  processes; errors name the file and the key. restore() loads it into `model` (and its adapters) and the
 *  optimizer over the trained store. A LoRA checkpoint must hold every adapter key; its base keys load as
 *  train_lora.py loads them (strict=False). */
export async function loadResume(path: string, model: MiniMind, world = 1): Promise<Resume> {
  const config = model.cfg, lora = model.lora;
  if (!existsSync(path)) throw new Error(`--from_resume 1: no resume checkpoint at ${path}`);
  const r = readMiniMindResume(path);
  const base = new Map<string, readonly number[]>(parameterShapes(config));
  base.set('lm_head.weight', base.get('model.embed_tokens.weight')!);
  const adapters = new Map(lora?.entries().map(([k, t]): [string, readonly number[]] => [k, t.shape]) ?? []);
  const missingAdapters = [...adapters.keys()].filter((k) => !r.model.has(k));
  if (missingAdapters.length) throw new Error(`${path}: model: no adapter keys ${missingAdapters.join(', ')} (not a LoRA checkpoint of this model?)`);
  checkStateDict(r.model, new Map([...base, ...adapters]), { strict: !lora, where: `${path}: model` }); // MiniMind's SFT load is strict too
  const order = trained(model);
  if (r.optimizer.state.length !== order.length) {
    throw new Error(`${path}: optimizer: ${r.optimizer.state.length} parameters, but this ${lora ? 'LoRA run trains' : 'model has'} ${order.length}`);
  }
  const steps = new Set<number>();
  r.optimizer.state.forEach((s, i) => {
    if (!s) return;
    const [name, p] = order[i];
    for (const [k, t] of [['exp_avg', s.expAvg], ['exp_avg_sq', s.expAvgSq]] as const) {
      if (t.shape.join() !== p.shape.join()) throw new Error(`${path}: optimizer.state[${i}].${k} is [${t.shape}], but parameter ${i} (${name}) is [${p.shape}]`);
    }
    steps.add(s.step);
  });
  // Our AdamW keeps one step count (bias correction) for all parameters.
  if (steps.size > 1) throw new Error(`${path}: optimizer: parameters at different step counts (${[...steps].join(', ')}); this trainer's AdamW keeps one count`);
  const adamStep = steps.size ? [...steps][0] : 0;
  const sc = r.scaler;
  if (sc) {
    for (const k of Object.keys(SCALER) as (keyof typeof SCALER)[]) {
      if (sc[k] !== SCALER[k]) throw new Error(`${path}: scaler: ${k} ${sc[k]}, but this trainer's loss scaler uses ${SCALER[k]}`);
    }
  }
  // MiniMind's rescale (spec §13): a step counts batches per process, and the shards are strided over one
  // permutation, so the first step·W_saved·B samples are done: floor(step·W_saved / W) steps of this run.
  const step = Math.floor((r.step * r.worldSize) / world);
  const notice = r.worldSize === world ? undefined
    : `${path} was saved by ${r.worldSize} process${r.worldSize === 1 ? '' : 'es'}: step ${r.step} of each is step ${step} of `
      + `${world === 1 ? 'this single-process run' : `each of this run's ${world}`} (MiniMind rescales the same way)`;
  return {
    epoch: r.epoch, step, notice, scaler: sc ? { scale: sc.scale, growth_tracker: sc.growthTracker } : undefined,
    async restore(opt, scaler) {
      for (const [k, want, got] of [['betas', opt.betas.join(), r.optimizer.betas.join()], ['eps', opt.eps, r.optimizer.eps],
        ['weight_decay', opt.weightDecay, r.optimizer.weightDecay]] as const) {
        if (want !== got) throw new Error(`${path}: optimizer: saved with ${k} ${got}, but this trainer's AdamW uses ${want}`);
      }
      // A float32 run resumed in float16 starts the scaler afresh; a float16 one in float32 drops it.
      if (scaler && sc) scaler.load({ scale: sc.scale, growth_tracker: sc.growthTracker }, path);
      model.load(new Map([...r.model].filter(([k]) => base.has(k))), !lora);
      for (const [k, t] of lora?.entries() ?? []) writeBuffer(t.buffer, t.offset, r.model.get(k)!.data);
      order.forEach(([, p], i) => {
        const s = r.optimizer.state[i], { m, v } = opt.momentsOf(p);
        if (s) { writeBuffer(m.buffer, m.offset, s.expAvg.data); writeBuffer(v.buffer, v.offset, s.expAvgSq.data); } else {
          clearBuffer(m.buffer, m.size * 4, m.offset);
          clearBuffer(v.buffer, v.size * 4, v.offset);
        }
      });
      opt.loadState({ step: adamStep });
    },
  };
}
