// `npm run tune [-- --preset NAME ...] [--batch_size B] [--max_seq_len T] [--dtype D]`: tunes the kernel variants
// of whole training steps up front (default: MiniMind2-small and minimind-3 at B16×T340 in bfloat16, the
// trainer's default --dtype, whose 16-bit kernels are shape classes of their own) and prints a
// table: kernel family, shape class, the candidates' times, the choice. Choices already cached for
// this adapter are listed, not re-timed; MINIMIND_TUNE=force re-times them.
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { tuner } from '../runtime/tuner.js';
import { AdamW } from '../kernels/adamw.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { tuneStep } from './tune_step.js';
import { lmTask } from './lm_task.js';
import { precisionFor } from './grad_scaler.js';

const argv = process.argv.slice(2);
const value = (flag: string, d: number) => {
  const i = argv.indexOf(flag);
  if (i < 0) return d;
  const n = Number(argv[i + 1]);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag} ${argv[i + 1]}: expected a positive integer`);
  return n;
};
const presets = argv.flatMap((a, i) => (a === '--preset' ? [argv[i + 1]] : []));
const B = value('--batch_size', 16), T = value('--max_seq_len', 340);
const at = argv.indexOf('--dtype'), precision = precisionFor(at < 0 ? 'bfloat16' : argv[at + 1]);

await initGpu();
if (tuner().mode === 'off') throw new Error('npm run tune times kernels: unset MINIMIND_TUNE=off (or set it to force to re-time cached choices)');
const t0 = performance.now();
const rows: string[][] = [];
for (const name of presets.length ? presets : ['minimind2-small', 'minimind3']) {
  const model = new MiniMind(preset(name), 0);
  model.setPrecision(precision);
  const opt = new AdamW(model.store, { lr: 1e-4, copy: model.workingCopy ?? undefined });
  tuner().takePicks();
  const ts = performance.now();
  const tuned = await tuneStep(lmTask(model), opt, B, T);
  console.log(`${name} B${B}×T${T} ${precision}: ${tuned.length} shape classes tuned in ${((performance.now() - ts) / 1000).toFixed(1)} s`);
  for (const { id } of tuner().takePicks()) {
    const [family, key] = id.split('|');
    const e = tuner().entry(id);
    const best = e?.timings.find((x) => x.label === e.label)?.ms;
    const others = (e?.timings ?? []).map((x) => `${x.label} ${x.ms !== undefined ? x.ms.toFixed(2) : `dropped (${x.dropped})`}`).join(', ');
    rows.push([name, family, key, e?.label ?? '(fallback: not tuned)', best !== undefined ? best.toFixed(2) : '', others]);
  }
  opt.dispose();
  model.dispose();
}
const head = ['model', 'kernel', 'shape class', 'chosen', 'ms', 'candidates (ms)'];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells: string[]) => cells.map((c, i) => (i === 4 ? c.padStart(w[i]) : i < 5 ? c.padEnd(w[i]) : c)).join('  ');
console.log(`\n${[line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n')}`);
console.log(`\n${((performance.now() - t0) / 1000).toFixed(1)} s; choices cached in ${tuner().file ?? '(no file: MINIMIND_TUNE_FILE=none)'}`);
closeGpu();
