// MiniMind's DPO (trainer/train_dpo.py, spec §12) on the one loop: `npx tsx train/dpo.ts --data_path
// dpo.jsonl [flags]` (see --help). The policy and a frozen reference model (no gradient buffers) both start
// from --from_weight (MiniMind: `full_sft`); the policy is saved as {save_dir}/dpo_{hidden}[_moe].pth with
// MiniMind's resume checkpoint beside it in --checkpoint_dir; a resume rebuilds the reference from
// --from_weight, as MiniMind does. beta and the per-sequence reduction follow the model's generation.
// --nproc_per_node N: data-parallel ranks as train/sft.ts has them (train/ddp.ts, train/ddp_rank.ts).
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { availableParallelism } from 'node:os';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import '../kernels/index.js';
import { measureFmaPeak } from '../runtime/fma_peak.js';
import { MiniMind } from '../model/minimind.js';
import { countParameters } from '../model/config.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { DPODataset } from '../data/dpo.js';
import { DataLoader } from '../data/loader.js';
import type { FlagTable } from '../model/cli_flags.js';
import { parseArgs, wasGiven, type TrainArgs } from './args.js';
import { dataParallel, launchTraining, refuseTorchrun } from './ddp.js';
import type { RankContext } from './run.js';
import { modelConfig, checkTokenizer, loadFromWeight, weightFile } from './setup.js';
import { flagNotes } from './compat.js';
import { precisionFor } from './grad_scaler.js';
import { loggedTrain } from './logged_train.js';
import { loadResume } from './checkpoint.js';
import { plotLoss } from './plot.js';
import { RunLog } from './run_log.js';
import { startDashboard, type Dashboard } from './dashboard_server.js';
import { dpoTask, dpoDefaults } from './dpo_task.js';

/** train_dpo.py's defaults that differ from train_full_sft.py's (both generations; minimind-3's hidden
 *  size 768 comes with --preset minimind3, which also brings its beta and reduction). */
const DPO_DEFAULTS: Partial<Record<keyof TrainArgs, string | number>> = {
  save_weight: 'dpo', epochs: 1, batch_size: 4, learning_rate: 4e-8, save_interval: 100, max_seq_len: 1024,
  data_path: '../dataset/dpo.jsonl', from_weight: 'full_sft', wandb_project: 'MiniMind-DPO',
};

const DPO_FLAGS = {
  beta: { kind: 'number', def: 0.1, help: "DPO's beta: MiniMind2's 0.1, or minimind-3's 0.15 when the model is minimind-3 and --beta is not given" },
  logprob_reduce: { kind: 'string', def: '', help: "per-sequence reduction of the response log-probs: mean (MiniMind2) | sum (minimind-3); default the model's generation's" },
  augment: { kind: 'number', def: 1, help: "MiniMind's post_processing_chat on each side (empty think blocks stripped from 80%), drawn from (seed, epoch, pair); 0 = off" },
} satisfies FlagTable;

const usage = 'usage: npx tsx train/dpo.ts --data_path FILE.jsonl --tokenizer_path DIR [--from_weight full_sft] [flags]\n'
  + 'Each line: {"chosen": [messages], "rejected": [messages]} (MiniMind\'s dpo.jsonl).';

export type DpoArgs = ReturnType<typeof parseDpoArgs>;

export function parseDpoArgs(argv: string[]) {
  return parseArgs(argv, DPO_DEFAULTS, usage, DPO_FLAGS);
}

