// What every trainer (sft, pretrain, lora, dpo) resolves from its flags before training: the model's
// shape, the tokenizer MiniMind's scripts would load, and --from_weight's starting weights.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MiniMind } from '../model/minimind.js';
import { MiniMindConfig, minimind2, preset } from '../model/config.js';
import { readConfig } from '../model/config_json.js';
import { loadWeights } from '../model/weights.js';
import type { ChatTokenizer } from '../data/tokenizer.js';
import { TrainArgs, wasGiven } from './args.js';

/** The model's shape: --config, else --preset changed by the model flags given, else MiniMind2's flags.
 *  `builtin`: the built-in run's vocabulary is its own tokenizer's. */
export function modelConfig(args: TrainArgs, tok: ChatTokenizer, builtin: boolean): MiniMindConfig {
  let cfg: MiniMindConfig;
  const shape = { hidden_size: args.hidden_size, num_hidden_layers: args.num_hidden_layers, use_moe: !!args.use_moe };
  const given = (['hidden_size', 'num_hidden_layers', 'use_moe'] as const).filter((k) => wasGiven(args, k));
  if (args.config) {
    cfg = readConfig(args.config);
    if (given.length) console.log(`[train] --config ${args.config} sets the model: ${given.map((k) => `--${k}`).join(', ')} not used`);
  } else if (args.preset) {
    // Model flags on the command line change the preset (the built-in run's tiny one included).
    // The built-in run's vocabulary is its own tokenizer's (2048, not MiniMind's 6400): the LM head
    // is most of a tiny model's FLOPs.
    cfg = preset(args.preset, { ...Object.fromEntries(given.map((k) => [k, shape[k]])), ...(builtin ? { vocab_size: tok.vocabSize } : {}) });
  } else cfg = minimind2(shape);
  if (tok.vocabSize > cfg.vocab_size) throw new Error(`tokenizer has ${tok.vocabSize} tokens but the model's vocab_size is ${cfg.vocab_size}`);
  return cfg;
}

/** MiniMind's trainers load the tokenizer from '../model' (AutoTokenizer.from_pretrained in init_model):
 *  so does --tokenizer_path by default. Nothing there is an error: the generated tokenizer would turn the data into garbage. */
export function checkTokenizer(args: TrainArgs): void {
  const dir = args.tokenizer_path;
  const missing = ['tokenizer.json', 'tokenizer_config.json'].filter((f) => !existsSync(join(dir, f))).join(' and ');
  if (!missing) return;
  throw new Error(wasGiven(args, 'tokenizer_path')
    ? `--tokenizer_path ${dir}: no ${missing} in ${resolve(dir)}`
    : `--data_path needs the tokenizer its data is for: looked in ${dir} (${resolve(dir)}), where MiniMind's trainers load it from, `
      + `and found no ${missing}; pass --tokenizer_path DIR (MiniMind's model/ folder, or the folder of the tokenizer the data was made with)`);
}

/** MiniMind's weight file name: {dir}/{name}_{hidden}[_moe].pth. */
export function weightFile(dir: string, cfg: MiniMindConfig, name: string): string {
  return join(resolve(dir), `${name}_${cfg.hidden_size}${cfg.use_moe ? '_moe' : ''}.pth`);
}

/** --from_weight: a .pth/.safetensors path, or a name MiniMind resolves in `dir` (default --save_dir; LoRA's
 *  init_model looks in ../out whatever its --save_dir); loaded non-strictly as MiniMind does (keys missing from
 *  the file keep their init; both are reported). Returns the file. */
export async function loadFromWeight(model: MiniMind, args: TrainArgs, dir = args.save_dir): Promise<string> {
  const p = /\.(pth|safetensors)$/.test(args.from_weight) ? args.from_weight : weightFile(dir, model.cfg, args.from_weight);
  const where = dir === args.save_dir ? '' : `; a name is looked up in ${dir}, as MiniMind's init_model does, or give a .pth path`;
  if (!existsSync(p)) throw new Error(`--from_weight ${args.from_weight}: ${p} does not exist (use --from_weight none to start from random init${where})`);
  const { missing, unexpected } = model.load(await loadWeights(p), false);
  console.log(`[train] loaded ${p}${missing.length ? `; missing keys (kept at init): ${missing.join(', ')}` : ''}${unexpected.length ? `; ignored keys: ${unexpected.join(', ')}` : ''}`);
  return p;
}
