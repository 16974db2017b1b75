import { suite } from 'uvu';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { Tensor, TapeNode, beginScope, endScope, guardScope, type DType16 } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { poolStats, resetPeak } from '../runtime/buffer.js';
import { attention, attentionDecode, writeKV, reference, backward as rules, type AttentionOptions, type FlashTile } from '../kernels/attention.js';
import { noTargets } from '../runtime/autograd.js';
import { readSafetensors } from '../model/safetensors.js';
import { reference as castRef } from '../kernels/cast.js';
import { ULP16 } from '../kernels/matmul16_variants.js';
import { setupGpu, randn, assertClose, numericGrad, dot } from './util.js';

const s = suite('attention');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

type Shape = [B: number, T: number, nh: number, nkv: number, hd: number];

// Float32 against the float64 reference, as the worst |got − want| / (|want| + rms(want)) measured on lavapipe
// over every case below: flash out 5.1e-7, lse 1.0e-7, dq 8.5e-7, dk 2.2e-6, dv 9.3e-7; naive out 6.5e-7,
// lse 1.0e-7, dq 2.7e-6, dk 2.6e-6, dv 1.8e-6; decode 2.0e-7. Each tolerance is 4–5× the worst of its kind
// (they were 2e-4 and 1e-3 relative, hundreds of times that).
const TOL = { out: 3e-6, lse: 5e-7, grad: 1e-5, decode: 1e-6 };
// PyTorch's float32 answers in the golden fixture against the float64 reference: out 4.2e-7, dq 5.7e-7,
// dk 5.8e-7, dv 7.3e-7.
const TORCH = 2e-6;

/** |got − want| ≤ tol·(|want| + scale) elementwise with scale = rms(want): float32 error follows the size of
 *  the sums, not of each entry, so entries near zero are held to the output's scale. An all-zero reference
 *  (dq, dk at T = 1: with one key softmax has no slope) gets scale 1, the order of the inputs. */
function closeToScale(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol: number): void {
  const scale = Math.sqrt(dot(want, want) / want.length) || 1;
  assertClose(got, want, what, tol, tol * scale);
}
const up = (x: Float64Array, shape: number[], grad = false) => Tensor.fromArray(x, shape, 'f32', grad);

/** Random q, k, v, upstream gradient for a shape, and the float64 answers. */
function problem([B, T, nh, nkv, hd]: Shape, seed: number) {
  const q = randn(B * T * nh * hd, seed), k = randn(B * T * nkv * hd, seed + 1), v = randn(B * T * nkv * hd, seed + 2);
  const gy = randn(B * T * nh * hd, seed + 3);
  return { q, k, v, gy, fwd: reference.forward(q, k, v, B, T, nh, nkv, hd), bwd: reference.backward(q, k, v, gy, B, T, nh, nkv, hd) };
}

/** Forward (out, lse) and the backward rule's dq, dk, dv against float64, with guard regions checked. */
async function checkAgainstReference(shape: Shape, o: AttentionOptions, seed: number): Promise<void> {
  const [B, T, nh, nkv, hd] = shape;
  const pr = problem(shape, seed);
  guardScope();
  const q = up(pr.q, [B, T, nh, hd], true), k = up(pr.k, [B, T, nkv, hd], true), v = up(pr.v, [B, T, nkv, hd], true);
  const out = attention(q, k, v, o);
  const lse = (out.node!.saved as { lse: Tensor }).lse;
  const grads = rules.attention(out.node as TapeNode, [up(pr.gy, [B, T, nh, hd])], noTargets) as Tensor[];
  const what = `${o.impl ?? 'flash'} ${o.tile ? JSON.stringify(o.tile) : ''} [${shape}]`;
  closeToScale(await out.read(), pr.fwd.out, `${what} out`, TOL.out);
  closeToScale(await lse.read(), pr.fwd.lse, `${what} lse`, TOL.lse);
  closeToScale(await grads[0].read(), pr.bwd.dq, `${what} dq`, TOL.grad);
  closeToScale(await grads[1].read(), pr.bwd.dk, `${what} dk`, TOL.grad);
  closeToScale(await grads[2].read(), pr.bwd.dv, `${what} dv`, TOL.grad);
  for (const [name, t] of [['out', out], ['lse', lse], ['dq', grads[0]], ['dk', grads[1]], ['dv', grads[2]]] as const) {
    assert.equal(await t.overwrittenGuard(), [], `${what}: ${name} written past its end`);
  }
}

