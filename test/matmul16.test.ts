// Matmul over 16-bit storage (kernels/matmul16.ts) against float64 of the stored values.
// Tolerances: inputs are rounded to the 16-bit type first (Tensor.fromArray), so the reference sees
// exactly what the kernel reads, and every product is exact in float32 (8 + 8 or 11 + 11
// significant bits); the kernel's float32 sums then err like a float32 GEMM's (rtol 2e-5, atol
// 2e-6·√K); a 16-bit output adds one rounding: within one ulp of the type (rtol 2^-7 for bf16,
// 2^-10 for f16). Rounding once, to nearest even, is pinned bit for bit where the sums are exact.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, withGuards, type DType16 } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { gpu } from '../runtime/device.js';
import { counters, resetCounters } from '../runtime/kernel.js';
import { matmul, gemm, reference, referenceBackward, type Gemm, type MatmulOptions, type MatmulVariant } from '../kernels/matmul.js';
import { reference as castRef } from '../kernels/cast.js';
import { bf16FromF32Bits, f16FromF32Bits } from '../model/dtype.js';
import { ULP16 } from '../kernels/matmul16_variants.js';
import { setupGpu, randn, assertClose, rng } from './util.js';

const s = suite('matmul16');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

type Out = 'f32' | DType16;
const STORAGE: [DType16, Out][] = [['bf16', 'bf16'], ['bf16', 'f32'], ['f16', 'f16'], ['f16', 'f32']];
const NAIVE: MatmulVariant = { kind: 'naive' };
const SHARED: MatmulVariant = { kind: 'shared', bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, g: 1 };
/** bf16: naive, the tuner's pick (tests: the hand-picked register tiles on lavapipe), workgroup-memory tiles;
 *  f16 differs from bf16 only in the pack and unpack functions that every kind's loads and stores call
 *  (kernels/matmul_io.ts; pinned bit for bit by test/packed16.test.ts): the tuner's pick covers it, and on an
 *  adapter with shader-f16 the native-f16 twins of all three. A float32 output shares every load path with a
 *  16-bit one and its store with the float32 kernels: the tuner's pick covers it (each variant kind is a few
 *  pipelines: seconds each for lavapipe on a cold shader cache). */
function impls(ab: DType16, out: Out = ab): [string, MatmulOptions][] {
  const base: [string, MatmulVariant | undefined][] = out === 'f32' || ab === 'f16' ? [['tiled', undefined]] : [['naive', NAIVE], ['tiled', undefined], ['shared', SHARED]];
  const fixed: [string, MatmulVariant][] = [['naive', NAIVE], ['shared', SHARED]];
  const native = ab === 'f16' && out !== 'f32' && gpu().features.has('shader-f16')
    ? fixed.map(([n, v]): [string, MatmulVariant] => [`${n} native`, { ...v, native: true }]) : [];
  return [...base, ...native].map(([n, v]) => [n, v ? { variant: v } : {}]);
}

// (M, N, K): 1 and odd sizes (scalar loads; an odd N sends packed outputs of the tiles through a
// float32 scratch), multiples of 4 with partial tiles (vec4 loads, outputs written a word at a time).
// test/variants_matmul.test.ts forces every other variant on the vec4 layouts. (Every new layout costs
// lavapipe seconds of compiling per variant on a cold shader cache: the other tests reuse these.)
const SHAPES: [number, number, number][] = [[1, 1, 1], [33, 65, 7], [65, 68, 132], [37, 136, 1025]];

const stored = (x: Float64Array, d: Out) => castRef(Float32Array.from(x), d);
const tol = (inner: number, out: Out) => [out === 'f32' ? 2e-5 : ULP16[out], 2e-6 * Math.sqrt(inner)] as const;

