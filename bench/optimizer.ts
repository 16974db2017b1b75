// Optimizer-side kernels at MiniMind2-small size (25,829,888 parameters in 74 tensors): grad_norm
// over all gradients, and one AdamW step (with the clip factor) as the trainer runs it, multi-tensor
// over the 74 separate parameter buffers; beside it the same step on ONE flat 25.8M tensor, the
// layout a flat parameter store would give (one dispatch), to show what the dispatch count costs.
// Napkin math: AdamW moves 28 B/param (p r+w, g r, m r+w, v r+w) = 723 MB per step; at lavapipe's
// ~4–6 GB/s copy roofline that is ~120–180 ms. grad_norm reads 4 B/param = 103 MB.
// Run alone: npx tsx bench/optimizer.ts [--quick]
import { pathToFileURL } from 'node:url';
import { initGpu, closeGpu } from '../runtime/device.js';
import { counters, resetCounters } from '../runtime/kernel.js';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { AdamW, bench as adamwBench } from '../kernels/adamw.js';
import { gradNorm, bench as normBench } from '../kernels/grad_norm.js';
import { minimind2, parameterShapes } from '../model/config.js';
import { Options, Roofline, Row, formatTable, row, time } from './harness.js';
import { measureRoofline } from './roofline.js';

/** A parameter with a gradient, both filled with a cheap deterministic pattern. */
function param(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = ((((i + seed) * 2654435761) >>> 0) % 2001 - 1000) / 1000;
  const p = Tensor.fromArray(a, shape, 'f32', true).keep();
  p.grad = Tensor.fromArray(a.map((v) => v * 1e-2), shape).keep();
  return p;
}

export async function benchOptimizer(o: Options = { quick: false }, roof?: Roofline): Promise<Row[]> {
  const shapes = parameterShapes(minimind2()).map(([, s]) => s);
  const params = shapes.map((s, i) => param(s, i));
  const n = params.reduce((a, p) => a + p.size, 0);
  const shape = `${(n / 1e6).toFixed(1)}M params`;
  const rows: Row[] = [];
  const opt = new AdamW(params, { lr: 1e-4 });
  const grads = params.map((p) => p.grad!);
  const dispatches = (fn: () => void) => { resetCounters(); fn(); return counters().dispatches; };
  const scoped = (fn: () => void) => () => { beginScope(); fn(); endScope(); };

  const normStep = scoped(() => { gradNorm(grads); });
  const dNorm = dispatches(normStep);
  rows.push({ ...row('grad_norm', `${shape}, ${params.length} tensors`, await time('grad_norm', normStep, o), normBench.grad_norm(n), roof),
    note: `${dNorm} dispatches` });

  const norm = gradNorm(grads).keep();
  const step = () => opt.step(1e-4, norm, 1.0);
  rows.push({ ...row('adamw', `${shape}, ${params.length} tensors`, await time('adamw', step, o), adamwBench.adamw(n), roof),
    note: `${dispatches(step)} dispatches, clip factor read from the norm buffer` });
  norm.dispose();
  for (const p of params) { p.grad!.dispose(); p.dispose(); }
  opt.state().m.concat(opt.state().v).forEach((t) => t.dispose());

  const flat = param([n], 7);
  const flatOpt = new AdamW([flat], { lr: 1e-4 });
  const flatStep = () => flatOpt.step(1e-4);
  rows.push({ ...row('adamw_flat', `${shape}, 1 tensor`, await time('adamw_flat', flatStep, o), adamwBench.adamw(n), roof),
    note: `${dispatches(flatStep)} dispatch, no clip` });
  flat.grad!.dispose(); flat.dispose();
  flatOpt.state().m.concat(flatOpt.state().v).forEach((t) => t.dispose());
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await initGpu();
  const o = { quick: process.argv.includes('--quick') };
  const { roof, rows: roofRows } = await measureRoofline(o);
  const rows = await benchOptimizer(o, roof);
  console.log(formatTable([...roofRows, ...rows]));
  for (const r of rows) console.log(`  ${r.name}: ${r.note}`);
  closeGpu();
}