// T = 1, 33, 65, 130 are not multiples of the 8-row workgroups nor of the key blocks;
// nh/nkv = 2, 1 (plain MHA) and 4 (nkv = 1); head dims 16..128. hd 128 runs the loop body: its
// subgroup body takes ~30 s to compile on lavapipe (the same generator as hd 16..64).
const LOOP = { sg: false, wg: 8, bc: 4 };
const SHAPES: [Shape, FlashTile?][] = [
  [[1, 1, 4, 2, 16]], [[2, 33, 4, 2, 16]], [[1, 65, 4, 4, 16]], [[2, 65, 4, 1, 16]], [[1, 130, 4, 2, 16]],
  [[1, 33, 2, 1, 32]], [[1, 20, 2, 2, 64]], [[1, 9, 2, 1, 128], LOOP],
];
// Every tiling is also forced on small shapes by test/variants.test.ts.
for (const impl of ['flash', 'naive'] as const) {
  SHAPES.forEach(([shape, tile], i) => {
    s(`${impl} forward and backward match float64 at [B,T,nh,nkv,hd] = [${shape}], no out-of-bounds writes`, async () => {
      await checkAgainstReference(shape, { impl, tile: impl === 'flash' ? tile : undefined }, 100 + 10 * i);
    });
  });
}

// 16-bit q, k, v (mixed precision) against the float64 reference fed the same 16-bit values. o, dq, dk, dv
// are 16-bit: the reference rounded as stored (to float32, then once to 16 bits), within one ulp of the
// 16-bit type (the GPU's float32 sum near a rounding tie may take the other neighbour), plus the float32
// tolerance above on the output's scale (entries near zero, where float32 round-off exceeds an ulp). The
// reference's D = rowsum(dO∘O) reads the stored 16-bit o, as the kernels do. lse is float32: TOL.lse.
// bfloat16 on T 1, 33, 65, MHA and GQA, hd 16 and 32 at the tuned tiling; float16 (other pack functions
// only) on two shapes and the loop body: each dtype × hd × tiling is three pipelines to compile.
const SHAPES16: [DType16, Shape, FlashTile?][] = [
  ['bf16', [1, 1, 4, 2, 16]], ['bf16', [2, 33, 4, 2, 16]], ['bf16', [1, 65, 4, 4, 16]], ['bf16', [1, 33, 2, 1, 32]],
  ['f16', [2, 33, 4, 2, 16]], ['f16', [1, 65, 2, 2, 32]], ['f16', [2, 33, 4, 2, 16], LOOP],
];
SHAPES16.forEach(([d, shape, tile], i) => {
  const [B, T, nh, nkv, hd] = shape;
  // The upstream gradient as the rule may get it: float32 (rounded to 16 bits first) or 16-bit.
  const gyDtype = i % 2 ? d : 'f32';
  s(`${d} flash at [${shape}]${tile ? ' (loop tiling)' : ''}: o and dq, dk, dv rounded once from float32 sums, lse float32, backward reads the 16-bit tensors (dO ${gyDtype})`, async () => {
    guardScope();
    const round = (x: ArrayLike<number>) => castRef(Float32Array.from(x), d);
    const close16 = (got: ArrayLike<number>, want: Float64Array, what: string, tol: number) =>
      assertClose(got, round(want), what, ULP16[d], tol * (Math.sqrt(dot(want, want) / want.length) || 1));
    const seed = 300 + 10 * i;
    const q = Tensor.fromArray(randn(B * T * nh * hd, seed), [B, T, nh, hd], d, true);
    const k = Tensor.fromArray(randn(B * T * nkv * hd, seed + 1), [B, T, nkv, hd], d, true);
    const v = Tensor.fromArray(randn(B * T * nkv * hd, seed + 2), [B, T, nkv, hd], d, true);
    const gy = Tensor.fromArray(randn(B * T * nh * hd, seed + 3), [B, T, nh, hd], gyDtype);
    const [qh, kh, vh, gh] = await Promise.all([q, k, v, gy].map(async (t) => Float64Array.from(await t.read())));
    const out = attention(q, k, v, { tile });
    const node = out.node as TapeNode, lse = (node.saved as { lse: Tensor }).lse;
    assert.is(out.dtype, d, 'o dtype');
    assert.equal(node.reads.map((t) => (t === lse ? 'lse' : t.dtype)).sort(), [d, d, d, d, 'lse'].sort(), 'backward reads q, k, v, o in 16 bits and lse');
    const fwd = reference.forward(qh, kh, vh, B, T, nh, nkv, hd);
    close16(await out.read(), fwd.out, 'out', TOL.out);
    closeToScale(await lse.read(), fwd.lse, 'lse', TOL.lse);
    const grads = rules.attention(node, [gy], noTargets) as Tensor[];
    const want = reference.backward(qh, kh, vh, round(gh), B, T, nh, nkv, hd, Float64Array.from(await out.read()));
    for (const [j, name] of ['dq', 'dk', 'dv'].entries()) {
      assert.is(grads[j].dtype, d, `${name} dtype`);
      close16(await grads[j].read(), [want.dq, want.dk, want.dv][j], name, TOL.grad);
    }
    for (const [name, t] of [['out', out], ['lse', lse], ['dq', grads[0]], ['dk', grads[1]], ['dv', grads[2]]] as const) {
      assert.equal(await t.overwrittenGuard(), [], `${name} written past its end`);
    }
  });
});

