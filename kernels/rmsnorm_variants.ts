// Variants of rmsnorm and add_rmsnorm (forward and backward of each), their trials and bench rows.
// The fallback is the lane layout (one invocation per row; 64 row chunks in the backward), the
// hand-picked kernel on every adapter; candidates are kernels/row_layout.ts's, and for the backward
// 512 row chunks on a GPU (so the column pass has tens of thousands of invocations); its second
// round tries other chunk counts.
import { gpu } from '../runtime/device.js';
import { Tensor, type DType16 } from '../runtime/tensor.js';
import type { Tunable } from '../runtime/tuner.js';
import { kernels, launchForward, rmsnormBackward, reference, referenceBackward, bench, type BackwardVariant, type ForwardVariant } from './rmsnorm.js';
import { LANE, rowCandidates, rowLabel, rowLayouts, type RowLayout } from './row_layout.js';
import { kernels as addKernels, bench as addBench, res16 } from './add_rmsnorm.js';
import { reference as round16 } from './cast.js';
import { forward16, backward16, reference16, referenceBackward16 } from './add_rmsnorm16.js';
import { ULP16 } from './matmul16_variants.js';
import { N, H, Case, input, fixedTrial, tunedCase } from './case.js';

/** rows × H, normalised over H; res: add_rmsnorm's forward over a 16-bit res (its own shape class); out:
 *  add_rmsnorm with a 16-bit s of that type (kernels/add_rmsnorm16.ts; res, when given, and x with x16 of it). */
export interface RowShape { rows: number; h: number; res?: DType16; out?: DType16; x16?: boolean }

const CHUNKS = [64, 256, 512, 1024];

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const key = (s: RowShape) => `h${s.h} rows${p2(s.rows)}${s.res ? ` res ${s.res}` : ''}${s.out ? ` out ${s.out}${s.x16 ? ' x16' : ''}` : ''}`;
const unique = <V>(vs: V[]) => [...new Map(vs.map((v) => [JSON.stringify(v), v])).values()];

/** Seeded x (±2; of dtype s.out with s.x16), w (1 ± 0.5), and for add_rmsnorm res (±1; of dtype s.res when
 *  given). Checks cover the first 256 rows. */
function data(s: RowShape, add: boolean) {
  const x = input([s.rows, s.h], 51, 2), res = input([s.rows, s.h], 52);
  const w = input([s.h], 53, 0.5);
  w.h.forEach((v, i) => { w.h[i] = 1 + v; });
  w.t.dispose();
  const wt = Tensor.fromArray(w.h, [s.h]).keep();
  for (const [v, d] of [[res, s.res], [x, s.x16 ? s.out : undefined]] as const) {
    if (!d) continue;
    v.t.dispose();
    v.t = Tensor.fromArray(v.h, [s.rows, s.h], d).keep();
    v.h = Float32Array.from(round16(v.h, d)); // the values the kernel reads
  }
  // A plain loop: Float64Array.from with a map function took a second at 5440 × 512.
  const src = Float64Array.from(x.h);
  if (add) for (let i = 0; i < src.length; i++) src[i] += res.h[i];
  return { x, res, w: { t: wt, h: w.h }, src, n: Math.min(s.rows, 256) };
}

function forwardFamily(add: boolean): Tunable<RowShape, ForwardVariant> {
  return {
    name: add ? 'add_rmsnorm_forward' : 'rmsnorm_forward', key, fallback: () => LANE, variants: rowLayouts, candidates: rowCandidates,
    label: rowLabel,
    trial(s) {
      if (s.out) return forward16Trial(s, s.out);
      const d = data(s, add);
      const y = Tensor.empty([s.rows, s.h]).keep(), rstd = Tensor.empty([s.rows]).keep(), sum = Tensor.empty([s.rows, s.h]).keep();
      const bufs = add ? [d.x.t, d.res.t, d.w.t, sum, y, rstd] : [d.x.t, d.w.t, y, rstd];
      return fixedTrial<ForwardVariant>({
        run: (v) => s.res ? launchForward(addKernels.add_rmsnorm_forward16, v, d.x.t, d.w.t, bufs, 1e-5, res16(s.res, s.h))
          : launchForward(add ? addKernels.add_rmsnorm_forward : kernels.rmsnorm_forward, v, d.x.t, d.w.t, bufs, 1e-5),
        outputs: add ? [sum, y, rstd] : [y, rstd],
        want: () => {
          const r = reference(d.src.subarray(0, d.n * s.h), Float64Array.from(d.w.h), 1e-5);
          return add ? [d.src.subarray(0, d.n * s.h), r.y, r.rstd] : [r.y, r.rstd];
        },
        rtol: 1e-5, atol: 1e-6, owned: [d.x.t, d.res.t, d.w.t, y, rstd, sum],
      });
    },
  };
}

