// MiniMind pretraining (`{"text": ...}` JSONL) on the same loop: writes {save_dir}/pretrain_{hidden}.pth,
// which `sft.ts --from_weight pretrain` picks up. Without --data_path: the built-in generated text.
import { parseArgs, PRETRAIN_DEFAULTS } from './args.js';
import { run, BUILTIN } from './run.js';

const argv = process.argv.slice(2);
const builtin = !argv.some((a) => /^--(data_path|help|h)\b/.test(a) || a === '-h');
try {
  const args = parseArgs(argv, builtin ? { ...PRETRAIN_DEFAULTS, ...BUILTIN, save_weight: 'pretrain' } : PRETRAIN_DEFAULTS,
    'usage: npx tsx train/pretrain.ts [flags]');
  await run('pretrain', args, builtin);
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exitCode = 1;
}