s('gradients flow through the tape from reshaped projections; an input without grad gets none', async () => {
  const [B, T, nh, nkv, hd] = [2, 33, 4, 2, 16];
  const pr = problem([B, T, nh, nkv, hd], 3);
  const q = up(pr.q, [B, T, nh * hd], true), k = up(pr.k, [B, T, nkv * hd], true), v = up(pr.v, [B, T, nkv, hd]);
  const o = attention(q.reshape([B, T, nh, hd]), k.reshape([B, T, nkv, hd]), v);
  backward(o, up(pr.gy, [B, T, nh, hd]));
  closeToScale(await q.grad!.read(), pr.bwd.dq, 'dq', TOL.grad);
  closeToScale(await k.grad!.read(), pr.bwd.dk, 'dk', TOL.grad);
  assert.is(v.grad, null);
});

s('decode over a KV cache equals the last row of full causal attention', async () => {
  const [B, T, nh, nkv, hd, maxT] = [2, 21, 4, 2, 16, 32];
  const pr = problem([B, T, nh, nkv, hd], 11);
  // Cache rows beyond what is written hold junk that must not be read.
  const kc = up(randn(B * maxT * nkv * hd, 12, 50), [B, maxT, nkv, hd]), vc = up(randn(B * maxT * nkv * hd, 13, 50), [B, maxT, nkv, hd]);
  const rows = (x: Float64Array, heads: number, t0: number, t1: number) => {
    const out: number[] = [];
    for (let b = 0; b < B; b++) out.push(...x.subarray((b * T + t0) * heads * hd, (b * T + t1) * heads * hd));
    return Float64Array.from(out);
  };
  for (const [t0, t1] of [[0, 12], [12, 21]]) {
    writeKV(kc, up(rows(pr.k, nkv, t0, t1), [B, t1 - t0, nkv, hd]), t0);
    writeKV(vc, up(rows(pr.v, nkv, t0, t1), [B, t1 - t0, nkv, hd]), t0);
    // The query at position t1-1 attends to the t1 cached positions.
    const sub = reference.forward(rows(pr.q, nh, 0, t1), rows(pr.k, nkv, 0, t1), rows(pr.v, nkv, 0, t1), B, t1, nh, nkv, hd);
    const o = attentionDecode(up(rows(pr.q, nh, t1 - 1, t1), [B, 1, nh, hd]), kc, vc, t1);
    const want: number[] = [];
    for (let b = 0; b < B; b++) want.push(...sub.out.subarray((b * t1 + t1 - 1) * nh * hd, (b * t1 + t1) * nh * hd));
    closeToScale(await o.read(), want, `decode at len ${t1}`, TOL.decode);
  }
  const cached = await kc.read();
  for (let b = 0; b < B; b++) {
    assertClose(cached.subarray(b * maxT * nkv * hd, (b * maxT + T) * nkv * hd), rows(pr.k, nkv, 0, T).subarray(b * T * nkv * hd, (b + 1) * T * nkv * hd), `cache row ${b}`, 0, 0);
  }
  assert.throws(() => writeKV(kc, up(rows(pr.k, nkv, 0, 12), [B, 12, nkv, hd]), 21), /outside the cache/);
});

s('float64 reference backward matches finite differences of its forward', () => {
  const [B, T, nh, nkv, hd] = [1, 3, 2, 1, 4];
  const { q, k, v, gy, bwd } = problem([B, T, nh, nkv, hd], 21);
  const L = (qq: Float64Array, kk: Float64Array, vv: Float64Array) => dot(gy, reference.forward(qq, kk, vv, B, T, nh, nkv, hd).out);
  assertClose(bwd.dq, numericGrad((x) => L(x, k, v), q), 'dq', 1e-6, 1e-8);
  assertClose(bwd.dk, numericGrad((x) => L(q, x, v), k), 'dk', 1e-6, 1e-8);
  assertClose(bwd.dv, numericGrad((x) => L(q, k, x), v), 'dv', 1e-6, 1e-8);
});

