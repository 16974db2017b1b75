// `npx tsx scripts/gpu_train_check.ts [--short] [--dir DIR]`: a short run of the real trainer
// (train/sft.ts, built-in data; MiniMind2-small at B16×T340 for 20 steps, or tiny at B4×T64 for 4
// steps with --short), then its throughput: tokens/s after the warm-up steps, model FLOPs per token
// (bench/step.ts), achieved TFLOP/s, and MFU against the adapter's measured FMA roofline and against
// a nominal fp32 peak where the adapter is known. Used by scripts/gpu-check.sh.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { matmul } from '../kernels/index.js';
import { preset } from '../model/config.js';
import { stepFlops } from '../model/flops.js';
import { parseLines, isStep } from '../train/run_log.js';
import { measureRoofline } from '../bench/roofline.js';
import { chooseClock, clock } from '../bench/harness.js';

/** Steps left out of the throughput: the first plans and tunes kernels, and both compile pipelines. */
const WARMUP_STEPS = 2;

/** Nominal fp32 (non-tensor-core) peaks, TFLOP/s, from NVIDIA's H200 and H100 datasheets (boost
 *  clock). The name alone cannot tell SXM from PCIe, so an unmarked name is taken as SXM. */
const NOMINAL_FP32_TFLOPS: [RegExp, string, number][] = [
  [/H200 NVL/i, 'NVIDIA H200 NVL', 60],
  [/H200/i, 'NVIDIA H200 SXM', 67],
  [/H100 NVL/i, 'NVIDIA H100 NVL', 60],
  [/H100 PCIe/i, 'NVIDIA H100 PCIe', 51],
  [/H100/i, 'NVIDIA H100 SXM', 67],
];

interface LogRow { step: number; tokens_per_s: number; elapsed_s: number }

const argv = process.argv.slice(2);
const short = argv.includes('--short');
const di = argv.indexOf('--dir');
const dir = di >= 0 ? argv[di + 1] : mkdtempSync(join(tmpdir(), 'gpu-train-check-'));
if (!dir) throw new Error('--dir needs a directory');
const run = short
  ? { name: 'tiny', B: 4, T: 64, steps: 4 }
  : { name: 'minimind2-small', B: 16, T: 340, steps: 20 };
const say = (s: string) => console.log(`[train-check] ${s}`);

// The trainer runs in its own process, as a user runs it, and has the GPU to itself.
const log = join(dir, 'train_log.jsonl');
const flags = ['--preset', run.name, '--batch_size', `${run.B}`, '--max_seq_len', `${run.T}`, '--max_steps', `${run.steps}`,
  '--log_interval', '1', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir, '--log_file', log];
say(`trainer: npx tsx train/sft.ts ${flags.join(' ')}`);
const root = join(import.meta.dirname, '..');
const trainer = spawnSync(join(root, 'node_modules', '.bin', 'tsx'), ['train/sft.ts', ...flags], { cwd: root, stdio: 'inherit' });
if (trainer.status !== 0) throw new Error(`the trainer failed (exit ${trainer.status ?? trainer.signal ?? trainer.error?.message})`);

const rows: LogRow[] = parseLines(readFileSync(log, 'utf8')).records.filter(isStep); // the step lines, not the run's own
if (rows.length <= WARMUP_STEPS) throw new Error(`${log}: ${rows.length} logged steps, need more than the ${WARMUP_STEPS} warm-up steps`);
// The log's tokens_per_s and elapsed_s are cumulative from the start of training: difference them.
const tokensAt = (r: LogRow) => r.tokens_per_s * r.elapsed_s;
const from = rows[WARMUP_STEPS - 1], to = rows[rows.length - 1];
const seconds = to.elapsed_s - from.elapsed_s;
const tokensPerS = (tokensAt(to) - tokensAt(from)) / seconds;
const flopsPerToken = stepFlops(preset(run.name), run.B, run.T) / (run.B * run.T);
const achieved = tokensPerS * flopsPerToken; // FLOP/s
say(`${run.name} B${run.B}×T${run.T}: steps ${from.step + 1}-${to.step} (after ${WARMUP_STEPS} warm-up steps): `
  + `${((1000 * seconds) / (to.step - from.step)).toFixed(1)} ms/step`);
say(`tokens/s: ${tokensPerS.toFixed(0)}`);
say(`model FLOPs per token: ${(flopsPerToken / 1e6).toFixed(1)} MFLOP (model/flops.ts: forward + backward matmuls and causal attention)`);
say(`achieved: ${(achieved / 1e9).toFixed(1)} GFLOP/s`);

// Measured after the trainer exited, so it does not share the GPU. GPU timestamps when they agree
// with the wall clock on a matmul: a fast GPU's FMA run lasts about as long as its launch latency.
await initGpu();
{
  const x = Tensor.zeros([short ? 340 : 21760, 512]), w = Tensor.zeros([1408, 512]);
  await chooseClock(() => { beginScope(); matmul(x, w); endScope(); });
  x.dispose(); w.dispose();
}
const { roof } = await measureRoofline({ quick: true });
say(`measured FMA roofline: ${roof.fmaGflops.toFixed(1)} GFLOP/s (clock: ${clock.gpu ? 'GPU timestamps' : 'wall'}; ${clock.why})`);
say(`MFU vs measured FMA roofline: ${((100 * achieved) / (roof.fmaGflops * 1e9)).toFixed(2)}%`);
const info = gpu().adapter.info;
const known = NOMINAL_FP32_TFLOPS.find(([re]) => re.test(`${info.device} ${info.description}`));
say(known
  ? `MFU vs nominal fp32 peak: ${((100 * achieved) / (known[2] * 1e12)).toFixed(2)}% (${known[1]}: ${known[2]} TFLOP/s fp32, datasheet)`
  : `MFU vs nominal fp32 peak: unknown (no nominal peak for '${gpu().adapterName}')`);
closeGpu();
