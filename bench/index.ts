// `npm run bench [-- --quick] [-- --filter NAME[,NAME...]]`: the adapter's roofline, every kernel at
// MiniMind2-small training shapes (batch 16, seq 340, hidden 512, vocab 6400), whole training
// steps, decode tokens/s and time to first token (bench/decode.ts), and TensorFlow.js's WebGPU
// backend on the same adapter as the peer. Prints a table and writes it as JSON to bench/results/<adapter>.json; a --filter run merges its rows into that file
// (rows of the same name and shape replaced, the others kept).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import '../kernels/index.js';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { add, matmul } from '../kernels/index.js';
import { Options, Row, clock, chooseClock, formatTable, mergeRows, probeRate, row, time } from './harness.js';
import { measureRoofline } from './roofline.js';
import { benchKernels } from './kernels.js';
import { benchStep } from './step.js';
import { benchDecode } from './decode.js';
import { benchDdp } from './ddp.js';

const argv = process.argv.slice(2);
const o: Options = { quick: argv.includes('--quick') };
const fi = argv.indexOf('--filter');
// --filter a,b: the rows whose name contains a or b.
const filters = (fi >= 0 ? argv[fi + 1] ?? '' : '').split(',').filter(Boolean);
const want = (name: string) => !filters.length || filters.some((f) => name.includes(f));

await initGpu();
const t0 = performance.now();
{ // GPU timestamps checked against the wall clock on the FFN matmul (~0.2 s per call here).
  const x = Tensor.zeros([5440, 512]), w = Tensor.zeros([1408, 512]);
  await chooseClock(() => { beginScope(); matmul(x, w); endScope(); });
  x.dispose(); w.dispose();
}
console.log(`clock: ${clock.gpu ? 'GPU timestamps' : 'wall'} (${clock.why})`);
const rows: Row[] = [];
const { roof, rows: roofRows, probes } = await measureRoofline(o);
rows.push(...roofRows.filter((r) => want(r.name)));
console.log(`roofline: FMA ${roof.fmaGflops.toFixed(1)} GFLOP/s, copy ${roof.copyGbps.toFixed(2)} GB/s`);

if (want('launch')) {
  // One tiny kernel: dispatch + submit + wait, the fixed cost every synchronising step pays (host included: wall).
  const a = Tensor.zeros([1]).keep();
  rows.push({ ...row('launch_latency', '1 element add', await time('launch', () => { add(a, a); }, o, { clock: 'wall' }), {}), note: 'dispatch+submit+wait' });
  a.dispose();
}
rows.push(...(await benchKernels(o, probes, want)));
// SFT steps (float32, then --dtype bfloat16 / float16's mixed precision), LoRA steps at the same B·T, and DPO
// steps at MiniMind's DPO defaults (4 pairs of 1024 tokens: policy and frozen reference).
// The built-in run's step (tiny, B16×T56) at both dtypes: which one it uses (train/run.ts BUILTIN).
const fullHeld = new Map<string, { held: number; peak: number }>();
for (const [name, B, T, objective, precision] of [['tiny', 16, 56, 'sft', 'f32'], ['tiny', 16, 56, 'sft', 'bf16'],
  ['tiny', 4, 128, 'sft', 'f32'], ['tiny', 4, 128, 'sft', 'bf16'], ['tiny', 4, 128, 'lora', 'f32'],
  ['minimind2-small', 16, 340, 'sft', 'f32'], ['minimind2-small', 16, 340, 'sft', 'bf16'], ['minimind2-small', 16, 340, 'sft', 'f16'],
  ['minimind2-small', 16, 340, 'lora', 'f32'], ['tiny', 2, 128, 'dpo', 'f32'], ['minimind2-small', 4, 1024, 'dpo', 'f32']] as const) {
  if (!want(`train_step_${objective === 'sft' ? '' : `${objective}_`}${name}`) || (o.quick && name !== 'tiny')) continue;
  // A minimind2-small step takes ~20 s here: 3 samples after the warm-up step. FMA probe timed around it.
  const before = await probeRate(probes.compute, 5);
  const { heldBytes, peakBytes, ...r } = await benchStep(name, B, T, o, name === 'tiny' ? {} : { minSamples: 3, maxTime: 0 }, objective, precision);
  const fmaGflops = [before, await probeRate(probes.compute, 5), roof.fmaGflops].sort((a, b) => a - b)[1]; // as bench/kernels.ts
  // LoRA and mixed precision at the float32 SFT step's B·T: the bytes they hold against its, measured just before.
  const key = `${name} ${B}x${T}`, full = fullHeld.get(key);
  if (objective === 'sft' && precision === 'f32') fullHeld.set(key, { held: heldBytes, peak: peakBytes });
  else if (objective === 'lora' && full) r.note += `; ${(heldBytes / full.held).toFixed(2)}× the full step's bytes held (no base gradients or moments; its frozen matmuls keep no input for a weight gradient)`;
  else if (full) r.note += `; ${(heldBytes / full.held).toFixed(2)}× the float32 step's bytes held, ${(peakBytes / full.peak).toFixed(2)}× its activation peak`;
  rows.push({ ...r, roofline: fmaGflops, pctRoofline: (100 * r.gflops!) / fmaGflops });
}