/** The three products of a Linear as GEMMs over 16-bit operands, with float64 results of the stored values. */
function products(M: number, N: number, K: number, seed: number, ab: DType16, out: Out) {
  const x = stored(randn(M * K, seed), ab), w = stored(randn(N * K, seed + 1), ab), gy = stored(randn(M * N, seed + 2), ab);
  const tx = Tensor.fromArray(x, [M, K], ab), tw = Tensor.fromArray(w, [N, K], ab), tgy = Tensor.fromArray(gy, [M, N], ab);
  const { dx, dw } = referenceBackward(x, w, gy, M, N, K);
  const g = (a: Tensor, b: Tensor, rows: number, cols: number, inner: number, st: number[]): Gemm =>
    ({ a, b, c: Tensor.empty([rows, cols], out), M: rows, N: cols, K: inner, am: st[0], ak: st[1], bk: st[2], bn: st[3], beta: 0 });
  return [
    { name: 'forward', want: reference(x, w, M, N, K), g: g(tx, tw, M, N, K, [K, 1, 1, K]) },
    { name: 'dX', want: dx, g: g(tgy, tw, M, K, N, [N, 1, K, 1]) },
    { name: 'dW', want: dw, g: g(tgy, tx, N, K, M, [1, N, K, 1]) },
  ];
}

for (const [ab, out] of STORAGE) {
  s(`${ab} operands, ${out} output: y = x·wᵀ, dX = dY·W, dW = dYᵀ·X match float64 (every variant kind, awkward shapes), nothing written past C`, async () => {
    for (const [impl, o] of impls(ab, out)) {
      for (const [M, N, K] of SHAPES) {
        await withGuards(async () => {
          for (const { name, g, want } of products(M, N, K, M + 7 * N + K, ab, out)) {
            gemm(g, o);
            assertClose(await g.c.readF32(), want, `${impl} ${name} ${M}x${N}x${K}`, ...tol(g.K, out));
            assert.equal(await g.c.overwrittenGuard(), [], `${impl} ${name} ${M}x${N}x${K}: words past C`);
          }
        });
      }
    }
  });
}

/** Values k/64, |k| ≤ 64 (7 significant bits: exact in bf16 and f16): products are multiples of
 *  2^-12 below 1, so sums over K ≤ 2048 terms are exact in float32 and only the output rounds. */
const grid = (n: number, seed: number) => { const r = rng(seed); return Float64Array.from({ length: n }, () => Math.round(r() * 128 - 64) / 64); };
const round16 = (v: number, d: DType16) => castRef(Float32Array.of(v), d)[0];
const bits16 = (v: number, d: DType16) => (d === 'bf16' ? bf16FromF32Bits : f16FromF32Bits)(new Uint32Array(Float32Array.of(v).buffer)[0]);

for (const ab of ['bf16', 'f16'] as const) {
  s(`${ab} output: exact sums rounded once to nearest even, bit for bit; beta = 1 gives round(round(v) + c)`, async () => {
    const M = 37, N = 68, K = 1025;
    const x = grid(M * K, 1), w = grid(N * K, 2), c0 = stored(randn(M * N, 3, 4), ab), want = reference(x, w, M, N, K);
    for (const [impl, o] of impls(ab)) {
      for (const beta of [0, 1]) {
        const c = Tensor.fromArray(c0, [M, N], ab);
        gemm({ a: Tensor.fromArray(x, [M, K], ab), b: Tensor.fromArray(w, [N, K], ab), c, M, N, K, am: K, ak: 1, bk: 1, bn: K, beta }, o);
        const got = await c.read16();
        for (let i = 0; i < want.length; i++) {
          const exp = bits16(beta ? round16(want[i], ab) + c0[i] : want[i], ab);
          if (got[i] !== exp) assert.unreachable(`${impl} beta=${beta} [${i}]: 0x${got[i].toString(16)}, want 0x${exp.toString(16)} (sum ${want[i]})`);
        }
      }
    }
  });
}

