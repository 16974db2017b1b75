// add_rmsnorm with a 16-bit residual stream (option out: kernels/add_rmsnorm16.ts) against its float64 reference,
// for bf16 and f16, x float32 or 16-bit, with and without a gradient on s. H 33: by element (rows straddle
// words, s packed from a float32 scratch); 64 and 512: 8 values a unit. Rows 1, 33, 65.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope, type DType16 } from '../runtime/tensor.js';
import { backward, noTargets } from '../runtime/autograd.js';
import { addRmsnorm, backward as rules } from '../kernels/add_rmsnorm.js';
import { reference16, referenceBackward16 } from '../kernels/add_rmsnorm16.js';
import { cast, mul, sum, add } from '../kernels/index.js';
import { reference as round16 } from '../kernels/cast.js';
import { setupGpu, randn, assertClose, assertUlps16, ulp16 } from './util.js';

const s = suite('add_rmsnorm16');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const r16 = (v: Float64Array, d: DType16) => round16(Float32Array.from(v), d);
/** 1 ± 0.5, float32 values (the kernel reads w in float32). */
const weight = (h: number, seed: number) => Float64Array.from(Float32Array.from(randn(h, seed, 0.5), (v) => 1 + v));

/** t of the kernel, recovered from y = fl32(w·t) (t is 16-bit: y/w is t to 2^-24, far inside half an ulp). */
const tOf = (y: Float32Array, w: Float64Array, d: DType16) => r16(Float64Array.from(y, (v, i) => v / w[i % w.length]), d);

/** |got − want| ≤ ulp16(want) + ulp16(g): total = round16(g + ds) within 1 ulp of its type, plus 1 ulp of g where
 *  g + ds cancels (g's float32 round-off, rstd's and the row mean's, may flip its rounding). */
function assertTotal(got: ArrayLike<number>, want: Float64Array, g: Float64Array, d: DType16, what: string): void {
  const bad: string[] = [];
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= ulp16(want[i], d) + ulp16(g[i], d)) && bad.length < 5) bad.push(`[${i}] got ${got[i]} want ${want[i]} (g ${g[i]})`);
  }
  if (bad.length) assert.unreachable(`${what}: ${bad.join(', ')}`);
}

// Tolerances: s is the float32 sum rounded once, as the reference rounds it: equal. t (recovered from y) within 1
// ulp of the reference's (x̂'s float32 round-off may flip its rounding), y = w·t to float32 rounding. dx, dres:
// assertTotal. dw: float32 sums against the reference from the kernel's own t, as the float32 path's tolerance.
for (const d of ['bf16', 'f16'] as const) {
  for (const [rows, h] of [[1, 33], [33, 64], [65, 512]]) {
    for (const x16 of [false, true]) {
      for (const withS of [true, false]) {
        s(`${d} s: x ${x16 ? d : 'f32'}, res ${d}, rows=${rows} H=${h}, ${withS ? 'with' : 'without'} a gradient on s`, async () => {
          guardScope();
          const n = rows * h, w = weight(h, h), eps = 1e-5;
          const x = x16 ? r16(randn(n, rows + h, 2), d) : randn(n, rows + h, 2), r = r16(randn(n, 2 * rows + h), d);
          const gs = randn(n, 5 + h), gy = randn(n, 6 + h);
          const tx = Tensor.fromArray(x, [rows, h], x16 ? d : 'f32', true), tr = Tensor.fromArray(r, [rows, h], d, true);
          const tw = Tensor.fromArray(w, [h], 'f32', true);
          const [ts, ty] = addRmsnorm(tx, tr, tw, eps, { out: d });
          assert.equal([ts.dtype, ty.dtype], [d, 'f32']);
          const f = reference16(x, r, w, eps, d);
          assert.equal(Array.from(await ts.read()), Array.from(f.s), 's');
          const y = (await ty.read()) as Float32Array, t = tOf(y, w, d);
          assertUlps16(t, f.t, d, 't');
          assertClose(y, t.map((v, i) => v * w[i % h]), 'y = w·t', 2 ** -24, 0);
          for (const o of [ts, ty]) assert.equal(await o.overwrittenGuard(), [], 'guard');
          const lossY = sum(mul(ty, Tensor.fromArray(gy, [rows, h])));
          backward(withS ? add(lossY, sum(mul(cast(ts, 'f32'), Tensor.fromArray(gs, [rows, h])))) : lossY);
          const want = referenceBackward16(f.s, w, gy, withS ? r16(gs, d) : null, t, eps, d);
          assert.equal([tx.grad!.dtype, tr.grad!.dtype], [x16 ? d : 'f32', d]);
          assertTotal(await tx.grad!.read(), want.total, want.g, d, 'dx');
          assertTotal(await tr.grad!.read(), want.total, want.g, d, 'dres');
          assertClose(await tw.grad!.read(), want.dw, 'dw', 1e-4, 2e-5 * Math.sqrt(rows));
        });
      }
    }
  }
}

