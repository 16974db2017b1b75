// Memory-bound rows, each pass timed on its own: the forward kernel, then the backward kernel called
// through its backward rule with the forward's saved inputs (no tape walk, no forward in the time).
// Bytes per call are what that pass moves, from each module's bench metadata:
//   rmsnorm   forward 4·(2·rows·H + H + rows)       backward 4·(5·rows·H + 4·rows + 4·H + 2·chunks·H) (two passes)
//   add_rmsnorm forward 4·(4·rows·H + H + rows)     backward rmsnorm's + 4·rows·H (ds)
//   rope      forward = backward 8·size              (x in, y out; the cos/sin table stays in cache)
//   qkv_rope  forward = backward 8·size of qkv       (qkv in, q/k/v out, or back)
//   swiglu    forward 12·n (g, u in; y out)          backward 20·n (g, u, dy in; dg, du out); swiglu_packed alike
//   embedding forward 4·(2·N·H + N)                  backward 4·(N·H + 2·distinct·H + 2·N)
//   cross_entropy forward 4·rows·V + 12·rows (loss only) or 8·rows·V + 12·rows (+dlogits in place);
//             backward 8·rows·V (dlogits scaled in place; at upstream 1 it is skipped: no row)
// Target: ≥ 50% of the copy roofline (issue 6).
import { Tensor, TapeNode, gradSlot } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import { noTargets } from '../runtime/autograd.js';
import * as rp from '../kernels/rope.js';
import * as qkvr from '../kernels/qkv_rope.js';
import * as sw from '../kernels/swiglu.js';
import * as emb from '../kernels/embedding.js';
import * as ce from '../kernels/cross_entropy.js';
import { B, T, N, H, I, V, NH, NKV, HD, Case, host, rand, f64, compare, verify, scoped } from '../kernels/case.js';

/** Runs the forward `op` once with gradients recorded and returns its tape node (saved inputs). */
function nodeOf(op: () => Tensor): TapeNode {
  const y = op();
  if (!y.node) throw new Error('bench: the forward recorded no tape node');
  return y.node;
}

function ropeCases(): Case[] {
  const shape = [B, T, NH, HD], n = T * NH * HD; // checked on the first sequence
  return [{
    name: 'rope_forward', shape: shape.join('x'), work: rp.bench.rope(N * NH * HD),
    setup: async () => {
      const xh = host(shape, 11), x = Tensor.fromArray(xh, shape);
      await verify('rope_forward', () => rp.rope(x, 0, 1e6), rp.reference(f64(xh, n), [1, T, NH, HD], 0, 1e6));
      return scoped(() => rp.rope(x, 0, 1e6));
    },
  }, {
    name: 'rope_backward', shape: shape.join('x'), work: rp.bench.rope(N * NH * HD),
    setup: async () => {
      const dyh = host(shape, 12), dy = Tensor.fromArray(dyh, shape);
      const node = nodeOf(() => rp.rope(rand(shape, 11, 1, true), 0, 1e6));
      await verify('rope_backward', () => rp.backward.rope(node, [dy], noTargets)[0]!, rp.reference(f64(dyh, n), [1, T, NH, HD], 0, 1e6, -1));
      return scoped(() => rp.backward.rope(node, [dy], noTargets));
    },
  }];
}

function qkvRopeCases(): Case[] {
  const W = (NH + 2 * NKV) * HD, o = { nh: NH, nkv: NKV, hd: HD, posOffset: 0, theta: 1e6, rope: true };
  /** The q, k, v parts of the first sequence of a packed [T, W] array, as [1, T, heads, HD] float64. */
  const part = (a: Float32Array, from: number, heads: number) =>
    Float64Array.from({ length: T * heads * HD }, (_, i) => a[Math.floor(i / (heads * HD)) * W + from + (i % (heads * HD))]);
  const ref = (a: Float32Array, sgn: 1 | -1) => [
    rp.reference(part(a, 0, NH), [1, T, NH, HD], 0, 1e6, sgn), rp.reference(part(a, NH * HD, NKV), [1, T, NKV, HD], 0, 1e6, sgn),
    part(a, (NH + NKV) * HD, NKV)];
  return [{
    name: 'qkv_rope_forward', shape: `${B}x${T}x${W}`, work: qkvr.bench.qkv_rope(N * W),
    setup: async () => {
      const h = host([B, T, W], 25), qkv = Tensor.fromArray(h, [B, T, W]);
      const want = ref(h, 1);
      for (const j of [0, 1, 2]) await verify(`qkv_rope_forward ${'qkv'[j]}`, () => qkvr.qkvRope(qkv, o)[j], want[j]);
      return scoped(() => qkvr.qkvRope(qkv, o));
    },
  }, {
    name: 'qkv_rope_backward', shape: `${B}x${T}x${W}`, work: qkvr.bench.qkv_rope(N * W),
    setup: async () => {
      const node = qkvr.qkvRope(rand([B, T, W], 25, 1, true), o)[0].node!;
      const [dq, dk, dv] = [host([B, T, NH, HD], 26), host([B, T, NKV, HD], 27), host([B, T, NKV, HD], 28)];
      const g = [Tensor.fromArray(dq, [B, T, NH, HD]), Tensor.fromArray(dk, [B, T, NKV, HD]), Tensor.fromArray(dv, [B, T, NKV, HD])];
      // dqkv of the first sequence, packed: rotated-back dq | dk, then dv, per token.
      const [rq, rk] = [rp.reference(f64(dq, T * NH * HD), [1, T, NH, HD], 0, 1e6, -1), rp.reference(f64(dk, T * NKV * HD), [1, T, NKV, HD], 0, 1e6, -1)];
      const want = Float64Array.from({ length: T * W }, (_, i) => {
        const t = Math.floor(i / W), c = i % W;
        return c < NH * HD ? rq[t * NH * HD + c] : c < (NH + NKV) * HD ? rk[t * NKV * HD + c - NH * HD] : dv[t * NKV * HD + c - (NH + NKV) * HD];
      });
      await verify('qkv_rope_backward', () => qkvr.backward.qkv_rope(node, g, noTargets)[0]!, want);
      return scoped(() => qkvr.backward.qkv_rope(node, g, noTargets));
    },
  }];
}

