// Resume checkpoints across implementations (spec §14). MiniMind → ours: a resume file written by MiniMind's
// lm_checkpoint logic under real torch (test/fixtures/resume/make_resume_fixture.py), resumed by our loop, gives
// the losses MiniMind's own loop computes from it. Ours → MiniMind: the file we write reads back with identical
// tensors and carries every key MiniMind's trainer reads, with the type it expects (check_written.py in that
// folder runs MiniMind's restore and loop on it under torch, outside the tests).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MiniMind } from '../model/minimind.js';
import { minimind2, type MiniMindConfig } from '../model/config.js';
import { readTorchSave, writeTorchSave, isTensor, type PyValue } from '../model/torch_save.js';
import { PyFloat } from '../model/pickle.js';
import { optimizerOrder, readMiniMindResume } from '../model/resume_pth.js';
import { epochBatches } from '../data/sampler.js';
import { writeBuffer } from '../runtime/kernel.js';
import { AdamW } from '../kernels/adamw.js';
import { trainLoop, type StepLog } from '../train/loop.js';
import { loadResume, saveResume } from '../train/checkpoint.js';
import { lmTask } from '../train/lm_task.js';
import { setupGpu, assertClose, randn } from './util.js';
import { MINIMIND_FILE, cfg, fx, runArgs, source } from './fixtures/resume/fixture.js';

interface Micro { epoch: number; step: number; lr: number; loss: number; grad_norm?: number }

const s = suite('resume_pth');
let dir = '';
s.before(async () => { await setupGpu(); dir = mkdtempSync(join(tmpdir(), 'resume-pth-')); });
s.after(() => rmSync(dir, { recursive: true, force: true }));

async function resumeFrom(file: string, resumePath: string): Promise<{ logs: StepLog[]; model: MiniMind }> {
  const args = runArgs();
  const model = new MiniMind(cfg, 99); // another init: the checkpoint replaces it
  const logs: StepLog[] = [];
  await trainLoop({
    args, task: lmTask(model, { weightPath: join(dir, 'w.pth'), resumePath }), data: source, resumePath, resume: await loadResume(file, model),
    onStep: (l) => logs.push(l), print: () => {},
  });
  return { logs, model };
}

s("our sampler gives the batches MiniMind's loop trained on", () => {
  fx.batches.forEach((want: number[][], e: number) => assert.equal(epochBatches(fx.run.n, fx.run.batch_size, e, 42), want, `epoch ${e}`));
});

s("reads MiniMind's resume file: its position, float16 weights with both tied keys, AdamW state by parameter position", () => {
  const r = readMiniMindResume(MINIMIND_FILE);
  assert.equal([r.epoch, r.step, r.worldSize, r.wandbId, r.scaler], [fx.saved.epoch, fx.saved.step, 1, null, null]);
  assert.equal([...r.model.keys()], [...optimizerOrder(cfg), 'lm_head.weight']);
  for (const t of r.model.values()) assert.is(t.dtype, 'float16');
  assert.ok(r.model.get('lm_head.weight') !== r.model.get('model.embed_tokens.weight'), 'two storages, as .half() makes them');
  assert.equal([...r.model.get('lm_head.weight')!.data], [...r.model.get('model.embed_tokens.weight')!.data]);
  assert.is(r.optimizer.state.length, optimizerOrder(cfg).length);
  const stepsDone = fx.first_run.filter((m: Micro) => m.step <= fx.saved.step && m.grad_norm !== undefined).length;
  for (const st of r.optimizer.state) assert.is(st!.step, stepsDone);
  assert.equal([r.optimizer.betas, r.optimizer.eps, r.optimizer.weightDecay], [[0.9, 0.999], 1e-8, 0.01]);
  assert.is(r.optimizer.lr, fx.first_run[fx.saved.step - 1].lr, 'the last lr the loop set');
});

s('the optimizer order is MiniMind\'s model.parameters() order (MiniMind2 and minimind-3, dense and MoE)', () => {
  for (const [kind, o] of Object.entries(fx.param_order as Record<string, { config: Partial<MiniMindConfig>; names: string[] }>)) {
    assert.equal(optimizerOrder({ ...minimind2(), ...o.config }), o.names, kind);
  }
});

