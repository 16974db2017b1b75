// The body of one data-parallel rank's thread (train/ddp.ts starts them): the flags parsed again as the
// launcher's were (LoRA's with its own defaults), then the trainer of train/run.ts on this rank's adapter,
// shard and link to the others.
import { rankMain } from '../runtime/ranks.js';
import { parseArgs } from './args.js';
import { parseLoraArgs } from './lora.js';
import { run } from './run.js';
import type { RankJob, RankResult } from './ddp.js';

rankMain<RankJob, RankResult>(async (group, job) => {
  const args = job.mode === 'lora' ? parseLoraArgs(job.argv) : parseArgs(job.argv, job.overrides);
  return run(job.mode, args, job.builtin, job.loraInit ?? '', { group, adapter: job.adapters[group.rank] });
});
