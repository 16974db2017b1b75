// linear16 (torch.autocast's Linear over a 16-bit weight) against its float64 reference: y and both gradients
// for a weight of one module and of three fused ones (each module's dX rounded to 16 bits on its own, then
// summed), on awkward row counts. Tolerance: one ulp of the 16-bit type (a float32 sum rounded once may land
// on the neighbour of the float64 sum's rounding), plus float32-level slack for sums that cancel.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, withGuards } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { linear16, reference } from '../kernels/linear16.js';
import { reference as castReference } from '../kernels/cast.js';
import { ULP16 } from '../kernels/matmul16_variants.js';
import { assertClose, randn, setupGpu } from './util.js';

const s = suite('linear16');
s.before(setupGpu);

const K = 64; // module row offsets r0·K·2 bytes stay multiples of 256: a binding offset on every adapter
for (const d of ['bf16', 'f16'] as const) {
  for (const [M, rows] of [[33, [64]], [7, [32, 16, 16]], [65, [128, 64]]] as [number, number[]][]) {
    s(`${d}: y, dx and dw of x [${M}, ${K}] · w [${rows.join('|')}, ${K}]ᵀ match the float64 reference`, () => withGuards(async () => {
      const N = rows.reduce((a, b) => a + b, 0);
      const x = Float32Array.from(randn(M * K, 1, 2)), gy = Float32Array.from(randn(M * N, 2, 0.5));
      const w = Float32Array.from(castReference(Float32Array.from(randn(N * K, 3, 0.125)), d)); // 16-bit values
      const xt = Tensor.fromArray(x, [M, K], 'f32', true), wt = Tensor.fromArray(w, [N, K], d, true);
      const y = linear16(xt, wt, rows);
      backward(y, Tensor.fromArray(gy, [M, N]));
      const want = reference(x, w, gy, M, N, K, rows, d);
      assert.is(wt.grad!.dtype, d, 'dw is 16-bit');
      assertClose(await y.readF32(), want.y, 'y', ULP16[d], 1e-6);
      assertClose(await wt.grad!.readF32(), want.dw, 'dw', ULP16[d], 1e-6);
      // Each module's product rounds to an ulp of itself; their float32 sum can be smaller: slack 1 ulp of the sum of |parts|.
      const dx = await xt.grad!.readF32();
      assertClose(dx, want.dx, 'dx', rows.length * ULP16[d], 1e-6);
      // Per-module rounding, not one rounding of the fused sum: ours equals the per-module reference almost
      // everywhere (float32 sum order flips a rounding now and then), and the fused one differs far more often.
      const differ = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).filter((v, i) => v !== b[i]).length;
      assert.ok(differ(dx, want.dx) <= 0.01 * M * K, `dx: ${differ(dx, want.dx)} of ${M * K} differ from the per-module reference`);
      if (rows.length > 1) {
        const fused = reference(x, w, gy, M, N, K, [N], d).dx;
        assert.ok(differ(fused, want.dx) > 10 * Math.max(1, differ(dx, want.dx)), `the fused rounding differs in only ${differ(fused, want.dx)} elements`);
      }
      for (const t of [xt, wt, y]) assert.equal(await t.overwrittenGuard(), [], 'writes stay inside the tensors');
    }));
  }
}

// The 16-bit activation path: x already 16-bit (an attention or SwiGLU output), y kept 16-bit (out16: read by a
// 16-bit-aware op) and a 16-bit upstream gradient (from such an op). x's gradient is then 16-bit: one module's
// product as stored, several modules' float32 sum rounded once. Same reference and tolerance as above, plus for
// several modules an ulp of a part (|part| < 0.25 here): a flipped rounding of one part survives a sum that cancels.
for (const d of ['bf16', 'f16'] as const) {
  for (const rows of [[64], [32, 16, 16]]) {
    s(`${d}: 16-bit x, y and upstream gradient through w [${rows.join('|')}, ${K}]`, () => withGuards(async () => {
      const M = 33, N = rows.reduce((a, b) => a + b, 0);
      const r16 = (v: Float64Array) => Float32Array.from(castReference(Float32Array.from(v), d));
      const x = r16(randn(M * K, 4, 2)), gy = r16(randn(M * N, 5, 0.5)), w = r16(randn(N * K, 6, 0.125));
      const xt = Tensor.fromArray(x, [M, K], d, true), wt = Tensor.fromArray(w, [N, K], d, true);
      const y = linear16(xt, wt, rows, { out16: true });
      assert.is(y.dtype, d, 'y stays 16-bit');
      backward(y, Tensor.fromArray(gy, [M, N], d));
      const want = reference(x, w, gy, M, N, K, rows, d);
      assert.is(xt.grad!.dtype, d, 'dx is 16-bit');
      assertClose(await y.readF32(), want.y, 'y', ULP16[d], 1e-6);
      assertClose(await wt.grad!.readF32(), want.dw, 'dw', ULP16[d], 1e-6);
      assertClose(await xt.grad!.readF32(), want.dx, 'dx', (rows.length + 1) * ULP16[d], rows.length > 1 ? ULP16[d] / 4 : 1e-6);
      for (const t of [xt, wt, y]) assert.equal(await t.overwrittenGuard(), [], 'writes stay inside the tensors');
    }));
  }
}

s.run();
