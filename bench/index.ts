// `npm run bench [-- --quick] [-- --filter NAME]`: the adapter's roofline, every kernel at
// MiniMind2-small training shapes (batch 16, seq 340, hidden 512, vocab 6400), whole training
// steps, and TensorFlow.js's WebGPU backend on the same adapter as the peer. Prints a table and
// writes it as JSON to bench/results/<adapter>.json.
import { mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { initGpu, closeGpu, gpu } from '../runtime/device.js';
import '../kernels/index.js';
import { Tensor } from '../runtime/tensor.js';
import { add } from '../kernels/index.js';
import { Options, Row, formatTable, row, time } from './harness.js';
import { measureRoofline } from './roofline.js';
import { benchKernels } from './kernels.js';
import { benchStep } from './step.js';

const argv = process.argv.slice(2);
const o: Options = { quick: argv.includes('--quick') };
const fi = argv.indexOf('--filter');
const filter = fi >= 0 ? argv[fi + 1] ?? '' : '';
const want = (name: string) => !filter || name.includes(filter);

await initGpu();
const t0 = performance.now();
const rows: Row[] = [];
const { roof, rows: roofRows } = await measureRoofline(o);
rows.push(...roofRows);
console.log(`roofline: FMA ${roof.fmaGflops.toFixed(1)} GFLOP/s, copy ${roof.copyGbps.toFixed(2)} GB/s`);

if (want('launch')) {
  // One tiny kernel: dispatch + submit + wait, the fixed cost every synchronising step pays.
  const a = Tensor.zeros([1]).keep();
  rows.push({ ...row('launch_latency', '1 element add', await time('launch', () => { add(a, a); }, o), {}), note: 'dispatch+submit+wait' });
}
rows.push(...(await benchKernels(o, roof, want)));
for (const [name, B, T] of [['tiny', 4, 128], ['minimind2-small', 16, 340]] as const) {
  if (!want(`train_step_${name}`) || (o.quick && name !== 'tiny')) continue;
  rows.push(await benchStep(name, B, T, o, roof));
}

let peer: Record<string, unknown> | undefined;
if (want('peer')) peer = runPeer(o);
console.log('\n' + formatTable(rows));
for (const r of rows.filter((x) => x.note)) console.log(`  ${r.name}: ${r.note}`);
if (peer) printPeer(peer, rows);

const slug = gpu().adapterName.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-|-$/g, '').slice(0, 80);
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const out = join(dir, `${slug}.json`);
writeFileSync(out + '.tmp', JSON.stringify({ adapter: gpu().adapterName, date: new Date().toISOString(), quick: o.quick, roofline: roof, rows, peer }, null, 1));
renameSync(out + '.tmp', out);
console.log(`\nwrote ${out} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
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
  console.log(`\npeer (TensorFlow.js WebGPU on ${p.adapter}):`);
  if (mine) console.log(`  matmul 5440×512·512×1408: tfjs ${mm.ms.toFixed(1)} ms vs ours ${mine.ms.toFixed(1)} ms → ${(mm.ms / mine.ms).toFixed(2)}× faster`);
  // Compared in tokens/s: the peer may run a smaller batch than ours at the same preset.
  for (const s of (p.steps as { name: string; batch: number; seq: number; ms: number }[]) ?? []) {
    const m = ours.find((r) => r.name === `train_step_${s.name}`);
    const peerTps = (s.batch * s.seq) / (s.ms / 1000);
    const note = `tfjs forward+backward ${s.ms.toFixed(0)} ms at B${s.batch}×T${s.seq} = ${peerTps.toFixed(0)} tokens/s`;
    if (!m) { console.log(`  step ${s.name}: ${note}`); continue; }
    const [b, t] = m.shape.slice(1).split('×T').map(Number);
    const ourTps = (b * t) / (m.ms / 1000);
    console.log(`  step ${s.name}: ${note} vs ours forward+backward+AdamW ${m.ms.toFixed(0)} ms at ${m.shape} = ${ourTps.toFixed(0)} tokens/s → ${(ourTps / peerTps).toFixed(2)}× the tokens/s`);
  }
}
