// MiniMind LoRA fine-tuning in TypeScript: `npx tsx train/lora.ts [flags]` (see --help). train_lora.py's flags
// and defaults (spec §11): MiniMind2's unless the model is a minimind-3 one (--preset minimind3*, or a minimind-3
// --config), which takes HEAD's (--save_dir ../out, --lora_name lora_medical, --epochs 10, its data file). SFT data
// and loss on the SFT loop (train/run.ts, train/lora_task.ts); the base (--from_weight) frozen; saves only the
// adapters, {save_dir}/{lora_name}_{hidden}[_moe].pth (_moe for minimind-3 only, as each writes it), and the resume
// checkpoint {checkpoint_dir}/{lora_name}_{hidden}[_moe]_resume.pth. --lora_init FILE starts from given adapters.
// --nproc_per_node N: data-parallel ranks as train/sft.ts has them (train/ddp.ts); only the adapters are exchanged.
import { pathToFileURL } from 'node:url';
import { parseArgs, type TrainArgs } from './args.js';
import { run } from './run.js';
import { launchTraining, refuseTorchrun } from './ddp.js';
import type { FlagTable } from '../model/cli_flags.js';
import { minimind2, preset } from '../model/config.js';
import { readConfig } from '../model/config_json.js';
import { generationOf, type Generation } from '../model/lora.js';

/** Beside train_full_sft.py's flags: --lora_name in --save_weight's place (it names the files), and --lora_init. */
const LORA_FLAGS = {
  lora_name: { kind: 'string', def: 'lora_identity', help: 'adapter file prefix: {save_dir}/{lora_name}_{hidden}[_moe].pth, and the resume checkpoint\'s' },
  lora_init: { kind: 'string', def: '', help: "an adapter file (MiniMind's save_lora format) to start from instead of A ~ N(0, 0.02) from --seed and B = 0" },
} satisfies FlagTable;

/** train_lora.py's defaults where they differ from train_full_sft.py's (M2:trainer/train_lora.py:70-91). */
const M2 = {
  save_dir: '../out/lora', lora_name: 'lora_identity', epochs: 50, batch_size: 32, learning_rate: 1e-4, log_interval: 10,
  data_path: '../dataset/lora_identity.jsonl', from_weight: 'full_sft', wandb_project: 'MiniMind-LoRA',
};
/** Per generation; HEAD's changes for minimind-3 (H:trainer/train_lora.py:80-101). */
export const LORA_DEFAULTS: Record<Generation, Record<string, string | number>> = {
  minimind2: M2,
  minimind3: { ...M2, save_dir: '../out', lora_name: 'lora_medical', epochs: 10, hidden_size: 768, data_path: '../dataset/lora_medical.jsonl' },
};

const USAGE = 'usage: npx tsx train/lora.ts [flags]\n'
  + "Defaults are MiniMind2's train_lora.py; with a minimind-3 model (--preset minimind3 | minimind3-moe, or its --config) "
  + `they are HEAD's: ${Object.entries(LORA_DEFAULTS.minimind3).filter(([k, v]) => LORA_DEFAULTS.minimind2[k] !== v).map(([k, v]) => `--${k} ${v}`).join(', ')}.`;

/** Flags with the defaults of the model's generation (the model is read from --config/--preset only). */
export function parseLoraArgs(argv: string[]): TrainArgs & { lora_init: string } {
  const parse = (g: Generation) => parseArgs(argv, LORA_DEFAULTS[g], USAGE, LORA_FLAGS, ['save_weight']);
  let args = parse('minimind2');
  if (generationOf(args.config ? readConfig(args.config) : args.preset ? preset(args.preset) : minimind2()) === 'minimind3') args = parse('minimind3');
  args.save_weight = args.lora_name;
  return args;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    refuseTorchrun(process.env, 'train/lora.ts');
    const argv = process.argv.slice(2), args = parseLoraArgs(argv);
    if (args.nproc_per_node) await launchTraining({ mode: 'lora', argv, overrides: {}, builtin: false, loraInit: args.lora_init }, args);
    else await run('lora', args, false, args.lora_init);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