function swigluCases(): Case[] {
  const n = N * I, k = 4096; // checked on the first k elements
  const data = () => [host([N, I], 13), host([N, I], 14), host([N, I], 15)];
  return [{
    name: 'swiglu_forward', shape: `${N}x${I}`, work: sw.bench.swiglu_forward(n),
    setup: async () => {
      const [gh, uh] = data();
      const g = Tensor.fromArray(gh, [N, I]), u = Tensor.fromArray(uh, [N, I]);
      await verify('swiglu_forward', () => sw.swiglu(g, u), sw.reference.forward(f64(gh, k), f64(uh, k)));
      return scoped(() => sw.swiglu(g, u));
    },
  }, {
    name: 'swiglu_backward', shape: `${N}x${I}`, work: sw.bench.swiglu_backward(n),
    setup: async () => {
      const [gh, uh, dyh] = data();
      const g = Tensor.fromArray(gh, [N, I], 'f32', true), u = Tensor.fromArray(uh, [N, I], 'f32', true), dy = Tensor.fromArray(dyh, [N, I]);
      const node = nodeOf(() => sw.swiglu(g, u));
      const want = sw.reference.backward(f64(gh, k), f64(uh, k), f64(dyh, k));
      await verify('swiglu_backward dg', () => sw.backward.swiglu(node, [dy], noTargets)[0]!, want.dg);
      await verify('swiglu_backward du', () => sw.backward.swiglu(node, [dy], noTargets)[1]!, want.du);
      return scoped(() => sw.backward.swiglu(node, [dy], noTargets));
    },
  }, ...swigluPackedCases()];
}

/** g and u side by side in one gu [N, 2·I] (the fused gate/up projection's output). */
function swigluPackedCases(): Case[] {
  const n = N * I, rows = 2; // checked on the first rows
  const half = (gu: Float32Array, second: boolean) => Float64Array.from({ length: rows * I }, (_, i) => gu[Math.floor(i / I) * 2 * I + (second ? I : 0) + (i % I)]);
  return [{
    name: 'swiglu_packed_forward', shape: `${N}x2·${I}`, work: sw.bench.swiglu_forward(n),
    setup: async () => {
      const h = host([N, 2 * I], 29), gu = Tensor.fromArray(h, [N, 2 * I]);
      await verify('swiglu_packed_forward', () => sw.swigluPacked(gu), sw.reference.forward(half(h, false), half(h, true)));
      return scoped(() => sw.swigluPacked(gu));
    },
  }, {
    name: 'swiglu_packed_backward', shape: `${N}x2·${I}`, work: sw.bench.swiglu_backward(n),
    setup: async () => {
      const h = host([N, 2 * I], 29), dyh = host([N, I], 30), dy = Tensor.fromArray(dyh, [N, I]);
      const node = sw.swigluPacked(Tensor.fromArray(h, [N, 2 * I], 'f32', true)).node!;
      const { dg, du } = sw.reference.backward(half(h, false), half(h, true), f64(dyh, rows * I));
      const want = Float64Array.from({ length: rows * 2 * I }, (_, i) => {
        const r = Math.floor(i / (2 * I)), c = i % (2 * I);
        return c < I ? dg[r * I + c] : du[r * I + c - I];
      });
      await verify('swiglu_packed_backward', () => sw.backward.swiglu_packed(node, [dy], noTargets)[0]!, want);
      return scoped(() => sw.backward.swiglu_packed(node, [dy], noTargets));
    },
  }];
}

