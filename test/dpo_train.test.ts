// The DPO task (train/dpo_task.ts) against our PyTorch transcription of MiniMind's DPO step
// (test/fixtures/ref/dpo.json, make_dpo_fixtures.py), for minimind-3's sum (beta 0.15) and MiniMind2's
// mean (beta 0.1): the step-1 loss is ln 2 and the policy gradient matches; 3 steps through the one loop
// (train/loop.ts) match step for step (dpo_loss, margin, accuracy, grad_norm, lr) and end at PyTorch's
// parameters; the reference never moves and has no gradient buffer; a resumed run equals the uninterrupted one.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { MiniMind } from '../model/minimind.js';
import { MiniMindConfig, minimind2, minimind3 } from '../model/config.js';
import { readSafetensors } from '../model/safetensors.js';
import { parseArgs } from '../train/args.js';
import { trainLoop, type BatchSource, type StepLog } from '../train/loop.js';
import type { Batch } from '../train/lm_task.js';
import { dpoTask, dpoDefaults } from '../train/dpo_task.js';
import { loadResume } from '../train/checkpoint.js';
import type { LogprobReduce } from '../kernels/logprob.js';
import { setupGpu, assertClose } from './util.js';

const DIR = join(import.meta.dirname, 'fixtures', 'ref');
const fx = JSON.parse(readFileSync(join(DIR, 'dpo.json'), 'utf8'));
const cfg: MiniMindConfig = { ...minimind2(), ...fx.config };
const weights = new Map([...readSafetensors(join(DIR, fx.initial_weights)).tensors]
  .map(([k, t]) => [k.slice('param.'.length), t as { shape: number[]; data: Float32Array }]));
const fixedBatch = (() => {
  const t = readSafetensors(join(DIR, 'dpo_batch.safetensors')).tensors;
  const [x, y, mask] = ['x', 'y', 'mask'].map((k) => t.get(k)!.data as Int32Array);
  const [rows, T] = t.get('x')!.shape;
  return { inputIds: x, labels: y.map((v, i) => (mask[i] ? v : -100)), batch: rows, seqLen: T };
})();
const REDUCES = ['sum', 'mean'] as const;

const s = suite('dpo_train');
s.before(setupGpu);

function models(): { policy: MiniMind; ref: MiniMind } {
  const policy = new MiniMind(cfg, 0), ref = new MiniMind(cfg, 0, { frozen: true });
  for (const m of [policy, ref]) m.load(weights, true);
  return { policy, ref };
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a, Math.abs).reduce((x, y) => Math.max(x, y), 0);

/** The fixture's batch, the same every step. */
const source = (iters: number): BatchSource<Batch> => ({
  iters, async *batches(_epoch, skip) { for (let k = skip; k < iters; k++) yield fixedBatch; },
});

async function run(reduce: LogprobReduce, dir: string, extra: Record<string, number> = {}, resume = false) {
  const r = fx.runs[reduce];
  const args = parseArgs([], {
    learning_rate: fx.base_lr, epochs: fx.epochs, batch_size: fixedBatch.batch / 2, accumulation_steps: fx.accumulation_steps,
    grad_clip: fx.grad_clip, max_seq_len: fixedBatch.seqLen + 1, log_interval: 1000, save_interval: 1000, dtype: 'float32', ...extra,
  });
  const { policy, ref } = models();
  const logs: StepLog[] = [];
  const files = { weightPath: join(dir, 'dpo.pth'), resumePath: join(dir, 'dpo_resume.pth') };
  await trainLoop({
    args, task: dpoTask(policy, ref, { beta: r.beta, reduce, files }), data: source(fx.iters), resumePath: files.resumePath,
    resume: resume ? await loadResume(files.resumePath, policy) : undefined, onStep: (l) => logs.push(l), print: () => {},
  });
  return { logs, policy, ref };
}

s("each generation's defaults: MiniMind2 beta 0.1 over the mean, minimind-3 beta 0.15 over the sum", () => {
  assert.equal(dpoDefaults(minimind2()), { beta: 0.1, reduce: 'mean' });
  assert.equal(dpoDefaults(minimind3()), { beta: 0.15, reduce: 'sum' });
});

