// The body of sft.ts and pretrain.ts: resolve data, tokenizer, model and checkpoints from the
// flags, train, then print sample answers, a loss-curve picture and a one-line summary.
import { mkdirSync, existsSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import '../kernels/index.js';
import { MiniMind } from '../model/minimind.js';
import { MiniMindConfig, minimind2, preset, readConfig, countParameters } from '../model/config.js';
import { loadWeights } from '../model/weights.js';
import { generate } from '../model/generate.js';
import { loadTokenizer, ChatTokenizer } from '../data/tokenizer.js';
import { SFTDataset } from '../data/sft.js';
import { PretrainDataset } from '../data/pretrain.js';
import { epochBatches } from '../data/sampler.js';
import { ensureDefaultData } from '../data/defaults.js';
import { TrainArgs } from './args.js';
import { trainLoop, BatchSource, Batch, peakBytes } from './loop.js';
import { loadResume } from './checkpoint.js';
import { plotLoss } from './plot.js';

export type Mode = 'sft' | 'pretrain';

/** What the built-in run changes when the user names no data: everything is generated locally. */
export const BUILTIN: Partial<Record<keyof TrainArgs, string | number>> = {
  preset: 'tiny', from_weight: 'none', learning_rate: 2e-3, epochs: 3, batch_size: 16, max_seq_len: 96,
  log_interval: 20, save_interval: 200, save_dir: 'out', checkpoint_dir: 'checkpoints', num_workers: 1,
};

export async function run(mode: Mode, args: TrainArgs, builtin: boolean): Promise<void> {
  const t0 = performance.now();
  await initGpu();
  try {
    // 1. Data and tokenizer (the project's own generated set when none is named).
    let tokDir = args.tokenizer_path;
    if (builtin || !tokDir) {
      const d = await ensureDefaultData();
      if (builtin) args.data_path = mode === 'sft' ? d.sftPath : d.pretrainPath;
      tokDir ||= d.tokenizerDir;
    }
    const tok = await loadTokenizer(tokDir);
    if (args.dtype !== 'float32') console.log(`[train] --dtype ${args.dtype}: this build trains in float32 (float16/bfloat16 kernels are not implemented yet)`);
    const ds = mode === 'sft'
      ? await SFTDataset.open(args.data_path, tok, args.max_seq_len, { skipBadLines: args.skip_bad_lines })
      : await PretrainDataset.open(args.data_path, tok, args.max_seq_len, { skipBadLines: args.skip_bad_lines });
    const source = datasetSource(ds, args);

    // 2. Model.
    const cfg = modelConfig(args, tok);
    const model = new MiniMind(cfg, args.seed);
    const moe = cfg.use_moe ? '_moe' : '';
    const saveDir = resolve(args.save_dir), ckptDir = resolve(args.checkpoint_dir);
    mkdirSync(saveDir, { recursive: true });
    mkdirSync(ckptDir, { recursive: true });
    const weightPath = join(saveDir, `${args.save_weight}_${cfg.hidden_size}${moe}.pth`);
    const resumePath = join(ckptDir, `${args.save_weight}_${cfg.hidden_size}${moe}_resume.safetensors`);
    if (args.from_weight !== 'none' && !args.from_resume) {
      const p = /\.(pth|safetensors)$/.test(args.from_weight) ? args.from_weight : join(saveDir, `${args.from_weight}_${cfg.hidden_size}${moe}.pth`);
      if (!existsSync(p)) throw new Error(`--from_weight ${args.from_weight}: ${p} does not exist (use --from_weight none to start from random init)`);
      const { missing, unexpected } = model.load(await loadWeights(p), false);
      console.log(`[train] loaded ${p}${missing.length ? `; missing keys (kept at init): ${missing.join(', ')}` : ''}${unexpected.length ? `; ignored keys: ${unexpected.join(', ')}` : ''}`);
    }
    const resume = args.from_resume ? await loadResume(resumePath, cfg) : undefined;
    const { total } = countParameters(cfg);
    console.log(`[train] ${mode}: ${(total / 1e6).toFixed(2)}M parameters (hidden ${cfg.hidden_size}, ${cfg.num_hidden_layers} layers${cfg.use_moe ? ', MoE' : ''}), `
      + `${ds.length} samples, ${source.iters} steps/epoch × ${args.epochs} epochs, batch ${args.batch_size} × ${args.max_seq_len} tokens on ${gpu().adapterName}`);

    // 3. Train.
    const nSamples = args.samples >= 0 ? args.samples : builtin ? 3 : 0;
    const prompts = samplePrompts(ds, nSamples);
    if (prompts.length) await showSamples('before training', model, tok, prompts);
    if (args.log_file && !args.from_resume) rmSync(args.log_file, { force: true });
    let result;
    try {
      result = await trainLoop({ args, model, data: source, weightPath, resumePath, resume });
    } catch (e) {
      if ((e as { code?: string }).code === 'GPU_OOM') {
        throw new Error(`out of GPU memory at batch_size ${args.batch_size}, max_seq_len ${args.max_seq_len}: the step held `
          + `${(peakBytes() / 2 ** 30).toFixed(2)} GiB when it failed. Lower --batch_size or --max_seq_len (and raise --accumulation_steps). ${(e as Error).message}`);
      }
      throw e;
    }
    if (prompts.length) await showSamples('after training', model, tok, prompts);

    // 4. Summary.
    const files = [weightPath, resumePath];
    if (args.log_file && existsSync(args.log_file)) {
      const svg = weightPath.replace(/\.pth$/, '_loss.svg');
      plotLoss(args.log_file, svg, `${mode} loss, ${cfg.hidden_size}×${cfg.num_hidden_layers}`);
      files.push(args.log_file, svg);
    }
    console.log(`[train] done: ${result.steps} steps, ${result.tokens} tokens, ${(result.tokens / result.seconds).toFixed(0)} tokens/s, `
      + `final loss ${result.lastLoss.toFixed(4)}, ${result.skipped} skipped, ${((performance.now() - t0) / 1000).toFixed(0)} s; wrote ${files.join(', ')}`);
  } finally {
    closeGpu();
  }
}

function modelConfig(args: TrainArgs, tok: ChatTokenizer): MiniMindConfig {
  let cfg: MiniMindConfig;
  if (args.config) cfg = readConfig(args.config);
  else if (args.preset) cfg = preset(args.preset);
  else cfg = minimind2({ hidden_size: args.hidden_size, num_hidden_layers: args.num_hidden_layers, use_moe: !!args.use_moe });
  if (tok.vocabSize > cfg.vocab_size) throw new Error(`tokenizer has ${tok.vocabSize} tokens but the model's vocab_size is ${cfg.vocab_size}`);
  return cfg;
}

function datasetSource(ds: { length: number; get(i: number): { inputIds: Int32Array; labels: Int32Array } }, args: TrainArgs): BatchSource {
  const B = args.batch_size, T = args.max_seq_len;
  return {
    iters: Math.ceil(ds.length / B),
    async *batches(epoch: number, skip: number): AsyncIterable<Batch> {
      for (const idx of epochBatches(ds.length, B, epoch, args.seed, skip)) {
        const inputIds = new Int32Array(idx.length * T), labels = new Int32Array(idx.length * T);
        idx.forEach((i, r) => { const s = ds.get(i); inputIds.set(s.inputIds, r * T); labels.set(s.labels, r * T); });
        yield { inputIds, labels, batch: idx.length, seqLen: T };
      }
    },
  };
}

/** Prompts for the sample answers: the first few samples' text up to their first assistant turn. */
function samplePrompts(ds: unknown, n: number): { role: string; content: string }[][] {
  const d = ds as { conversations?(i: number): { role: string; content: string }[] };
  if (!n || !d.conversations) return [];
  const out = [];
  for (let i = 0; i < n; i++) {
    const conv = d.conversations(i);
    const cut = conv.findIndex((m) => m.role === 'assistant');
    out.push(conv.slice(0, cut < 0 ? conv.length : cut));
  }
  return out;
}

async function showSamples(when: string, model: MiniMind, tok: ChatTokenizer, prompts: { role: string; content: string }[][]): Promise<void> {
  console.log(`[train] sample answers ${when}:`);
  for (const msgs of prompts) {
    const ids = tok.encode(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }));
    const out: number[] = [];
    for await (const id of generate(model, ids, { maxNewTokens: 48, temperature: 0, eosId: tok.eosId })) if (id !== tok.eosId) out.push(id);
    console.log(`  Q: ${msgs.at(-1)?.content}\n  A: ${tok.decode(out).trim()}`);
  }
}
