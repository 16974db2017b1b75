// Data-parallel training end to end, 2 ranks on 2 devices of this machine's adapter (test/fixtures/ddp/
// train_rank.ts runs train/loop.ts on each): the tiny dense and MoE models against a single-process
// reference of the same arithmetic (each rank's shard and token-mean loss, gradients averaged) and against
// PyTorch's DDP arithmetic simulated in one process (ddp_train.json, make_ddp_fixture.py); resume with 2 and
// then 1 process; LoRA's adapters on 2 ranks; a rank that dies mid-run.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startRanks } from '../runtime/ranks.js';
import { add, scale } from '../kernels/index.js';
import { trainLoop, type BatchSource, type StepLog } from '../train/loop.js';
import { lmTask, type Batch } from '../train/lm_task.js';
import { loraTask } from '../train/lora_task.js';
import type { Task } from '../train/task.js';
import { readMiniMindResume } from '../model/resume_pth.js';
import { randperm } from '../data/sampler.js';
import { lrAt } from '../train/schedule.js';
import { fx, tensors, shardSource, startModel, trainArgs, trainedWeights } from './fixtures/ddp/train_case.js';
import type { TrainJob, TrainOut } from './fixtures/ddp/train_rank.js';
import { setupGpu, assertClose } from './util.js';

const s = suite('ddp_train');
s.before(setupGpu);
const ENTRY = new URL('./fixtures/ddp/train_rank.ts', import.meta.url);
const W = fx.world_size;

function launch(job: TrainJob, world = W) {
  return startRanks<TrainJob, TrainOut>({ world, entry: ENTRY, data: job, timeoutMs: 60_000, graceMs: 1000 });
}

/** The same arithmetic in one process: a step runs every rank's batch on one model, and backpropagates the
 *  mean of their objectives. Logs rank 0's terms (parts.rank1 holds rank 1's loss). */
async function reference(name: string, lora = false): Promise<{ logs: StepLog[]; weights: Map<string, Float32Array> }> {
  const run = fx.runs[name];
  const model = lora ? startModel(run.kind, undefined, { seed: 1 }) : startModel(run.kind), inner = lora ? loraTask(model) : lmTask(model);
  const task: Task<Batch[]> = {
    models: [model], store: inner.store,
    measure: (bs) => ({ tokens: bs.reduce((a, b) => a + b.batch * b.seqLen, 0), flops: 0 }),
    async forward(bs) {
      const fs = [];
      for (const b of bs) fs.push(await inner.forward(b));
      return { objective: scale(fs.map((f) => f.objective).reduce((a, b) => add(a, b)), 1 / bs.length), reads: fs.flatMap((f) => f.reads) };
    },
    terms(values) {
      const [r0, r1] = [0, 1].map((r) => inner.terms(values.slice(2 * r, 2 * r + 2)));
      return { loss: r0.loss, parts: { ...r0.parts, rank1: r1.loss } };
    },
    logLine: () => '',
    planBatch: (B, T) => [inner.planBatch(B, T)],
    save: async () => {},
  };
  const per = [0, 1].map((rank) => shardSource({ rank, world: W }));
  const data: BatchSource<Batch[]> = {
    iters: per[0].iters,
    async *batches(epoch, skip) {
      const its = per.map((p) => p.batches(epoch, skip)[Symbol.asyncIterator]());
      for (;;) {
        const got = await Promise.all(its.map((it) => it.next()));
        if (got.some((g) => g.done)) return;
        yield got.map((g) => g.value as Batch);
      }
    },
  };
  const logs: StepLog[] = [];
  await trainLoop({ args: trainArgs(run), task, data, resumePath: '(none)', onStep: (l) => logs.push(l), print: () => {} });
  const weights = await trainedWeights(model);
  model.lora?.dispose();
  model.dispose();
  return { logs, weights };
}

const runs = new Map<string, TrainOut[]>();

