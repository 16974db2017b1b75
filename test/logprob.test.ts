// logprob (kernels/logprob.ts): per-sequence masked sum / mean of the labels' log-probabilities and its
// backward, against the float64 reference on awkward shapes, the reference against central finite
// differences, the edge cases (empty masks, bad labels, no gradient) and logits over one storage binding.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, noGrad } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { mul, matmul, sum } from '../kernels/index.js';
import { logprob, reference, reference16, type LogprobReduce } from '../kernels/logprob.js';
import { setupGpu, randn, rng, assertClose, assertUlps16, numericGrad, dot } from './util.js';

const s = suite('logprob');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const IGNORE = -100;
/** Labels in [0, V) with ~40% ignored, and sequence 0 fully ignored when N > 2. */
function makeLabels(N: number, T: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: N * T }, (_, i) => (i < T && N > 2) || r() < 0.4 ? IGNORE : Math.floor(r() * V));
}

/** Backward of Σ_n g[n]·s[n]: the upstream gradient of s is g. */
function backwardWith(sv: Tensor, g: Float64Array): void {
  backward(sum(mul(sv, Tensor.fromArray(g, [g.length]))));
}

// [N, T, V]: rows N·T = 1, 33, 65, 1025 (no multiple of the lane layout's 64 rows); V 33 and 65 (scalar
// path), 6400 (MiniMind's vocab, vec4); one sequence of 1025 rows (longer than a reduction workgroup).
const CASES: [number, number, number, LogprobReduce][] = [
  [1, 1, 33, 'sum'], [1, 1, 65, 'mean'], [3, 11, 65, 'sum'], [3, 11, 33, 'mean'], [5, 13, 6400, 'mean'],
  [5, 13, 6400, 'sum'], [25, 41, 33, 'sum'], [1, 1025, 65, 'mean'], [41, 25, 6400, 'mean'],
];

for (const [N, T, V, reduce] of CASES) {
  s(`${reduce}: s and in-place dlogits match float64 at [${N}, ${T}, ${V}] with a random upstream per sequence`, async () => {
    const logits = randn(N * T * V, N * T + V, 4), labels = makeLabels(N, T, V, V + T), g = randn(N, 7 * N + 1);
    const want = reference(logits, labels, N, T, V, reduce, g);
    const tl = Tensor.fromArray(logits, [N, T, V], 'f32', true);
    const sv = logprob(tl, Tensor.fromArray(labels, [N, T], 'i32'), reduce);
    assertClose(await sv.read(), want.s, 's', 1e-5, 1e-5);
    backwardWith(sv, g);
    assertClose(await tl.grad!.read(), want.dlogits, 'dlogits', 1e-4, 1e-7);
  });
}

// 16-bit logits (kernels/logprob16.ts), bf16 and f16: rows 1, 33, 65 and 11; V 1 (rows share words), 33
// and 65 (odd: rows start or end mid-word), 50 (even, no multiple of 4), 64 (vec4). Two pipelines a format
// for each pass.
const CASES16: [number, number, number, LogprobReduce][] = [[1, 1, 33, 'sum'], [11, 1, 1, 'mean'], [3, 11, 65, 'mean'], [5, 13, 50, 'sum'], [3, 11, 64, 'mean']];

for (const dtype of ['bf16', 'f16'] as const) {
  for (const [N, T, V, reduce] of CASES16) {
    s(`${dtype} logits, ${reduce}: s of their float32 values, ${dtype} dlogits in place at [${N}, ${T}, ${V}], a random upstream per sequence`, async () => {
      const x = Float32Array.from(randn(N * T * V, N * T + V, 4)), labels = makeLabels(N, T, V, V + T), g = randn(N, 7 * N + 1);
      const want = reference16(x, labels, N, T, V, reduce, dtype, g);
      const tl = Tensor.fromArray(x, [N, T, V], dtype, true);
      const sv = logprob(tl, Tensor.fromArray(labels, [N, T], 'i32'), reduce);
      // float32-level: the inputs are exact 16-bit values and s float32 arithmetic on them.
      assertClose(await sv.read(), want.s, 's', 1e-5, 1e-5);
      backwardWith(sv, g);
      assert.is(tl.grad!.dtype, dtype);
      // 1 ulp of the 16-bit type: the float32 gradient (a few float32 ulps from float64) rounded once.
      assertUlps16(await tl.grad!.read(), want.dlogits, dtype, 'dlogits');
    });
  }
}

