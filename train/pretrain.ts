// MiniMind pretraining (`{"text": ...}` JSONL) on the same loop: writes {save_dir}/pretrain_{hidden}.pth,
// which `sft.ts --from_weight pretrain` picks up. Without --data_path: the built-in generated text.
import { parseArgs, PRETRAIN_DEFAULTS } from './args.js';
import { run, BUILTIN } from './run.js';
import { launchTraining, refuseTorchrun } from './ddp.js';

const argv = process.argv.slice(2);
const builtin = !argv.some((a) => /^--(data_path|help|h)\b/.test(a) || a === '-h');
try {
  refuseTorchrun(process.env);
  const overrides = builtin ? { ...PRETRAIN_DEFAULTS, ...BUILTIN, save_weight: 'pretrain' } : PRETRAIN_DEFAULTS;
  const args = parseArgs(argv, overrides, 'usage: npx tsx train/pretrain.ts [flags]');
  if (args.nproc_per_node) await launchTraining({ mode: 'pretrain', argv, overrides, builtin }, args);
  else await run('pretrain', args, builtin);
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exitCode = 1;
}
