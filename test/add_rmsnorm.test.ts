import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { addRmsnorm } from '../kernels/add_rmsnorm.js';
import { reference, referenceBackward } from '../kernels/rmsnorm.js';
import { add, mul, sum } from '../kernels/index.js';
import { reference as round16 } from '../kernels/cast.js';
import { ULP16 } from '../kernels/matmul16_variants.js';
import { setupGpu, randn, assertClose, numericGrad, dot } from './util.js';

const s = suite('add_rmsnorm');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: Float64Array, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);
const weight = (h: number, seed: number) => randn(h, seed, 0.5).map((v) => 1 + v);
const plus = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);

/** float64: loss = Σ gs·s + Σ gy·y with s = x + res, y = rmsnorm(s); its gradients in x (= in res) and w. */
function refGrads(x: Float64Array, res: Float64Array, w: Float64Array, gs: Float64Array | null, gy: Float64Array) {
  const b = referenceBackward(plus(x, res), w, gy, 1e-5);
  return { ds: gs ? plus(b.dx, gs) : b.dx, dw: b.dw };
}

// [rows, H]: H 33 and 7 take the scalar path, 64 and 512 the vec4 one; rows no multiple of 64.
for (const [rows, h] of [[1, 33], [65, 64], [33, 512], [1025, 7]]) {
  for (const withS of [true, false]) {
    s(`s = x + res and y = rmsnorm(s) forward; backward ${withS ? 'with' : 'without'} a gradient on s, at rows=${rows} H=${h}`, async () => {
      guardScope();
      const n = rows * h, x = randn(n, rows + h, 2), r = randn(n, 2 * rows + h), w = weight(h, h);
      const gs = withS ? randn(n, 5 + h) : null, gy = randn(n, 6 + h);
      const tx = up(x, [rows, h], true), tr = up(r, [rows, h], true), tw = up(w, [h], true);
      const [ts, ty] = addRmsnorm(tx, tr, tw, 1e-5);
      assertClose(await ts.read(), plus(x, r), 's', 1e-6, 1e-6);
      assertClose(await ty.read(), reference(plus(x, r), w, 1e-5).y, 'y', 1e-5, 1e-6);
      for (const t of [ts, ty]) assert.equal(await t.overwrittenGuard(), [], 'guard');
      const lossY = sum(mul(ty, up(gy, [rows, h])));
      backward(gs ? add(lossY, sum(mul(ts, up(gs, [rows, h])))) : lossY);
      const want = refGrads(x, r, w, gs, gy);
      assertClose(await tx.grad!.read(), want.ds, 'dx', 1e-4, 1e-5);
      assertClose(await tr.grad!.read(), want.ds, 'dres', 1e-4, 1e-5);
      assertClose(await tw.grad!.read(), want.dw, 'dw', 1e-4, 2e-5 * Math.sqrt(rows));
    });
  }
}

s('only s used: the gradient passes to both inputs unchanged', async () => {
  const x = randn(40, 1), r = randn(40, 2), g = randn(40, 3);
  const tx = up(x, [5, 8], true), tr = up(r, [5, 8], true);
  const [ts] = addRmsnorm(tx, tr, up(weight(8, 4), [8], true), 1e-5);
  backward(sum(mul(ts, up(g, [5, 8]))));
  assertClose(await tx.grad!.read(), g, 'dx', 1e-6, 0);
  assertClose(await tr.grad!.read(), g, 'dres', 1e-6, 0);
});

s('a frozen weight: ds reaches x and res as with a trainable one, w gets no gradient', async () => {
  const rows = 65, h = 64, n = rows * h, x = randn(n, 61), r = randn(n, 62), w = weight(h, 63), gs = randn(n, 64), gy = randn(n, 65);
  const tx = up(x, [rows, h], true), tr = up(r, [rows, h], true), tw = up(w, [h]);
  const [ts, ty] = addRmsnorm(tx, tr, tw, 1e-5);
  backward(add(sum(mul(ty, up(gy, [rows, h]))), sum(mul(ts, up(gs, [rows, h])))));
  const want = refGrads(x, r, w, gs, gy);
  assertClose(await tx.grad!.read(), want.ds, 'dx', 1e-4, 1e-5);
  assertClose(await tr.grad!.read(), want.ds, 'dres', 1e-4, 1e-5);
  assert.is(tw.grad, null);
});

