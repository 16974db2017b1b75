// The body of one data-parallel rank's thread (train/ddp.ts starts them): the flags parsed again as the
// launcher's were (LoRA's and DPO's with their own defaults), then the trainer of train/run.ts (DPO: train/dpo.ts)
// on this rank's adapter, shard and link to the others.
import { rankMain } from '../runtime/ranks.js';
import { parseArgs } from './args.js';
import { parseLoraArgs } from './lora.js';
import { parseDpoArgs, runDpo } from './dpo.js';
import { run } from './run.js';
import type { RankJob, RankResult } from './ddp.js';

rankMain<RankJob, RankResult>(async (group, job) => {
  const ctx = { group, adapter: job.adapters[group.rank] };
  if (job.mode === 'dpo') return runDpo(parseDpoArgs(job.argv), ctx);
  const args = job.mode === 'lora' ? parseLoraArgs(job.argv) : parseArgs(job.argv, job.overrides);
  return run(job.mode, args, job.builtin, job.loraInit ?? '', ctx);
});
