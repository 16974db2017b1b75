// Which model an inference command runs, from eval_llm.py's / serve_openai_api.py's flags (MiniMind2
// defaults) plus this project's: the weight file, its config and the tokenizer. The config comes from, in
// order: --config FILE; --preset (changed by the shape flags given); the shape flags given (MiniMind2, as
// the trainer builds from them); the config.json the trainer wrote beside the weights; the tensor shapes.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { minimind2, preset, validate, type MiniMindConfig } from './config.js';
import { readConfig } from './config_json.js';
import { findConfigFor } from './config_file.js';
import { inferConfig } from './infer_config.js';
import { loadWeights } from './weights.js';
import { MiniMind } from './minimind.js';
import { LoRA } from './lora.js';
import { evalAdapterFile, loadAdapters, readAdapters } from './lora_file.js';
import { loadTokenizer, type ChatTokenizer } from '../data/tokenizer.js';
import { ensureDefaultData } from '../data/defaults.js';
import type { FlagTable } from './cli_flags.js';

export const MODEL_FLAGS = {
  load_from: { kind: 'string', def: 'model', help: "'model' (or any folder without config.json + model.safetensors): our/MiniMind's .pth from --save_dir and the tokenizer from this folder; a Hugging Face folder (model/export.ts, MiniMind's convert script): its config, weights and tokenizer" },
  save_dir: { kind: 'string', def: 'out', help: 'folder of the weight file' },
  weight: { kind: 'string', def: 'full_sft', help: "weight name prefix: {save_dir}/{weight}_{hidden_size}[_moe].pth; a name with 'pretrain' in it is prompted with bos + text, not the chat template" },
  weights: { kind: 'string', def: '', help: 'the weight file itself (.pth or .safetensors), instead of --save_dir/--weight/--hidden_size' },
  lora_weight: { kind: 'string', def: 'None', help: "LoRA adapter name ('None' = none), as eval_llm.py reads it: {save_dir}/lora/{name}_{hidden_size}.pth for MiniMind2, {save_dir}/{name}_{hidden_size}.pth for minimind-3 (no _moe); a value ending in .pth is the file" },
  hidden_size: { kind: 'number', def: 512, help: 'hidden size (MiniMind2); given, the shape flags set the model, else its config.json or its tensors do' },
  num_hidden_layers: { kind: 'number', def: 8, help: 'layers (MiniMind2)' },
  use_moe: { kind: 'number', def: 0, help: '1 = MiniMind2 MoE' },
  num_attention_heads: { kind: 'number', def: 8, help: 'attention heads, for a MiniMind2 file with no config.json (its tensors do not record them)' },
  inference_rope_scaling: { kind: 'switch', def: false, help: "YaRN rope extrapolation (factor 16 over the original 2048 positions), as eval_llm.py's flag; also on when the model's config.json has it" },
  config: { kind: 'string', def: '', help: 'MiniMind/HF config.json for the model' },
  preset: { kind: 'string', def: '', help: 'minimind2-small | minimind2 | minimind2-moe | minimind3 | minimind3-moe | tiny' },
  tokenizer_path: { kind: 'string', def: '', help: 'folder with tokenizer.json + tokenizer_config.json (default: --load_from; the built-in run\'s generated one when that has none)' },
  device: { kind: 'string', def: 'webgpu', help: 'accepted for compatibility; the adapter is chosen with MINIMIND_ADAPTER' },
} satisfies FlagTable;

export interface ModelChoice {
  load_from: string; save_dir: string; weight: string; weights: string; lora_weight: string; hidden_size: number;
  num_hidden_layers: number; use_moe: number; num_attention_heads: number; inference_rope_scaling: boolean;
  config: string; preset: string; tokenizer_path: string;
}

export interface Loaded {
  model: MiniMind; tok: ChatTokenizer; weights: string; /** One line: where the config came from. */ source: string;
  /** The adapter file applied (--lora_weight), if any. */ lora?: string;
}

const SHAPE_FLAGS = ['hidden_size', 'num_hidden_layers', 'use_moe'] as const;