function backwardFamily(add: boolean): Tunable<RowShape, BackwardVariant> {
  const withChunks = (vs: RowLayout[], chunks: number) => vs.map((v) => ({ ...v, chunks }));
  return {
    name: add ? 'add_rmsnorm_backward' : 'rmsnorm_backward', key, fallback: () => ({ ...LANE, chunks: 64 }),
    variants: () => unique([{ ...LANE, chunks: 64 }, ...CHUNKS.flatMap((c) => withChunks(rowLayouts(), c))]),
    candidates: () => unique([{ ...LANE, chunks: 64 }, ...withChunks(rowCandidates(), gpu().isSoftware ? 64 : 512)]),
    neighbours: (best) => CHUNKS.filter((c) => c !== best.chunks).map((chunks) => ({ ...best, chunks })),
    label: (v) => `${rowLabel(v)} c${v.chunks}`,
    trial(s) {
      if (s.out) return backward16Trial(s, s.out);
      const d = data(s, add), dy = input([s.rows, s.h], 54), gs = input([s.rows, s.h], 55);
      const { rstd: rh } = reference(d.src, Float64Array.from(d.w.h), 1e-5);
      const rstd = Tensor.fromArray(rh, [s.rows]).keep(), xs = Tensor.fromArray(d.src, [s.rows, s.h]).keep();
      const dw = Tensor.empty([s.h]).keep(), dx = Tensor.empty([s.rows, s.h]).keep();
      const fused = add ? { kernel: addKernels.add_rmsnorm_backward, extra: [gs.t] } : undefined;
      return fixedTrial<BackwardVariant>({
        run: (variant) => { rmsnormBackward(xs, d.w.t, rstd, dy.t, dw, 0, { fused, variant, dx }); },
        outputs: [dx, dw],
        want: () => {
          const r = referenceBackward(d.src, Float64Array.from(d.w.h), Float64Array.from(dy.h), 1e-5);
          return [r.dx.subarray(0, d.n * s.h).map((v, i) => v + (add ? gs.h[i] : 0)), r.dw];
        },
        rtol: 1e-4, atol: 2e-5 * Math.sqrt(s.rows), owned: [d.x.t, d.res.t, d.w.t, dy.t, gs.t, rstd, xs, dw, dx],
      });
    },
  };
}

/** add_rmsnorm's forward with a 16-bit s. s: the float32 sum rounded once, as the reference rounds it (exact); y:
 *  1 ulp of out's type relative (x̂'s float32 round-off may flip the rounding of t); rstd float32. */
function forward16Trial(s: RowShape, out: DType16) {
  const d = data(s, true), shape = [s.rows, s.h];
  const sum = Tensor.empty(shape, out).keep(), y = Tensor.empty(shape).keep(), rstd = Tensor.empty([s.rows]).keep();
  return fixedTrial<ForwardVariant>({
    run: (v) => forward16(v, d.x.t, d.res.t, d.w.t, sum, y, rstd, 1e-5),
    outputs: [sum, y, rstd],
    want: () => {
      const n = d.n * s.h, r = reference16(Float64Array.from(d.x.h.subarray(0, n)), Float64Array.from(d.res.h.subarray(0, n)), Float64Array.from(d.w.h), 1e-5, out);
      return [r.s, r.y, r.rstd];
    },
    rtol: [0, ULP16[out], 1e-5], atol: [0, 1e-6, 1e-6], owned: [d.x.t, d.res.t, d.w.t, sum, y, rstd],
  });
}

