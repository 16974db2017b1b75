import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { qkvRope } from '../kernels/qkv_rope.js';
import { ropeTable, reference as ropeRef } from '../kernels/rope.js';
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

s('a wrong width or position is an error naming the expected shape', () => {
  assert.throws(() => qkvRope(Tensor.zeros([1, 2, 40]), { nh: 2, nkv: 1, hd: 8, posOffset: 0, theta: THETA, rope: true }), /\[·, ·, 32\]/);
  assert.throws(() => qkvRope(Tensor.zeros([1, 2, 32]), { nh: 2, nkv: 1, hd: 8, posOffset: -1, theta: THETA, rope: true }), /posOffset/);
});

s.run();
