// The runtime's own guarantees: out-of-bounds writes are caught, GPU errors name their kernel,
// large dispatches fold into 2-D grids, and a training-like loop reuses pooled memory.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope, noGrad } from '../runtime/tensor.js';
import { defineKernel, launch, flush } from '../runtime/kernel.js';
import { poolStats } from '../runtime/buffer.js';
import { backward } from '../runtime/autograd.js';
import { add, mul, scale, silu, mean, matmul, addInto } from '../kernels/index.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('runtime');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

/** Writes one element past n: the bug the guard regions exist to catch. */
const overrun = defineKernel({
  name: 'overrun_test', params: [['n', 'u32']], buffers: [['y', 'rw', 'f32']], workgroup: 64,
  wgsl: (_, entry) => `${entry} {
  let i = wid.x * 64u + lid.x;
  if (i <= p.n) { y[i] = 1.0; }
}`,
});

s('guard regions catch an out-of-bounds write, and stay intact for correct kernels', async () => {
  guardScope();
  const t = Tensor.empty([33]);
  launch(overrun, { params: { n: 33 }, buffers: [t.buffer], workgroups: 1 });
  assert.equal(await t.overwrittenGuard(), [33]);
  const a = Tensor.fromArray(randn(65, 1), [65]), w = Tensor.fromArray(randn(7 * 5, 2), [7, 5]);
  for (const out of [add(a, a), silu(a), mean(a), matmul(Tensor.fromArray(randn(13 * 5, 3), [13, 5]), w)]) {
    assert.equal(await out.overwrittenGuard(), [], `guard of [${out.shape}]`);
  }
});

s('a WGSL compile error is thrown with the kernel name', async () => {
  const bad = defineKernel({ name: 'broken_test', params: [], buffers: [['y', 'rw', 'f32']], workgroup: 1,
    wgsl: (_, entry) => `${entry} { y[0] = undefined_symbol; }` });
  const t = Tensor.empty([1]);
  let err: unknown;
  try {
    launch(bad, { buffers: [t.buffer], workgroups: 1 });
    flush();
    await t.read();
  } catch (e) { err = e; }
  assert.ok(err instanceof Error && /broken_test/.test(err.message), String(err));
});

s('dispatches beyond 65535 workgroups fold into a 2-D grid and cover every element', async () => {
  const n = 65536 * 256 + 77; // 65537 workgroups of 256
  const x = Tensor.zeros([n]);
  const y = scale(add(x, Tensor.fromArray(new Float32Array(n).fill(1), [n])), 3);
  const out = (await y.read()) as Float32Array;
  assert.is(out[0], 3);
  assert.is(out[n - 1], 3);
  assert.is(out.indexOf(0), -1, 'every element written');
});

s('200 steps of a training-like loop do not grow the pool after the first step', async () => {
  const w = Tensor.fromArray(randn(16 * 24, 4, 0.2), [16, 24], 'f32', true).keep();
  const x = Tensor.fromArray(randn(37 * 24, 5), [37, 24]).keep();
  let peakAfterFirst = 0;
  const losses: number[] = [];
  for (let step = 0; step < 200; step++) {
    beginScope();
    const loss = mean(mul(silu(matmul(x, w)), silu(matmul(x, w))));
    backward(loss);
    noGrad(() => addInto(w, scale(w.grad!, -0.05)));
    if (step % 50 === 0) losses.push(((await loss.read()) as Float32Array)[0]);
    w.grad!.dispose();
    w.grad = null;
    endScope();
    if (step === 0) peakAfterFirst = poolStats().peakAllocatedBytes;
  }
  assert.is(poolStats().peakAllocatedBytes, peakAfterFirst, 'peak bytes after 200 steps');
  if (process.env.POOL_REPORT) console.log(`pool peak: ${peakAfterFirst} bytes after step 1, ${poolStats().peakAllocatedBytes} after step 200`);
  assert.ok(losses[3] < losses[0], `loss falls: ${losses}`);
  w.dispose(); x.dispose();
});

s('backward through a shared input accumulates both paths', async () => {
  const a = Tensor.fromArray(randn(9, 8), [9], 'f32', true);
  backward(mean(add(mul(a, a), a)));
  const av = randn(9, 8);
  assertClose(await a.grad!.read(), av.map((v) => (2 * v + 1) / 9), 'd/da mean(a²+a)');
});

s.run();