for (const reduce of REDUCES) {
  s(`${reduce}: step 1 (policy = reference) gives ln 2, margin 0, accuracy 0, and PyTorch's policy gradient`, async () => {
    const { policy, ref } = models();
    const task = dpoTask(policy, ref, { beta: fx.runs[reduce].beta, reduce });
    beginScope();
    try {
      const { objective, reads } = await task.forward(fixedBatch);
      backward(objective);
      const values = await Promise.all(reads.map(async (t) => (t ? (await t.read())[0] : NaN)));
      const { loss, parts } = task.terms(values);
      assertClose([loss, parts.dpo_loss], [Math.LN2, Math.LN2], 'loss', 1e-6, 0);
      assert.equal([parts.aux_loss, parts.reward_margin, parts.reward_accuracy], [0, 0, 0]);
    } finally {
      endScope();
    }
    const grads = readSafetensors(join(DIR, `dpo_${reduce}.safetensors`)).tensors;
    for (const name of fx.runs[reduce].param_names as string[]) {
      const want = grads.get(`grad.${name}`)!.data;
      assertClose(await policy.p(name).grad!.readF32(), want, `grad ${name}`, 1e-3, 2e-4 * maxAbs(want));
    }
    assert.is(ref.p('model.embed_tokens.weight').grad, null, 'the reference has no gradient buffer');
    policy.dispose();
    ref.dispose();
  });

  s(`${reduce}: 3 steps through the training loop match PyTorch step for step and end at its parameters`, async () => {
    const { logs, policy, ref } = await run(reduce, mkdtempSync(join(tmpdir(), 'dpo-')));
    const want = fx.runs[reduce].steps as Record<string, number>[];
    const col = (k: string) => want.map((w) => w[k]);
    assert.is(logs.length, want.length);
    assertClose(logs.map((l) => l.parts.dpo_loss), col('dpo_loss'), 'dpo_loss', 1e-5, 0);
    assertClose(logs.map((l) => l.loss), col('loss'), 'loss', 1e-5, 0);
    assertClose(logs.map((l) => l.parts.reward_margin), col('reward_margin'), 'reward_margin', 1e-3, 1e-6);
    assert.equal(logs.map((l) => l.parts.reward_accuracy), col('reward_accuracy'));
    assertClose(logs.map((l) => l.grad_norm!), col('grad_norm'), 'grad_norm', 1e-4, 0);
    assertClose(logs.map((l) => l.lr), col('lr'), 'lr', 1e-12, 0);
    // AdamW moves each weight by up to ~lr a step, whatever the gradient's size, so float32 round-off in a
    // near-zero gradient shows up as a fraction of lr (measured: 0.014·lr at most); 5% of lr is far below a
    // step taken wrong or not taken.
    const tol = 0.05 * fx.base_lr;
    const final = readSafetensors(join(DIR, `dpo_${reduce}.safetensors`)).tensors;
    for (const name of fx.runs[reduce].param_names as string[]) {
      const w = final.get(`param.${name}`)!.data, got = await policy.p(name).readF32(), init = weights.get(name)!.data;
      assertClose(got, w, `param ${name}`, 1e-5, tol);
      assert.ok(maxAbs(w.map((v, i) => v - init[i])) > 10 * tol, `${name}: the check cannot tell trained from untrained weights`);
      assertClose(await ref.p(name).readF32(), init, `reference ${name} unchanged`, 0, 0);
    }
    policy.dispose();
    ref.dispose();
  });
}

s('a run stopped after k steps and resumed (reference rebuilt from the start weights) equals the uninterrupted run, bit for bit', async () => {
  const full = await run('sum', mkdtempSync(join(tmpdir(), 'dpo-full-')));
  const want = full.logs.map((l) => [l.loss, l.parts.reward_margin, l.grad_norm]);
  const names = fx.runs.sum.param_names as string[];
  const finalWant = await Promise.all(names.map((n) => full.policy.p(n).readF32()));
  for (const k of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), `dpo-resume${k}-`));
    const first = await run('sum', dir, { max_steps: k });
    const rest = await run('sum', dir, {}, true);
    assert.equal([...first.logs, ...rest.logs].map((l) => [l.loss, l.parts.reward_margin, l.grad_norm]), want, `stopped at ${k}`);
    for (const [i, n] of names.entries()) assert.equal(await rest.policy.p(n).readF32(), finalWant[i], `stopped at ${k}: ${n}`);
    for (const m of [first.policy, first.ref, rest.policy, rest.ref]) m.dispose();
  }
  full.policy.dispose();
  full.ref.dispose();
});

s.run();
