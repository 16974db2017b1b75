// A rank of bench/ddp.ts on its own device: the all-reduce of a preset's whole gradient buffer (random
// gradients, every parameter live), or whole training steps (forward, backward with the all-reduce's hooks,
// reduce, norm, AdamW) at B×T; `reduce: false` is the same step without the all-reduce (the one-device
// baseline). Each timed call starts at a barrier and ends once this rank's GPU is idle.
import { rankMain } from '../runtime/ranks.js';
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { sync, writeBuffer } from '../runtime/kernel.js';
import { GradAllReduce, type ReduceTimes } from '../runtime/grad_allreduce.js';
import { add } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { mulberry32 } from '../runtime/random.js';

export interface DdpBenchJob { kind: 'allreduce' | 'step'; preset: string; B: number; T: number; reps: number; reduce: boolean }
export interface DdpBenchOut { floats: number; ms: number[]; times: ReduceTimes[] }

rankMain<DdpBenchJob, DdpBenchOut>(async (group, job) => {
  await initGpu({ quiet: true });
  try {
    const cfg = preset(job.preset);
    const model = new MiniMind(cfg, 1), store = model.store;
    const ar = job.reduce ? await GradAllReduce.create(store, group) : undefined;
    await ar?.broadcast();
    const r = mulberry32(7 + group.rank);
    let call: () => Promise<void>;
    if (job.kind === 'allreduce') {
      writeBuffer(store.grads, 0, Float32Array.from({ length: store.bytes / 4 }, () => r() - 0.5));
      for (const p of store.params.values()) p.hasGrad = true;
      call = async () => { await ar!.reduce(false, 'bench'); };
    } else {
      const opt = new AdamW(store, { lr: 1e-4 });
      const { B, T } = job;
      const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * cfg.vocab_size));
      const labels = Int32Array.from(ids, (v, i) => (i % T < T / 4 ? -100 : v));
      call = async () => {
        beginScope();
        const { loss, aux } = await model.loss(Tensor.fromArray(ids, [B, T], 'i32'), Tensor.fromArray(labels, [B, T], 'i32'), ids);
        backward(aux ? add(loss, aux) : loss, undefined, ar?.hooks());
        await ar?.reduce(false, 'bench');
        opt.step(1e-4, gradNorm(store.chunks(store.grads)), 1.0);
        opt.zeroGrad();
        endScope();
      };
    }
    const ms: number[] = [], times: ReduceTimes[] = [];
    for (let i = 0; i <= job.reps; i++) { // the first call warms up (pipelines, buffer pool)
      await sync();
      await group.barrier('the start of a timed call');
      const t0 = performance.now();
      await call();
      await sync();
      if (i) { ms.push(performance.now() - t0); if (ar) times.push({ ...ar.last }); }
    }
    ar?.dispose();
    model.dispose();
    return { floats: store.bytes / 4, ms, times };
  } finally {
    closeGpu();
  }
});
