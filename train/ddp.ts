// Data-parallel training, `--nproc_per_node N` (spec §13): the launcher starts N ranks as worker threads
// (runtime/ranks.ts), each running the trainer (train/run.ts, or train/dpo.ts's) on its own WebGPU device and its shard of
// the data (train/ddp_rank.ts), and turns Ctrl-C into a stop the ranks agree on. dataParallel() is a
// rank's link to the others for the training loop. Why threads of one process: README "Data parallel".
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startRanks } from '../runtime/ranks.js';
import { GradAllReduce, type BucketOptions } from '../runtime/grad_allreduce.js';
import type { HostGroup } from '../runtime/host_group.js';
import type { DataParallel } from './loop.js';
import type { TrainArgs } from './args.js';
import type { Mode } from './run.js';

/** What a rank's thread re-parses its flags from (the parsed flags do not cross threads with what was given). */
export interface RankJob {
  mode: Mode | 'dpo';
  argv: string[];
  overrides: Partial<Record<keyof TrainArgs, string | number>>;
  builtin: boolean;
  /** LoRA's --lora_init. */
  loraInit?: string;
  /** Adapter name per rank (undefined: Dawn's default adapter). */
  adapters: (string | undefined)[];
}

/** What a rank reports when it has finished. */
export interface RankResult { interrupted: boolean }

/** torchrun starts one process per GPU, with RANK set: this trainer runs its ranks as threads of one
 *  process instead, so it refuses rather than train N copies side by side. */
export function refuseTorchrun(env: NodeJS.ProcessEnv, script = 'train/sft.ts'): void {
  if (env.RANK === undefined || env.RANK === '-1') return;
  throw new Error(`RANK=${env.RANK} and WORLD_SIZE=${env.WORLD_SIZE ?? '?'} are set (torchrun starts one process per GPU): this trainer `
    + `runs its data-parallel ranks as threads of one process. Run it once, without torchrun: npx tsx ${script} --nproc_per_node ${env.WORLD_SIZE ?? 'N'} …`);
}

/** MINIMIND_ADAPTER for `world` ranks: one name per rank (comma-separated), or one (or none) for all. */
export function adapterList(env: string | undefined, world: number): (string | undefined)[] {
  const names = (env ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (names.length <= 1) return Array(world).fill(names[0]);
  if (names.length !== world) {
    throw new Error(`MINIMIND_ADAPTER names ${names.length} adapters (${names.join(', ')}) for --nproc_per_node ${world}: name one per rank, or one for all`);
  }
  return names;
}

/** Trains on args.nproc_per_node ranks; resolves when every rank has finished, rejects with the error of
 *  the first rank that failed once every rank has stopped. */
export async function launchTraining(job: Omit<RankJob, 'adapters'>, args: TrainArgs): Promise<void> {
  const world = args.nproc_per_node;
  const entry = new URL(`./ddp_rank${extname(fileURLToPath(import.meta.url))}`, import.meta.url);
  const launch = startRanks<RankJob, RankResult>({
    world, entry, timeoutMs: args.ddp_timeout * 1000,
    data: { ...job, adapters: adapterList(process.env.MINIMIND_ADAPTER, world) },
  });
  // A second SIGINT within a second is the same key press (npm and tsx relay the terminal's), as train/loop.ts counts it.
  let interruptedAt = -1;
  const onSigint = () => {
    if (interruptedAt >= 0) {
      // Quit now, without saving. Not by terminating the ranks' threads or exiting the process: either stops a
      // rank inside a Dawn call, where Dawn's Node-API binding aborts with a fatal error and a native stack
      // (seen in 2 of 8 process.exit() runs). SIGKILL ends every thread at once; the shell reports it (137).
      if (performance.now() - interruptedAt > 1000) {
        console.log('\nstopped without saving');
        process.kill(process.pid, 'SIGKILL');
      }
      return;
    }
    interruptedAt = performance.now();
    launch.stop();
    console.log('\ninterrupted: every rank stops at the next optimizer step and rank 0 saves (Ctrl-C again to quit without saving)');
  };
  process.on('SIGINT', onSigint);
  try {
    const results = await launch.done;
    if (results.some((r) => r.interrupted)) process.exitCode = 130;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** A rank's DataParallel for train/loop.ts: the all-reduce over `group`, after rank 0's parameters are taken. */
export function dataParallel(group: HostGroup, buckets: BucketOptions = {}): DataParallel {
  return {
    rank: group.rank, world: group.world,
    async attach(store) {
      const ar = await GradAllReduce.create(store, group, buckets);
      await ar.broadcast();
      return ar;
    },
    rank0First: (where, fn) => group.rank0First(where, fn),
  };
}