s('the float64 reference gradients match finite differences', () => {
  const h = 5, x = randn(15, 31, 2), r = randn(15, 32), w = weight(h, 33), gs = randn(15, 34), gy = randn(15, 35);
  const L = (xx: Float64Array, ww: Float64Array) => { const sv = plus(xx, r); return dot(gs, sv) + dot(gy, reference(sv, ww, 1e-5).y); };
  const want = refGrads(x, r, w, gs, gy);
  assertClose(want.ds, numericGrad((v) => L(v, w), x), 'ds', 1e-6, 1e-8);
  assertClose(want.dw, numericGrad((v) => L(x, v), w), 'dw', 1e-6, 1e-8);
});

// A 16-bit res (mixed precision: a Linear's output added into the float32 stream): s = x + f32(res) in float32,
// y as before, res's gradient ds rounded to its dtype. H 33: the scalar path (rows of res straddle words), 64:
// vec4 (res as vec2<u32>); rows 1, 33, 65. Tolerances: s is one float32 add of the two values, so equal to the
// float64 sum rounded to float32; y, dx, dw as above; dres within 1 ulp of the 16-bit type of the reference's ds
// rounded (ds's float32 round-off may flip that rounding), 1e-5 absolute where ds cancels.
for (const d of ['bf16', 'f16'] as const) {
  for (const [rows, h] of [[1, 33], [33, 33], [65, 64]]) {
    s(`${d} res: s, y and the gradients (dres ${d}) at rows=${rows} H=${h}`, async () => {
      guardScope();
      const n = rows * h, x = randn(n, rows + h, 2), r = round16(Float32Array.from(randn(n, 2 * rows + h)), d), w = weight(h, h);
      const gs = randn(n, 5 + h), gy = randn(n, 6 + h);
      const tx = up(x, [rows, h], true), tr = Tensor.fromArray(r, [rows, h], d, true), tw = up(w, [h], true);
      const [ts, ty] = addRmsnorm(tx, tr, tw, 1e-5);
      assert.equal([ts.dtype, ty.dtype], ['f32', 'f32']);
      assert.equal(Array.from(await ts.read()), Array.from(Float32Array.from(plus(x, r))), 's');
      assertClose(await ty.read(), reference(plus(x, r), w, 1e-5).y, 'y', 1e-5, 1e-6);
      for (const t of [ts, ty]) assert.equal(await t.overwrittenGuard(), [], 'guard');
      backward(add(sum(mul(ty, up(gy, [rows, h]))), sum(mul(ts, up(gs, [rows, h])))));
      const want = refGrads(x, r, w, gs, gy);
      assertClose(await tx.grad!.read(), want.ds, 'dx', 1e-4, 1e-5);
      assertClose(await tw.grad!.read(), want.dw, 'dw', 1e-4, 2e-5 * Math.sqrt(rows));
      assert.is(tr.grad!.dtype, d);
      assertClose(await tr.grad!.read(), round16(Float32Array.from(want.ds), d), 'dres', ULP16[d], 1e-5);
    });
  }
}

s('bf16 res, only s used: res gets the gradient of s rounded to bf16', async () => {
  const x = randn(40, 1), r = round16(Float32Array.from(randn(40, 2)), 'bf16'), g = randn(40, 3);
  const tx = up(x, [5, 8], true), tr = Tensor.fromArray(r, [5, 8], 'bf16', true);
  const [ts] = addRmsnorm(tx, tr, up(weight(8, 4), [8], true), 1e-5);
  backward(sum(mul(ts, up(g, [5, 8]))));
  assertClose(await tx.grad!.read(), g, 'dx', 0, 0);
  assert.equal(Array.from(await tr.grad!.read()), Array.from(round16(Float32Array.from(g), 'bf16')), 'dres');
});

s('mismatched shapes are an error naming both', () => {
  assert.throws(() => addRmsnorm(Tensor.zeros([2, 8]), Tensor.zeros([2, 4]), Tensor.zeros([8]), 1e-5), /\[2,8\].*\[2,4\]/);
});

s.run();
