// The body of sft.ts, pretrain.ts and lora.ts: resolve data, tokenizer, model and checkpoints from the
// flags, train, then print sample answers, a loss-curve picture and a one-line summary. LoRA trains adapters on
// a frozen model (train/lora_task.ts) and saves MiniMind's adapter file instead of the weights. As one rank of a
// data-parallel run (train/ddp.ts) it trains its shard; only rank 0 prints and logs, and it prepares the data first.
import { mkdirSync, existsSync, rmSync, openSync, readSync, closeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import '../kernels/index.js';
import { MiniMind } from '../model/minimind.js';
import { countParameters } from '../model/config.js';
import { generate } from '../model/generate.js';
import { loadTokenizer, ChatTokenizer } from '../data/tokenizer.js';
import { SFTDataset } from '../data/sft.js';
import { PretrainDataset } from '../data/pretrain.js';
import { DataLoader } from '../data/loader.js';
import { availableParallelism } from 'node:os';
import { ensureDefaultData } from '../data/defaults.js';
import type { TrainArgs } from './args.js';
import { modelConfig, checkTokenizer, loadFromWeight, weightFile } from './setup.js';
import { flagNotes } from './compat.js';
import { precisionFor } from './grad_scaler.js';
import type { BatchSource } from './loop.js';
import { loggedTrain } from './logged_train.js';
import { lmTask, type Batch } from './lm_task.js';
import { loraTask } from './lora_task.js';
import { LoRA } from '../model/lora.js';
import { adapterFile, loadAdapters, readAdapters } from '../model/lora_file.js';
import { loadResume } from './checkpoint.js';
import { plotLoss } from './plot.js';
import { heldOutQuiz, askQuiz, quizSummary } from './quiz.js';
import { FAMILIES } from '../data/synth.js';
import { measureFmaPeak } from '../runtime/fma_peak.js';
import { RunLog, type SampleAnswer } from './run_log.js';
import { startDashboard, type Dashboard } from './dashboard_server.js';
import type { HostGroup } from '../runtime/host_group.js';
import type { Shard } from '../data/sampler.js';
import { dataParallel } from './ddp.js';

export type Mode = 'sft' | 'pretrain' | 'lora';

/** Held-out questions per task family asked after the built-in run. */
const QUIZ_PER_FAMILY = 5;

/** What the built-in run changes when the user names no data: everything is generated locally, the
 *  tokenizer included. No augmentation: MiniMind's system prompts are not in the generated tokenizer's
 *  vocabulary, so one would take most of the 56 tokens in byte-level pieces. */
export const BUILTIN: Partial<Record<keyof TrainArgs, string | number>> = {
  preset: 'tiny', from_weight: 'none', learning_rate: 2e-3, epochs: 1, batch_size: 16, accumulation_steps: 1, max_seq_len: 56,
  log_interval: 20, save_interval: 200, save_dir: 'out', checkpoint_dir: 'checkpoints', num_workers: 1,
  tokenizer_path: '', augment: 0,
  // MiniMind's bfloat16: on lavapipe (2-core Xeon, busy, one `npm run bench` run) this model's B16×T56 step took
  // 536 ms in bfloat16 and 679 ms in float32, with an activation peak of 21 vs 38 MiB (44 vs 58 MiB held in all).
  dtype: 'bfloat16',
};

/** One rank of a data-parallel run: its group, and the adapter it opens. */
export interface RankContext { group: HostGroup; adapter?: string }

/** `loraInit`: LoRA's --lora_init, an adapter file to start from ('' = A drawn from --seed, B = 0); `rank`:
 *  this is one rank of a data-parallel run. Returns whether Ctrl-C stopped the run. */
export async function run(mode: Mode, args: TrainArgs, builtin: boolean, loraInit = '', rank?: RankContext): Promise<{ interrupted: boolean }> {
  const t0 = performance.now();
  const main = !rank || rank.group.rank === 0;
  const say = main ? (line: string) => console.log(line) : () => {};
  const world = rank?.group.world ?? 1;
  await initGpu({ adapter: rank?.adapter, quiet: !main });
  let source: ReturnType<typeof datasetSource> | undefined; // its worker threads keep Node alive until closed
  let dashboard: Dashboard | undefined;
  try {
    // Next to the weights: the built-in run's log, and where --use_wandb's and --dashboard's metrics go
    // (rank 0's: the other ranks log nothing).
    if (!main) args.log_file = '';
    else if ((builtin || args.use_wandb || args.dashboard) && !args.log_file) args.log_file = join(resolve(args.save_dir), `${args.save_weight}_log.jsonl`);
    if (args.log_file) mkdirSync(dirname(resolve(args.log_file)), { recursive: true });
    if (main) dashboard = await startDashboard(args); // before anything slow: a port in use fails at once
    // 1. Data and tokenizer (the project's own generated set when none is named). Rank 0 first: it
    // generates, validates and caches; the other ranks then read its cache.
    const prepare = async () => {
      let tokDir = args.tokenizer_path;
      if (builtin) {
        const d = await ensureDefaultData();
        args.data_path = mode === 'sft' ? d.sftPath : d.pretrainPath;
        tokDir ||= d.tokenizerDir;
      }
      if (!existsSync(args.data_path)) {
        throw new Error(`--data_path ${args.data_path}: no such file${mode === 'lora' ? '' : ' (run without --data_path for the built-in generated data)'}`);
      }
      if (!builtin) checkTokenizer(args);
      const tok = await loadTokenizer(tokDir);
      if (!builtin) say(`[train] tokenizer: ${resolve(tokDir)} (${tok.vocabSize} tokens)`);
      const opts = { skipBadLines: args.skip_bad_lines, augment: args.augment === 1, seed: args.seed };
      const ds = mode !== 'pretrain'
        ? await SFTDataset.open(args.data_path, tok, args.max_seq_len, opts)
        : await PretrainDataset.open(args.data_path, tok, args.max_seq_len, opts);
      return { tok, ds };
    };
    const { tok, ds } = rank ? await rank.group.rank0First('data preparation', prepare) : await prepare();
    precisionFor(args.dtype); // an unknown --dtype fails before the data is read
    // Loader threads share the cores the ranks leave (on lavapipe the GPU work runs on them too).
    const workers = Math.min(args.num_workers, Math.max(0, Math.floor(availableParallelism() / world) - 1));
    source = datasetSource(ds, args, workers, rank && { rank: rank.group.rank, world });

    // 2. Model.
    const cfg = modelConfig(args, tok, builtin);
    const model = new MiniMind(cfg, args.seed, { frozen: mode === 'lora' });
    const saveDir = resolve(args.save_dir), ckptDir = resolve(args.checkpoint_dir);
    mkdirSync(saveDir, { recursive: true });
    mkdirSync(ckptDir, { recursive: true });
    const weightPath = mode === 'lora' ? adapterFile(saveDir, args.save_weight, cfg) : weightFile(saveDir, cfg, args.save_weight);
    const resumePath = weightFile(ckptDir, cfg, args.save_weight).replace(/\.pth$/, '_resume.pth'); // MiniMind's name and format
    // train_lora.py loads its base before resuming, from init_model's folder ../out (not its --save_dir).
    if (args.from_weight !== 'none' && (!args.from_resume || mode === 'lora')) await loadFromWeight(model, args, mode === 'lora' ? '../out' : args.save_dir);
    if (mode === 'lora') model.lora = adapters(model, args, loraInit, say);
    const resume = args.from_resume ? await loadResume(resumePath, model, world) : undefined;
    if (resume?.notice) say(`[train] ${resume.notice}`);
    const { total } = countParameters(cfg);
    if (model.lora) {
      const n = model.lora.entries().reduce((a, [, t]) => a + t.size, 0);
      say(`[train] LoRA rank ${model.lora.rank} on ${model.lora.targets.length} modules: ${(n / 1e6).toFixed(3)}M parameters, `
        + `${((100 * n) / (total + n)).toFixed(2)}% of ${((total + n) / 1e6).toFixed(3)}M; the base is frozen`);
    }
    say(`[train] ${mode}: ${(total / 1e6).toFixed(2)}M parameters (hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers${cfg.use_moe ? ', MoE' : ''}), `
      + `${ds.length} samples, ${source.iters} steps/epoch × ${args.epochs} epochs, batch ${args.batch_size} × ${args.max_seq_len} tokens `
      + (rank ? `per rank on ${world} ranks, rank 0 on ${gpu().adapterName}` : `on ${gpu().adapterName}`));
    for (const note of flagNotes(args, { mode, adapter: gpu().adapterName, adapterEnv: process.env.MINIMIND_ADAPTER, workers })) say(`[train] ${note}`);

    // 3. Train.
    const nSamples = !main ? 0 : args.samples >= 0 ? args.samples : builtin ? 3 : 0;
    // The built-in run asks held-out questions of its task families; a user's run, its data's first prompts.
    const quiz = builtin && mode === 'sft' && nSamples ? heldOutQuiz(args.data_path, QUIZ_PER_FAMILY, args.seed + 1) : [];
    const prompts = quiz.length ? quiz.slice(0, nSamples).map((q) => [{ role: 'user', content: q.question }])
      : mode !== 'pretrain' ? samplePrompts(args.data_path, nSamples) : [];
    if (args.log_file && !args.from_resume) rmSync(args.log_file, { force: true });
    const runLog = args.log_file ? new RunLog(args.log_file) : undefined;
    const first = resume ? resume.epoch * source.iters + resume.step : 0, planned = args.epochs * source.iters;
    runLog?.run({ mode, args, adapter: gpu().adapterName, model: cfg, parameters: total, samples: ds.length, steps_per_epoch: source.iters,
      first_step: first, last_step: args.max_steps > 0 ? Math.min(planned, first + args.max_steps) : planned });
    if (prompts.length) runLog?.samples('before', await showSamples('before training', model, tok, prompts));
    const fmaPeakGflops = main ? await measureFmaPeak() : undefined;
    const task = mode === 'lora' ? loraTask(model, { adapterPath: weightPath, resumePath }) : lmTask(model, { weightPath, resumePath });
    const result = await loggedTrain({ args, task, data: source, resumePath, resume, fmaPeakGflops, ddp: rank && dataParallel(rank.group) }, runLog);
    if (result.interrupted) {
      say(`[train] interrupted: weights and resume checkpoint saved; continue with the same flags and --from_resume 1`);
      process.exitCode = 130;
    } else if (quiz.length) {
      const answers = await askQuiz(model, tok, quiz);
      say(`[train] held-out questions after training (${quiz.length / Object.keys(FAMILIES).length} per task family, none in the training data):`);
      for (const a of answers) say(`  ${a.correct ? 'right' : 'wrong'}  Q: ${a.question}\n         A: ${a.got}${a.correct ? '' : `\n  expected: ${a.answer}`}`);
      say(`[train] ${quizSummary(answers)}`);
      runLog?.samples('after', answers.map((a) => ({ question: a.question, answer: a.got, expected: a.answer, correct: a.correct })));
    } else if (prompts.length) runLog?.samples('after', await showSamples('after training', model, tok, prompts));

    // 4. Summary.
    const files = [weightPath, resumePath];
    if (args.log_file && existsSync(args.log_file)) {
      const svg = weightPath.replace(/\.pth$/, '_loss.svg');
      plotLoss(args.log_file, svg, `${mode} loss, ${cfg.hidden_size}×${cfg.num_hidden_layers}`);
      files.push(args.log_file, svg);
    }
    // Every rank trains as many tokens as rank 0 (equal shards, batch for batch).
    say(`[train] done: ${result.steps} steps, ${result.tokens * world} tokens, ${((result.tokens * world) / result.seconds).toFixed(0)} tokens/s`
      + `${rank ? ` (${world} ranks)` : ''}, final loss ${result.lastLoss.toFixed(4)}, ${result.skipped} skipped, `
      + `${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${files.join(', ')}`);
    return { interrupted: result.interrupted };
  } finally {
    await source?.close(); // also on an error before training (a missing resume checkpoint hung the process)
    await dashboard?.close();
    closeGpu();
  }
}

/** apply_lora with the generation's rank: A from --seed and B = 0, or --lora_init's adapters. */
function adapters(model: MiniMind, args: TrainArgs, init: string, say: (line: string) => void): LoRA {
  const lora = new LoRA(model.cfg, { seed: args.seed });
  if (init) {
    if (!existsSync(init)) throw new Error(`--lora_init ${init}: no such adapter file`);
    loadAdapters(lora, readAdapters(init), init);
    say(`[train] adapters from ${init}`);
  }
  return lora;
}

/** Batches from the data loader: tokenization runs ahead on `workers` threads (the caller caps
 *  --num_workers at the cores left over, since on lavapipe the GPU work runs on the CPU too). */
function datasetSource(ds: SFTDataset | PretrainDataset, args: TrainArgs, workers: number, shard?: Shard): BatchSource<Batch> & { close(): Promise<void> } {
  const loader = new DataLoader(ds, { batchSize: args.batch_size, numWorkers: workers, seed: args.seed, shard });
  return { iters: loader.batchesPerEpoch(), batches: (epoch, skip) => loader.epoch(epoch, skip), close: () => loader.close() };
}

/** Prompts for the sample answers: the first conversations of the data file, up to their first
 *  assistant turn (read from the file's head only: data files can be many GB). */
function samplePrompts(path: string, n: number): { role: string; content: string }[][] {
  if (!n) return [];
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(1 << 16);
  const got = readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  const out = [];
  for (const line of head.subarray(0, got).toString('utf8').replace(/^\uFEFF/, '').split('\n').slice(0, -1)) {
    if (out.length === n) break;
    try {
      const conv = (JSON.parse(line) as { conversations?: { role: string; content: string }[] }).conversations;
      if (!conv) continue;
      const cut = conv.findIndex((m) => m.role === 'assistant');
      if (cut > 0) out.push(conv.slice(0, cut));
    } catch { /* validated elsewhere */ }
  }
  return out;
}

async function showSamples(when: string, model: MiniMind, tok: ChatTokenizer, prompts: { role: string; content: string }[][]): Promise<SampleAnswer[]> {
  console.log(`[train] sample answers ${when}:`);
  const answers = [];
  for (const msgs of prompts) {
    const ids = tok.encode(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }));
    const out: number[] = [];
    for await (const id of generate(model, ids, { maxNewTokens: 48, temperature: 0, eosId: tok.eosId })) if (id !== tok.eosId) out.push(id);
    const a = { question: msgs.at(-1)?.content ?? '', answer: tok.decode(out).trim() };
    console.log(`  Q: ${a.question}\n  A: ${a.answer}`);
    answers.push(a);
  }
  return answers;
}
