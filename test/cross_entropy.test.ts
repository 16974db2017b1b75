import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, guardScope, noGrad } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { scale, matmul } from '../kernels/index.js';
import { crossEntropy, reference, reference16, chunks, slice } from '../kernels/cross_entropy.js';
import { gpu } from '../runtime/device.js';
import { setupGpu, randn, rng, assertClose, assertUlps16, numericGrad, readFixture } from './util.js';

const s = suite('cross_entropy');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const IGNORE = -100;
/** Labels in [0, V) with ~30% ignored, and sequence 0 fully ignored when B > 1. */
function makeLabels(B: number, T: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: B * T }, (_, i) => (i < T && B > 1) || r() < 0.3 ? IGNORE : Math.floor(r() * V));
}
const read1 = async (t: Tensor) => (await t.read())[0];

// [B, T, V]: V = 50 and 65 (scalar path, no multiple of 4), 6400 (MiniMind's vocab, vec4) with small B·T;
// B·T = 65 and 99 rows are no multiple of the workgroup (64).
const CASES = [[2, 9, 50], [5, 13, 65], [3, 33, 50], [2, 5, 6400], [1, 65, 128]];

for (const [B, T, V] of CASES) {
  s(`loss, count and in-place dlogits match float64 at [${B}, ${T}, ${V}], upstream 0.37`, async () => {
    const logits = randn(B * T * V, B * T + V, 4), labels = makeLabels(B, T, V, V + T);
    const want = reference(logits, labels, B, T, V);
    const tl = Tensor.fromArray(logits, [B, T, V], 'f32', true);
    const { loss, count } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'));
    assert.is(await read1(count), want.count);
    assertClose([await read1(loss)], [want.loss], 'loss', 1e-5, 1e-6);
    backward(scale(loss, 0.37)); // the upstream scalar, as 1/accumulation_steps would be
    assertClose(await tl.grad!.read(), want.dlogits.map((v) => 0.37 * v), 'dlogits', 1e-4, 1e-7);
  });
}

s('backward flows through the consumed logits into the LM-head matmul that produced them', async () => {
  const [B, T, V, H] = [2, 5, 50, 8], n = B * T;
  const h = randn(n * H, 21), w = randn(V * H, 22, 0.5), labels = makeLabels(B, T, V, 23);
  const th = Tensor.fromArray(h, [B, T, H], 'f32', true), tw = Tensor.fromArray(w, [V, H], 'f32', true);
  const { loss } = crossEntropy(matmul(th, tw), Tensor.fromArray(labels, [B, T], 'i32'));
  backward(scale(loss, 0.5));
  const logits = new Float64Array(n * V);
  for (let r = 0; r < n; r++) for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) logits[r * V + v] += h[r * H + j] * w[v * H + j];
  const d = reference(logits, labels, B, T, V).dlogits.map((x) => 0.5 * x);
  const dh = new Float64Array(n * H), dw = new Float64Array(V * H);
  for (let r = 0; r < n; r++) for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) {
    dh[r * H + j] += d[r * V + v] * w[v * H + j];
    dw[v * H + j] += d[r * V + v] * h[r * H + j];
  }
  assertClose(await th.grad!.read(), dh, 'dh', 1e-4, 1e-6);
  assertClose(await tw.grad!.read(), dw, 'dW', 1e-4, 1e-6);
});

