import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, withGuards, gradSlot } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { writeBuffer } from '../runtime/kernel.js';
import { matmul } from '../kernels/index.js';
import { embedding, checkEmbeddingIds, groupIds, reference } from '../kernels/embedding.js';
import { setupGpu, randn, rng, assertClose, numericGrad, dot } from './util.js';

const s = suite('embedding');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

/** B·T ids in [0, V) drawn from a few hot ids, so rows repeat (the scatter-add must sum them). */
function makeIds(n: number, V: number, seed: number): Int32Array {
  const r = rng(seed);
  return Int32Array.from({ length: n }, () => (r() < 0.5 ? Math.floor(r() * 3) : Math.floor(r() * V)));
}

// [B, T, V, H]: H 33 and 65 use the scalar path, 64 and 512 the vec4 one; B·T = 33, 65, 1025.
const CASES = [[3, 11, 50, 33], [5, 13, 50, 64], [1, 1, 7, 65], [25, 41, 6400, 8], [1, 65, 300, 512]];

for (const [B, T, V, H] of CASES) {
  for (const host of [true, false]) {
    s(`gather forward and ${host ? 'host-sorted' : 'GPU-scan'} scatter-add backward at B·T=${B * T} V=${V} H=${H}`, async () => {
      const n = B * T, ids = makeIds(n, V, n + V), table = randn(V * H, V + H), dy = randn(n * H, n + H);
      const tt = Tensor.fromArray(table, [V, H], 'f32', true);
      const y = embedding(Tensor.fromArray(ids, [B, T], 'i32'), tt, host ? ids : undefined);
      assert.equal(y.shape, [B, T, H]);
      assertClose(await y.read(), reference.forward(ids, table, H), 'y', 0, 0);
      backward(y, Tensor.fromArray(dy, [B, T, H]));
      assertClose(await tt.grad!.read(), reference.backward(ids, dy, V, H), 'dTable', 1e-5, 1e-6);
    });
  }
}

s('backward adds to the tied gradient already there (LM head dW), bit-identically on every run', async () => {
  const B = 4, T = 33, V = 50, H = 64, n = B * T;
  const ids = makeIds(n, V, 5), dy = randn(n * H, 6), prior = randn(V * H, 7);
  const results: Float32Array[] = [];
  for (const host of [true, false, true]) {
    const tt = Tensor.fromArray(randn(V * H, 8), [V, H], 'f32', true);
    writeBuffer(gradSlot(tt).buffer, 0, Float32Array.from(prior));
    backward(embedding(Tensor.fromArray(ids, [B, T], 'i32'), tt, host ? ids : undefined), Tensor.fromArray(dy, [B, T, H]));
    results.push((await tt.grad!.read()) as Float32Array);
    tt.grad!.dispose();
  }
  const want = reference.backward(ids, dy, V, H).map((v, i) => v + prior[i]);
  assertClose(results[0], want, 'prior + dTable', 1e-5, 1e-5);
  assert.equal(results[2], results[0], 'host-sorted path, two runs: bit-identical');
  assertClose(results[1], results[0], 'GPU scan vs host-sorted', 1e-6, 1e-6);
});

s('tied weights: embedding and LM head (matmul with the same table) both accumulate into one gradient', async () => {
  const B = 2, T = 7, V = 11, H = 8, n = B * T;
  const ids = makeIds(n, V, 31), table = randn(V * H, 32), dOut = randn(n * V, 33);
  const tt = Tensor.fromArray(table, [V, H], 'f32', true);
  const h = embedding(Tensor.fromArray(ids, [B, T], 'i32'), tt, ids);
  backward(matmul(h, tt), Tensor.fromArray(dOut, [B, T, V])); // logits = h · tableᵀ
  // dTable = dOutᵀ·h (LM head) + scatter of dh = dOut·table (embedding)
  const hv = reference.forward(ids, table, H), dh = new Float64Array(n * H), want = new Float64Array(V * H);
  for (let r = 0; r < n; r++) for (let v = 0; v < V; v++) for (let j = 0; j < H; j++) {
    dh[r * H + j] += dOut[r * V + v] * table[v * H + j];
    want[v * H + j] += dOut[r * V + v] * hv[r * H + j];
  }
  const scatter = reference.backward(ids, dh, V, H);
  assertClose(await tt.grad!.read(), want.map((x, i) => x + scatter[i]), 'dTable', 1e-5, 1e-5);
});

s('out-of-range ids: a host-side error naming the position, or clamped and flagged on the GPU path', async () => {
  const V = 10, H = 4, table = Tensor.fromArray(randn(V * H, 9), [V, H]);
  const bad = Int32Array.from([1, 2, 10, 3]);
  assert.throws(() => embedding(Tensor.fromArray(bad, [1, 4], 'i32'), table, bad), /id 10 at flat position 2/);
  assert.throws(() => groupIds(Int32Array.from([0, -1]), V), /id -1 at flat position 1/);
  await checkEmbeddingIds(); // clean before
  const y = embedding(Tensor.fromArray(bad, [1, 4], 'i32'), table);
  const row = (await y.read()).slice(8, 12);
  assertClose(row, (await table.read()).slice((V - 1) * H, V * H), 'clamped to the last row', 0, 0);
  let err: unknown;
  try { await checkEmbeddingIds(); } catch (e) { err = e; }
  assert.ok(err instanceof Error && /flat position 2/.test(err.message), String(err));
  await checkEmbeddingIds(); // the flag was reset
});

s('the host counting sort groups positions by id, ascending within each id', () => {
  const { groups, U } = groupIds(Int32Array.from([4, 1, 4, 0, 1, 4]), 6);
  assert.is(U, 3);
  assert.equal([...groups], [0, 1, 4, /* starts */ 0, 1, 3, 6, /* positions */ 3, 1, 4, 0, 2, 5]);
});

s('the float64 reference backward matches finite differences', () => {
  const V = 5, H = 3, ids = [4, 0, 4, 2], table = randn(V * H, 11), dy = randn(ids.length * H, 12);
  const g = numericGrad((t) => dot(dy, reference.forward(ids, t, H)), table);
  assertClose(reference.backward(ids, dy, V, H), g, 'dTable', 1e-6, 1e-8);
});

s('no write past the output or the gradient (sentinel guard regions)', async () => {
  // Inputs get no guard (created before sentinel mode): a guard's NaN payload survives arithmetic, so an
  // overrun computed from guarded inputs could write the sentinel itself back and go unnoticed.
  for (const [V, H] of [[50, 33], [50, 64]]) {
    for (const host of [true, false]) {
      const ids = makeIds(65, V, 13);
      const tt = Tensor.fromArray(randn(V * H, 14), [V, H], 'f32', true), tids = Tensor.fromArray(ids, [65], 'i32');
      const dy = Tensor.fromArray(randn(65 * H, 15), [65, H]);
      await withGuards(async () => {
        const y = embedding(tids, tt, host ? ids : undefined);
        backward(y, dy);
        assert.equal(await y.overwrittenGuard(), [], `y H=${H}`);
        assert.equal(await tt.grad!.overwrittenGuard(), [], `dTable H=${H} host=${host}`);
      });
    }
  }
});

s.run();
