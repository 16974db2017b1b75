import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { add, mul, scale, silu, sum, mean } from '../kernels/index.js';
import { reference as ew } from '../kernels/elementwise.js';
import { reference as red } from '../kernels/reduce.js';
import { setupGpu, randn, assertClose, numericGrad, dot, AWKWARD } from './util.js';

const s = suite('elementwise');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: Float64Array, shape = [x.length], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);

for (const n of AWKWARD) {
  s(`add, mul, scale, silu forward match float64 at n=${n}`, async () => {
    const a = randn(n, 1 + n, 3), b = randn(n, 2 + n, 3);
    assertClose(await add(up(a), up(b)).read(), ew.add(a, b), 'add');
    assertClose(await mul(up(a), up(b)).read(), ew.mul(a, b), 'mul');
    assertClose(await scale(up(a), -0.37).read(), ew.scale(a, -0.37), 'scale');
    assertClose(await silu(up(a)).read(), ew.silu(a), 'silu');
  });

  s(`sum and mean match float64 at n=${n}`, async () => {
    const a = randn(n, 3 + n);
    assertClose(await sum(up(a)).read(), [red.sum(a)], 'sum', 1e-5, 1e-5);
    assertClose(await mean(up(a)).read(), [red.mean(a)], 'mean', 1e-5, 1e-6);
  });

  s(`backward of silu(a·b)+a vs finite differences, random upstream, n=${n}`, async () => {
    const a = randn(n, 5 + n, 2), b = randn(n, 6 + n, 2), gy = randn(n, 7 + n);
    const ta = up(a, [n], true), tb = up(b, [n], true);
    const y = add(silu(mul(ta, tb)), ta);
    backward(y, up(gy));
    // L(a, b) = Σ gy · (silu(a·b) + a) in float64
    const L = (aa: Float64Array, bb: Float64Array) => dot(gy, ew.add(ew.silu(ew.mul(aa, bb)), aa));
    assertClose(await ta.grad!.read(), numericGrad((x) => L(x, b), a), 'dL/da', 1e-4, 1e-4);
    assertClose(await tb.grad!.read(), numericGrad((x) => L(a, x), b), 'dL/db', 1e-4, 1e-4);
  });
}

s('mean backward spreads 1/n to every element, and grads accumulate across calls', async () => {
  const a = up(randn(33, 9), [33], true);
  backward(mean(a));
  backward(mean(a));
  assertClose(await a.grad!.read(), new Float64Array(33).fill(2 / 33), 'grad');
});

s('a tensor used after dispose is an error', () => {
  const t = up(randn(4, 1));
  t.dispose();
  assert.throws(() => add(t, t), /after dispose/);
});

s.run();
