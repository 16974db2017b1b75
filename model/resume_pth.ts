// MiniMind's resume checkpoint (spec §14): the dict lm_checkpoint torch.saves to
// `{checkpoint_dir}/{weight}_{hidden}[_moe]_resume.pth`, keys in this order: model (state_dict, both tied keys),
// optimizer (AdamW.state_dict(): per-parameter step/exp_avg/exp_avg_sq by position in model.parameters(), one
// param group), epoch (0-based), step (micro-steps done in that epoch), world_size, wandb_id, scaler
// (GradScaler.state_dict(): {} when disabled). Read and written here as plain data; train/checkpoint.ts maps
// it onto the model and optimizer.
import { readTorchSave, writeTorchSave, isTensor, type PyValue } from './torch_save.js';
import { PyFloat, tuple } from './pickle.js';
import { isFloatTensor, type FloatTensor, type TensorIn } from './dtype.js';
import { parameterShapes, type MiniMindConfig } from './config.js';

/** AdamW's state of one parameter: optimizer steps it has taken and its two moments (float32). */
export interface AdamParamState<T> { step: number; expAvg: T; expAvgSq: T }

export interface AdamGroup { lr: number; betas: [number, number]; eps: number; weightDecay: number }

/** GradScaler.state_dict() of an enabled scaler (--dtype float16). */
export interface ScalerDict { scale: number; growthFactor: number; backoffFactor: number; growthInterval: number; growthTracker: number }

export interface MiniMindResume<T extends TensorIn = FloatTensor> {
  model: Map<string, T>;
  optimizer: AdamGroup & {
    /** By position in MiniMind's model.parameters() (optimizerOrder); null: never stepped (no state). */
    state: (AdamParamState<T> | null)[];
  };
  epoch: number;
  step: number;
  worldSize: number;
  wandbId: string | null;
  /** null: `{}`, a disabled scaler (float32/bfloat16 runs). */
  scaler: ScalerDict | null;
}

/** Parameter names in the order of MiniMind's model.parameters(), the optimizer's indices: state-dict order
 *  without the tied lm_head.weight; minimind-3 registers each MoE layer's gate before its experts. */
export function optimizerOrder(cfg: MiniMindConfig): string[] {
  const names = parameterShapes(cfg).map(([n]) => n);
  if (!cfg.use_moe || cfg.aux_form !== 'minimind3') return names;
  for (const gate of names.filter((n) => n.endsWith('.mlp.gate.weight'))) {
    names.splice(names.indexOf(gate), 1);
    names.splice(names.indexOf(gate.replace('gate.weight', 'experts.0.gate_proj.weight')), 0, gate);
  }
  return names;
}

