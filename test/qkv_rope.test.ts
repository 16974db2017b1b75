import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, TapeNode, beginScope, endScope, guardScope, type DType16 } from '../runtime/tensor.js';
import { backward, noTargets } from '../runtime/autograd.js';
import { qkvRope, backward as rules } from '../kernels/qkv_rope.js';
import { ropeTable, reference as ropeRef } from '../kernels/rope.js';
import { reference as castRef } from '../kernels/cast.js';
import { ULP16 } from '../kernels/matmul16_variants.js';
import { add, mul, sum } from '../kernels/index.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('qkv_rope');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const THETA = 1e6;
const up = (x: ArrayLike<number>, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);

/** float64: split qkv [B,T,(nh+2nkv)·hd] into q, k, v (per-token row blocks), rotating q and k when rope. */
function split(x: Float64Array, B: number, T: number, nh: number, nkv: number, hd: number): Float64Array[] {
  const nH = nh + 2 * nkv, parts = [nh, nkv, nkv].map((n) => new Float64Array(B * T * n * hd));
  for (let tok = 0; tok < B * T; tok++) {
    let h = 0;
    [nh, nkv, nkv].forEach((n, pi) => {
      for (let j = 0; j < n; j++, h++) parts[pi].set(x.subarray((tok * nH + h) * hd, (tok * nH + h + 1) * hd), (tok * n + j) * hd);
    });
  }
  return parts;
}

/** The inverse of split: q, k, v back into one packed [B,T,(nh+2nkv)·hd]. */
function join3(parts: Float64Array[], B: number, T: number, nh: number, nkv: number, hd: number): Float64Array {
  const nH = nh + 2 * nkv, out = new Float64Array(B * T * nH * hd);
  for (let tok = 0; tok < B * T; tok++) {
    let h = 0;
    [nh, nkv, nkv].forEach((n, pi) => {
      for (let j = 0; j < n; j++, h++) out.set(parts[pi].subarray((tok * n + j) * hd, (tok * n + j + 1) * hd), (tok * nH + h) * hd);
    });
  }
  return out;
}

// [B, T, nh, nkv, hd, posOffset]: hd 16 and 64 take the vec4 path, 6 and 2 the scalar one; rows are
// no multiple of the 64-invocation workgroup.
const CASES = [[1, 1, 1, 1, 2, 0], [2, 33, 4, 2, 16, 0], [1, 65, 3, 1, 6, 5], [2, 17, 8, 2, 64, 300]];

for (const [B, T, nh, nkv, hd, pos] of CASES) {
  for (const rope of [true, false]) {
    s(`${rope ? 'split + rotate' : 'split only'}: forward and backward match float64 at B${B} T${T} nh${nh} nkv${nkv} hd${hd} pos ${pos}`, async () => {
      guardScope();
      const W = (nh + 2 * nkv) * hd, n = B * T * W;
      const x = randn(n, n + hd), tab = ropeTable(hd, THETA, pos + T);
      const tx = up(x, [B, T, W], true);
      const outs = qkvRope(tx, { nh, nkv, hd, posOffset: pos, theta: THETA, rope });
      const [q, k, v] = split(x, B, T, nh, nkv, hd);
      const rot = (a: Float64Array, heads: number, sgn: 1 | -1) => (rope ? ropeRef(a, [B, T, heads, hd], pos, THETA, sgn, tab) : a);
      const want = [rot(q, nh, 1), rot(k, nkv, 1), v];
      for (const [i, name] of ['q', 'k', 'v'].entries()) {
        assertClose(await outs[i].read(), want[i], name, 1e-5, 1e-6);
        assert.equal(await outs[i].overwrittenGuard(), [], `${name} guard`);
      }
      // Backward from random upstream gradients for all three: loss = Σ q·gq + Σ k·gk + Σ v·gv.
      const gs = outs.map((o, i) => randn(o.size, 7 + i));
      const dot = (i: number) => sum(mul(outs[i], up(gs[i], [...outs[i].shape])));
      backward(add(add(dot(0), dot(1)), dot(2)));
      const dx = join3([rot(gs[0], nh, -1), rot(gs[1], nkv, -1), gs[2]], B, T, nh, nkv, hd);
      assertClose(await tx.grad!.read(), dx, 'dqkv', 1e-5, 1e-6);
    });
  }
}

