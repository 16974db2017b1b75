import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, withGuards, copyInto } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { addColumns, sliceColumns, reference } from '../kernels/add_columns.js';
import { reference as castReference } from '../kernels/cast.js';
import { mul, sum } from '../kernels/index.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('add_columns');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: Float64Array, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);

// [M, N, n, c0]: one row and one column; an odd slice in the middle; the first and the last columns of a
// q|k|v-like row (q 64 of 96); rows past one workgroup (1025) with a slice not a multiple of 4.
const SHAPES: [number, number, number, number][] = [[1, 1, 1, 0], [7, 33, 7, 13], [33, 96, 64, 0], [65, 96, 16, 80], [1025, 65, 33, 32]];

for (const [M, N, n, c0] of SHAPES) {
  s(`forward adds d into columns ${c0}..${c0 + n} of [${M}, ${N}] in place; backward slices the upstream gradient`, async () => {
    const y = randn(M * N, M + N), d = randn(M * n, M + n + 1), g = randn(M * N, M + 2);
    const ty = up(y, [M, N], true), td = up(d, [M, n], true);
    const out = await withGuards(async () => {
      const guarded = Tensor.empty([M, N]); // y in a guarded buffer: no write past it
      copyInto(guarded, ty);
      const o = addColumns(guarded, td, c0);
      assert.is(o.buffer, guarded.buffer, 'in place');
      assert.equal(await guarded.overwrittenGuard(), [], 'no write past y');
      return o.read();
    });
    assertClose(out, reference.forward(y, d, N, c0).map(Math.fround), 'out', 0, 0); // one f32 add: the float64 sum, rounded
    backward(sum(mul(addColumns(ty, td, c0), up(g, [M, N]))));
    assertClose(await ty.grad!.read(), g, 'dy', 0, 0);
    assertClose(await td.grad!.read(), reference.backward(g, N, c0, n), 'dd', 0, 0);
  });
}

// 16-bit slices copy the stored halves: exact for either format, also where an odd n makes a word of the slice
// take its two halves from two rows of g, and nothing is written past the slice's last word.
for (const d of ['bf16', 'f16'] as const) {
  s(`${d}: slice_columns copies the 16-bit columns exactly`, () => withGuards(async () => {
    for (const [M, N, n, c0] of SHAPES) {
      const g = Float32Array.from(castReference(Float32Array.from(randn(M * N, M + N + 7)), d));
      const out = sliceColumns(Tensor.fromArray(g, [M, N], d), c0, n);
      assert.is(out.dtype, d);
      assertClose(await out.readF32(), reference.backward(Float64Array.from(g), N, c0, n), `[${M}, ${N}] columns ${c0}..${c0 + n}`, 0, 0);
      assert.equal(await out.overwrittenGuard(), [], 'no write past the slice');
    }
  }));
}

s('leading axes are rows: [B, T, N] with d [B, T, n]', async () => {
  const y = randn(2 * 3 * 10, 1), d = randn(2 * 3 * 4, 2);
  assertClose(await addColumns(up(y, [2, 3, 10]), up(d, [2, 3, 4]), 6).read(), reference.forward(y, d, 10, 6).map(Math.fround), 'out', 0, 0);
});

s('only d needs a gradient: y gets none, d gets its columns', async () => {
  const g = randn(5 * 8, 3), td = up(randn(5 * 3, 4), [5, 3], true), ty = up(randn(5 * 8, 5), [5, 8]);
  backward(sum(mul(addColumns(ty, td, 2), up(g, [5, 8]))));
  assert.is(ty.grad, null);
  assertClose(await td.grad!.read(), reference.backward(g, 8, 2, 3), 'dd', 0, 0);
});

s('columns past the row or rows that differ are an error naming both shapes', () => {
  assert.throws(() => addColumns(Tensor.zeros([4, 8]), Tensor.zeros([4, 3]), 6), /d \[4,3\] into columns 6\.\.9 of y \[4,8\]/);
  assert.throws(() => addColumns(Tensor.zeros([4, 8]), Tensor.zeros([3, 3]), 0), /add_columns/);
});

s.run();