/** Read a resume file, checking every key MiniMind's trainer reads; errors name the file and the key. */
export function readMiniMindResume(path: string): MiniMindResume {
  const { value, where } = readTorchSave(path);
  const fail = (at: string, msg: string): never => { throw new Error(`${where}: ${at}: ${msg}`); };
  const dict = (v: unknown, at: string) => (v instanceof Map ? v : fail(at, `expected a dict, got ${kind(v)}`));
  const int = (v: unknown, at: string, min = 0) => (Number.isInteger(v) && (v as number) >= min ? v as number : fail(at, `expected an int ≥ ${min}, got ${kind(v)}`));
  const num = (v: unknown, at: string) => (v instanceof PyFloat ? v.value : typeof v === 'number' ? v : fail(at, `expected a number, got ${kind(v)}`));
  const bool = (v: unknown, at: string) => (typeof v === 'boolean' ? v : fail(at, `expected a bool, got ${kind(v)}`));
  const floatTensor = (v: unknown, at: string) => (isTensor(v) && isFloatTensor(v) ? v : fail(at, `expected a float tensor, got ${kind(v)}`));

  const top = dict(value, 'the pickle');
  const need = (d: Map<unknown, unknown>, key: string, at: string) => (d.has(key) ? d.get(key) : fail(at, `no key '${key}'`));
  const model = new Map<string, FloatTensor>();
  for (const [k, t] of dict(need(top, 'model', 'the resume dict'), 'model')) {
    if (typeof k !== 'string') fail('model', `key ${String(k)} is not a string`);
    model.set(k as string, floatTensor(t, `model.${k}`));
  }

  const opt = dict(need(top, 'optimizer', 'the resume dict'), 'optimizer');
  const groups = need(opt, 'param_groups', 'optimizer');
  const g = dict(Array.isArray(groups) && groups.length === 1 ? groups[0]
    : fail('optimizer.param_groups', `expected one group (MiniMind's trainers use one), got ${kind(groups)}`), 'optimizer.param_groups[0]');
  const at = (k: string) => `optimizer.param_groups[0].${k}`;
  const gv = (k: string) => need(g, k, 'optimizer.param_groups[0]');
  for (const k of ['amsgrad', 'maximize'] as const) {
    if (g.has(k) && bool(g.get(k), at(k))) fail(at(k), `AdamW with ${k}=True is not what MiniMind trains with, and this trainer does not implement it`);
  }
  const b = gv('betas');
  const betas: unknown[] = Array.isArray(b) && b.length === 2 ? b : fail(at('betas'), `expected a pair, got ${kind(b)}`);
  const params = gv('params');
  if (!Array.isArray(params)) fail(at('params'), `expected a list of ints, got ${kind(params)}`);
  const state = dict(need(opt, 'state', 'optimizer'), 'optimizer.state');
  const perParam = (params as unknown[]).map((id, j) => {
    int(id, `${at('params')}[${j}]`);
    const s = state.get(id);
    if (s === undefined) return null; // never stepped
    const sat = `optimizer.state[${id}]`;
    const d = dict(s, sat);
    for (const k of d.keys()) if (!['step', 'exp_avg', 'exp_avg_sq'].includes(k as string)) fail(sat, `unexpected key '${String(k)}' (AdamW without amsgrad has step, exp_avg, exp_avg_sq)`);
    const st = need(d, 'step', sat);
    const step = isTensor(st) ? (st.data.length === 1 ? st.data[0] : fail(`${sat}.step`, `expected a 0-d tensor, got shape [${st.shape}]`)) : num(st, `${sat}.step`);
    return { step: int(step, `${sat}.step`), expAvg: floatTensor(need(d, 'exp_avg', sat), `${sat}.exp_avg`), expAvgSq: floatTensor(need(d, 'exp_avg_sq', sat), `${sat}.exp_avg_sq`) };
  });

  const wandb = top.get('wandb_id') ?? null;
  if (wandb !== null && typeof wandb !== 'string') fail('wandb_id', `expected a str or None, got ${kind(wandb)}`);
  const sc = dict(top.get('scaler') ?? new Map(), 'scaler');
  const sv = (k: string) => need(sc, k, 'scaler');
  return {
    model,
    optimizer: {
      lr: num(gv('lr'), at('lr')), betas: [num(betas[0], `${at('betas')}[0]`), num(betas[1], `${at('betas')}[1]`)],
      eps: num(gv('eps'), at('eps')), weightDecay: num(gv('weight_decay'), at('weight_decay')), state: perParam,
    },
    epoch: int(need(top, 'epoch', 'the resume dict'), 'epoch'),
    step: int(top.get('step') ?? 0, 'step'),
    worldSize: int(top.get('world_size') ?? 1, 'world_size', 1),
    wandbId: wandb as string | null,
    scaler: sc.size === 0 ? null : {
      scale: num(sv('scale'), 'scaler.scale'), growthFactor: num(sv('growth_factor'), 'scaler.growth_factor'),
      backoffFactor: num(sv('backoff_factor'), 'scaler.backoff_factor'), growthInterval: int(sv('growth_interval'), 'scaler.growth_interval', 1),
      growthTracker: int(sv('_growth_tracker'), 'scaler._growth_tracker'),
    },
  };
}

/** Write a resume file MiniMind's trainer continues from with --from_resume 1 (torch 2.6's AdamW group
 *  fields, step a 0-d float32 tensor, moments float32). Atomic. */
export function writeMiniMindResume(path: string, r: MiniMindResume<TensorIn>): void {
  const f = (x: number) => new PyFloat(x);
  const state = new Map<number, PyValue>();
  r.optimizer.state.forEach((s, i) => {
    if (!s) return;
    state.set(i, new Map<string, PyValue>([
      ['step', { shape: [], data: Float32Array.of(s.step), dtype: 'float32' }],
      ['exp_avg', { ...s.expAvg, dtype: 'float32' }], ['exp_avg_sq', { ...s.expAvgSq, dtype: 'float32' }],
    ]));
  });
  const o = r.optimizer;
  const group = new Map<string, PyValue>([
    ['lr', f(o.lr)], ['betas', tuple([f(o.betas[0]), f(o.betas[1])])], ['eps', f(o.eps)], ['weight_decay', f(o.weightDecay)],
    ['amsgrad', false], ['foreach', null], ['maximize', false], ['capturable', false], ['differentiable', false], ['fused', null],
    ['params', o.state.map((_, i) => i)],
  ]);
  const s = r.scaler;
  const scaler = new Map<string, PyValue>(s ? [
    ['scale', f(s.scale)], ['growth_factor', f(s.growthFactor)], ['backoff_factor', f(s.backoffFactor)],
    ['growth_interval', s.growthInterval], ['_growth_tracker', s.growthTracker],
  ] : []);
  writeTorchSave(path, new Map<string, PyValue>([
    ['model', new Map<string, PyValue>(r.model)],
    ['optimizer', new Map<string, PyValue>([['state', state], ['param_groups', [group]]])],
    ['epoch', r.epoch], ['step', r.step], ['world_size', r.worldSize], ['wandb_id', r.wandbId], ['scaler', scaler],
  ]));
}

function kind(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (v instanceof PyFloat) return `float ${v.value}`;
  if (isTensor(v)) return `a ${v.dtype} tensor [${v.shape}]`;
  if (Array.isArray(v)) return `a ${Object.isFrozen(v) ? 'tuple' : 'list'} of ${v.length}`;
  if (v instanceof Map) return 'a dict';
  return `${typeof v} ${JSON.stringify(v)}`;
}