/** add_rmsnorm's backward of a 16-bit s with a 16-bit ds, from the reference's s and float32 rstd. total: 1 ulp of
 *  out's type relative, and 2 ulps at 1 absolute where g + ds cancels (g, |g| < 2, may be 1 ulp off: its float32
 *  round-off may flip its rounding); dw at float32 level, against the kernel's own t (the same float32 product
 *  s·rstd, rounded). */
function backward16Trial(s: RowShape, out: DType16) {
  const d = data(s, true), dy = input([s.rows, s.h], 54), gs = input([s.rows, s.h], 55), shape = [s.rows, s.h];
  const w64 = Float64Array.from(d.w.h), f = reference16(Float64Array.from(d.x.h), Float64Array.from(d.res.h), w64, 1e-5, out);
  const sT = Tensor.fromArray(f.s, shape, out).keep(), rstd = Tensor.fromArray(f.rstd, [s.rows]).keep(), ds = Tensor.fromArray(gs.h, shape, out).keep();
  const dw = Tensor.empty([s.h]).keep(), total = Tensor.empty(shape, out).keep();
  return fixedTrial<BackwardVariant>({
    run: (variant) => { backward16(sT, d.w.t, rstd, dy.t, ds, dw, 0, variant, total); },
    outputs: [total, dw],
    want: () => {
      const r32 = Float32Array.from(f.rstd), xh = new Float32Array(f.s.length);
      for (let i = 0; i < xh.length; i++) xh[i] = f.s[i] * r32[Math.floor(i / s.h)];
      const r = referenceBackward16(f.s, w64, Float64Array.from(dy.h), round16(gs.h, out), round16(xh, out), 1e-5, out);
      return [r.total.subarray(0, d.n * s.h), r.dw];
    },
    rtol: [ULP16[out], 1e-4], atol: [2 * ULP16[out], 2e-5 * Math.sqrt(s.rows)],
    owned: [d.x.t, d.res.t, d.w.t, dy.t, gs.t, sT, rstd, ds, dw, total],
  });
}

export const rmsnormTunables = {
  forward: forwardFamily(false), backward: backwardFamily(false), addForward: forwardFamily(true), addBackward: backwardFamily(true),
};

/** Bench rows at MiniMind2-small's 5440 × 512 (bytes: each module's bench metadata). add_rmsnorm's backward
 *  has no row of its own for a 16-bit res: it never reads res, so a 16-bit res runs the float32 kernels (and the
 *  cast of res's gradient that the Linear's backward makes otherwise: kernels/add_rmsnorm.ts). 'bf16 s', 'f16 s':
 *  the 16-bit residual stream (x, res and s 16-bit; backward with a 16-bit ds). */
export function cases(): Case[] {
  const s = { rows: N, h: H }, shape = `${N}x${H}`;
  return [
    tunedCase(rmsnormTunables.forward, s, { name: 'rmsnorm_forward', shape, work: bench.rmsnorm_forward(N, H) }),
    tunedCase(rmsnormTunables.backward, s, { name: 'rmsnorm_backward', shape, work: bench.rmsnorm_backward(N, H) }),
    tunedCase(rmsnormTunables.addForward, s, { name: 'add_rmsnorm_forward', shape, work: addBench.add_rmsnorm_forward(N, H) }),
    tunedCase(rmsnormTunables.addForward, { ...s, res: 'bf16' }, { name: 'add_rmsnorm_forward', shape: `${shape} bf16 res`, work: addBench.add_rmsnorm_forward16(N, H) }),
    ...(['bf16', 'f16'] as const).map((d) => tunedCase(rmsnormTunables.addForward, { ...s, out: d, x16: true, res: d },
      { name: 'add_rmsnorm_forward', shape: `${shape} ${d} s`, work: addBench.add_rmsnorm_forward_out16(N, H) })),
    tunedCase(rmsnormTunables.addBackward, s, { name: 'add_rmsnorm_backward', shape, work: addBench.add_rmsnorm_backward(N, H) }),
    ...(['bf16', 'f16'] as const).map((d) => tunedCase(rmsnormTunables.addBackward, { ...s, out: d },
      { name: 'add_rmsnorm_backward', shape: `${shape} ${d} s`, work: addBench.add_rmsnorm_backward_out16(N, H) })),
  ];
}
