// Body of a DataLoader worker thread: rebuilds the validated dataset from the shared line index, then
// answers {id, indices, epoch} with the collated batch, its buffers transferred rather than copied.
import { parentPort, workerData } from 'node:worker_threads';
import { collate, type WorkerInit } from './loader.js';
import { PretrainDataset } from './pretrain.js';
import { SFTDataset } from './sft.js';
import { DPODataset } from './dpo.js';
import { loadTokenizer } from './tokenizer.js';

const init = workerData as WorkerInit;
const DATASETS = { sft: SFTDataset, pretrain: PretrainDataset, dpo: DPODataset };
const ready = loadTokenizer(init.tokenizerDir).then((tok) => DATASETS[init.kind].fromSource(init.source, tok, init.maxSeqLen, init.opts));

parentPort!.on('message', async ({ id, indices, epoch }: { id: number; indices: number[]; epoch: number }) => {
  try {
    const { inputIds, labels } = collate(await ready, indices, epoch);
    parentPort!.postMessage({ id, inputIds, labels }, [inputIds.buffer as ArrayBuffer, labels.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ id, error: (e as Error).stack ?? String(e) });
  }
});