for (const ab of ['bf16', 'f16'] as const) {
  s(`matmul on ${ab} tensors: a ${ab} output and ${ab} gradients of both (the tape; leaf gradients accumulate as torch's)`, async () => {
    const M = 33, N = 65, K = 7; // test 1's layouts; dW's odd N (= K) accumulates through the float32 scratch
    const x = stored(randn(M * K, 11), ab), w = stored(randn(N * K, 12), ab), gy = stored(randn(M * N, 13), ab);
    const tx = Tensor.fromArray(x, [M, K], ab, true), tw = Tensor.fromArray(w, [N, K], ab, true);
    const y = matmul(tx, tw);
    assert.is(y.dtype, ab);
    assertClose(await y.read(), reference(x, w, M, N, K), 'y', ...tol(K, ab));
    backward(y, Tensor.fromArray(gy, [M, N], ab));
    const { dx, dw } = referenceBackward(x, w, gy, M, N, K);
    assert.is(tx.grad!.dtype, ab);
    assert.is(tw.grad!.dtype, ab);
    assertClose(await tx.grad!.read(), dx, 'dx', ...tol(N, ab));
    assertClose(await tw.grad!.read(), dw, 'dw', ...tol(M, ab));
    // A second backward adds into the 16-bit gradient in the kernel: round(round(dW) + dW0).
    const dw0 = Float64Array.from(await tw.grad!.read());
    backward(matmul(tx, tw), Tensor.fromArray(gy, [M, N], ab));
    const got = await tw.grad!.read();
    assertClose(got, Float64Array.from(dw0, (g, i) => round16(round16(dw[i], ab) + g, ab)), 'dw accumulated', ULP16[ab], 2e-6 * Math.sqrt(M));
    tx.grad!.dispose();
    tw.grad!.dispose();
  });
}

// A 128 KiB binding limit makes these need chunks of 384 rows along M (forward) and 128 k-steps
// along K (dW, over M = 600 rows of X); a 16-bit C split along K is summed in float32 and rounded once.
s('16-bit operands larger than a storage binding are split along M or K and round once', async () => {
  const M = 600, N = 68, K = 132, bindingBytes = 128 * 1024;
  for (const ab of ['bf16', 'f16'] as const) {
    const x = grid(M * K, 21), w = grid(N * K, 22), gy = grid(M * N, 23);
    const tx = Tensor.fromArray(x, [M, K], ab), tw = Tensor.fromArray(w, [N, K], ab), tgy = Tensor.fromArray(gy, [M, N], ab);
    const { dw } = referenceBackward(x, w, gy, M, N, K);
    for (const [impl, o] of impls(ab)) {
      resetCounters();
      const y = matmul(tx, tw, { ...o, bindingBytes });
      assert.ok(counters().dispatches >= 2, `${impl}: the forward ran in row chunks`);
      assert.equal(Array.from(await y.read16()), Array.from(reference(x, w, M, N, K), (v) => bits16(v, ab)), `${impl} ${ab} y`);
      const c = Tensor.empty([N, K], ab);
      resetCounters();
      gemm({ a: tgy, b: tx, c, M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1, beta: 0 }, { ...o, bindingBytes });
      assert.ok(counters().dispatches >= 3, `${impl}: dW ran in k chunks and one rounding pass`);
      assert.equal(Array.from(await c.read16()), Array.from(dw, (v) => bits16(v, ab)), `${impl} ${ab} dW`);
    }
  }
});

s('gemm refuses mixed storage and native variants of bf16', () => {
  const f = Tensor.zeros([4, 4]), b = Tensor.zeros([4, 4], 'bf16'), h = Tensor.zeros([4, 4], 'f16');
  const g = (a: Tensor, bb: Tensor, c: Tensor): Gemm => ({ a, b: bb, c, M: 4, N: 4, K: 4, am: 4, ak: 1, bk: 1, bn: 4, beta: 0 });
  assert.throws(() => gemm(g(b, f, f)), /operands bf16 and f32, output f32/);
  assert.throws(() => gemm(g(b, b, h)), /operands bf16 and bf16, output f16/);
  assert.throws(() => gemm(g(b, b, b), { variant: { kind: 'naive', native: true } }), /native f16 variant for bf16/);
});

s.run();
