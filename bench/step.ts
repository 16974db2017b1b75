// One whole training step (forward, backward, global-norm clip, AdamW) of a preset at a batch
// shape: tokens/s, dispatches and submits per step, peak GPU bytes, and model FLOPs (model/flops.ts;
// the caller takes them as a fraction of the measured FMA peak). `lora`: the step of train/lora.ts
// (frozen base, adapters trained), whose bytes held in all (weights, gradients, moments, activations)
// compare with the full step's.
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { counters, resetCounters, sync } from '../runtime/kernel.js';
import { poolStats, resetPeak, trimPool } from '../runtime/buffer.js';
import { add } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { loraStepFlops, stepFlops } from '../model/flops.js';
import { LoRA } from '../model/lora.js';
import { loraTask } from '../train/lora_task.js';
import { mulberry32 as rng } from '../runtime/random.js';
import { Options, Row, Sampling, time } from './harness.js';
import { tuner } from '../runtime/tuner.js';
import { tuneStep } from '../train/tune_step.js';
import { lmTask } from '../train/lm_task.js';

/** `sampling`: fewer samples for a step of seconds (the caller knows which). */
export async function benchStep(name: string, B: number, T: number, o: Options, sampling: Sampling = {}, lora = false): Promise<Row & { heldBytes: number }> {
  const cfg = preset(name);
  trimPool();
  const before = poolStats().inUseBytes; // what other benchmarks keep alive
  const model = new MiniMind(cfg, 1, { frozen: lora });
  if (lora) model.lora = new LoRA(cfg, { seed: 1 });
  const store = model.lora?.store ?? model.store;
  const opt = new AdamW(store, { lr: 1e-4 });
  const r = rng(7);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * cfg.vocab_size));
  const labels = Int32Array.from(ids, (v, i) => (i % T < T / 4 ? -100 : v));
  const step = async () => {
    beginScope();
    const { loss, aux } = await model.loss(Tensor.fromArray(ids, [B, T], 'i32'), Tensor.fromArray(labels, [B, T], 'i32'), ids);
    backward(aux ? add(loss, aux) : loss);
    opt.step(1e-4, gradNorm(store.chunks(store.grads)), 1.0);
    opt.zeroGrad();
    endScope();
  };
  // The kernels' variants for this step, tuned first as the trainer does (train/tune_step.ts).
  await tuneStep(model.lora ? loraTask(model) : lmTask(model), opt, B, T);
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
  const adapterParams = model.lora?.entries().reduce((a, [, p]) => a + p.size, 0) ?? 0;
  model.lora?.dispose();
  model.dispose();
  opt.dispose();
  const flops = lora ? loraStepFlops(cfg, adapterParams, B, T) : stepFlops(cfg, B, T);
  return {
    heldBytes: held, name: `train_step_${lora ? 'lora_' : ''}${name}`, shape: `B${B}×T${T}`, ms: seconds * 1e3, spread: t.spread, samples: t.samples,
    variant: `the tuner's choices for ${classes} shape classes (npm run tune lists them)`,
    clock: t.clock === 'gpu' ? 'gpu+host' : t.clock, hostMs: t.hostSeconds * 1e3, gflops: flops / seconds / 1e9,
    note: `${((B * T) / seconds).toFixed(0)} tokens/s, ${dispatches / t.samples} dispatches, ${submits / t.samples} submits, `
      + `peak ${(peak / 2 ** 20).toFixed(0)} MiB, ${(held / 2 ** 20).toFixed(0)} MiB held in all, host recording ${(t.hostSeconds * 1e3).toFixed(0)} ms`,
  };
}