s('flash memory is linear in T (no [nh,T,T] buffer); naive materialises it', async () => {
  const [B, T, nh, nkv, hd] = [1, 512, 4, 2, 16];
  const tt = nh * T * T * 4; // bytes of one [nh,T,T] f32 buffer: 4 MiB
  for (const impl of ['flash', 'naive'] as const) {
    const q = up(randn(B * T * nh * hd, 1), [B, T, nh, hd], true), k = up(randn(B * T * nkv * hd, 2), [B, T, nkv, hd], true);
    const v = up(randn(B * T * nkv * hd, 3), [B, T, nkv, hd], true), gy = up(randn(B * T * nh * hd, 4), [B, T, nh, hd]);
    const before = poolStats().inUseBytes;
    resetPeak();
    const o = attention(q, k, v, { impl });
    rules.attention(o.node as TapeNode, [gy], noTargets);
    const extra = poolStats().peakInUseBytes - before;
    if (impl === 'flash') assert.ok(extra < tt / 8, `flash used ${extra} bytes at T=${T}`);
    else assert.ok(extra >= tt, `naive used only ${extra} bytes at T=${T}`);
  }
});

s('flash and naive match the PyTorch golden fixture (kernel_attention: B 2, T 37, nh 4, nkv 2, hd 16)', async () => {
  const file = join(import.meta.dirname, 'fixtures', 'ref', 'kernel_attention.safetensors');
  assert.ok(existsSync(file), `${file} missing: run /usr/bin/python3 test/fixtures/ref/make_fixtures.py`);
  const f = readSafetensors(file).tensors;
  const get = (n: string) => { const t = f.get(n); if (!t) throw new Error(`${file}: no tensor '${n}'`); return t; };
  const [B, T, nh, hd] = get('q').shape, nkv = get('k').shape[2];
  const f64 = (n: string) => Float64Array.from(get(n).data);
  // Our float64 reference agrees with torch's float32 answers to float32 round-off, then both GPU versions
  // do, within their own round-off and torch's.
  const ref = reference.forward(f64('q'), f64('k'), f64('v'), B, T, nh, nkv, hd);
  const grads = reference.backward(f64('q'), f64('k'), f64('v'), f64('dout'), B, T, nh, nkv, hd);
  closeToScale(f64('out'), ref.out, 'torch out', TORCH);
  closeToScale(f64('dq'), grads.dq, 'torch dq', TORCH);
  closeToScale(f64('dk'), grads.dk, 'torch dk', TORCH);
  closeToScale(f64('dv'), grads.dv, 'torch dv', TORCH);
  for (const impl of ['flash', 'naive'] as const) {
    const q = up(f64('q'), get('q').shape, true), k = up(f64('k'), get('k').shape, true), v = up(f64('v'), get('v').shape, true);
    const o = attention(q, k, v, { impl });
    closeToScale(await o.read(), f64('out'), `${impl} out`, TOL.out + TORCH);
    backward(o, up(f64('dout'), o.shape as number[]));
    closeToScale(await q.grad!.read(), f64('dq'), `${impl} dq`, TOL.grad + TORCH);
    closeToScale(await k.grad!.read(), f64('dk'), `${impl} dk`, TOL.grad + TORCH);
    closeToScale(await v.grad!.read(), f64('dv'), `${impl} dv`, TOL.grad + TORCH);
  }
});

s('shape errors name the op and the shapes', () => {
  const q = Tensor.zeros([1, 4, 3, 16]), k = Tensor.zeros([1, 4, 2, 16]);
  assert.throws(() => attention(q, k, k), /attention: 3 query heads are not a multiple of 2/);
  assert.throws(() => attention(Tensor.zeros([1, 4, 2, 6]), Tensor.zeros([1, 4, 2, 6]), Tensor.zeros([1, 4, 2, 6])), /head_dim 6/);
  assert.throws(() => attentionDecode(Tensor.zeros([1, 1, 2, 16]), k, k, 5), /len 5 outside 1..4/);
  const [q16, k16] = [Tensor.zeros([1, 4, 2, 16], 'bf16'), Tensor.zeros([1, 4, 2, 16], 'bf16')];
  assert.throws(() => attention(q16, k16, Tensor.zeros([1, 4, 2, 16])), /bf16, bf16, f32; want one float dtype/);
  assert.throws(() => attention(q16, k16, k16, { impl: 'naive' }), /naive version is float32 only/);
  assert.throws(() => attentionDecode(Tensor.zeros([1, 1, 2, 16], 'bf16'), k16, k16, 1), /KV-cache path is float32/);
  assert.throws(() => writeKV(Tensor.zeros([1, 8, 2, 16]), k16, 0), /KV cache is float32/);
});

s.run();