// 16-bit storage, [B, T, nh, nkv, hd, posOffset]: hd 16 takes the vec4 path (4 elements = 2 words per
// half-head vector), 4 and 12 the 2-element one (one word); bfloat16 on all three, float16 (other pack
// functions only) on one of each path: every shape × dtype is two more pipelines to compile.
const CASES16: [DType16, number[]][] = [
  ['bf16', [1, 1, 1, 1, 4, 0]], ['bf16', [2, 33, 4, 2, 16, 0]], ['bf16', [1, 65, 3, 1, 12, 5]],
  ['f16', [2, 33, 4, 2, 16, 0]], ['f16', [1, 65, 3, 1, 12, 5]],
];
for (const [d, [B, T, nh, nkv, hd, pos]] of CASES16) {
  s(`${d}: q, k roped in float32 and rounded once, v copied; dqkv rounded once, at B${B} T${T} nh${nh} nkv${nkv} hd${hd} pos ${pos}`, async () => {
    guardScope();
    const W = (nh + 2 * nkv) * hd, n = B * T * W, tab = ropeTable(hd, THETA, pos + T);
    const round = (x: ArrayLike<number>) => castRef(Float32Array.from(x), d);
    const tx = Tensor.fromArray(randn(n, n + hd), [B, T, W], d, true);
    const x = Float64Array.from(await tx.read()); // the 16-bit values the kernel reads
    // Rotated values: the float64 result rounded to 16 bits, within 1 ulp of the 16-bit type (the GPU's
    // float32 result rounds the other way near a tie), 1e-6 absolute where x0·c − x1·s cancels to near 0;
    // copies (v, and q, k without rope) are exact.
    for (const rope of [true, false]) {
      const outs = qkvRope(tx, { nh, nkv, hd, posOffset: pos, theta: THETA, rope });
      const [q, k, v] = split(x, B, T, nh, nkv, hd);
      const rot = (a: Float64Array, heads: number, sgn: 1 | -1) => (rope ? round(ropeRef(a, [B, T, heads, hd], pos, THETA, sgn, tab)) : a);
      const want = [rot(q, nh, 1), rot(k, nkv, 1), v];
      for (const [i, name] of ['q', 'k', 'v'].entries()) {
        assert.is(outs[i].dtype, d, `${name} dtype`);
        if (rope && i < 2) assertClose(await outs[i].read(), want[i], `${name} rope`, ULP16[d], 1e-6);
        else assertClose(await outs[i].read(), want[i], `${name} ${rope ? '' : 'no rope'}`, 0, 0);
        assert.equal(await outs[i].overwrittenGuard(), [], `${name} guard`);
      }
      // Upstream gradients as the rule may get them: dq float32 (rounded to 16 bits first, as SDPA's bf16
      // dq), dk 16-bit, dv missing (zeros) without rope; dqkv is the float32 rope-backward rounded once.
      const gq = randn(outs[0].size, 7), gk = round(randn(outs[1].size, 8)), gv = round(randn(outs[2].size, 9));
      const [dqkv] = rules.qkv_rope(outs[0].node as TapeNode, [Tensor.fromArray(gq, [...outs[0].shape]),
        Tensor.fromArray(gk, [...outs[1].shape], d), rope ? Tensor.fromArray(gv, [...outs[2].shape], d) : null], noTargets) as Tensor[];
      assert.is(dqkv.dtype, d, 'dqkv dtype');
      const dx = join3([rot(round(gq), nh, -1), rot(gk, nkv, -1), rope ? gv : new Float64Array(gv.length)], B, T, nh, nkv, hd);
      assertClose(await dqkv.read(), dx, `dqkv ${rope ? 'rope' : 'no rope'}`, rope ? ULP16[d] : 0, rope ? 1e-6 : 0);
      assert.equal(await dqkv.overwrittenGuard(), [], 'dqkv guard');
    }
  });
}

s('a wrong width or position is an error naming the expected shape', () => {
  assert.throws(() => qkvRope(Tensor.zeros([1, 2, 40]), { nh: 2, nkv: 1, hd: 8, posOffset: 0, theta: THETA, rope: true }), /\[·, ·, 32\]/);
  assert.throws(() => qkvRope(Tensor.zeros([1, 2, 32]), { nh: 2, nkv: 1, hd: 8, posOffset: -1, theta: THETA, rope: true }), /posOffset/);
  assert.throws(() => qkvRope(Tensor.zeros([1, 2, 24], 'bf16'), { nh: 2, nkv: 1, hd: 6, posOffset: 0, theta: THETA, rope: true }), /multiple of 4/);
});

s.run();
