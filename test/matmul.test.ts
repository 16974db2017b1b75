import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { counters, resetCounters } from '../runtime/kernel.js';
import { matmul, gemm, roundF16, reference, referenceBackward, type Gemm, type MatmulOptions } from '../kernels/matmul.js';
import { setupGpu, randn, assertClose, numericGrad, dot } from './util.js';

const s = suite('matmul');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: ArrayLike<number>, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);
// float32 sums over K terms of products of values in [-1, 1]: error grows like √K.
const tol = (K: number) => [2e-5, 2e-6 * Math.sqrt(K)] as const;

// (M, N, K): 1 and the odd sizes are no multiple of any tile (8 lanes × 4..16) nor of the vec4 width,
// so they take the scalar paths; the last two have K and N multiples of 4 (the vec4 paths, as at
// MiniMind's sizes) with partial tiles in M and N.
const SHAPES: [number, number, number][] = [[1, 1, 1], [33, 65, 7], [65, 33, 129], [130, 70, 1025], [65, 68, 132], [37, 136, 64]];

// 'tiled': the tuner's pick (tests run with MINIMIND_TUNE=off: the hand-picked tiles); every other
// variant is forced on these layouts by test/variants_matmul.test.ts.
const IMPLS: [string, MatmulOptions][] = [['naive', { variant: { kind: 'naive' } }], ['tiled', {}]];

for (const [impl, o] of IMPLS) {
  for (const [M, N, K] of SHAPES) {
    s(`${impl}: y = x·wᵀ, dx = dy·w, dw = dyᵀ·x match float64 at M=${M} N=${N} K=${K} (random upstream)`, async () => {
      const x = randn(M * K, M + 3 * K), w = randn(N * K, N + 5 * K), gy = randn(M * N, M + N + K);
      const tx = up(x, [M, K], true), tw = up(w, [N, K], true);
      const y = matmul(tx, tw, o);
      assertClose(await y.read(), reference(x, w, M, N, K), 'y', ...tol(K));
      backward(y, up(gy, [M, N]));
      const want = referenceBackward(x, w, gy, M, N, K);
      assertClose(await tx.grad!.read(), want.dx, 'dx', ...tol(N));
      assertClose(await tw.grad!.read(), want.dw, 'dw', ...tol(M));
    });
  }
}

/** The three products as GEMMs on fresh tensors, with their float64 results. */
function products(M: number, N: number, K: number, seed: number): { name: string; g: Gemm; want: Float64Array }[] {
  const x = randn(M * K, seed), w = randn(N * K, seed + 1), gy = randn(M * N, seed + 2);
  const tx = up(x, [M, K]), tw = up(w, [N, K]), tgy = up(gy, [M, N]);
  const { dx, dw } = referenceBackward(x, w, gy, M, N, K);
  return [
    { name: 'forward', want: reference(x, w, M, N, K), g: { a: tx, b: tw, c: Tensor.empty([M, N]), M, N, K, am: K, ak: 1, bk: 1, bn: K, beta: 0 } },
    { name: 'dX', want: dx, g: { a: tgy, b: tw, c: Tensor.empty([M, K]), M, N: K, K: N, am: N, ak: 1, bk: K, bn: 1, beta: 0 } },
    { name: 'dW', want: dw, g: { a: tgy, b: tx, c: Tensor.empty([N, K]), M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1, beta: 0 } },
  ];
}

s('beta = 1 adds to the existing output; dW accumulates into an existing gradient', async () => {
  for (const [impl, o] of IMPLS) {
    for (const { name, g, want } of products(33, 68, 20, 70)) {
      const c0 = randn(g.M * g.N, 71);
      const c = up(c0, [g.M, g.N]);
      gemm({ ...g, c, beta: 1 }, o);
      assertClose(await c.read(), want.map((v, i) => v + c0[i]), `${impl} ${name} beta=1`, ...tol(g.K));
    }
    const M = 33, N = 68, K = 20;
    const x = randn(M * K, 72), w = randn(N * K, 73), gy = randn(M * N, 74), g0 = randn(N * K, 75);
    const tw = up(w, [N, K], true);
    tw.grad = up(g0, [N, K]).keep();
    backward(matmul(up(x, [M, K]), tw, o), up(gy, [M, N]));
    const { dw } = referenceBackward(x, w, gy, M, N, K);
    assertClose(await tw.grad.read(), dw.map((v, i) => v + g0[i]), `${impl} grad = g0 + dW`, ...tol(M));
    tw.grad.dispose();
  }
});