s('res float32 with a 16-bit x: s rounded once from the float32 sum, dres float32 (the 16-bit total widened exactly)', async () => {
  const rows = 33, h = 64, n = rows * h, w = weight(h, 7), d = 'f16';
  const x = r16(randn(n, 8, 2), d), r = randn(n, 9), gy = randn(n, 10);
  const tx = Tensor.fromArray(x, [rows, h], d, true), tr = Tensor.fromArray(r, [rows, h], 'f32', true);
  const [ts, ty] = addRmsnorm(tx, tr, Tensor.fromArray(w, [h]), 1e-5, { out: d });
  const f = reference16(x, r, w, 1e-5, d);
  assert.equal(Array.from(await ts.read()), Array.from(f.s), 's');
  const t = tOf((await ty.read()) as Float32Array, w, d);
  backward(sum(mul(ty, Tensor.fromArray(gy, [rows, h]))));
  const want = referenceBackward16(f.s, w, gy, null, t, 1e-5, d);
  const dx = await tx.grad!.read(), dres = await tr.grad!.read();
  assert.is(tr.grad!.dtype, 'f32');
  assert.equal(Array.from(dres), Array.from(dx), 'dres = dx');
  assertTotal(dx, want.total, want.g, d, 'dx');
});

s('a float32 gradient on s is rounded to s\'s type first: the same gradients as its bf16 rounding', async () => {
  const rows = 7, h = 64, n = rows * h, w = weight(h, 11);
  const tx = Tensor.fromArray(randn(n, 12), [rows, h], 'bf16', true), tr = Tensor.fromArray(randn(n, 13), [rows, h], 'bf16', true);
  const [ts] = addRmsnorm(tx, tr, Tensor.fromArray(w, [h], 'f32', true), 1e-5, { out: 'bf16' });
  const gs = randn(n, 14), gy = Tensor.fromArray(randn(n, 15), [rows, h]);
  const run = async (g: Tensor) => Promise.all(rules.add_rmsnorm(ts.node!, [g, gy], noTargets).map((x) => x!.read()));
  const [a, b] = [await run(Tensor.fromArray(gs, [rows, h])), await run(Tensor.fromArray(gs, [rows, h], 'bf16'))];
  for (let i = 0; i < 3; i++) assert.equal(Array.from(a[i]), Array.from(b[i]), `gradient ${i}`);
});

s('only s used: x and res get the gradient of s (16-bit), dw none', async () => {
  const x = randn(40, 16), r = randn(40, 17), g = randn(40, 18);
  const tx = Tensor.fromArray(x, [5, 8], 'f32', true), tr = Tensor.fromArray(r, [5, 8], 'bf16', true), tw = Tensor.fromArray(weight(8, 19), [8], 'f32', true);
  const [ts] = addRmsnorm(tx, tr, tw, 1e-5, { out: 'bf16' });
  backward(sum(mul(cast(ts, 'f32'), Tensor.fromArray(g, [5, 8]))));
  const want = Array.from(r16(g, 'bf16'));
  assert.equal(Array.from(await tx.grad!.read()), want, 'dx');
  assert.equal(Array.from(await tr.grad!.read()), want, 'dres');
  assert.is(tw.grad, null);
});

s('an input of the other 16-bit type is an error naming it', () => {
  assert.throws(() => addRmsnorm(Tensor.zeros([2, 8]), Tensor.empty([2, 8], 'f16'), Tensor.zeros([8]), 1e-5, { out: 'bf16' }), /res is f16/);
});

s.run();