s('upstream gradient 1: dlogits are (softmax − onehot)/count as written by the forward', async () => {
  const [B, T, V] = [3, 7, 64];
  const logits = randn(B * T * V, 1, 3), labels = makeLabels(B, T, V, 2);
  const tl = Tensor.fromArray(logits, [B, T, V], 'f32', true);
  backward(crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32')).loss);
  assertClose(await tl.grad!.read(), reference(logits, labels, B, T, V).dlogits, 'dlogits', 1e-4, 1e-7);
});

s('an all-ignored batch gives loss 0, count 0, zero gradients, no NaN (also T = 1: nothing to predict)', async () => {
  for (const [B, T, V] of [[2, 9, 50], [3, 1, 64]]) {
    const tl = Tensor.fromArray(randn(B * T * V, 3, 5), [B, T, V], 'f32', true);
    const labels = new Int32Array(B * T).fill(T === 1 ? 7 : IGNORE);
    const { loss, count } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'));
    assert.is(await read1(loss), 0);
    assert.is(await read1(count), 0);
    backward(scale(loss, 0.5));
    assert.ok((await tl.grad!.read()).every((v) => v === 0), 'every dlogit is 0');
  }
});

s('the last position of each sequence and ignored rows get zero gradient; labels shift by one', async () => {
  const [B, T, V] = [2, 4, 8];
  const labels = Int32Array.from([IGNORE, 3, IGNORE, 5, /* seq 1 */ 1, IGNORE, IGNORE, IGNORE]);
  const tl = Tensor.fromArray(randn(B * T * V, 4), [B, T, V], 'f32', true);
  const { loss, count } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'));
  assert.is(await read1(count), 2, 'rows (0,0)→3 and (0,2)→5; label at t = 0 of seq 1 is never a target');
  backward(loss);
  const d = await tl.grad!.read();
  const rowNonZero = (r: number) => d.slice(r * V, (r + 1) * V).some((v) => v !== 0);
  assert.equal([0, 1, 2, 3, 4, 5, 6, 7].map(rowNonZero), [true, false, true, false, false, false, false, false]);
});

s('a label outside [0, V) other than −100 makes the loss NaN', async () => {
  const tl = Tensor.fromArray(randn(2 * 3 * 10, 5), [2, 3, 10]);
  const { loss } = crossEntropy(tl, Tensor.fromArray([0, 4, 10, 0, 1, 2], [2, 3], 'i32'));
  assert.ok(Number.isNaN(await read1(loss)));
});

s('without gradients the logits are left untouched', async () => {
  const logits = randn(2 * 5 * 50, 6);
  const tl = Tensor.fromArray(logits, [2, 5, 50], 'f32', true);
  const { loss } = noGrad(() => crossEntropy(tl, Tensor.fromArray(makeLabels(2, 5, 50, 7), [2, 5], 'i32')));
  assert.ok(Number.isFinite(await read1(loss)));
  assertClose(await tl.read(), logits, 'logits', 0, 0);
});

s('logits over one storage binding (5440 × 6400 floats > 128 MiB) are split into row chunks', async () => {
  const [B, T, V] = [2, 2720, 6400], rows = B * T;
  const logits = new Float32Array(rows * V);
  for (let i = 0; i < logits.length; i++) logits[i] = ((i * 2654435761) % 1000) / 250; // cheap, varied
  // A few labelled rows on both sides of every possible chunk edge, the rest ignored.
  const labels = new Int32Array(rows).fill(IGNORE);
  const picked = [0, 5200, 5241, 5242, 5243, 5247, 5248, 5311, 5312, 5313, rows - 2];
  for (const r of picked) labels[r + 1] = (r * 37) % V;
  const tl = Tensor.fromArray(logits, [B, T, V], 'f32', true);
  const { loss, count } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'));
  const sub = new Float64Array(picked.length * V), subLabels = new Int32Array(picked.length * 2).fill(IGNORE);
  picked.forEach((r, k) => { sub.set(logits.subarray(r * V, (r + 1) * V), k * V); subLabels[2 * k + 1] = labels[r + 1]; });
  // The picked rows as B' sequences of length 2 (row, its label): same loss, same dlogit rows.
  const want = reference(Float64Array.from({ length: picked.length * 2 * V }, (_, i) => (Math.floor(i / V) % 2 ? 0 : sub[Math.floor(i / V / 2) * V + (i % V)])), subLabels, picked.length, 2, V);
  assert.is(await read1(count), picked.length);
  assertClose([await read1(loss)], [want.loss], 'loss', 1e-5, 1e-6);
  backward(loss);
  const d = await tl.grad!.read();
  picked.forEach((r, k) => assertClose(d.subarray(r * V, (r + 1) * V), want.dlogits.subarray(2 * k * V, (2 * k + 1) * V), `row ${r}`, 1e-4, 1e-8));
  let nonZero = 0;
  for (let i = 0; i < d.length; i++) if (d[i] !== 0) nonZero++;
  assert.ok(nonZero <= picked.length * V, `only the picked rows carry gradient (${nonZero} non-zero)`);
});

s('the float64 reference gradient matches finite differences of the loss', () => {
  const [B, T, V] = [2, 4, 5];
  const logits = randn(B * T * V, 8, 2), labels = Int32Array.from([0, 3, IGNORE, 1, 2, IGNORE, 4, 0]);
  const g = numericGrad((x) => reference(x, labels, B, T, V).loss, logits);
  assertClose(reference(logits, labels, B, T, V).dlogits, g, 'dlogits', 1e-6, 1e-9);
});

s('no write past loss, count or the logits (sentinel guard regions)', async () => {
  guardScope();
  for (const [B, T, V] of [[3, 33, 50], [1, 65, 64]]) {
    const tl = Tensor.fromArray(randn(B * T * V, 9), [B, T, V], 'f32', true);
    const { loss, count } = crossEntropy(tl, Tensor.fromArray(makeLabels(B, T, V, 10), [B, T], 'i32'));
    backward(scale(loss, 0.25));
    for (const [name, t] of [['loss', loss], ['count', count], ['logits', tl]] as const) {
      assert.equal(await t.overwrittenGuard(), [], `${name} [${B}, ${T}, ${V}]`);
    }
  }
});

// 16-bit logits (kernels/cross_entropy16.ts), bf16 and f16: V 1 (two rows to a word), 33 and 65 (odd:
// rows start or end mid-word), 50 (even, no multiple of 4: one word at a time), 64 (vec4); rows 2, 33,
// 65 and 18, ignored rows and (B > 1) an ignored sequence. Two pipelines a format for each pass.
const FORMATS = ['bf16', 'f16'] as const;
const CASES16 = [[1, 2, 1], [3, 11, 33], [1, 33, 65], [2, 9, 50], [1, 65, 64]];

for (const dtype of FORMATS) {
  for (const [B, T, V] of CASES16) {
    s(`${dtype} logits [${B}, ${T}, ${V}]: the loss of their float32 values, ${dtype} dlogits in place, upstream 0.37`, async () => {
      const x = Float32Array.from(randn(B * T * V, B * T + V, 4)), labels = makeLabels(B, T, V, V + T);
      const want = reference16(x, labels, B, T, V, dtype, 0.37);
      const tl = Tensor.fromArray(x, [B, T, V], dtype, true);
      const { loss, count } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'));
      assert.is(await read1(count), want.count);
      // float32-level: the inputs are exact 16-bit values and the loss float32 arithmetic on them.
      assertClose([await read1(loss)], [want.loss], 'loss', 1e-5, 1e-6);
      backward(scale(loss, 0.37));
      assert.is(tl.grad!.dtype, dtype);
      // 1 ulp of the 16-bit type: the float32 gradient (a few float32 ulps from float64) rounded once.
      assertUlps16(await tl.grad!.read(), want.dlogits, dtype, 'dlogits');
    });
  }
}

s('f16 logits under a loss scale of 2^16: dlogits are the scaled gradient rounded once, not flushed to 0 first', async () => {
  // g/count·softmax spans ~1e-10..1e-4 at upstream 1 here: mostly float16 subnormals (under 2^-14), some
  // under the least one (2^-24). Rounded before the scaling by 2^16 they would be flushed or coarsened.
  const [B, T, V] = [2, 33, 1025], up = 2 ** 16;
  const x = Float32Array.from(randn(B * T * V, 31, 4)), labels = makeLabels(B, T, V, 32);
  const want = reference16(x, labels, B, T, V, 'f16', up);
  const tl = Tensor.fromArray(x, [B, T, V], 'f16', true);
  backward(scale(crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32')).loss, up));
  const got = await tl.grad!.read();
  assertUlps16(got, want.dlogits, 'f16', 'dlogits');
  assert.ok(got.filter((v) => v !== 0).length === want.dlogits.filter((v) => v !== 0).length, 'as many non-zero dlogits as the reference');
});

s('16-bit logits over several storage bindings: chunks of whole words at aligned offsets (odd V), same loss and dlogits', async () => {
  const align = gpu().limits.minStorageBufferOffsetAlignment;
  for (const V of [33, 64]) {
    const [B, T] = [2, 150], rows = B * T, bindingBytes = 128 * 2 * V; // chunks of 128 rows (or 64)
    const cs = chunks(rows, V, 'bf16', bindingBytes);
    assert.ok(cs.length >= 3, `${cs.length} chunks`);
    const t = Tensor.empty([B, T, V], 'bf16');
    for (const c of cs) {
      const b = slice(t, V, c) as { offset: number; size: number };
      assert.is(b.offset % align, 0, `chunk at row ${c.r0}: offset ${b.offset}`);
      assert.is((c.r0 * V) % 2, 0, `chunk at row ${c.r0} starts on a word`);
      assert.ok(b.offset + b.size <= t.bytes, `chunk at row ${c.r0} ends within the tensor`);
    }
    const x = Float32Array.from(randn(rows * V, V, 4)), labels = makeLabels(B, T, V, V + 1);
    const want = reference16(x, labels, B, T, V, 'bf16', 0.5);
    const tl = Tensor.fromArray(x, [B, T, V], 'bf16', true);
    const { loss } = crossEntropy(tl, Tensor.fromArray(labels, [B, T], 'i32'), { bindingBytes });
    assertClose([await read1(loss)], [want.loss], `V ${V}: loss`, 1e-5, 1e-6);
    backward(scale(loss, 0.5));
    assertUlps16(await tl.grad!.read(), want.dlogits, 'bf16', `V ${V}: dlogits`);
  }
});

s('16-bit logits: no write past the logits, loss or count; without gradients the logits are left untouched', async () => {
  guardScope();
  for (const dtype of FORMATS) {
    const [B, T, V] = [3, 11, 33];
    const tl = Tensor.fromArray(randn(B * T * V, 9), [B, T, V], dtype, true);
    const { loss, count } = crossEntropy(tl, Tensor.fromArray(makeLabels(B, T, V, 10), [B, T], 'i32'));
    backward(scale(loss, 0.25));
    for (const [name, t] of [['loss', loss], ['count', count], ['logits', tl]] as const) assert.equal(await t.overwrittenGuard(), [], `${dtype} ${name}`);
    const t2 = Tensor.fromArray(randn(B * T * V, 11), [B, T, V], dtype, true), before = await t2.read16();
    noGrad(() => crossEntropy(t2, Tensor.fromArray(makeLabels(B, T, V, 12), [B, T], 'i32')));
    assert.equal(await t2.read16(), before, `${dtype}: logits unchanged`);
  }
});

const FIX = join(import.meta.dirname, 'fixtures', 'ref');

s('matches the PyTorch golden fixture (kernel_cross_entropy), including a fully ignored row and batch', async () => {
  const file = join(FIX, 'kernel_cross_entropy.safetensors');
  assert.ok(existsSync(file), `${file} missing: run /usr/bin/python3 test/fixtures/ref/make_fixtures.py`);
  const f = readFixture(file);
  const meta = JSON.parse(readFileSync(join(FIX, 'kernel_cross_entropy.json'), 'utf8')) as { loss: number; n_valid: number };
  const shape = f.logits.shape, lshape = f.labels.shape;
  const tl = Tensor.fromArray(f.logits.data, shape, 'f32', true);
  const { loss, count } = crossEntropy(tl, Tensor.fromArray(f.labels.data, lshape, 'i32'));
  assert.is(await read1(count), meta.n_valid);
  assertClose([await read1(loss)], [meta.loss], 'loss', 1e-6, 1e-6);
  backward(loss);
  assertClose(await tl.grad!.read(), f.dlogits.data, 'dlogits', 1e-5, 1e-7);
  const t0 = Tensor.fromArray(f.logits.data, shape, 'f32', true);
  const r0 = crossEntropy(t0, Tensor.fromArray(f.labels_all_ignored.data, lshape, 'i32'));
  assert.is(await read1(r0.loss), 0);
  assert.is(await read1(r0.count), 0);
});

s.run();