/** The DPO run, on one process or as one rank of a data-parallel run (only rank 0 prints, logs and saves). */
export async function runDpo(args: DpoArgs, rank?: RankContext): Promise<{ interrupted: boolean }> {
  const t0 = performance.now();
  const main = !rank || rank.group.rank === 0;
  const say = main ? (line: string) => console.log(line) : () => {};
  const world = rank?.group.world ?? 1;
  await initGpu({ adapter: rank?.adapter, quiet: !main });
  let loader: DataLoader | undefined; // its worker threads keep Node alive until closed
  let dashboard: Dashboard | undefined;
  try {
    // Next to the weights: where --use_wandb's and --dashboard's metrics go (rank 0's).
    if (!main) args.log_file = '';
    else if ((args.use_wandb || args.dashboard) && !args.log_file) args.log_file = join(resolve(args.save_dir), `${args.save_weight}_log.jsonl`);
    if (args.log_file) mkdirSync(dirname(resolve(args.log_file)), { recursive: true });
    if (main) dashboard = await startDashboard(args); // before anything slow: a port in use fails at once
    // 1. Data and tokenizer (rank 0 first: it validates and caches, the others read its cache).
    const prepare = async () => {
      if (!existsSync(args.data_path)) throw new Error(`--data_path ${args.data_path}: no such file`);
      checkTokenizer(args);
      const tok = await loadTokenizer(args.tokenizer_path);
      say(`[train] tokenizer: ${resolve(args.tokenizer_path)} (${tok.vocabSize} tokens)`);
      const ds = await DPODataset.open(args.data_path, tok, args.max_seq_len, { skipBadLines: args.skip_bad_lines, augment: args.augment === 1, seed: args.seed });
      return { tok, ds };
    };
    precisionFor(args.dtype); // an unknown --dtype fails before the data is read
    const { tok, ds } = rank ? await rank.group.rank0First('data preparation', prepare) : await prepare();
    const workers = Math.min(args.num_workers, Math.max(0, Math.floor(availableParallelism() / world) - 1));
    loader = new DataLoader(ds, { batchSize: args.batch_size, numWorkers: workers, seed: args.seed, shard: rank && { rank: rank.group.rank, world } });

    // 2. Policy and frozen reference, both from --from_weight (the same random init with none).
    const cfg = modelConfig(args, tok, false);
    const gen = dpoDefaults(cfg);
    const beta = wasGiven(args, 'beta') ? args.beta : gen.beta;
    const reduce = args.logprob_reduce || gen.reduce;
    if (reduce !== 'sum' && reduce !== 'mean') throw new Error(`--logprob_reduce must be sum or mean, got '${reduce}'`);
    const policy = new MiniMind(cfg, args.seed), ref = new MiniMind(cfg, args.seed, { frozen: true });
    if (args.from_weight !== 'none') await loadFromWeight(ref, args);
    if (!args.from_resume) policy.load(new Map((await ref.exportWeights()).map((w) => [w.name, w])), true);
    mkdirSync(resolve(args.save_dir), { recursive: true });
    mkdirSync(resolve(args.checkpoint_dir), { recursive: true });
    const weightPath = weightFile(args.save_dir, cfg, args.save_weight);
    const resumePath = weightFile(args.checkpoint_dir, cfg, args.save_weight).replace(/\.pth$/, '_resume.pth'); // MiniMind's name and format
    const resume = args.from_resume ? await loadResume(resumePath, policy, world) : undefined;
    if (resume?.notice) say(`[train] ${resume.notice}`);
    const { total } = countParameters(cfg);
    say(`[train] dpo: ${(total / 1e6).toFixed(2)}M parameters (hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers${cfg.use_moe ? ', MoE' : ''}), `
      + `policy + frozen reference; beta ${beta}, ${reduce} of the response log-probs; ${ds.length} pairs, ${loader.batchesPerEpoch()} steps/epoch × ${args.epochs} epochs, `
      + `batch ${args.batch_size} pairs (${2 * args.batch_size} rows) × ${args.max_seq_len - 1} tokens `
      + (rank ? `per rank on ${world} ranks, rank 0 on ${gpu().adapterName}` : `on ${gpu().adapterName}`));
    for (const note of flagNotes(args, { mode: 'dpo', adapter: gpu().adapterName, adapterEnv: process.env.MINIMIND_ADAPTER, workers })) say(`[train] ${note}`);

    // 3. Train.
    if (args.log_file && !args.from_resume) rmSync(args.log_file, { force: true });
    const source = { iters: loader.batchesPerEpoch(), batches: (epoch: number, skip: number) => loader!.epoch(epoch, skip) };
    const task = dpoTask(policy, ref, { beta, reduce, files: { weightPath, resumePath } });
    const runLog = args.log_file ? new RunLog(args.log_file) : undefined;
    const first = resume ? resume.epoch * source.iters + resume.step : 0, planned = args.epochs * source.iters;
    runLog?.run({ mode: 'dpo', args: { ...args, beta, logprob_reduce: reduce }, adapter: gpu().adapterName, model: cfg, parameters: total, samples: ds.length,
      steps_per_epoch: source.iters, first_step: first, last_step: args.max_steps > 0 ? Math.min(planned, first + args.max_steps) : planned });
    const fmaPeakGflops = main ? await measureFmaPeak() : undefined;
    const result = await loggedTrain({ args, task, data: source, resumePath, resume, fmaPeakGflops, ddp: rank && dataParallel(rank.group) }, runLog, ' pairs');
    if (result.interrupted) {
      say('[train] interrupted: weights and resume checkpoint saved; continue with the same flags and --from_resume 1');
      process.exitCode = 130;
    }

    // 4. Summary.
    const files = [weightPath, resumePath];
    if (args.log_file && existsSync(args.log_file)) {
      const svg = weightPath.replace(/\.pth$/, '_loss.svg');
      plotLoss(args.log_file, svg, `dpo loss, ${cfg.hidden_size}×${cfg.num_hidden_layers}`);
      files.push(args.log_file, svg);
    }
    // Every rank trains as many tokens as rank 0 (equal shards, batch for batch).
    say(`[train] done: ${result.steps} steps, ${result.tokens * world} tokens, ${((result.tokens * world) / result.seconds).toFixed(0)} tokens/s${rank ? ` (${world} ranks)` : ''}, `
      + `final loss ${result.lastLoss.toFixed(4)}, ${result.skipped} skipped, ${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${files.join(', ')}`);
    return { interrupted: result.interrupted };
  } finally {
    await loader?.close(); // also on an error before training
    await dashboard?.close();
    closeGpu();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    refuseTorchrun(process.env, 'train/dpo.ts');
    const argv = process.argv.slice(2), args = parseDpoArgs(argv);
    if (args.nproc_per_node) await launchTraining({ mode: 'dpo', argv, overrides: {}, builtin: false }, args);
    else await runDpo(args);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
