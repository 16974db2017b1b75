// Every kernel at MiniMind2-small training shapes (B 16, T 340, H 512, FFN 1408, V 6400, nh 8,
// nkv 2, hd 64), forward alone and forward+backward through the tape, with the naive matmul and
// attention beside the fast ones. Work per call comes from each kernel module's bench metadata.
// Each case validates its output once against the float64 reference on a slice before timing.
import { Tensor, beginScope, endScope, copyInto, noGrad } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { mulberry32 } from '../runtime/random.js';
import { matmul, setMatmulImpl, attention, setAttentionImpl } from '../kernels/index.js';
import * as mm from '../kernels/matmul.js';
import * as att from '../kernels/attention.js';
import * as rms from '../kernels/rmsnorm.js';
import * as rp from '../kernels/rope.js';
import * as sw from '../kernels/swiglu.js';
import * as emb from '../kernels/embedding.js';
import * as ce from '../kernels/cross_entropy.js';
import * as adamw from '../kernels/adamw.js';
import * as gn from '../kernels/grad_norm.js';
import { preset, parameterShapes } from '../model/config.js';
import { Options, Roofline, Row, row, time } from './harness.js';

const B = 16, T = 340, N = B * T, H = 512, I = 1408, V = 6400, NH = 8, NKV = 2, HD = 64;

function host(shape: number[], seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale);
}

function rand(shape: number[], seed: number, scale = 1, grad = false): Tensor {
  return Tensor.fromArray(host(shape, seed, scale), shape, 'f32', grad);
}

/** Validation before timing: the first `n` outputs of `op` against the float64 reference `want`
 *  (computed on the matching slice of the same seeded inputs). Throws on a mismatch. */
async function verify(name: string, op: () => Tensor, want: Float64Array): Promise<void> {
  beginScope();
  const got = (await op().readF32()).subarray(0, want.length);
  endScope();
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-30);
  for (let i = 0; i < want.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= 1e-3 * scale)) throw new Error(`bench ${name}: output ${i} is ${got[i]}, reference ${want[i]}`);
  }
}
const f64 = (a: Float32Array, n = a.length) => Float64Array.from(a.subarray(0, n));

interface Case {
  name: string;
  shape: string;
  /** Build inputs (kept for the case) and return the call to time. */
  setup: () => () => void | Promise<void>;
  /** Checks the op's output against its float64 reference once, before timing. */
  check?: () => Promise<void>;
  work: { flops?: number; bytes?: number };
  bound?: 'compute' | 'memory';
}

/** op forward, then backward from a random upstream gradient, inside a scope (memory reused). */
const fwdBwd = (op: () => Tensor, gy: Tensor) => () => {
  beginScope();
  backward(op(), gy);
  endScope();
};
const fwd = (op: () => unknown) => () => { beginScope(); op(); endScope(); };

