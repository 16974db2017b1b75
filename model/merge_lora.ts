// Fold LoRA adapters into the base weights: MiniMind's convert_merge_base_lora (H:scripts/convert_model.py:105-112,
// merge_lora in H:model/model_lora.py:56-65). `npx tsx model/merge_lora.ts [model flags] --lora_weight NAME [--out FILE]`:
// the base and the adapters are found as chat finds them (model/load_model.ts, eval_llm.py's rules); the result is a
// plain float16 .pth with the base's keys (fp16(W) + fp16(B·A) for every adapted Linear) and its config.json beside it.
import { pathToFileURL } from 'node:url';
import { basename, dirname, join } from 'node:path';
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { flagHelp, parseFlags, type FlagTable } from './cli_flags.js';
import { loadModel, MODEL_FLAGS } from './load_model.js';
import { mergedStateDict } from './lora_file.js';
import { writePth } from './pth.js';
import { writeConfigFor } from './config_file.js';

export const FLAGS = {
  ...MODEL_FLAGS,
  out: { kind: 'string', def: '', help: "the merged .pth (default: {save_dir}/merge_{NAME without 'lora_'}_{hidden_size}[_moe].pth, as convert_model.py's example)" },
} satisfies FlagTable;

const USAGE = 'npx tsx model/merge_lora.ts [--weights FILE | --save_dir out --weight full_sft --hidden_size 512] --lora_weight NAME [--out FILE]';

export async function main(argv: string[]): Promise<string | undefined> {
  const { values: o, given, help } = parseFlags(FLAGS, argv);
  if (help) { console.log(flagHelp(USAGE, FLAGS)); return; }
  if (o.lora_weight === 'None') throw new Error('--lora_weight: name the adapters to merge');
  await initGpu({ quiet: true });
  try {
    const { model, weights, lora } = await loadModel(o, given);
    const c = model.cfg, name = basename(o.lora_weight, '.pth').replace(/^lora_/, '').replace(new RegExp(`_${c.hidden_size}$`), '');
    const out = o.out || join(o.lora_weight.endsWith('.pth') ? dirname(o.lora_weight) : o.save_dir, `merge_${name}_${c.hidden_size}${c.use_moe ? '_moe' : ''}.pth`);
    writePth(out, await mergedStateDict(model, model.lora!), { dtype: 'float16' });
    writeConfigFor(out, c);
    console.log(`[merge] ${weights} + ${lora} → ${out}`);
    return out;
  } finally {
    closeGpu();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`merge_lora: ${(e as Error).message}`);
    process.exitCode = 1;
  });
}
