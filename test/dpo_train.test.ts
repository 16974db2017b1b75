// The DPO task (train/dpo_task.ts) against our PyTorch transcription of MiniMind's DPO step
// (test/fixtures/ref/dpo*.json, make_dpo_fixtures.py): the tiny dense model with minimind-3's sum (beta 0.15)
// and MiniMind2's mean (beta 0.1), MiniMind2-MoE with its mean and minimind-3 MoE with its sum (the policy's aux
// loss added, as train_dpo.py does). The step-1 loss is ln 2 and the policy gradient matches; 3 steps through
// the one loop (train/loop.ts) match step for step (dpo_loss, aux_loss, margin, accuracy, grad_norm, lr) and end
// at PyTorch's parameters; the reference never moves and has no gradient buffer; a resumed run equals the
// uninterrupted one.
//
// Tolerances come from float32's own error, which the fixture script measures by rerunning each run in float64
// (`float32_vs_float64`). Step-1 gradients: within GRAD_K × float32 PyTorch's distance from float64, per tensor
// (measured: ours is at most 1.7× that from PyTorch; that distance is about 1e-6 of the tensor's max |g|, 2e-5 for
// the minimind-3 router, whose only gradient is the aux loss through the softmax Jacobian, a cancelling sum).
// Final parameters: see paramTolerance.
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
const GRAD_K = 5;

interface Run {
  beta: number;
  param_names: string[];
  steps: Record<string, number>[];
  /** max |g32 − g64| of each parameter's step-1 gradient, PyTorch float32 against float64 */
  float32_vs_float64: { grad_err: Record<string, number> };
}
interface Fixture {
  name: string;
  fx: { base_lr: number; grad_clip: number; epochs: number; iters: number; accumulation_steps: number; runs: Record<string, Run> };
  cfg: MiniMindConfig;
  weights: Map<string, { shape: number[]; data: Float32Array }>;
  batch: Batch;
}

function fixture(name: string): Fixture {
  const fx = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8'));
  const weights = new Map([...readSafetensors(join(DIR, fx.initial_weights)).tensors]
    .map(([k, t]) => [k.slice('param.'.length), t as { shape: number[]; data: Float32Array }]));
  const t = readSafetensors(join(DIR, fx.batch)).tensors;
  const [x, y, mask] = ['x', 'y', 'mask'].map((k) => t.get(k)!.data as Int32Array);
  const [rows, T] = t.get('x')!.shape;
  const batch = { inputIds: x, labels: y.map((v, i) => (mask[i] ? v : -100)), batch: rows, seqLen: T };
  return { name, fx, cfg: { ...minimind2(), ...fx.config }, weights, batch };
}
const FIXTURES = ['dpo', 'dpo_moe', 'dpo_v3_moe'].map(fixture);

const s = suite('dpo_train');
s.before(setupGpu);

function models(f: Fixture): { policy: MiniMind; ref: MiniMind } {
  const policy = new MiniMind(f.cfg, 0), ref = new MiniMind(f.cfg, 0, { frozen: true });
  for (const m of [policy, ref]) m.load(f.weights, true);
  return { policy, ref };
}

/** float32's spacing at |w|: 2^(⌊log2 |w|⌋ − 23), the subnormal spacing below 2^-126. */
const ulp32 = (w: number) => 2 ** (Math.max(Math.floor(Math.log2(Math.abs(w))), -126) - 23);

/** The step-1 gradient tolerance of a parameter: GRAD_K × float32 PyTorch's own error there (0 where both
 *  are exact: an expert no token picks has an all-zero gradient). */
const gradTol = (r: Run, name: string) => GRAD_K * r.float32_vs_float64.grad_err[name];