s("resumed from MiniMind's file, our loop's next losses, lrs and gradient norms are MiniMind's", async () => {
  const { logs, model } = await resumeFrom(MINIMIND_FILE, join(dir, 'ours_resume.pth'));
  const want: Micro[] = fx.resumed;
  assert.equal(logs.map((l) => [l.epoch - 1, l.step]), want.map((m) => [m.epoch, m.step]));
  assertClose(logs.map((l) => l.lr), want.map((m) => m.lr), 'lr', 1e-12, 0);
  assertClose(logs.map((l) => l.loss), want.map((m) => m.loss), 'loss', 2e-6, 0);
  const norms = logs.filter((l) => l.grad_norm !== null);
  assertClose(norms.map((l) => l.grad_norm!), want.filter((m) => m.grad_norm !== undefined).map((m) => m.grad_norm!), 'grad_norm', 1e-5, 0);
  model.dispose();
});

s('a file saved by more processes: the step is rescaled to this one-process run, and said so', async () => {
  const { value } = readTorchSave(MINIMIND_FILE);
  (value as Map<string, PyValue>).set('world_size', 2);
  const p = join(dir, 'ws2_resume.pth');
  writeTorchSave(p, value as PyValue);
  const r = await loadResume(p, probe());
  assert.is(r.step, 2 * fx.saved.step);
  assert.match(r.notice ?? '', /saved by 2 processes: step 2 of each is step 4 of this single-process run/);
  // On 4 data-parallel processes: floor(2·2 / 4) = 1 step each (MiniMind's floor(step·W_saved / W)).
  const four = await loadResume(p, probe(), 4);
  assert.is(four.step, Math.floor((2 * fx.saved.step) / 4));
  assert.match(four.notice ?? '', /saved by 2 processes: step 2 of each is step 1 of each of this run's 4/);
});

s("the file we write: identical tensors back, and every key MiniMind's trainer reads, with its type", async () => {
  const model = new MiniMind(cfg, 3), opt = new AdamW(model.store, { lr: 1e-3 });
  const order = optimizerOrder(cfg);
  const moments = order.map((name, i) => {
    const p = model.p(name), { m, v } = opt.momentsOf(p);
    const mm = Float32Array.from(randn(p.size, 10 + i)), vv = Float32Array.from(randn(p.size, 100 + i), Math.abs);
    writeBuffer(m.buffer, m.offset, mm);
    writeBuffer(v.buffer, v.offset, vv);
    return [mm, vv];
  });
  opt.loadState({ step: 7 });
  const path = join(dir, 'written_resume.pth');
  await saveResume(path, model, opt, { epoch: 1, step: 3, scaler: { scale: 2 ** 15, growth_tracker: 11 } });

  const r = readMiniMindResume(path);
  const weights = await model.exportWeights();
  assert.equal([...r.model.keys()], weights.map((w) => w.name));
  for (const w of weights) assert.equal(r.model.get(w.name)!.data, w.data, w.name);
  r.optimizer.state.forEach((st, i) => {
    assert.is(st!.step, 7);
    assert.equal(st!.expAvg.data, moments[i][0], `exp_avg ${order[i]}`);
    assert.equal(st!.expAvgSq.data, moments[i][1], `exp_avg_sq ${order[i]}`);
  });

  // The pickle as torch.load returns it: keys in lm_checkpoint's order, ints, floats, tuples, None.
  const top = readTorchSave(path).value as Map<string, unknown>;
  assert.equal([...top.keys()], ['model', 'optimizer', 'epoch', 'step', 'world_size', 'wandb_id', 'scaler']);
  assert.equal([top.get('epoch'), top.get('step'), top.get('world_size'), top.get('wandb_id')], [1, 3, 1, null]);
  for (const t of (top.get('model') as Map<string, unknown>).values()) assert.ok(isTensor(t) && t.dtype === 'float32');
  const optD = top.get('optimizer') as Map<string, unknown>;
  assert.equal([...optD.keys()], ['state', 'param_groups']);
  const groups = optD.get('param_groups') as unknown[];
  assert.ok(Array.isArray(groups) && !Object.isFrozen(groups) && groups.length === 1, 'param_groups: a list of one group');
  const g = groups[0] as Map<string, unknown>;
  assert.equal([...g.keys()], ['lr', 'betas', 'eps', 'weight_decay', 'amsgrad', 'foreach', 'maximize', 'capturable', 'differentiable', 'fused', 'params']);
  for (const k of ['lr', 'eps', 'weight_decay']) assert.instance(g.get(k), PyFloat, k);
  const betas = g.get('betas') as unknown[];
  assert.ok(Object.isFrozen(betas) && betas.length === 2 && betas.every((b) => b instanceof PyFloat), 'betas: a tuple of two floats');
  assert.equal(['amsgrad', 'foreach', 'maximize', 'capturable', 'differentiable', 'fused'].map((k) => g.get(k)), [false, null, false, false, false, null]);
  assert.equal(g.get('params'), order.map((_, i) => i));
  const state = optD.get('state') as Map<number, Map<string, unknown>>;
  assert.equal([...state.keys()], order.map((_, i) => i));
  for (const [i, st] of state) {
    const step = st.get('step'), m = st.get('exp_avg'), v = st.get('exp_avg_sq');
    assert.ok(isTensor(step) && step.dtype === 'float32' && step.shape.length === 0 && step.data[0] === 7, `state[${i}].step: a 0-d float32 tensor`);
    for (const t of [m, v]) assert.ok(isTensor(t) && t.dtype === 'float32' && t.shape.join() === model.p(order[i]).shape.join(), `state[${i}] moments`);
  }
  const scaler = top.get('scaler') as Map<string, unknown>;
  assert.equal([...scaler.keys()], ['scale', 'growth_factor', 'backoff_factor', 'growth_interval', '_growth_tracker']);
  assert.equal([...scaler.values()], [new PyFloat(2 ** 15), new PyFloat(2), new PyFloat(0.5), 2000, 11]);
  opt.dispose();
  model.dispose();
});

/** A model of the fixture's shape for loadResume to check files against. */
const probe = () => new MiniMind(cfg, 0);

async function rejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try { await p; } catch (e) { assert.match((e as Error).message, re); return; }
  assert.unreachable(`no error; expected ${re}`);
}

