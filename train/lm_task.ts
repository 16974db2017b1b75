// The language-model objective of SFT and pretraining: shifted masked cross-entropy (+ the MoE aux
// loss) of the whole model; saves MiniMind's float16 weights and its resume checkpoint (train/checkpoint.ts).
import { Tensor } from '../runtime/tensor.js';
import { add } from '../kernels/index.js';
import { stepFlops } from '../model/flops.js';
import type { MiniMind } from '../model/minimind.js';
import { saveWeights, saveResume } from './checkpoint.js';
import type { Task } from './task.js';

export interface Batch { inputIds: Int32Array; labels: Int32Array; batch: number; seqLen: number }

/** `files`: where save() writes; a task without them (npm run tune) only runs steps. */
export function lmTask(model: MiniMind, files?: { weightPath: string; resumePath: string }): Task<Batch> {
  return {
    models: [model],
    store: model.store,
    measure: (b) => ({ tokens: b.batch * b.seqLen, flops: stepFlops(model.cfg, b.batch, b.seqLen) }),
    async forward(b) {
      const ids = Tensor.fromArray(b.inputIds, [b.batch, b.seqLen], 'i32');
      const labels = Tensor.fromArray(b.labels, [b.batch, b.seqLen], 'i32');
      const { loss, aux } = await model.loss(ids, labels, b.inputIds);
      return { objective: aux ? add(loss, aux) : loss, reads: [loss, aux] };
    },
    terms([ce, ax]) {
      const aux = model.cfg.use_moe ? ax : 0; // a dense model has no aux term (read as NaN)
      return { loss: ce + aux, parts: { logits_loss: ce, aux_loss: aux } };
    },
    logLine: (t, lr, minutesLeft) => `loss: ${t.loss.toFixed(4)}, logits_loss: ${t.parts.logits_loss.toFixed(4)}, `
      + `aux_loss: ${t.parts.aux_loss.toFixed(4)}, lr: ${lr.toFixed(8)}, epoch_time: ${minutesLeft.toFixed(1)}min`,
    planBatch: (B, T) => ({ inputIds: new Int32Array(B * T), labels: new Int32Array(B * T), batch: B, seqLen: T }),
    async save(pos, opt) {
      if (!files) throw new Error('lmTask: no files to save to');
      await saveWeights(model, files.weightPath);
      await saveResume(files.resumePath, model, opt, pos);
    },
  };
}