/** Per-weight tolerance on the parameters after the run, from AdamW's update m̂/(√v̂ + ε) (ε = 1e-8). It
 *  ignores the gradient's scale (so the clip does not matter) and, where |g| ≫ ε, depends on the ratios of a
 *  weight's gradients only: a gradient error δ moves each step by about δ/|g| of its lr. A weight whose
 *  gradient is within δ of 0 (or near ε) takes a step whose direction is float32 noise, up to lr. So each
 *  weight gets 2 float32 ulps (the weight-decay multiply and the update each round once) + Σ_s lr_s ·
 *  min(1, δ/|g₁|), with δ = gradTol and g₁ PyTorch's step-1 gradient; δ = 0 (an exact zero gradient: AdamW's
 *  update is 0, the decay alone moves the weight) gives the ulps alone. Measured: within 0.58 of this bound
 *  (0.014·lr at most). The median weight's tolerance is 1.6e-4·lr and 72% are under 1e-3·lr; the 1% above
 *  0.07·lr are weights whose gradient is float32 noise, where PyTorch float32's own distance from float64
 *  reaches 0.03·lr (`float32_vs_float64.param_err_in_lr`). */
function paramTolerance(w: ArrayLike<number>, g1: ArrayLike<number>, delta: number, lrSum: number): Float64Array {
  return Float64Array.from(w, (v: number, i: number) => 2 * ulp32(v) + lrSum * (delta && Math.min(1, delta / Math.abs(g1[i]))));
}

/** |got − want| ≤ tol elementwise, reporting the first mismatches. */
function assertWithin(got: ArrayLike<number>, want: ArrayLike<number>, tol: ArrayLike<number>, what: string): void {
  const bad: string[] = [];
  for (let i = 0; i < want.length && bad.length < 5; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol[i])) bad.push(`[${i}] got ${got[i]} want ${want[i]} (tolerance ${tol[i]})`);
  }
  assert.is(bad.length, 0, `${what}: ${bad.join(', ')}`);
}

/** The fixture's batch, the same every step. */
const source = (f: Fixture): BatchSource<Batch> => ({
  iters: f.fx.iters, async *batches(_epoch, skip) { for (let k = skip; k < f.fx.iters; k++) yield f.batch; },
});

async function run(f: Fixture, reduce: LogprobReduce, dir: string, extra: Record<string, number> = {}, resume = false) {
  const { fx, batch } = f;
  const args = parseArgs([], {
    learning_rate: fx.base_lr, epochs: fx.epochs, batch_size: batch.batch / 2, accumulation_steps: fx.accumulation_steps,
    grad_clip: fx.grad_clip, max_seq_len: batch.seqLen + 1, log_interval: 1000, save_interval: 1000, dtype: 'float32', ...extra,
  });
  const { policy, ref } = models(f);
  const logs: StepLog[] = [];
  const files = { weightPath: join(dir, 'dpo.pth'), resumePath: join(dir, 'dpo_resume.pth') };
  await trainLoop({
    args, task: dpoTask(policy, ref, { beta: fx.runs[reduce].beta, reduce, files }), data: source(f), resumePath: files.resumePath,
    resume: resume ? await loadResume(files.resumePath, policy) : undefined, onStep: (l) => logs.push(l), print: () => {},
  });
  return { logs, policy, ref };
}

s("each generation's defaults: MiniMind2 beta 0.1 over the mean, minimind-3 beta 0.15 over the sum", () => {
  assert.equal(dpoDefaults(minimind2()), { beta: 0.1, reduce: 'mean' });
  assert.equal(dpoDefaults(minimind3()), { beta: 0.15, reduce: 'sum' });
});