s('no write lands past the output (sentinel tail after C), naive and tiled, all layouts', async () => {
  const SENTINEL = -12345.5, TAIL = 300;
  for (const [impl, o] of IMPLS) {
    for (const [M, N, K] of [[33, 65, 7], [65, 68, 132], [1, 1, 1]] as [number, number, number][]) {
      for (const { name, g, want } of products(M, N, K, 80)) {
        const n = g.M * g.N;
        const c = up(new Float32Array(n + TAIL).fill(SENTINEL), [n + TAIL]);
        gemm({ ...g, c }, o);
        const got = await c.read();
        assertClose(got.subarray(0, n), want, `${impl} ${name} ${M}x${N}x${K}`, ...tol(g.K));
        const bad = [...got.subarray(n)].findIndex((v) => v !== SENTINEL);
        assert.is(bad, -1, `${impl} ${name} ${M}x${N}x${K}: element ${n + bad} past the output was overwritten`);
      }
    }
  }
});

// The LM-head logits (B·T×6400 floats) outgrow maxStorageBufferBindingSize: gemm splits such products
// along M (forward, dX) or K (dW, accumulating). A 64 KiB limit makes this shape need both.
s('operands larger than a storage binding are split along M or K and give the same result', async () => {
  const M = 300, N = 70, K = 65;
  const x = randn(M * K, 95), w = randn(N * K, 96), gy = randn(M * N, 97), g0 = randn(N * K, 98);
  const want = referenceBackward(x, w, gy, M, N, K);
  for (const [impl, io] of IMPLS) {
    const o = { ...io, bindingBytes: 64 * 1024 };
    const tx = up(x, [M, K], true), tw = up(w, [N, K], true);
    tw.grad = up(g0, [N, K]).keep();
    resetCounters();
    const y = matmul(tx, tw, o);
    assert.is(counters().dispatches, 2, `${impl}: the forward ran as two row chunks (192 + 108)`);
    assertClose(await y.read(), reference(x, w, M, N, K), `${impl} y`, ...tol(K));
    backward(y, up(gy, [M, N]));
    assertClose(await tx.grad!.read(), want.dx, `${impl} dx`, ...tol(N));
    assertClose(await tw.grad.read(), want.dw.map((v, i) => v + g0[i]), `${impl} g0 + dw`, ...tol(M));
    tw.grad.dispose();
  }
});

s('the float64 reference backward matches finite differences of the reference forward', () => {
  const M = 3, N = 4, K = 5;
  const x = randn(M * K, 90), w = randn(N * K, 91), gy = randn(M * N, 92);
  const L = (xx: Float64Array, ww: Float64Array) => dot(gy, reference(xx, ww, M, N, K));
  const want = referenceBackward(x, w, gy, M, N, K);
  assertClose(want.dx, numericGrad((v) => L(v, w), x), 'dx', 1e-6, 1e-8);
  assertClose(want.dw, numericGrad((v) => L(x, v), w), 'dw', 1e-6, 1e-8);
});

s('roundF16: ties to even, subnormals, overflow', () => {
  assert.equal([1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -25, 3 * 2 ** -25, 65504, 65519, 65520, -1e6].map(roundF16),
    [1, 1 + 2 ** -9, 0, 2 ** -23, 65504, 65504, Infinity, -Infinity]);
});

s('mismatched inner sizes are an error naming both shapes', () => {
  assert.throws(() => matmul(Tensor.zeros([3, 5]), Tensor.zeros([4, 6])), /\[3,5\].*\[4,6\]/);
});

s.run();
