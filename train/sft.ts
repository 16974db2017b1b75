// MiniMind SFT in TypeScript: `npx tsx train/sft.ts [flags]` (see --help). With no data named
// it runs the built-in default: the project's generated conversations and tokenizer, a tiny model.
import { parseArgs } from './args.js';
import { run, BUILTIN } from './run.js';
import { launchTraining, refuseTorchrun } from './ddp.js';

const argv = process.argv.slice(2);
const builtin = !argv.some((a) => /^--(data_path|help|h)\b/.test(a) || a === '-h');
const usage = 'usage: npx tsx train/sft.ts [flags]\n'
  + 'Without --data_path: the built-in run (generated data + tokenizer, tiny preset, from scratch; saves to ./out and ./checkpoints).';
try {
  refuseTorchrun(process.env);
  const overrides = builtin ? BUILTIN : {};
  const args = parseArgs(argv, overrides, usage);
  if (args.nproc_per_node) await launchTraining({ mode: 'sft', argv, overrides, builtin }, args);
  else await run('sft', args, builtin);
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exitCode = 1;
}