for (const f of FIXTURES) {
  for (const reduce of Object.keys(f.fx.runs) as LogprobReduce[]) {
    const r = f.fx.runs[reduce], at = `${f.name} ${reduce}`;
    const torch = readSafetensors(join(DIR, `${f.name}_${reduce}.safetensors`)).tensors;

    s(`${at}: step 1 (policy = reference) gives ln 2 (+ the policy's aux loss), margin 0, accuracy 0, and PyTorch's policy gradient`, async () => {
      const { policy, ref } = models(f);
      const task = dpoTask(policy, ref, { beta: r.beta, reduce });
      beginScope();
      try {
        const { objective, reads } = await task.forward(f.batch);
        backward(objective);
        const values = await Promise.all(reads.map(async (t) => (t ? (await t.read())[0] : NaN)));
        const { loss, parts } = task.terms(values);
        assertClose([loss, parts.dpo_loss, parts.aux_loss], [Math.LN2 + r.steps[0].aux_loss, Math.LN2, r.steps[0].aux_loss], 'loss', 1e-6, 0);
        assert.equal([parts.reward_margin, parts.reward_accuracy], [0, 0]);
      } finally {
        endScope();
      }
      for (const name of r.param_names) {
        assertClose(await policy.p(name).grad!.readF32(), torch.get(`grad.${name}`)!.data, `grad ${name}`, 0, gradTol(r, name));
      }
      assert.is(ref.p('model.embed_tokens.weight').grad, null, 'the reference has no gradient buffer');
      policy.dispose();
      ref.dispose();
    });

    s(`${at}: 3 steps through the training loop match PyTorch step for step and end at its parameters`, async () => {
      const { logs, policy, ref } = await run(f, reduce, mkdtempSync(join(tmpdir(), 'dpo-')));
      const col = (k: string) => r.steps.map((w) => w[k]);
      assert.is(logs.length, r.steps.length);
      // Measured: losses within 4e-7 relative, margins 4.2e-7 absolute (β · a difference of log-prob sums of
      // about 40, each good to ~40·2^-24), norms 1.3e-6 relative.
      assertClose(logs.map((l) => l.parts.dpo_loss), col('dpo_loss'), 'dpo_loss', 1e-5, 0);
      assertClose(logs.map((l) => l.parts.aux_loss), col('aux_loss'), 'aux_loss', 1e-5, 0);
      assertClose(logs.map((l) => l.loss), col('loss'), 'loss', 1e-5, 0);
      assertClose(logs.map((l) => l.parts.reward_margin), col('reward_margin'), 'reward_margin', 0, 2e-6);
      assert.equal(logs.map((l) => l.parts.reward_accuracy), col('reward_accuracy'));
      assertClose(logs.map((l) => l.grad_norm!), col('grad_norm'), 'grad_norm', 1e-5, 0);
      assertClose(logs.map((l) => l.lr), col('lr'), 'lr', 1e-12, 0);
      const lrSum = col('lr').reduce((a, b) => a + b, 0);
      for (const name of r.param_names) {
        const want = torch.get(`param.${name}`)!.data, init = f.weights.get(name)!.data;
        const tol = paramTolerance(want, torch.get(`grad.${name}`)!.data, gradTol(r, name), lrSum);
        assertWithin(await policy.p(name).readF32(), want, tol, `param ${name}`);
        assert.ok(want.some((v, i) => Math.abs(v - init[i]) > 10 * tol[i]), `${name}: the check cannot tell trained from untrained weights`);
        assertClose(await ref.p(name).readF32(), init, `reference ${name} unchanged`, 0, 0);
      }
      policy.dispose();
      ref.dispose();
    });
  }
}

s('a run stopped after k steps and resumed (reference rebuilt from the start weights) equals the uninterrupted run, bit for bit', async () => {
  const f = FIXTURES[0];
  const full = await run(f, 'sum', mkdtempSync(join(tmpdir(), 'dpo-full-')));
  const want = full.logs.map((l) => [l.loss, l.parts.reward_margin, l.grad_norm]);
  const names = f.fx.runs.sum.param_names;
  const finalWant = await Promise.all(names.map((n) => full.policy.p(n).readF32()));
  for (const k of [1, 2]) {
    const dir = mkdtempSync(join(tmpdir(), `dpo-resume${k}-`));
    const first = await run(f, 'sum', dir, { max_steps: k });
    const rest = await run(f, 'sum', dir, {}, true);
    assert.equal([...first.logs, ...rest.logs].map((l) => [l.loss, l.parts.reward_margin, l.grad_norm]), want, `stopped at ${k}`);
    for (const [i, n] of names.entries()) assert.equal(await rest.policy.p(n).readF32(), finalWant[i], `stopped at ${k}: ${n}`);
    for (const m of [first.policy, first.ref, rest.policy, rest.ref]) m.dispose();
  }
  full.policy.dispose();
  full.ref.dispose();
});

s.run();
