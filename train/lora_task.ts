// LoRA's objective (train_lora.py): the language-model loss of train/lm_task.ts through the model with its
// adapters (model.lora), the base frozen, AdamW over the adapters' store only. Saves MiniMind's adapter file
// (save_lora: only the adapter keys) and the resume checkpoint (train/checkpoint.ts: base + adapter keys, the
// adapters' optimizer state).
import { loraStepFlops } from '../model/flops.js';
import type { MiniMind } from '../model/minimind.js';
import { writeAdapters } from '../model/lora_file.js';
import { lmTask, type Batch } from './lm_task.js';
import { saveResume } from './checkpoint.js';
import type { Task } from './task.js';

/** `files`: where save() writes; a task without them (the bench) only runs steps. */
export function loraTask(model: MiniMind, files?: { adapterPath: string; resumePath: string }): Task<Batch> {
  const lora = model.lora;
  if (!lora) throw new Error('loraTask: the model has no adapters (set model.lora)');
  const adapterParams = lora.entries().reduce((a, [, t]) => a + t.size, 0);
  return {
    ...lmTask(model),
    store: lora.store,
    measure: (b) => ({ tokens: b.batch * b.seqLen, flops: loraStepFlops(model.cfg, adapterParams, b.batch, b.seqLen) }),
    async save(pos, opt) {
      if (!files) throw new Error('loraTask: no files to save to');
      await writeAdapters(files.adapterPath, lora);
      await saveResume(files.resumePath, model, opt, pos);
    },
  };
}
