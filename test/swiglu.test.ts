import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope, withGuards, type DType16 } from '../runtime/tensor.js';
import { backward, noTargets } from '../runtime/autograd.js';
import { swiglu, swigluComposite, swigluPacked, reference, reference16, backward as rules, type SwigluOptions } from '../kernels/swiglu.js';
import { gpu } from '../runtime/device.js';
import { reference as round16 } from '../kernels/cast.js';
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

/** The ulp of the 16-bit type at |v| (its subnormal spacing below the normal range). */
const ulp16 = (v: number, d: DType16) => 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v))), d === 'f16' ? -14 : -126) - (d === 'f16' ? 10 : 7));

/** Every got[i] within 1 ulp of want[i] (the ulp at the larger magnitude of the two), and equal to it but for
 *  at most 1% + 1 of the elements: a 1-ulp bound alone would pass a kernel that skips one of the roundings. */
function assertUlp(got: ArrayLike<number>, want: ArrayLike<number>, what: string, d: DType16): void {
  assert.is(got.length, want.length, `${what}: length`);
  const bad: string[] = [];
  let differ = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue; // infinities included
    differ++;
    const far = Math.abs(got[i] - want[i]) / ulp16(Math.max(Math.abs(got[i]), Math.abs(want[i])), d);
    if (!(far <= 1) && bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]} (${far} ulp)`);
  }
  assert.equal(bad, [], `${what}: more than 1 ${d} ulp from the reference`);
  assert.ok(differ <= 0.01 * want.length + 1, `${what}: ${differ} of ${want.length} differ from the reference`);
}

// 16-bit gu, y and dgu, torch's roundings (kernels/swiglu.ts). I = 7: the word layout (words of y straddle
// rows and words of gu the g|u halves); I = 16: the vec4 layout (8 values an invocation); rows 1, 33, 65.
// Tolerance: 1 ulp of the 16-bit type, and bit-equal but for 1% of the elements. Every product of 16-bit
// values is exact in float32 (8 + 8 or 11 + 11 significant bits) and rounds once as in the reference, but
// silu and σ' in float32 differ from float64 by float32 round-off, which can flip the rounding of
// a16 = round16(silu(g)) or of dg to the neighbour. (A flipped a16 could move y and du by up to 2 ulps;
// none does at these seeds.)
const SHAPES16 = [[1, 7], [33, 7], [65, 7], [1, 16], [33, 16], [65, 16]];
// float16 both ways: WGSL's f16 conversions (where the adapter has shader-f16) and the packed-integer rounding.
await setupGpu(); // the adapter's features decide the tests
const FORMS: [DType16, SwigluOptions][] = [['bf16', {}], ['f16', { f16: 'packed' }],
  ...(gpu().features.has('shader-f16') ? [['f16', { f16: 'native' }] as [DType16, SwigluOptions]] : [])];
for (const [d, o] of FORMS) {
  for (const [rows, I] of SHAPES16) {
    s(`${d}${o.f16 ? ` (${o.f16})` : ''} gu [${rows}, 2·${I}]: y and dgu (16-bit dy) match the float64 reference of torch's roundings`, async () => {
      guardScope();
      const gu = round16(Float32Array.from(randn(rows * 2 * I, rows + I, 4)), d), dy = randn(rows * I, 2 * rows + I, 2);
      const tgu = Tensor.fromArray(gu, [rows, 2 * I], d, true);
      const y = swigluPacked(tgu, o);
      assert.equal([y.dtype, ...y.shape], [d, rows, I]);
      const [g, u] = unpack(gu, I);
      assertUlp(await y.read(), reference16.forward(g, u, d), 'y', d);
      assert.equal(await y.overwrittenGuard(), [], 'y guard');
      backward(y, Tensor.fromArray(dy, [rows, I], d));
      const want = reference16.backward(g, u, dy, d);
      assert.is(tgu.grad!.dtype, d);
      assertUlp(await tgu.grad!.read(), pack(want.dg, want.du, I), 'dgu', d);
    });
  }
}

