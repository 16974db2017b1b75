// MiniMind's flags that do something else here, or nothing: one line each saying what happens instead,
// only for flags given on the command line (a default says nothing).
import { resolve } from 'node:path';
import { wasGiven, type TrainArgs } from './args.js';

export interface RunFacts {
  mode: 'sft' | 'pretrain' | 'lora' | 'dpo';
  /** The WebGPU adapter in use. */
  adapter: string;
  /** MINIMIND_ADAPTER as set, or undefined. */
  adapterEnv: string | undefined;
  /** Loader worker threads actually started (--num_workers capped at the cores less one). */
  workers: number;
}

export function flagNotes(args: TrainArgs, run: RunFacts): string[] {
  const notes: string[] = [];
  const given = (k: keyof TrainArgs) => wasGiven(args, k);
  const metrics = args.log_file ? `the run's metrics go to --log_file as JSON lines: ${resolve(args.log_file)}` : 'pass --log_file to keep the metrics as JSON lines';
  if (given('device')) {
    notes.push(`--device ${args.device}: not used; the WebGPU adapter is chosen with MINIMIND_ADAPTER `
      + `(${run.adapterEnv ? `set to '${run.adapterEnv}'` : 'not set'}), and this run uses ${run.adapter}`);
  }
  if (given('use_wandb')) {
    const watch = args.dashboard ? 'the dashboard shows them live' : 'add --dashboard [PORT] to watch them live in a browser, as wandb does';
    notes.push(`--use_wandb: no wandb/swanlab here; ${metrics}${given('wandb_project') ? ` (--wandb_project ${args.wandb_project} not used)` : ''}; ${watch}`);
  } else if (given('wandb_project')) notes.push(`--wandb_project ${args.wandb_project}: not used (no wandb/swanlab here); ${metrics}`);
  if (given('use_compile')) {
    notes.push(`--use_compile ${args.use_compile}: nothing to compile here; each WGSL kernel is compiled once on first use `
      + '(and its variant tuned per shape, see MINIMIND_TUNE)');
  }
  const ranks = args.nproc_per_node;
  if (given('num_workers') && run.workers < args.num_workers) {
    notes.push(`--num_workers ${args.num_workers}: ${run.workers} loader thread${run.workers === 1 ? '' : 's'}${ranks > 1 ? ' per rank' : ''} `
      + `(capped at the CPU cores${ranks > 1 ? ` per rank (${ranks} ranks)` : ''} less one: the main thread drives the GPU, and a software adapter computes on the CPU too)`);
  }
  if (given('seed') && ranks) {
    notes.push(`--seed ${args.seed}: sets the initialisation; with --nproc_per_node the data order is DistributedSampler's `
      + '(seed 0 + epoch), as under torchrun');
  }
  if (given('augment') && run.mode === 'pretrain') notes.push(`--augment ${args.augment}: not used; MiniMind augments SFT data only`);
  return notes;
}