for (const name of ['dense_acc2', 'moe_acc1']) {
  s(`${name}: 2 ranks equal the single-process reference and PyTorch's DDP arithmetic (losses, grad norms, final weights)`, async () => {
    const outs = await launch({ run: name, dir: mkdtempSync(join(tmpdir(), 'ddp-')) }).done;
    runs.set(name, outs);
    const ref = await reference(name);
    const torch = fx.runs[name];
    const [r0, r1] = outs;
    // Every rank trains its own shard and ends on the same weights, bit for bit.
    assert.equal(r0.rows.slice(0, 3), [[8, 2], [7, 4], [6]], 'rank 0: its DistributedSampler shard of epoch 1');
    for (const k of Object.keys(r0.weights)) assert.equal(r1.weights[k], r0.weights[k], `${k}: rank 1 = rank 0`);
    // Only rank 0 prints.
    assert.ok(r0.printed.length > 0 && r1.printed.length === 0, `printed: rank 0 ${r0.printed.length}, rank 1 ${r1.printed.length}`);
    // Against the single-process reference: float32 round-off apart (sums in another order).
    assert.is(r0.logs.length, ref.logs.length);
    assertClose(r0.logs.map((l) => l.loss), ref.logs.map((l) => l.loss), 'rank 0 loss vs reference', 2e-6, 0);
    assertClose(r1.logs.map((l) => l.loss), ref.logs.map((l) => l.parts.rank1), 'rank 1 loss vs reference', 2e-6, 0);
    const norms = (ls: StepLog[]) => ls.filter((l) => l.grad_norm !== null).map((l) => l.grad_norm!);
    assertClose(norms(r0.logs), norms(ref.logs), 'grad norm vs reference', 2e-6, 0);
    assertClose(norms(r1.logs), norms(r0.logs), 'grad norm: rank 1 = rank 0', 0, 0);
    for (const [k, w] of ref.weights) assertClose(r0.weights[k], w, `${k} vs reference`, 1e-5, 1e-6);
    // Against PyTorch.
    assert.is(r0.logs.length, torch.micro_steps.length);
    for (const r of [0, 1]) {
      assertClose(outs[r].logs.map((l) => l.loss), torch.micro_steps.map((m) => m.ranks[r].loss), `rank ${r} loss vs PyTorch`, 1e-4, 0);
    }
    assertClose(r0.logs.map((l) => l.lr), torch.micro_steps.map((m) => m.lr), 'lr vs PyTorch', 1e-12, 0);
    assertClose(norms(r0.logs), torch.optimizer_steps.map((o) => o.grad_norm), 'grad norm vs PyTorch', 1e-4, 0);
    const init = startModel(torch.kind);
    const start = new Map((await init.exportWeights()).map((w) => [w.name, w.data]));
    init.dispose();
    // AdamW moves a weight by about lr per step whatever its gradient's size, so where a gradient is near
    // zero its round-off can change the update by a good part of lr (measured: 8.5e-6 on one MoE expert
    // weight, 0.017·lr); 6 steps move the weights by up to 6·lr = 3e-3.
    const tol = 0.04 * fx.base_lr;
    for (const k of Object.keys(r0.weights)) {
      const want = tensors.get(`final.${name}.${k === 'lm_head.weight' ? 'model.embed_tokens.weight' : k}`)!.data;
      assertClose(r0.weights[k], want, `${k} vs PyTorch`, 1e-4, tol);
      assert.ok(start.get(k)!.some((v, i) => Math.abs(v - want[i]) > 1e-4 * Math.abs(want[i]) + tol), `${k}: the check cannot tell trained from untrained`);
    }
  });
}

s('LoRA on 2 ranks equals the single-process reference; the frozen base stays as loaded', async () => {
  const outs = await launch({ run: 'dense_acc2', dir: mkdtempSync(join(tmpdir(), 'ddp-lora-')), lora: true }).done;
  const ref = await reference('dense_acc2', true);
  const [r0, r1] = outs;
  const start = startModel('dense'), base = await trainedWeights(start);
  start.dispose();
  const adapters = Object.keys(r0.weights).filter((k) => k.includes('.lora.'));
  assert.ok(adapters.length > 0, 'the ranks report their adapters');
  for (const k of Object.keys(r0.weights)) assert.equal(r1.weights[k], r0.weights[k], `${k}: rank 1 = rank 0`);
  for (const [k, w] of base) assert.equal(r0.weights[k], Array.from(w), `${k}: the base is frozen`);
  assertClose(r0.logs.map((l) => l.loss), ref.logs.map((l) => l.loss), 'rank 0 loss vs reference', 2e-6, 0);
  assertClose(r1.logs.map((l) => l.loss), ref.logs.map((l) => l.parts.rank1), 'rank 1 loss vs reference', 2e-6, 0);
  const norms = (ls: StepLog[]) => ls.filter((l) => l.grad_norm !== null).map((l) => l.grad_norm!);
  assertClose(norms(r0.logs), norms(ref.logs), 'grad norm vs reference', 2e-6, 0);
  for (const k of adapters) {
    assertClose(r0.weights[k], ref.weights.get(k)!, `${k} vs reference`, 1e-5, 1e-6);
    if (k.endsWith('.B.weight')) assert.ok(r0.weights[k].some((v) => v !== 0), `${k} trained (it starts at 0)`);
  }
});

