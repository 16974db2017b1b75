// Tuning before training: one training step of the task at the batch shape is planned (no kernel
// runs: runtime/kernel.ts plan), so the tuner learns every kernel shape the step uses, and the shapes
// it has not seen on this adapter are tuned (runtime/tuner.ts). The trainer does this before its
// first step, so every step of a run, and of a resumed run, uses the same variants.
import { beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { plan } from '../runtime/kernel.js';
import { tuner, type Choice } from '../runtime/tuner.js';
import { gradNorm } from '../kernels/grad_norm.js';
import type { AdamW } from '../kernels/adamw.js';
import type { Task } from './task.js';

/** Plans forward, backward, gradient norm and optimizer step at B×T, then tunes what was new.
 *  Returns the choices made (empty when MINIMIND_TUNE=off or all were cached); the tuner's
 *  takePicks() lists every shape class the step uses. */
export async function tuneStep<B>(task: Task<B>, opt: AdamW, B: number, T: number): Promise<Choice[]> {
  const t = tuner();
  if (t.mode === 'off') return [];
  await plan(async () => {
    beginScope();
    try {
      backward((await task.forward(task.planBatch(B, T))).objective);
      opt.step(opt.lr, gradNorm(task.store.chunks(task.store.grads)), 1);
    } finally {
      endScope();
      opt.zeroGrad();
    }
  });
  return t.tunePending();
}