s('bad resume files are refused naming the file and the key', async () => {
  const good = readTorchSave(MINIMIND_FILE).value as Map<string, PyValue>;
  const write = (name: string, v: PyValue) => { const p = join(dir, name); writeTorchSave(p, v); return p; };
  await rejects(loadResume(join(dir, 'none.pth'), probe()), /--from_resume 1: no resume checkpoint at .*none\.pth/);
  const noOpt = write('no_opt.pth', new Map([...good].filter(([k]) => k !== 'optimizer')));
  await rejects(loadResume(noOpt, probe()), /no_opt\.pth: the resume dict: no key 'optimizer'/);
  const weightsOnly = write('weights.pth', good.get('model')!);
  await rejects(loadResume(weightsOnly, probe()), /weights\.pth: the resume dict: no key 'model'/);
  const badEpoch = write('epoch.pth', new Map([...good, ['epoch', new PyFloat(0.5)]]));
  await rejects(loadResume(badEpoch, probe()), /epoch\.pth: epoch: expected an int ≥ 0, got float 0.5/);
  await rejects(loadResume(MINIMIND_FILE, new MiniMind({ ...cfg, hidden_size: 64, head_dim: 16 })), /full_sft_32_resume\.pth: model: mis-shaped: model\.embed_tokens\.weight \[64,32\] in file, \[64,64\] in model/);
  const opt = good.get('optimizer') as Map<string, PyValue>, state = opt.get('state') as Map<number, Map<string, PyValue>>;
  const skewed = new Map(state).set(3, new Map([...state.get(3)!, ['step', { shape: [], data: Float32Array.of(5) }]]));
  const p = write('skewed.pth', new Map([...good, ['optimizer', new Map([...opt, ['state', skewed]])]]));
  await rejects(loadResume(p, probe()), /skewed\.pth: optimizer: parameters at different step counts \(1, 5\)/);
});

s.run();
