import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope } from '../runtime/tensor.js';
import { counters, resetCounters } from '../runtime/kernel.js';
import { gradNorm, reference, slotsPerDispatch } from '../kernels/grad_norm.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('grad_norm');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

// Sizes not multiples of the workgroup (256) or its chunk (16384), from 1 element to several chunks.
const SIZES = [1, 33, 65, 1025, 4097, 40961, 255, 257, 2, 12345];

function grads(count: number, seed: number, scale = 1): Float64Array[] {
  return Array.from({ length: count }, (_, i) => randn(SIZES[i % SIZES.length], seed + i, scale));
}
const upload = (gs: Float64Array[]) => gs.map((g) => Tensor.fromArray(g, [g.length]));

for (const count of [1, 3, 16, 40]) {
  s(`global L2 norm of ${count} tensors of awkward sizes matches float64`, async () => {
    const gs = grads(count, 100 * count, 0.5);
    const got = await gradNorm(upload(gs)).read();
    assertClose(got, [reference(gs)], 'norm', 1e-5, 0);
  });
}

s('one dispatch per S tensors plus one final reduction', async () => {
  const gs = upload(grads(40, 7));
  const S = slotsPerDispatch(1, 1);
  resetCounters();
  gradNorm(gs);
  assert.is(counters().dispatches, Math.ceil(40 / S) + 1);
});

s('deterministic: the same gradients give the same bits', async () => {
  const gs = upload(grads(23, 11, 3));
  const a = await gradNorm(gs).read(), b = await gradNorm(gs).read();
  assert.is(a[0], b[0]);
});

s('zero gradients give 0 and a large value is not lost among tiny ones', async () => {
  assertClose(await gradNorm([Tensor.zeros([33]), Tensor.zeros([1025])]).read(), [0], 'zeros', 0, 0);
  const tiny = new Float64Array(4097).fill(1e-3), big = Float64Array.from([0, 0, 1e3]);
  assertClose(await gradNorm(upload([tiny, big])).read(), [reference([tiny, big])], 'mixed', 1e-5, 0);
});

s('a NaN in one gradient propagates to the norm (the trainer skips such steps)', async () => {
  const gs = grads(5, 3);
  gs[3][17] = NaN;
  assert.ok(Number.isNaN((await gradNorm(upload(gs)).read())[0]));
});

s('writes nothing past its output', async () => {
  guardScope();
  const out = gradNorm(upload(grads(20, 5)));
  assert.equal(await out.overwrittenGuard(), []);
});

s('null entries (parameters without a gradient) are skipped, as clip_grad_norm_ does', async () => {
  const gs = grads(3, 21);
  const [a, b, c] = upload(gs);
  assertClose(await gradNorm([a, null, b, null, c]).read(), [reference(gs)], 'norm', 1e-5, 0);
  assertClose(await gradNorm([null]).read(), [0], 'all null', 0, 0);
});

s.run();