function cases(): Case[] {
  const mmw = mm.bench.matmul;
  const out: Case[] = [];
  for (const impl of ['tiled', 'naive'] as const) {
    const suffix = impl === 'naive' ? '_naive' : '';
    for (const [n, k] of impl === 'naive' ? [[I, H]] : [[I, H], [V, H]]) {
      out.push({
        name: `matmul${suffix}`, shape: `${N}x${k}·${n}x${k}ᵀ`, bound: 'compute', work: { flops: mmw(N, n, k).flops },
        setup: () => { const x = rand([N, k], 1), w = rand([n, k], 2); return fwd(() => { setMatmulImpl(impl as mm.MatmulImpl); matmul(x, w); setMatmulImpl('tiled' as mm.MatmulImpl); }); },
        check: async () => {
          const xh = host([N, k], 1), wh = host([n, k], 2);
          const x = Tensor.fromArray(xh, [N, k]), w = Tensor.fromArray(wh, [n, k]);
          setMatmulImpl(impl as mm.MatmulImpl);
          await verify(`matmul${suffix}`, () => matmul(x, w), mm.reference(f64(xh, 2 * k), f64(wh), 2, n, k));
          setMatmulImpl('tiled' as mm.MatmulImpl);
        },
      });
    }
    out.push({
      name: `matmul${suffix}_forward+backward`, shape: `${N}x${H}·${I}x${H}ᵀ`, bound: 'compute', work: { flops: 3 * mmw(N, I, H).flops },
      setup: () => {
        const x = rand([N, H], 1, 1, true), w = rand([I, H], 2, 1, true).keep(), gy = rand([N, I], 3);
        return () => { setMatmulImpl(impl as mm.MatmulImpl); fwdBwd(() => matmul(x, w), gy)(); setMatmulImpl('tiled' as mm.MatmulImpl); };
      },
    });
  }
  for (const [impl, Tq, Bq] of [['flash', T, B], ['naive', T, B], ['flash', 1024, 2], ['naive', 1024, 2]] as const) {
    const suffix = impl === 'naive' ? '_naive' : '';
    const f = att.bench.attention_forward(Bq, Tq, NH, NKV, HD), b = att.bench.attention_backward(Bq, Tq, NH, NKV, HD);
    out.push({
      name: `attention${suffix}_forward+backward`, shape: `B${Bq} T${Tq} ${NH}/${NKV}×${HD}`, bound: 'compute', work: { flops: f.flops + b.flops },
      setup: () => {
        const q = rand([Bq, Tq, NH, HD], 4, 1, true), k = rand([Bq, Tq, NKV, HD], 5, 1, true), v = rand([Bq, Tq, NKV, HD], 6, 1, true);
        const gy = rand([Bq, Tq, NH, HD], 7);
        return () => { setAttentionImpl(impl); fwdBwd(() => attention(q, k, v), gy)(); setAttentionImpl('flash'); };
      },
      check: async () => {
        const [qh, kh, vh] = [host([Bq, Tq, NH, HD], 4), host([Bq, Tq, NKV, HD], 5), host([Bq, Tq, NKV, HD], 6)];
        const [q, k, v] = [Tensor.fromArray(qh, [Bq, Tq, NH, HD]), Tensor.fromArray(kh, [Bq, Tq, NKV, HD]), Tensor.fromArray(vh, [Bq, Tq, NKV, HD])];
        const want = att.reference.forward(f64(qh, Tq * NH * HD), f64(kh, Tq * NKV * HD), f64(vh, Tq * NKV * HD), 1, Tq, NH, NKV, HD).out;
        setAttentionImpl(impl);
        await verify(`attention${suffix}`, () => attention(q, k, v), want);
        setAttentionImpl('flash');
      },
    });
  }
  out.push({
    name: 'rmsnorm_forward', shape: `${N}x${H}`, work: rms.bench.rmsnorm_forward(N, H),
    setup: () => { const x = rand([N, H], 8), w = rand([H], 9); return fwd(() => rms.rmsnorm(x, w, 1e-5)); },
    check: () => verify('rmsnorm', () => rms.rmsnorm(rand([N, H], 8), rand([H], 9), 1e-5), rms.reference(f64(host([N, H], 8), 4 * H), f64(host([H], 9)), 1e-5).y),
  }, {
    name: 'rmsnorm_forward+backward', shape: `${N}x${H}`,
    work: { bytes: rms.bench.rmsnorm_forward(N, H).bytes + rms.bench.rmsnorm_backward(N, H).bytes },
    setup: () => { const x = rand([N, H], 8, 1, true), w = rand([H], 9, 1, true).keep(), gy = rand([N, H], 10); return fwdBwd(() => rms.rmsnorm(x, w, 1e-5), gy); },
  }, {
    name: 'rope_forward', shape: `${B}x${T}x${NH}x${HD}`, work: rp.bench.rope(N * NH * HD),
    setup: () => { const x = rand([B, T, NH, HD], 11); return fwd(() => rp.rope(x, 0, 1e6)); },
    check: () => verify('rope', () => rp.rope(rand([B, T, NH, HD], 11), 0, 1e6), rp.reference(f64(host([B, T, NH, HD], 11), T * NH * HD), [1, T, NH, HD], 0, 1e6)),
  }, {
    name: 'rope_forward+backward', shape: `${B}x${T}x${NH}x${HD}`, work: { bytes: 2 * rp.bench.rope(N * NH * HD).bytes },
    setup: () => { const x = rand([B, T, NH, HD], 11, 1, true), gy = rand([B, T, NH, HD], 12); return fwdBwd(() => rp.rope(x, 0, 1e6), gy); },
  }, {
    name: 'swiglu_forward', shape: `${N}x${I}`, work: sw.bench.swiglu_forward(N * I),
    setup: () => { const g = rand([N, I], 13), u = rand([N, I], 14); return fwd(() => sw.swiglu(g, u)); },
    check: () => verify('swiglu', () => sw.swiglu(rand([N, I], 13), rand([N, I], 14)), sw.reference.forward(f64(host([N, I], 13), 4096), f64(host([N, I], 14), 4096))),
  }, {
    name: 'swiglu_forward+backward', shape: `${N}x${I}`, work: { bytes: sw.bench.swiglu_forward(N * I).bytes + sw.bench.swiglu_backward(N * I).bytes },
    setup: () => { const g = rand([N, I], 13, 1, true), u = rand([N, I], 14, 1, true), gy = rand([N, I], 15); return fwdBwd(() => sw.swiglu(g, u), gy); },
  }, {
    name: 'embedding_forward+backward', shape: `${N} ids, ${V}x${H}`,
    work: { bytes: emb.bench.embedding_forward(N, H).bytes + emb.bench.embedding_backward(N, H, V).bytes },
    setup: () => {
      const r = mulberry32(16);
      const hostIds = Int32Array.from({ length: N }, () => Math.floor(r() * V));
      const ids = Tensor.fromArray(hostIds, [B, T], 'i32'), table = rand([V, H], 17, 1, true).keep(), gy = rand([B, T, H], 18);
      return fwdBwd(() => emb.embedding(ids, table, hostIds), gy);
    },
  }, {
    name: 'cross_entropy_forward+backward', shape: `${N}x${V}`, work: ce.bench.cross_entropy(N, V),
    check: async () => {
      const r = mulberry32(19);
      const lab = Int32Array.from({ length: N }, (_, i) => (i % T < 100 ? -100 : Math.floor(r() * V)));
      const want = ce.reference(f64(host([B, T, V], 20)), lab, B, T, V).loss;
      await verify('cross_entropy', () => noGrad(() => ce.crossEntropy(rand([B, T, V], 20), Tensor.fromArray(lab, [B, T], 'i32')).loss), Float64Array.of(want));
    },
    setup: () => {
      const r = mulberry32(19);
      const labels = Tensor.fromArray(Int32Array.from({ length: N }, (_, i) => (i % T < 100 ? -100 : Math.floor(r() * V))), [B, T], 'i32');
      const src = rand([B, T, V], 20);
      return () => {
        beginScope();
        // The fused kernel consumes its logits: refresh them from src each call (a copy, counted in the time).
        const logits = Tensor.empty([B, T, V]);
        logits.requiresGrad = true;
        copyInto(logits, src);
        backward(ce.crossEntropy(logits, labels).loss);
        endScope();
      };
    },
  });
  const shapes = parameterShapes(preset('minimind2-small')).map(([, s]) => s);
  const nParams = shapes.reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  out.push({
    name: 'grad_norm', shape: `${shapes.length} tensors, ${nParams} floats`, work: gn.bench.grad_norm(nParams),
    setup: () => { const gs = shapes.map((s, i) => rand(s, 100 + i, 0.01).keep()); return fwd(() => gn.gradNorm(gs)); },
    check: () => verify('grad_norm', () => gn.gradNorm(shapes.map((s, i) => rand(s, 100 + i, 0.01))),
      Float64Array.of(gn.reference(shapes.map((s, i) => host(s, 100 + i, 0.01))))),
  }, {
    name: 'adamw', shape: `${shapes.length} tensors, ${nParams} floats`, work: adamw.bench.adamw(nParams), bound: 'memory',
    setup: () => {
      const ps = shapes.map((s, i) => { const p = rand(s, 200 + i, 0.05, true).keep(); p.grad = rand(s, 300 + i, 0.01).keep(); return p; });
      const opt = new adamw.AdamW(ps, { lr: 1e-4 });
      const norm = gn.gradNorm(ps.map((p) => p.grad!)).keep();
      return () => opt.step(1e-4, norm, 1.0);
    },
  });
  return out;
}

/** --quick leaves out the slowest baselines: naive matmul's backward and naive attention at T 1024. */
const slowBaseline = (c: Case) => c.name === 'matmul_naive_forward+backward' || (c.name.includes('naive') && c.shape.includes('T1024'));

export async function benchKernels(o: Options, roof: Roofline, want: (name: string) => boolean): Promise<Row[]> {
  const rows: Row[] = [];
  for (const c of cases()) {
    if (!want(c.name) || (o.quick && slowBaseline(c))) continue;
    beginScope();
    await c.check?.();
    const call = c.setup();
    rows.push(row(c.name, c.shape, await time(c.name, call, o), c.work, roof, c.bound));
    endScope();
    process.stdout.write(`  ${c.name} ${c.shape}: ${rows.at(-1)!.ms.toFixed(2)} ms\n`);
  }
  return rows;
}
