// The DPO objective (spec §12, MiniMind's trainer/train_dpo.py) for the one loop (train/loop.ts): a batch
// of 2B rows (chosen, then rejected: data/dpo.ts) goes through the frozen reference model (no gradient
// buffers, nothing recorded) and the policy; per-sequence log-probs of the labels (kernels/logprob.ts,
// MiniMind2's mean over the mask or minimind-3's sum); the DPO loss + the policy's MoE aux loss is the
// objective. Logs MiniMind's DPO line plus the reward margin and accuracy. Saves the policy as MiniMind
// does: the reference is never saved, and a resume rebuilds it from --from_weight.
import { Tensor } from '../runtime/tensor.js';
import { add } from '../kernels/index.js';
import { logprob, type LogprobReduce } from '../kernels/logprob.js';
import { dpoLoss } from '../kernels/dpo_loss.js';
import { stepFlops } from '../model/flops.js';
import type { MiniMind } from '../model/minimind.js';
import type { MiniMindConfig } from '../model/config.js';
import { saveWeights, saveResume } from './checkpoint.js';
import type { Batch } from './lm_task.js';
import type { Task } from './task.js';

export interface DPOOptions {
  beta: number;
  reduce: LogprobReduce;
  /** Where save() writes; a task without them only runs steps. */
  files?: { weightPath: string; resumePath: string };
}

/** MiniMind's defaults of each generation: MiniMind2 (M2:trainer/train_dpo.py) beta 0.1 and the mean
 *  over the response tokens; minimind-3 (HEAD) beta 0.15 and the sum. */
export function dpoDefaults(cfg: MiniMindConfig): { beta: number; reduce: LogprobReduce } {
  return cfg.aux_form === 'minimind3' ? { beta: 0.15, reduce: 'sum' } : { beta: 0.1, reduce: 'mean' };
}

/** `policy` is trained; `ref` (a frozen MiniMind with the same start weights) is only run forward. */
export function dpoTask(policy: MiniMind, ref: MiniMind, o: DPOOptions): Task<Batch> {
  if (!ref.store.frozen) throw new Error('dpoTask: the reference model must be frozen (new MiniMind(cfg, seed, { frozen: true }))');
  return {
    models: [policy, ref],
    store: policy.store,
    // Rows × tokens; FLOPs: the policy's forward + backward (6 per parameter and token) and the
    // reference's forward (2 more).
    measure: (b) => ({ tokens: b.batch * b.seqLen, flops: (stepFlops(policy.cfg, b.batch, b.seqLen) * 8) / 6 }),
    async forward(b) {
      if (b.batch % 2 !== 0) throw new Error(`dpoTask: a DPO batch has 2 rows per pair, got ${b.batch}`);
      const ids = Tensor.fromArray(b.inputIds, [b.batch, b.seqLen], 'i32');
      const labels = Tensor.fromArray(b.labels, [b.batch, b.seqLen], 'i32');
      const refLogits = (await ref.logits(ids, { hostIds: b.inputIds })).logits;
      const sRef = logprob(refLogits, labels, o.reduce);
      refLogits.dispose(); // before the policy's logits exist: the step holds one [2B, T, V] at a time
      const { logits, aux } = await policy.logits(ids, { hostIds: b.inputIds, pace: true });
      const { loss, margin, accuracy } = dpoLoss(logprob(logits, labels, o.reduce), sRef, o.beta);
      return { objective: aux ? add(loss, aux) : loss, reads: [loss, aux, margin, accuracy] };
    },
    terms([dpo, ax, margin, accuracy]) {
      const aux = policy.cfg.use_moe ? ax : 0; // a dense model has no aux term (read as NaN)
      return { loss: dpo + aux, parts: { dpo_loss: dpo, aux_loss: aux, reward_margin: margin, reward_accuracy: accuracy } };
    },
    // MiniMind's line (H:trainer/train_dpo.py:104): its epoch_time is whole minutes (`// 60`) printed with
    // 3 decimals; then the two numbers DPO users watch.
    logLine: (t, lr, minutesLeft) => `loss: ${t.loss.toFixed(4)}, dpo_loss: ${t.parts.dpo_loss.toFixed(4)}, `
      + `aux_loss: ${t.parts.aux_loss.toFixed(4)}, learning_rate: ${lr.toFixed(8)}, epoch_time: ${Math.floor(minutesLeft).toFixed(3)}min, `
      + `reward_margin: ${t.parts.reward_margin.toFixed(4)}, reward_accuracy: ${t.parts.reward_accuracy.toFixed(3)}`,
    // B pairs of max_seq_len T: 2B rows of T − 1 tokens.
    planBatch: (B, T) => ({ inputIds: new Int32Array(2 * B * (T - 1)), labels: new Int32Array(2 * B * (T - 1)), batch: 2 * B, seqLen: T - 1 }),
    async save(pos, opt) {
      if (!o.files) throw new Error('dpoTask: no files to save to');
      await saveWeights(policy, o.files.weightPath);
      await saveResume(o.files.resumePath, policy, opt, pos);
    },
  };
}
