import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, withGuards } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { rope, ropeTable, reference } from '../kernels/rope.js';
import { minimind2, yarnOf } from '../model/config.js';
import { setupGpu, randn, assertClose, numericGrad, dot, readFixture } from './util.js';

const s = suite('rope');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const THETA = 1e6;
const up = (x: Float64Array, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// [B, T, nh, hd]: hd 64 and 16 take the vec4 path (hd % 8 == 0), hd 2 and 10 the scalar one;
// T = 33, 65 and row counts are no multiple of the workgroup.
const CASES: [number[], number][] = [[[1, 1, 1, 2], 0], [[2, 33, 3, 16], 0], [[1, 65, 2, 64], 7], [[3, 5, 2, 10], 3], [[2, 17, 8, 64], 300]];

for (const [shape, pos] of CASES) {
  s(`forward and backward (transpose rotation) match float64 at [${shape}], posOffset ${pos}`, async () => {
    const n = numel(shape), hd = shape[3];
    const x = randn(n, n + pos, 2), dy = randn(n, 2 * n + pos);
    const tab = ropeTable(hd, THETA, pos + shape[1]);
    const tx = up(x, shape, true);
    const y = rope(tx, pos, THETA);
    // Same float32 cos/sin as the GPU: only the rotation's round-off differs.
    assertClose(await y.read(), reference(x, shape, pos, THETA, 1, tab), 'y', 1e-5, 1e-6);
    backward(y, up(dy, shape));
    assertClose(await tx.grad!.read(), reference(dy, shape, pos, THETA, -1, tab), 'dx', 1e-5, 1e-6);
  });
}

s('the float32 table is within float32 angle round-off of float64 cos/sin', () => {
  for (const hd of [16, 64, 128]) {
    const n = 2048, tab = ropeTable(hd, THETA, n);
    for (let t = 0; t < n; t += 7) {
      for (let i = 0; i < hd / 2; i++) {
        const ang = t * THETA ** ((-2 * i) / hd);
        // inv_freq and the product are each rounded to float32: |Δangle| ≤ ~2·2^-24·angle.
        const tol = 3 * 2 ** -24 * ang + 1e-7;
        const dc = Math.abs(tab[t * hd + i] - Math.cos(ang)), ds = Math.abs(tab[t * hd + hd / 2 + i] - Math.sin(ang));
        if (dc > tol || ds > tol) assert.unreachable(`hd ${hd} t ${t} i ${i}: cos off by ${dc}, sin by ${ds}, tol ${tol}`);
      }
    }
  }
});

s('the GPU matches float64 angles within float32 angle round-off', async () => {
  const shape = [1, 40, 2, 64], pos = 1000, n = numel(shape);
  const x = randn(n, 51, 1);
  const got = await rope(up(x, shape), pos, THETA).read();
  assertClose(got, reference(x, shape, pos, THETA), 'y', 1e-4, 3 * 2 ** -24 * (pos + 40) * 2);
});

s('the table grows on demand: a later, larger offset still rotates correctly', async () => {
  const shape = [1, 3, 1, 16], n = numel(shape), x = randn(n, 61);
  for (const pos of [0, 600, 5000]) {
    const got = await rope(up(x, shape), pos, THETA).read();
    assertClose(got, reference(x, shape, pos, THETA, 1, ropeTable(16, THETA, pos + 3)), `y at ${pos}`, 1e-5, 1e-6);
  }
});

s('the float64 reference backward matches finite differences', () => {
  const shape = [2, 3, 2, 6], n = numel(shape);
  const x = randn(n, 71), dy = randn(n, 72);
  const g = numericGrad((v) => dot(dy, reference(v, shape, 4, THETA)), x);
  assertClose(reference(dy, shape, 4, THETA, -1), g, 'dx', 1e-6, 1e-8);
});

s('no write past the output (sentinel guard regions)', async () => {
  // Inputs get no guard (created before sentinel mode): a guard's NaN payload survives arithmetic, so an
  // overrun computed from guarded inputs could write the sentinel itself back and go unnoticed.
  for (const shape of [[1, 33, 3, 16], [2, 5, 1, 10]]) {
    const x = up(randn(numel(shape), 81), shape);
    await withGuards(async () => {
      const y = rope(x, 2, THETA);
      assert.equal(await y.overwrittenGuard(), [], `y [${shape}]`);
    });
  }
});

const FIX = join(import.meta.dirname, 'fixtures', 'ref');

s('matches the PyTorch golden fixture (kernel_rope): table, forward and backward at two offsets', async () => {
  const file = join(FIX, 'kernel_rope.safetensors');
  assert.ok(existsSync(file), `${file} missing: run /usr/bin/python3 test/fixtures/ref/make_fixtures.py`);
  const f = readFixture(file);
  const meta = JSON.parse(readFileSync(join(FIX, 'kernel_rope.json'), 'utf8')) as { theta: number; head_dim: number; offsets: number[] };
  const hd = meta.head_dim, end = f.cos.shape[0];
  const tab = ropeTable(hd, meta.theta, end);
  for (let t = 0; t < end; t++) {
    for (let i = 0; i < hd / 2; i++) {
      assertClose([tab[t * hd + i], tab[t * hd + hd / 2 + i]], [f.cos.data[t * hd + i], f.sin.data[t * hd + i]], `table t=${t} i=${i}`, 2e-7, 1e-7);
    }
  }
  for (const pos of meta.offsets) {
    const tx = up(f.x.data, f.x.shape, true);
    const y = rope(tx, pos, meta.theta);
    assertClose(await y.read(), f[`out_pos${pos}`].data, `out at ${pos}`, 1e-6, 1e-6);
    backward(y, up(f.dy.data, f.dy.shape));
    assertClose(await tx.grad!.read(), f[`dx_pos${pos}`].data, `dx at ${pos}`, 1e-6, 1e-6);
  }
});

// YaRN (--inference_rope_scaling): the scaled table as torch computes it in float32 (make_yarn.py), at positions
// inside and past the original 2048-position context; the unscaled twin pins that the script's formula is ours.
// Tolerance as for the plain table: torch's float32 cos/sin vs the float64 ones rounded, an ulp apart at most.
s('YaRN tables match PyTorch (yarn.json), and rope rotates by them', async () => {
  const fx = JSON.parse(readFileSync(join(FIX, 'yarn.json'), 'utf8'));
  const yarn = yarnOf({ ...minimind2(), inference_rope_scaling: true, max_position_embeddings: fx.max_position_embeddings })!;
  for (const hd of [64, 16]) {
    for (const [name, y] of [['yarn', yarn], ['plain', null]] as const) {
      const want = fx.tables[`${name}_${hd}`], n = Math.max(...fx.positions) + 1, tab = ropeTable(hd, fx.theta, n, y);
      (fx.positions as number[]).forEach((p, r) => {
        const got = Array.from({ length: hd }, (_, i) => tab[p * hd + i]);
        assertClose(got, [...want.cos[r], ...want.sin[r]], `${name} hd ${hd} position ${p}`, 2e-7, 1e-7);
      });
    }
  }
  const shape = [1, 3, 2, 16], x = randn(96, 5), pos = 5000;
  const got = await rope(up(x, shape), pos, THETA, yarn).read();
  assertClose(got, reference(x, shape, pos, THETA, 1, ropeTable(16, THETA, pos + 3, yarn)), 'y at 5000', 1e-5, 1e-6);
  assert.not.equal(Array.from(got), Array.from(await rope(up(x, shape), pos, THETA).read()), 'YaRN changes the rotation');
});

s.run();
