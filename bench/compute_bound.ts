// Compute-bound rows: the three GEMM products of a Linear layer at the FFN shape (y = x·Wᵀ with
// x [5440, 512], W [1408, 512]; dX = dY·W; dW += dYᵀ·X) and the LM head's forward (W [6400, 512]),
// naive vs tiled; causal attention forward and forward+backward, flash vs naive (materialised T×T),
// at T 340 (training) and 1024. FLOPs: 2·M·N·K per product; attention from its module's metadata.
// Attention rows note the pool bytes a call adds at peak (linear in T for flash, quadratic for naive).
import { Tensor, gradSlot } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { matmul, setMatmulImpl, attention, setAttentionImpl, gemm } from '../kernels/index.js';
import * as mm from '../kernels/matmul.js';
import * as att from '../kernels/attention.js';
import { B, T, N, H, I, V, NH, NKV, HD, Case, host, rand, f64, compare, verify, scoped } from './case.js';

/** Runs `op` under matmul implementation `impl`, then restores the default (tiled). */
const withImpl = <R>(impl: mm.MatmulImpl, op: () => R): R => {
  setMatmulImpl(impl);
  try { return op(); } finally { setMatmulImpl('tiled'); }
};

/** Column n of a row-major [M, N] array. */
const column = (a: Float32Array, M: number, Nc: number, n: number) => Float64Array.from({ length: M }, (_, m) => a[m * Nc + n]);

function matmulCases(): Case[] {
  const out: Case[] = [];
  for (const [impl, n] of [['tiled', I], ['tiled', V], ['naive', I]] as const) {
    const name = impl === 'naive' ? 'matmul_naive' : 'matmul';
    out.push({
      name, shape: `${N}x${H}·${n}x${H}ᵀ`, bound: 'compute', work: { flops: mm.bench.matmul(N, n, H).flops },
      slow: impl === 'naive', sampling: impl === 'naive' ? { minSamples: 2, maxTime: 0 } : undefined, warm: impl === 'naive',
      setup: async () => {
        const xh = host([N, H], 1), wh = host([n, H], 2);
        const x = Tensor.fromArray(xh, [N, H]), w = Tensor.fromArray(wh, [n, H]);
        await verify(name, () => withImpl(impl, () => matmul(x, w)), mm.reference(f64(xh, 2 * H), f64(wh), 2, n, H));
        return scoped(() => withImpl(impl, () => matmul(x, w)));
      },
    });
  }
  // The backward's products as the matmul rule launches them, timed alone.
  const xh = host([N, H], 1), wh = host([I, H], 2), gyh = host([N, I], 3);
  out.push({
    name: 'matmul_dX', shape: `${N}x${I}·${I}x${H}`, bound: 'compute', work: { flops: mm.bench.matmul(N, H, I).flops },
    setup: async () => {
      const gy = Tensor.fromArray(gyh, [N, I]), w = Tensor.fromArray(wh, [I, H]), dx = Tensor.empty([N, H]);
      const call = () => gemm({ a: gy, b: w, c: dx, M: N, N: H, K: I, am: I, ak: 1, bk: H, bn: 1, beta: 0 });
      call();
      compare('matmul_dX', await dx.readF32(), mm.referenceBackward(f64(xh, 2 * H), f64(wh), f64(gyh, 2 * I), 2, I, H).dx);
      return call;
    },
  }, {
    name: 'matmul_dW', shape: `${I}x${N}·${N}x${H}`, bound: 'compute', work: { flops: mm.bench.matmul(I, H, N).flops },
    setup: async () => {
      const gy = Tensor.fromArray(gyh, [N, I]), x = Tensor.fromArray(xh, [N, H]), dw = Tensor.empty([I, H]);
      const call = (beta: number) => gemm({ a: gy, b: x, c: dw, M: I, N: H, K: N, am: 1, ak: I, bk: H, bn: 1, beta });
      call(0);
      const got = await dw.readF32();
      for (const n of [0, I - 1]) { // first and last rows: partial tiles, the last workgroups
        compare('matmul_dW', got.subarray(n * H, (n + 1) * H), mm.referenceBackward(f64(xh), new Float64Array(H), column(gyh, N, I, n), N, 1, H).dw, n * H);
      }
      return () => call(1); // accumulating, as into a leaf weight's gradient
    },
  });
  {
    // The naive forward row gives the ratio: the naive forward+backward (3 × 10 s on lavapipe) would
    // take 40 s of the bench's 10 minutes to show the same.
    const name = 'matmul_forward+backward';
    out.push({
      name, shape: `${N}x${H}·${I}x${H}ᵀ`, bound: 'compute', work: { flops: 3 * mm.bench.matmul(N, I, H).flops },
      warm: true,
      setup: async (held) => {
        const x = Tensor.fromArray(xh, [N, H], 'f32', true), w = Tensor.fromArray(wh, [I, H], 'f32', true), gy = Tensor.fromArray(gyh, [N, I]);
        held.push(gradSlot(w));
        const call = scoped(() => backward(matmul(x, w), gy));
        call();
        held.push(x.grad!);
        // dX on the first rows, dW on its first and last rows.
        compare(`${name} dX`, (await x.grad!.readF32()).subarray(0, 2 * H), mm.referenceBackward(f64(xh, 2 * H), f64(wh), f64(gyh, 2 * I), 2, I, H).dx);
        const dw = await w.grad!.readF32();
        for (const n of [0, I - 1]) {
          compare(`${name} dW`, dw.subarray(n * H, (n + 1) * H), mm.referenceBackward(f64(xh), new Float64Array(H), column(gyh, N, I, n), N, 1, H).dw, n * H);
        }
        return call;
      },
    });
  }
  return out;
}