// A float32 dy (the gradient of a 16-bit y handed in by the caller) is rounded to the 16-bit type first.
for (const I of [7, 16]) {
  s(`bf16 gu [33, 2·${I}] with a float32 dy: dgu as with dy rounded to bf16, written inside dgu`, async () => {
    const gu = round16(Float32Array.from(randn(33 * 2 * I, I, 4)), 'bf16'), dy = randn(33 * I, 3 * I, 2);
    const node = swigluPacked(Tensor.fromArray(gu, [33, 2 * I], 'bf16', true)).node!;
    const dyt = Tensor.fromArray(dy, [33, I]);
    await withGuards(async () => {
      const [dgu] = rules.swiglu_packed(node, [dyt], noTargets) as Tensor[];
      const [g, u] = unpack(gu, I), want = reference16.backward(g, u, dy, 'bf16');
      assertUlp(await dgu.read(), pack(want.dg, want.du, I), 'dgu', 'bf16');
      assert.equal(await dgu.overwrittenGuard(), [], 'dgu guard');
    });
  });
}

// float16's edges in the intermediates: silu(g) below float16's normal range (g = -14, -18) or rounding to 0 or
// 2^-24 (g = -20), and dy·u past 65504 (to inf, then dg inf), against the reference's rounding.
for (const [, o] of FORMS.filter(([d]) => d === 'f16')) s(`f16 (${o.f16}) subnormal and overflowing intermediates match the reference`, async () => {
  const g = Float64Array.from([-14, -18, -20, -16.5, 1, 2]), u = Float64Array.from([300, 1, 2, 3, 250, 1]);
  const dy = Float64Array.from([300, 1, 1, 1, 300, 1]);
  const tgu = Tensor.fromArray(pack(g, u, 6), [1, 12], 'f16', true);
  const y = swigluPacked(tgu, o);
  backward(y, Tensor.fromArray(dy, [1, 6], 'f16'));
  assertUlp(await y.read(), reference16.forward(g, u, 'f16'), 'y', 'f16');
  const want = reference16.backward(g, u, dy, 'f16');
  assert.equal([want.dg[0], want.dg[4]], [-Infinity, Infinity], 'the case overflows');
  assertUlp(await tgu.grad!.read(), pack(want.dg, want.du, 6), 'dgu', 'f16');
});

// e^-g overflows float32 at g = -200 (σ = 0, as torch's float32 silu gets it); at -30 it does not.
s('bf16 saturated gates: large |g| gives finite y and dgu (no inf·0)', async () => {
  const gu = Float64Array.from([-200, -30, 30, 200, 0, 1, 2, 3, 4, 5]), dy = Float64Array.from([1, 1, 1, 1, 1]);
  const tgu = Tensor.fromArray(gu, [1, 10], 'bf16', true);
  const y = swigluPacked(tgu);
  backward(y, Tensor.fromArray(dy, [1, 5], 'bf16'));
  const want = reference16.backward(gu.subarray(0, 5), gu.subarray(5), dy, 'bf16');
  assert.equal(Array.from(await y.read()), Array.from(reference16.forward(gu.subarray(0, 5), gu.subarray(5), 'bf16')), 'y');
  assert.equal(Array.from(await tgu.grad!.read()), [...want.dg, ...want.du], 'dgu');
});

s('the 16-bit reference rounds where torch does: y is round16(round16(silu(g))·u), not round16(silu(g)·u)', () => {
  // bf16 g = 0.75: silu(g) = 0.50938 rounds to 0.5078125; times u = 3 that is 1.5234375, a bf16 value, where
  // the unrounded product 1.52815 rounds to 1.53125.
  assert.is(reference16.forward(Float64Array.of(0.75), Float64Array.of(3), 'bf16')[0], 1.5234375);
});

s('packed: an odd last dimension is an error', () => {
  assert.throws(() => swigluPacked(Tensor.zeros([2, 7])), /\[\.\.\., 2·I\]/);
});

s.run();
