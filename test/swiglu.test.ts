import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope, withGuards } from '../runtime/tensor.js';
import { backward, noTargets } from '../runtime/autograd.js';
import { swiglu, swigluComposite, swigluPacked, reference, backward as rules } from '../kernels/swiglu.js';
import { setupGpu, randn, assertClose, numericGrad, dot, AWKWARD } from './util.js';

const s = suite('swiglu');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: Float64Array, grad = false) => Tensor.fromArray(x, [x.length], 'f32', grad);

// n = 1, 7, 33, 65, 1025: none a multiple of 4 (the vec4 tail) nor of the workgroup; 4·1408 is the FFN width.
for (const n of [...AWKWARD, 4 * 1408]) {
  s(`forward and fused backward match float64 at n=${n} (random upstream)`, async () => {
    const g = randn(n, n, 6), u = randn(n, n + 1, 3), dy = randn(n, n + 2);
    const tg = up(g, true), tu = up(u, true);
    const y = swiglu(tg, tu);
    assertClose(await y.read(), reference.forward(g, u), 'y', 1e-5, 1e-6);
    backward(y, up(dy));
    const want = reference.backward(g, u, dy);
    assertClose(await tg.grad!.read(), want.dg, 'dg', 1e-5, 1e-6);
    assertClose(await tu.grad!.read(), want.du, 'du', 1e-5, 1e-6);
  });
}

s('the fused op agrees with its composite twin silu(g)·u, forward and backward', async () => {
  const n = 65, g = randn(n, 91, 4), u = randn(n, 92), dy = randn(n, 93);
  const grads = [];
  for (const f of [swiglu, swigluComposite]) {
    const tg = up(g, true), tu = up(u, true);
    const y = f(tg, tu);
    backward(y, up(dy));
    grads.push([await y.read(), await tg.grad!.read(), await tu.grad!.read()]);
  }
  for (let i = 0; i < 3; i++) assertClose(grads[0][i], grads[1][i], ['y', 'dg', 'du'][i], 1e-5, 1e-6);
});

s('saturated gates: large |g| gives finite values (no inf·0)', async () => {
  const g = Float64Array.from([-200, -90, 90, 200, 0]), u = Float64Array.from([1, 2, 3, 4, 5]), dy = new Float64Array(5).fill(1);
  const tg = up(g, true), tu = up(u, true);
  const y = swiglu(tg, tu);
  backward(y, up(dy));
  for (const t of [y, tg.grad!, tu.grad!]) assert.ok((await t.read()).every(Number.isFinite), 'finite');
  assertClose(await tu.grad!.read(), reference.backward(g, u, dy).du, 'du', 1e-5, 1e-6);
});

s('the float64 reference backward matches finite differences', () => {
  const n = 9, g = randn(n, 95, 3), u = randn(n, 96), dy = randn(n, 97);
  const want = reference.backward(g, u, dy);
  assertClose(want.dg, numericGrad((v) => dot(dy, reference.forward(v, u)), g), 'dg', 1e-6, 1e-8);
  assertClose(want.du, numericGrad((v) => dot(dy, reference.forward(g, v)), u), 'du', 1e-6, 1e-8);
});

s('no write past y, dg or du (sentinel guard regions)', async () => {
  // Inputs get no guard (created before sentinel mode): a guard's NaN payload survives arithmetic, so an
  // overrun computed from guarded inputs could write the sentinel itself back and go unnoticed.
  for (const n of [1, 33, 1025]) {
    const tg = up(randn(n, 98), true), tu = up(randn(n, 99), true), dy = up(randn(n, 100));
    await withGuards(async () => {
      const y = swiglu(tg, tu);
      assert.equal(await y.overwrittenGuard(), [], `y n=${n}`);
      // The gradients the kernel writes directly (autograd copies them into the leaves' .grad).
      const [dg, du] = rules.swiglu(y.node!, [dy], noTargets) as Tensor[];
      assert.equal(await dg.overwrittenGuard(), [], `dg n=${n}`);
      assert.equal(await du.overwrittenGuard(), [], `du n=${n}`);
    });
  }
});

/** Rows [g (I) | u (I)] → separate g and u, and back. */
const unpack = (gu: Float64Array, I: number) => [0, 1].map((h) => Float64Array.from({ length: gu.length / 2 }, (_, i) => gu[Math.floor(i / I) * 2 * I + h * I + (i % I)]));
const pack = (g: Float64Array, u: Float64Array, I: number) => Float64Array.from({ length: 2 * g.length }, (_, j) => {
  const r = Math.floor(j / (2 * I)), c = j % (2 * I);
  return c < I ? g[r * I + c] : u[r * I + c - I];
});

// I = 1, 7 (scalar path), 16, 1408 (vec4; MiniMind2-small's FFN width); rows 1, 33, 65.
for (const [rows, I] of [[1, 1], [33, 7], [65, 16], [3, 1408]]) {
  s(`packed gu [rows, 2I]: forward and backward (dgu in the same layout) match float64 at rows=${rows} I=${I}`, async () => {
    guardScope();
    const gu = randn(rows * 2 * I, rows + I, 4), dy = randn(rows * I, 2 * rows + I);
    const tgu = Tensor.fromArray(gu, [rows, 2 * I], 'f32', true);
    const y = swigluPacked(tgu);
    assert.equal([...y.shape], [rows, I]);
    const [g, u] = unpack(gu, I);
    assertClose(await y.read(), reference.forward(g, u), 'y', 1e-5, 1e-6);
    assert.equal(await y.overwrittenGuard(), [], 'y guard');
    backward(y, Tensor.fromArray(dy, [rows, I]));
    const want = reference.backward(g, u, dy);
    assertClose(await tgu.grad!.read(), pack(want.dg, want.du, I), 'dgu', 1e-5, 1e-6);
  });
}

s('packed: an odd last dimension is an error', () => {
  assert.throws(() => swigluPacked(Tensor.zeros([2, 7])), /\[\.\.\., 2·I\]/);
});

s.run();