s('16-bit logits over several storage bindings (chunks of 128 rows, odd V, a sequence across the cuts); without gradients they are left untouched', async () => {
  const [N, T, V] = [2, 150, 33], bindingBytes = 128 * 2 * V;
  const x = Float32Array.from(randn(N * T * V, 41, 4)), labels = makeLabels(N, T, V, 42), g = Float64Array.from([0.5, -2]);
  const want = reference16(x, labels, N, T, V, 'mean', 'bf16', g);
  const tl = Tensor.fromArray(x, [N, T, V], 'bf16', true), lab = Tensor.fromArray(labels, [N, T], 'i32');
  const before = await tl.read16();
  assertClose(await noGrad(() => logprob(tl, lab, 'mean', { bindingBytes })).read(), want.s, 's without gradients', 1e-5, 1e-5);
  assert.equal(await tl.read16(), before, 'logits unchanged');
  const sv = logprob(tl, lab, 'mean', { bindingBytes });
  assertClose(await sv.read(), want.s, 's', 1e-5, 1e-5);
  backwardWith(sv, g);
  assertUlps16(await tl.grad!.read(), want.dlogits, 'bf16', 'dlogits');
});

s('the float64 reference gradient equals central finite differences of Σ g·s (sum and mean)', () => {
  const [N, T, V] = [3, 4, 7];
  const logits = randn(N * T * V, 11, 2), labels = makeLabels(N, T, V, 12), g = randn(N, 13);
  for (const reduce of ['sum', 'mean'] as const) {
    const f = (x: Float64Array) => dot(g, reference(x, labels, N, T, V, reduce).s);
    assertClose(reference(logits, labels, N, T, V, reduce, g).dlogits, numericGrad(f, Float64Array.from(logits)), `${reduce}: dlogits vs finite differences`, 1e-6, 1e-8);
  }
});

s('the GPU gradient equals float64 finite differences through an LM-head matmul (h → logits → s)', async () => {
  const [N, T, V, H] = [2, 5, 33, 8], n = N * T;
  const h = randn(n * H, 21), w = randn(V * H, 22, 0.5), labels = makeLabels(N, T, V, 23), g = Float64Array.from([0.7, -1.3]);
  const th = Tensor.fromArray(h, [N, T, H], 'f32', true), tw = Tensor.fromArray(w, [V, H], 'f32', true);
  backwardWith(logprob(matmul(th, tw), Tensor.fromArray(labels, [N, T], 'i32'), 'mean'), g);
  const f = (hh: Float64Array) => {
    const logits = new Float64Array(n * V);
    for (let r = 0; r < n; r++) for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) logits[r * V + v] += hh[r * H + j] * w[v * H + j];
    return dot(g, reference(logits, labels, N, T, V, 'mean').s);
  };
  assertClose(await th.grad!.read(), numericGrad(f, Float64Array.from(h)), 'dh', 1e-3, 1e-6);
});

s('a sequence with no label gives s = 0 (mean: MiniMind2 clamps the count at 1e-8), zero gradient, no NaN', async () => {
  const [N, T, V] = [3, 6, 16];
  const labels = makeLabels(N, T, V, 5); // sequence 0 fully ignored
  for (const reduce of ['sum', 'mean'] as const) {
    const tl = Tensor.fromArray(randn(N * T * V, 6, 3), [N, T, V], 'f32', true);
    const sv = logprob(tl, Tensor.fromArray(labels, [N, T], 'i32'), reduce);
    const got = await sv.read();
    assert.is(got[0], 0, reduce);
    assert.ok(got.every(Number.isFinite), `${reduce}: ${got}`);
    backwardWith(sv, Float64Array.from([1, 1, 1]));
    const d = await tl.grad!.read();
    assert.ok(d.subarray(0, T * V).every((v) => v === 0), `${reduce}: sequence 0's dlogits are 0`);
    assert.ok(d.every(Number.isFinite));
  }
});

