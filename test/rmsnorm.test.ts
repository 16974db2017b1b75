import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, withGuards } from '../runtime/tensor.js';
import { counters, resetCounters } from '../runtime/kernel.js';
import { backward } from '../runtime/autograd.js';
import { rmsnorm, rmsnormBackward, reference, referenceBackward } from '../kernels/rmsnorm.js';
import { setupGpu, randn, assertClose, numericGrad, dot, readFixture } from './util.js';

const s = suite('rmsnorm');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const up = (x: Float64Array, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);
const weight = (h: number, seed: number) => randn(h, seed, 0.5).map((v) => 1 + v);

// [rows, H]: H = 33, 65 (no vec4 path), 16 and 64 (per-head q/k norm), 512 and 640 (hidden sizes);
// rows 1, 33, 65, 1025 are no multiple of the workgroup (64) nor of the backward's row chunk.
const SHAPES: [number, number][] = [[1, 33], [33, 65], [65, 512], [7, 640], [1025, 64], [3, 16]];

for (const [rows, h] of SHAPES) {
  s(`forward and fused backward match float64 at rows=${rows} H=${h} (random upstream)`, async () => {
    const x = randn(rows * h, rows + h, 2), w = weight(h, 7 + h), dy = randn(rows * h, 3 * rows + h);
    const tx = up(x, [rows, h], true), tw = up(w, [h], true);
    const y = rmsnorm(tx, tw, 1e-5);
    assertClose(await y.read(), reference(x, w, 1e-5).y, 'y', 1e-5, 1e-6);
    backward(y, up(dy, [rows, h]));
    const want = referenceBackward(x, w, dy, 1e-5);
    assertClose(await tx.grad!.read(), want.dx, 'dx', 1e-4, 1e-5);
    assertClose(await tw.grad!.read(), want.dw, 'dw', 1e-4, 2e-5 * Math.sqrt(rows));
  });
}

s('per-head q/k norm: x [B,T,nh,hd] normalised over hd', async () => {
  const shape = [2, 5, 3, 16], n = 2 * 5 * 3 * 16;
  const x = randn(n, 11, 3), w = weight(16, 12);
  assertClose(await rmsnorm(up(x, shape), up(w, [16]), 1e-6).read(), reference(x, w, 1e-6).y, 'y', 1e-5, 1e-6);
});

s('dw accumulates into an existing gradient (beta = 1), dx does not', async () => {
  const rows = 33, h = 65;
  const x = randn(rows * h, 21), w = weight(h, 22), dy = randn(rows * h, 23);
  const tx = up(x, [rows, h], true), tw = up(w, [h], true);
  backward(rmsnorm(tx, tw, 1e-5), up(dy, [rows, h]));
  backward(rmsnorm(tx, tw, 1e-5), up(dy, [rows, h]));
  const want = referenceBackward(x, w, dy, 1e-5);
  assertClose(await tw.grad!.read(), want.dw.map((v) => 2 * v), 'dw after two backwards', 1e-4, 1e-4);
  assertClose(await tx.grad!.read(), want.dx.map((v) => 2 * v), 'dx after two backwards', 1e-4, 1e-5);
});

s('a frozen weight (requiresGrad false): dx as before, no dw computed (two dispatches, not three)', async () => {
  for (const [rows, h] of [[33, 65], [65, 512]]) { // scalar and vec4 paths
    const x = randn(rows * h, 51 + h), w = weight(h, 52), dy = randn(rows * h, 53);
    const tx = up(x, [rows, h], true), tw = up(w, [h]);
    const y = rmsnorm(tx, tw, 1e-5);
    resetCounters();
    backward(y, up(dy, [rows, h]));
    assert.is(counters().dispatches, 2, 'the dot pass and dx only');
    assert.is(tw.grad, null);
    assertClose(await tx.grad!.read(), referenceBackward(x, w, dy, 1e-5).dx, 'dx', 1e-4, 1e-5);
  }
});

s('the float64 reference backward matches finite differences', () => {
  const rows = 3, h = 5;
  const x = randn(rows * h, 31, 2), w = weight(h, 32), dy = randn(rows * h, 33);
  const L = (xx: Float64Array, ww: Float64Array) => dot(dy, reference(xx, ww, 1e-5).y);
  const want = referenceBackward(x, w, dy, 1e-5);
  assertClose(want.dx, numericGrad((v) => L(v, w), x), 'dx', 1e-6, 1e-8);
  assertClose(want.dw, numericGrad((v) => L(x, v), w), 'dw', 1e-6, 1e-8);
});

s('no write past y, dx or dw (sentinel guard regions)', async () => {
  // Inputs get no guard (created before sentinel mode): a guard's NaN payload survives arithmetic, so an
  // overrun computed from guarded inputs could write the sentinel itself back and go unnoticed.
  for (const [rows, h] of [[65, 33], [33, 64], [1025, 17]]) { // 1025 rows: the last backward chunk is partial
    const x = up(randn(rows * h, 41), [rows, h]), w = up(weight(h, 42), [h]), dy = up(randn(rows * h, 43), [rows, h]);
    const rstd = Tensor.fromArray(reference(randn(rows * h, 41), weight(h, 42), 1e-5).rstd, [rows]);
    await withGuards(async () => {
      const y = rmsnorm(x, w, 1e-5);
      const dw = Tensor.zeros([h]);
      const dx = rmsnormBackward(x, w, rstd, dy, dw, 1);
      for (const [name, t] of [['y', y], ['dx', dx], ['dw', dw]] as const) assert.equal(await t.overwrittenGuard(), [], name);
    });
  }
});

const FIX = join(import.meta.dirname, 'fixtures', 'ref');
s('matches the PyTorch golden fixture (kernel_rmsnorm)', async () => {
  const file = join(FIX, 'kernel_rmsnorm.safetensors');
  assert.ok(existsSync(file), `${file} missing: run /usr/bin/python3 test/fixtures/ref/make_fixtures.py`);
  const f = readFixture(file);
  const { eps } = JSON.parse(readFileSync(join(FIX, 'kernel_rmsnorm.json'), 'utf8')) as { eps: number };
  const tx = up(f.x.data, f.x.shape, true), tw = up(f.w.data, f.w.shape, true);
  const y = rmsnorm(tx, tw, eps);
  assertClose(await y.read(), f.y.data, 'y', 1e-5, 1e-6);
  backward(y, up(f.dy.data, f.dy.shape));
  assertClose(await tx.grad!.read(), f.dx.data, 'dx', 1e-4, 1e-5);
  assertClose(await tw.grad!.read(), f.dw.data, 'dw', 1e-4, 1e-5);
});

s.run();