function embeddingCases(): Case[] {
  const r = mulberry32(16);
  const ids = Int32Array.from({ length: N }, () => Math.floor(r() * V));
  const distinct = new Set(ids).size;
  const backwardCase = (hostIds: boolean): Case => ({
    name: 'embedding_backward', shape: `${N} ids, ${V}x${H}, ${hostIds ? 'host-sorted' : 'GPU scan'}`,
    work: emb.bench.embedding_backward(N, H, distinct),
    note: `${distinct} distinct ids${hostIds ? '' : '; the fallback when the ids are not on the host'}`,
    setup: async (held) => {
      const dyh = host([B, T, H], 18);
      const table = rand([V, H], 17, 1, true), dy = Tensor.fromArray(dyh, [B, T, H]);
      const node = nodeOf(() => emb.embedding(Tensor.fromArray(ids, [B, T], 'i32'), table, hostIds ? ids : undefined));
      const call = scoped(() => emb.backward.embedding(node, [dy], noTargets));
      call(); // the table is a leaf: its gradient (zero until now) accumulates in place
      held.push(table.grad!);
      compare('embedding_backward', await table.grad!.readF32(), emb.reference.backward(ids, f64(dyh), V, H));
      return call;
    },
  });
  return [{
    name: 'embedding_forward', shape: `${N} ids, ${V}x${H}`, work: emb.bench.embedding_forward(N, H),
    setup: async () => {
      const th = host([V, H], 17);
      const idt = Tensor.fromArray(ids, [B, T], 'i32'), table = Tensor.fromArray(th, [V, H]);
      await verify('embedding_forward', () => emb.embedding(idt, table), emb.reference.forward(ids.subarray(0, 64), f64(th), H));
      return scoped(() => emb.embedding(idt, table));
    },
  }, backwardCase(true), backwardCase(false)];
}

function crossEntropyCases(): Case[] {
  // Every position has a label (only t = T−1, which has no next token, is skipped), so the formulas hold.
  const r = mulberry32(19);
  const labels = Int32Array.from({ length: N }, () => Math.floor(r() * V));
  const inputs = (batch: number, grad: boolean) => ({
    logits: rand([batch, T, V], 20, 1, grad), lab: Tensor.fromArray(labels.subarray(0, batch * T), [batch, T], 'i32'),
  });
  // Checked on the first two sequences, as a batch of their own.
  const ref = () => ce.reference(f64(host([2, T, V], 20)), labels, 2, T, V);
  const shape = (what: string) => `${B}x${T}x${V} ${what}`;
  return [{
    name: 'cross_entropy_forward', shape: shape('loss only'), work: ce.bench.cross_entropy(N, V, false),
    setup: async () => {
      const s = inputs(2, false);
      await verify('cross_entropy_forward', () => ce.crossEntropy(s.logits, s.lab).loss, [ref().loss]);
      const { logits, lab } = inputs(B, false);
      return scoped(() => ce.crossEntropy(logits, lab));
    },
  }, {
    name: 'cross_entropy_forward', shape: shape('loss+dlogits'), work: ce.bench.cross_entropy(N, V, true),
    note: 'writes dlogits over the logits: later calls run on the previous dlogits (same work)',
    setup: async () => {
      const s = inputs(2, true);
      ce.crossEntropy(s.logits, s.lab);
      compare('cross_entropy_forward dlogits', await s.logits.readF32(), ref().dlogits);
      const { logits, lab } = inputs(B, true);
      return scoped(() => ce.crossEntropy(logits, lab));
    },
  }, {
    name: 'cross_entropy_backward', shape: shape('upstream 0.5/2'), work: { bytes: 8 * N * V },
    note: 'dlogits scaled in place (gradient accumulation), by 0.5 and 2 in turn (no denormals); at upstream 1 the pass is skipped',
    setup: async () => {
      const [half, two] = [Tensor.fromArray([0.5], [1]), Tensor.fromArray([2], [1])];
      const s = inputs(2, true);
      ce.backward.cross_entropy(nodeOf(() => ce.crossEntropy(s.logits, s.lab).loss), [half, null], noTargets);
      compare('cross_entropy_backward', await s.logits.readF32(), ref().dlogits.map((d) => d / 2));
      const { logits, lab } = inputs(B, true);
      const node = nodeOf(() => ce.crossEntropy(logits, lab).loss);
      let k = 0;
      return scoped(() => ce.backward.cross_entropy(node, [k++ % 2 ? two : half, null], noTargets));
    },
  }];
}

export const memoryBoundCases = (): Case[] => [...ropeCases(), ...qkvRopeCases(), ...swigluCases(),
  ...embeddingCases(), ...crossEntropyCases()];
