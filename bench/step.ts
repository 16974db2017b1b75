// One whole training step (forward, backward, global-norm clip, AdamW) of a preset at a batch
// shape: tokens/s, dispatches and submits per step, peak GPU bytes, and model FLOPs (model/flops.ts;
// the caller takes them as a fraction of the measured FMA peak). The objective is SFT's; LoRA's
// (train/lora_task.ts: frozen base, adapters trained), whose bytes held in all (weights, gradients,
// moments, activations) compare with the full step's; or DPO's (train/dpo_task.ts: B pairs of length
// T, so 2B rows of T − 1 tokens, through a frozen reference too). `precision`: --dtype's mixed precision
// (bf16 / f16 Linears on the model's 16-bit working copy, which the step rewrites; f16 with a fixed loss
// scale of 2^16, as GradScaler's first steps use).
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { counters, resetCounters, sync } from '../runtime/kernel.js';
import { poolStats, resetPeak, trimPool } from '../runtime/buffer.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { MiniMind, type Precision } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { LoRA } from '../model/lora.js';
import { loraTask } from '../train/lora_task.js';
import { mulberry32 as rng } from '../runtime/random.js';
import { Options, Row, Sampling, time } from './harness.js';
import { tuner } from '../runtime/tuner.js';
import { tuneStep } from '../train/tune_step.js';
import { lmTask, type Batch } from '../train/lm_task.js';
import { dpoTask, dpoDefaults } from '../train/dpo_task.js';
import type { Task } from '../train/task.js';

/** `sampling`: fewer samples for a step of seconds (the caller knows which). For 'dpo', B counts pairs. */
export async function benchStep(name: string, B: number, T: number, o: Options, sampling: Sampling = {},
  objective: 'sft' | 'lora' | 'dpo' = 'sft', precision: Precision = 'f32'): Promise<Row & { heldBytes: number; peakBytes: number }> {
  const cfg = preset(name);
  trimPool();
  const before = poolStats().inUseBytes; // what other benchmarks keep alive
  const lora = objective === 'lora';
  const model = new MiniMind(cfg, 1, { frozen: lora });
  if (lora) model.lora = new LoRA(cfg, { seed: 1 });
  const ref = objective === 'dpo' ? new MiniMind(cfg, 1, { frozen: true }) : undefined;
  const task: Task<Batch> = ref ? dpoTask(model, ref, dpoDefaults(cfg)) : lora ? loraTask(model) : lmTask(model);
  const store = task.store;
  for (const m of task.models) m.setPrecision(precision);
  const opt = new AdamW(store, { lr: 1e-4, copy: task.models.find((m) => m.store === store)?.workingCopy ?? undefined });
  const lossScale = precision === 'f16' ? 2 ** 16 : 1;
  const r = rng(7);
  const [rows, len] = ref ? [2 * B, T - 1] : [B, T];
  const ids = Int32Array.from({ length: rows * len }, () => Math.floor(r() * cfg.vocab_size));
  // The first quarter of each row untrained (a prompt).
  const batch: Batch = { inputIds: ids, labels: Int32Array.from(ids, (v, i) => (i % len < len / 4 ? -100 : v)), batch: rows, seqLen: len };
  const step = async () => {
    beginScope();
    backward((await task.forward(batch)).objective, lossScale === 1 ? undefined : Tensor.fromArray([lossScale], [1]));
    opt.step(1e-4, gradNorm(store.chunks(store.grads)), 1.0, 1 / lossScale);
    opt.zeroGrad();
    endScope();
  };
  // The kernels' variants for this step, tuned first as the trainer does (train/tune_step.ts).
  await tuneStep(task, opt, B, T);
  tuner().takePicks();
  const t0 = performance.now();
  await step(); // warm-up: compiles pipelines, fills the pool
  await sync();
  const warmMs = performance.now() - t0;
  trimPool(); // earlier benchmarks' free buffers must not count toward this step's peak
  resetPeak();
  const base = poolStats().inUseBytes; // tensors other benchmarks keep alive
  resetCounters();
  const t = await time(`step_${name}`, step, o, { ...sampling, warmup: false, expectMs: warmMs });
  const classes = tuner().takePicks().length;
  // tokens/s is end to end: on the GPU clock, the host's recording of the step (before its one submit,
  // when the GPU is idle) is added to the GPU span.
  const seconds = t.clock === 'gpu' ? t.seconds + t.hostSeconds : t.seconds;
  const { dispatches, submits } = counters();
  const peak = poolStats().peakInUseBytes - base; // the step's activations and gradients, above parameters and moments
  const held = poolStats().peakInUseBytes - before; // everything the step holds: weights, gradients, moments, activations
  model.lora?.dispose();
  model.dispose();
  ref?.dispose();
  opt.dispose();
  const { tokens, flops } = task.measure(batch);
  return {
    heldBytes: held, peakBytes: peak, name: `train_step_${objective === 'sft' ? '' : `${objective}_`}${name}`,
    shape: `${ref ? `B${B} pairs×L${T}` : `B${B}×T${T}`}${precision === 'f32' ? '' : ` ${precision}`}`,
    ms: seconds * 1e3, spread: t.spread, samples: t.samples,
    variant: `the tuner's choices for ${classes} shape classes (npm run tune lists them)`,
    clock: t.clock === 'gpu' ? 'gpu+host' : t.clock, hostMs: t.hostSeconds * 1e3, gflops: flops / seconds / 1e9,
    note: `${(tokens / seconds).toFixed(0)} tokens/s, ${dispatches / t.samples} dispatches, ${submits / t.samples} submits, `
      + `peak ${(peak / 2 ** 20).toFixed(0)} MiB, ${(held / 2 ** 20).toFixed(0)} MiB held in all, host recording ${(t.hostSeconds * 1e3).toFixed(0)} ms`,
  };
}