rows.push(...(await benchDecode(o, want)));
rows.push(...(await benchDdp(o, want)));

for (const r of rows.filter((x) => x.samples < 5)) {
  const why = o.quick ? '--quick' : 'a call takes seconds';
  r.note = [`${r.samples} samples (${why}${r.samples === 2 ? '; the median is their mean' : ''})`, r.note].filter(Boolean).join('; ');
}

let peer: Record<string, unknown> | undefined;
if (want('peer')) peer = runPeer(o);
console.log('\n' + formatTable(rows));
console.log(`  clock: gpu = timestamp queries around the call's GPU work; gpu+host = that plus the host's recording time; `
  + `wall = call start to queue completion. ${clock.why}`);
console.log('  % roofline: of the FMA (compute rows) or copy (memory rows) roofline: median of its rates just before the row, '
  + 'just after it, and at the start');
for (const r of rows.filter((x) => x.note)) console.log(`  ${r.name} ${r.shape}: ${r.note}`);
if (peer) printPeer(peer, rows);

const slug = gpu().adapterName.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
const dir = join(import.meta.dirname, 'results');
// A --quick run (development) keeps its own file: it never replaces a full run's numbers.
const out = join(dir, `${slug}${o.quick ? '.quick' : ''}.json`);
const seconds = (performance.now() - t0) / 1000;
const date = new Date().toISOString();
let result: Record<string, unknown> = { adapter: gpu().adapterName, date, quick: o.quick, seconds, clock, roofline: roof, rows, peer };
if (filters.length && existsSync(out)) {
  const old = JSON.parse(readFileSync(out, 'utf8')) as Record<string, unknown> & { rows: Row[]; updates?: unknown[] };
  result = {
    ...old, rows: mergeRows(old.rows, rows), peer: peer ?? old.peer,
    // The file's roofline stays; merged rows' % roofline are against this run's (given here).
    updates: [...(old.updates ?? []), { date, filter: filters.join(','), quick: o.quick, clock, roofline: roof, rows: rows.length }],
  };
}
writeFileAtomic(out, JSON.stringify(result, null, 1));
console.log(`\n${filters.length ? `merged ${rows.length} rows into` : 'wrote'} ${out} (${seconds.toFixed(0)} s)`);
closeGpu();

/** The peer runs in its own process so it gets its own Dawn device. */
function runPeer(opts: Options): Record<string, unknown> {
  const r = spawnSync('npx', ['tsx', join(import.meta.dirname, 'peer_tfjs.ts'), ...(opts.quick ? ['--quick'] : [])], { encoding: 'utf8', timeout: 600_000 });
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(last);
  } catch {
    return { ok: false, why: `peer did not run: ${(r.stderr || r.error?.message || 'no output').trim().split('\n').slice(-3).join(' | ')}` };
  }
}

function printPeer(p: Record<string, unknown>, ours: Row[]): void {
  if (!p.ok) { console.log(`\npeer (TensorFlow.js WebGPU): not run: ${p.why}`); return; }
  const mm = p.matmul as { ms: number; gflops: number };
  const mine = ours.find((r) => r.name === 'matmul' && r.shape.startsWith('5440x512·1408'));
  // End to end on both sides: the peer's wall clock (its host asleep while the GPU works, as ours); ours on the GPU
  // clock plus the host's recording time.
  const endToEnd = (r: Row) => (r.clock === 'gpu' ? r.ms + r.hostMs : r.ms);
  console.log(`\npeer (TensorFlow.js WebGPU on ${p.adapter}), end to end (tfjs: wall; ours: GPU span + host recording):`);
  if (mine) console.log(`  matmul 5440×512·512×1408: tfjs ${mm.ms.toFixed(1)} ms vs ours ${endToEnd(mine).toFixed(1)} ms → ${(mm.ms / endToEnd(mine)).toFixed(2)}× faster`);
  // Compared in tokens/s: the peer may run a smaller batch than ours at the same preset.
  for (const s of (p.steps as { name: string; batch: number; seq: number; ms: number; reps: number }[]) ?? []) {
    const m = ours.find((r) => r.name === `train_step_${s.name}`);
    const peerTps = (s.batch * s.seq) / (s.ms / 1000);
    const note = `tfjs forward+backward ${s.ms.toFixed(0)} ms at B${s.batch}×T${s.seq} = ${peerTps.toFixed(0)} tokens/s (median of ${s.reps})`;
    if (!m) { console.log(`  step ${s.name}: ${note}`); continue; }
    const [b, t] = m.shape.slice(1).split('×T').map(Number);
    const ourTps = (b * t) / (endToEnd(m) / 1000);
    console.log(`  step ${s.name}: ${note} vs ours forward+backward+AdamW ${endToEnd(m).toFixed(0)} ms at ${m.shape} = ${ourTps.toFixed(0)} tokens/s `
      + `(median of ${m.samples}) → ${(ourTps / peerTps).toFixed(2)}× the tokens/s`);
  }
}