s('mean divides by each sequence\'s own count; unlabelled rows inside a sequence get zero gradient', async () => {
  const [N, T, V] = [2, 4, 8];
  const labels = Int32Array.from([IGNORE, 3, IGNORE, 5, /* seq 1 */ 1, IGNORE, IGNORE, IGNORE]);
  const logits = randn(N * T * V, 4);
  const tl = Tensor.fromArray(logits, [N, T, V], 'f32', true);
  const sv = logprob(tl, Tensor.fromArray(labels, [N, T], 'i32'), 'mean');
  const ref = reference(logits, labels, N, T, V, 'sum');
  assertClose(await sv.read(), [(ref.lp[1] + ref.lp[3]) / 2, ref.lp[4]], 's', 1e-5, 1e-6);
  backwardWith(sv, Float64Array.from([1, 1]));
  const d = await tl.grad!.read();
  const rowNonZero = (r: number) => d.slice(r * V, (r + 1) * V).some((v) => v !== 0);
  assert.equal([0, 1, 2, 3, 4, 5, 6, 7].map(rowNonZero), [false, true, false, true, true, false, false, false]);
});

s('a label outside [0, V) other than −100 makes its own sequence NaN, the others stay finite', async () => {
  const tl = Tensor.fromArray(randn(2 * 3 * 10, 5), [2, 3, 10]);
  const got = await logprob(tl, Tensor.fromArray([0, 4, 10, 0, 1, 2], [2, 3], 'i32'), 'sum').read();
  assert.ok(Number.isNaN(got[0]));
  assert.ok(Number.isFinite(got[1]));
});

s('without gradients (the reference model) the logits are left untouched', async () => {
  const logits = randn(2 * 5 * 64, 6);
  const labels = makeLabels(2, 5, 64, 7);
  const tl = Tensor.fromArray(logits, [2, 5, 64], 'f32', true);
  const sv = noGrad(() => logprob(tl, Tensor.fromArray(labels, [2, 5], 'i32'), 'sum'));
  assertClose(await sv.read(), reference(logits, labels, 2, 5, 64, 'sum').s, 's', 1e-5, 1e-6);
  assertClose(await tl.read(), logits, 'logits', 0, 0);
  assert.is(sv.node, null, 'nothing recorded');
});

s('logits over one storage binding (5440 × 6400 floats > 128 MiB) are split into row chunks, a sequence across the cut', async () => {
  const [N, T, V] = [2, 2720, 6400], rows = N * T;
  const logits = new Float32Array(rows * V);
  for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 1000) / 250; // cheap, varied
  // A few labelled rows on both sides of every possible chunk edge (multiples of 64 rows), the rest ignored.
  const labels = new Int32Array(rows).fill(IGNORE);
  const picked = [0, 2719, 2720, 5183, 5184, 5185, 5241, 5247, 5248, 5311, 5312, rows - 1];
  for (const r of picked) labels[r] = (r * 37) % V;
  const tl = Tensor.fromArray(logits, [N, T, V], 'f32', true);
  const sv = logprob(tl, Tensor.fromArray(labels, [N, T], 'i32'), 'mean');
  const g = Float64Array.from([0.5, -2]);
  backwardWith(sv, g);
  const d = await tl.grad!.read();
  // Each picked row alone, as a sequence of length 1: its lp, and its dlogits row up to the sequence's weight.
  const seqOf = (r: number) => Math.floor(r / T), count = [0, 1].map((n) => picked.filter((r) => seqOf(r) === n).length);
  const want = [0, 0];
  for (const r of picked) {
    const one = reference(Float64Array.from(logits.subarray(r * V, (r + 1) * V)), [labels[r]], 1, 1, V, 'sum');
    const n = seqOf(r);
    want[n] += one.lp[0] / count[n];
    assertClose(d.subarray(r * V, (r + 1) * V), one.dlogits.map((x) => (g[n] * x) / count[n]), `dlogits row ${r}`, 1e-4, 1e-8);
  }
  assertClose(await sv.read(), want, 's', 1e-5, 1e-6);
  for (const r of [1, 5186, rows - 2]) assert.ok(d.subarray(r * V, (r + 1) * V).every((v) => v === 0), `unlabelled row ${r} is 0`);
});

s.run();