function attentionCases(): Case[] {
  const out: Case[] = [];
  for (const [impl, Tq, Bq, bwd] of [['flash', T, B, false], ['flash', T, B, true], ['naive', T, B, true],
    ['flash', 1024, 2, false], ['flash', 1024, 2, true], ['naive', 1024, 2, true]] as const) {
    const name = `attention${impl === 'naive' ? '_naive' : ''}_forward${bwd ? '+backward' : ''}`;
    const f = att.bench.attention_forward(Bq, Tq, NH, NKV, HD), b = att.bench.attention_backward(Bq, Tq, NH, NKV, HD);
    out.push({
      name, shape: `B${Bq} T${Tq} ${NH}/${NKV}×${HD}`, bound: 'compute', work: { flops: f.flops + (bwd ? b.flops : 0) },
      slow: impl === 'naive', sampling: impl === 'naive' ? { minSamples: 2, maxTime: 0 } : undefined,
      setup: async (held) => {
        const [qh, kh, vh, gyh] = [host([Bq, Tq, NH, HD], 4), host([Bq, Tq, NKV, HD], 5), host([Bq, Tq, NKV, HD], 6), host([Bq, Tq, NH, HD], 7)];
        const [q, k, v] = [Tensor.fromArray(qh, [Bq, Tq, NH, HD], 'f32', bwd), Tensor.fromArray(kh, [Bq, Tq, NKV, HD], 'f32', bwd),
          Tensor.fromArray(vh, [Bq, Tq, NKV, HD], 'f32', bwd)];
        const gy = Tensor.fromArray(gyh, [Bq, Tq, NH, HD]);
        const call = scoped(() => {
          setAttentionImpl(impl);
          try { if (bwd) backward(attention(q, k, v), gy); else attention(q, k, v); } finally { setAttentionImpl('flash'); }
        });
        // Checked on the first sequence (batch element 0): the output, or the gradients of q and v.
        const [nq, nk] = [Tq * NH * HD, Tq * NKV * HD];
        const args = [f64(qh, nq), f64(kh, nk), f64(vh, nk)] as const;
        if (!bwd) {
          setAttentionImpl(impl);
          try { await verify(name, () => attention(q, k, v), att.reference.forward(...args, 1, Tq, NH, NKV, HD).out); } finally { setAttentionImpl('flash'); }
          return call;
        }
        call();
        held.push(q.grad!, k.grad!, v.grad!);
        const want = att.reference.backward(...args, f64(gyh, nq), 1, Tq, NH, NKV, HD);
        compare(`${name} dq`, (await q.grad!.readF32()).subarray(0, nq), want.dq);
        compare(`${name} dv`, (await v.grad!.readF32()).subarray(0, nk), want.dv);
        return call;
      },
      peak: true, warm: bwd,
    });
  }
  return out;
}

export const computeBoundCases = (): Case[] => [...matmulCases(), ...attentionCases()];