/** Needs the GPU initialised. Errors name the flag or the file. */
export async function loadModel(o: ModelChoice, given: Set<string>): Promise<Loaded> {
  if (o.use_moe !== 0 && o.use_moe !== 1) throw new Error(`--use_moe must be 0 or 1, got ${o.use_moe}`);
  const hf = existsSync(join(o.load_from, 'config.json')) && existsSync(join(o.load_from, 'model.safetensors'));
  const weights = o.weights || (hf ? join(o.load_from, 'model.safetensors') : join(o.save_dir, `${o.weight}_${o.hidden_size}${o.use_moe ? '_moe' : ''}.pth`));
  if (!existsSync(weights)) {
    throw new Error(`${weights}: no such weight file (${o.weights ? '--weights' : '--save_dir, --weight, --hidden_size and --use_moe name it'})`);
  }
  const sd = loadWeights(weights);
  const shape = SHAPE_FLAGS.filter((k) => given.has(k));
  const over: Partial<MiniMindConfig> = Object.fromEntries(shape.map((k) => [k, k === 'use_moe' ? o.use_moe === 1 : o[k]]));
  let config: MiniMindConfig, source: string;
  const sidecar = findConfigFor(weights);
  if (o.config) [config, source] = [readConfig(o.config), `--config ${o.config}`];
  else if (o.preset) [config, source] = [preset(o.preset, over), `--preset ${o.preset}`];
  else if (shape.length) [config, source] = [validate(minimind2(over), 'flags'), shape.map((k) => `--${k}`).join(' ')];
  else if (hf) [config, source] = [readConfig(join(o.load_from, 'config.json')), join(o.load_from, 'config.json')];
  else if (sidecar) [config, source] = [readConfig(sidecar), sidecar];
  else {
    const heads = given.has('num_attention_heads') ? o.num_attention_heads : undefined;
    const inf = inferConfig(sd, weights, heads);
    config = inf.config;
    source = `the tensor shapes (no config.json)${inf.assumed.length ? `; assumed ${inf.assumed.join(', ')}` : ''}`;
  }
  if (o.inference_rope_scaling) config = { ...config, inference_rope_scaling: true };
  const model = new MiniMind(config, 0);
  try {
    model.load(sd, true); // eval_llm.py loads strictly
  } catch (e) {
    const hint = sidecar || !shape.length ? '' : `; ${weights} has no config.json: leave out ${shape.map((k) => `--${k}`).join(', ')} to read the shape from its tensors`;
    throw new Error(`${weights}: does not fit the model from ${source}: ${(e as Error).message.replace(/^weights do not fit the model: /, '')}`
      + (sidecar && source !== sidecar ? `; leave out ${source} to use ${sidecar}` : hint));
  }
  const lora = o.lora_weight === 'None' ? undefined : applyAdapters(model, o, hf);
  const tok = await tokenizerFor(o, given);
  if (tok.vocabSize > config.vocab_size) throw new Error(`tokenizer ${tok.dir} has ${tok.vocabSize} tokens but the model (from ${source}) has vocab_size ${config.vocab_size}`);
  return { model, tok, weights, source, lora };
}

/** eval_llm.py: apply_lora with the generation's rank, then load_lora of the --lora_weight file. Returns its path. */
function applyAdapters(model: MiniMind, o: ModelChoice, hf: boolean): string {
  if (hf) throw new Error(`--lora_weight: adapters apply to MiniMind's .pth weights, not a Hugging Face folder (${o.load_from}); merge them first`);
  const path = evalAdapterFile(o.save_dir, o.lora_weight, model.cfg);
  if (!existsSync(path)) throw new Error(`${path}: no such adapter file (--lora_weight ${o.lora_weight}${o.lora_weight.endsWith('.pth') ? '' : ', --save_dir and --hidden_size name it'})`);
  const lora = new LoRA(model.cfg);
  loadAdapters(lora, readAdapters(path), path);
  model.lora = lora;
  return path;
}

async function tokenizerFor(o: ModelChoice, given: Set<string>): Promise<ChatTokenizer> {
  const dir = o.tokenizer_path || o.load_from;
  if (existsSync(join(dir, 'tokenizer.json'))) return loadTokenizer(dir);
  if (given.has('tokenizer_path') || given.has('load_from')) throw new Error(`--tokenizer_path ${dir}: no tokenizer.json there`);
  // Nothing named and no ./model: the built-in run's generated tokenizer (what out/full_sft_128.pth was trained with).
  return loadTokenizer((await ensureDefaultData()).tokenizerDir);
}