s('resume: stopped after 2 steps on 2 ranks, resumed on 2 it equals the uninterrupted run; on 1 it goes on after the samples done', async () => {
  const name = 'dense_acc2', B = fx.batch_size;
  const full = runs.get(name) ?? await launch({ run: name, dir: mkdtempSync(join(tmpdir(), 'ddp-')) }).done;
  const dir = mkdtempSync(join(tmpdir(), 'ddp-resume-')), dir1 = mkdtempSync(join(tmpdir(), 'ddp-resume1-'));
  const first = await launch({ run: name, dir, maxSteps: 2 }).done;
  const saved = readMiniMindResume(join(dir, 'resume.pth'));
  assert.equal([saved.epoch, saved.step, saved.worldSize], [0, 2, 2], 'the file counts per-rank steps and says how many ranks');
  copyFileSync(join(dir, 'resume.pth'), join(dir1, 'resume.pth'));
  // On 2 ranks again: the same steps, bit for bit.
  const rest = await launch({ run: name, dir, resume: true }).done;
  assert.equal([...first[0].logs, ...rest[0].logs].map((l) => l.loss), full[0].logs.map((l) => l.loss));
  assert.equal([...first[1].logs, ...rest[1].logs].map((l) => l.grad_norm), full[1].logs.map((l) => l.grad_norm));
  for (const k of Object.keys(full[0].weights)) assert.equal(rest[0].weights[k], full[0].weights[k], k);
  // On 1: step 2 of each of 2 ranks is step 4 (MiniMind's floor(step·W_saved/W)); the 2 ranks' first 2 steps
  // trained positions [0, 2·B·2) of the epoch's seed-0 permutation, so it goes on at position 8.
  const [one] = await launch({ run: name, dir: dir1, resume: true }, 1).done;
  assert.match(one.notice ?? '', /saved by 2 processes: step 2 of each is step 4 of this single-process run/);
  const perm = Array.from(randperm(fx.n, 0));
  assert.equal(new Set(first.flatMap((o) => o.rows.flat())), new Set(perm.slice(0, 2 * B * 2)));
  assert.equal(one.rows[0], perm.slice(2 * B * 2, 3 * B * 2).slice(0, B));
  const iters = Math.ceil(fx.n / B);
  assert.equal([one.logs[0].epoch, one.logs[0].step, one.logs[0].iters], [1, 5, iters]);
  assert.is(one.logs[0].lr, lrAt(5, 2 * iters, fx.base_lr));
  assert.ok(one.printed.some((l) => /resumed from .*: epoch 1, step 4\/5/.test(l)), one.printed.join('\n'));
});

s('a rank that dies mid-run: every rank stops within seconds, the error names it, the last checkpoint stays whole', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddp-kill-')), progress = join(dir, 'progress');
  // Its 6th step ends after rank 0 joined step 5's exchange, so after the first epoch's end (4 steps), which saves.
  const l = launch({ run: 'dense_acc2', dir, epochs: 500, progress, exitAfter: 6 });
  let t0 = Infinity;
  l.workers[1].on('exit', () => { t0 = performance.now(); });
  const err = await l.done.then(() => null, (e: Error) => e);
  const took = performance.now() - t0;
  assert.ok(err, 'the launch rejects');
  assert.match(err!.message, /^rank 1 failed: its thread exited \(code 1\) before it finished$/);
  assert.ok(took < 10_000, `every rank stopped ${(took / 1000).toFixed(1)} s after rank 1 died`);
  const steps = readFileSync(progress, 'utf8').trim().split('\n').length;
  assert.ok(steps >= 5 && steps <= 7, `rank 0 stopped at the next exchange (it logged ${steps} steps)`);
  assert.is(readMiniMindResume(join(dir, 'resume.pth')).worldSize, 2);
});

s.run();
