// MiniMind pretraining (`{"text": ...}` JSONL) on the same loop: writes {save_dir}/pretrain_{hidden}.pth,
// which `sft.ts --from_weight pretrain` picks up. Without --data_path: the built-in generated text.
import { parseArgs } from './args.js';
import { run, BUILTIN } from './run.js';

const argv = process.argv.slice(2);
const builtin = !argv.some((a) => /^--(data_path|help|h)\b/.test(a) || a === '-h');
const defaults = { save_weight: 'pretrain', learning_rate: 5e-4, epochs: 1, max_seq_len: 340, data_path: '../dataset/pretrain_hq.jsonl', from_weight: 'none' };
try {
  const args = parseArgs(argv, builtin ? { ...defaults, ...BUILTIN, save_weight: 'pretrain' } : defaults,
    'usage: npx tsx train/pretrain.ts [flags]');
  await run('pretrain', args, builtin);
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exitCode = 1;
}
