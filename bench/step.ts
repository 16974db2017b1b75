// One whole training step (forward, backward, global-norm clip, AdamW) of a preset at a batch
// shape: tokens/s, dispatches and submits per step, peak GPU bytes, and model FLOPs (model/flops.ts;
// the caller takes them as a fraction of the measured FMA peak).
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { counters, resetCounters, sync } from '../runtime/kernel.js';
import { poolStats, resetPeak, trimPool } from '../runtime/buffer.js';
import { add } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { stepFlops } from '../model/flops.js';
import { mulberry32 as rng } from '../runtime/random.js';
import { Options, Row, Sampling, time } from './harness.js';
import { tuner } from '../runtime/tuner.js';
import { tuneStep } from '../train/tune_step.js';
import { lmTask } from '../train/lm_task.js';

/** `sampling`: fewer samples for a step of seconds (the caller knows which). */
export async function benchStep(name: string, B: number, T: number, o: Options, sampling: Sampling = {}): Promise<Row> {
  const cfg = preset(name);
  const model = new MiniMind(cfg, 1);
  const store = model.store;
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
  await tuneStep(lmTask(model), opt, B, T);
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
  model.dispose();
  opt.dispose();
  const flops = stepFlops(cfg, B, T);
  return {
    name: `train_step_${name}`, shape: `B${B}×T${T}`, ms: seconds * 1e3, spread: t.spread, samples: t.samples,
    variant: `the tuner's choices for ${classes} shape classes (npm run tune lists them)`,
    clock: t.clock === 'gpu' ? 'gpu+host' : t.clock, hostMs: t.hostSeconds * 1e3, gflops: flops / seconds / 1e9,
    note: `${((B * T) / seconds).toFixed(0)} tokens/s, ${dispatches / t.samples} dispatches, ${submits / t.samples} submits, `
      + `peak ${(peak / 2 ** 20).toFixed(0)} MiB, host recording ${(t.hostSeconds * 1e3).toFixed(0)} ms`,
  };
}
