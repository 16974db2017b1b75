// matmul's variants, the tuner's view of them (shape classes, candidates, synthetic trials) and its
// bench rows. A shape class is the operands' layout (which vec4 and subgroup load modes apply) and
// M, N, K rounded up to powers of two.
// Candidates: on a CPU adapter, register tiles (workgroup-memory tiles ran at a third of their speed
// on lavapipe, LAVAPIPE-NOTES.md); on a GPU, workgroup-memory tiles of 32–128 outputs a side (4×4 and
// 8×8 per invocation). A second round tries the best one with grouped tile orders (g row tiles
// share B's columns: blocking for a small cache). Tile sizes for lavapipe were measured at
// M=5440 K=512 N=1408/6400 on a quiet Xeon (GFLOP/s): forward (a k4, b k) 16×8: 59–60 vs 16×4:
// 52–55, 24×4: 32–55; dX (k4, n) 24×4: 58–59 vs 16×4: 50–53; dW (m4, n) 16×4: 52 vs 8×4: 38, 16×8:
// 37, 32×4: 41; unrolling by u = 4 beat 2 and 8. Those choices are the fallbacks.
import { gpu } from '../runtime/device.js';
import { writeBuffer } from '../runtime/kernel.js';
import { Tensor, gradSlot } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { recordNow, type Trial, type Tunable } from '../runtime/tuner.js';
import { gemm, matmul, span, kernels, reference, referenceBackward, bench, type MatmulVariant, type RegisterTile, type SharedTile } from './matmul.js';
import { unsupported } from '../runtime/kernel.js';
import type { SharedCompiled } from './matmul_shared.js';
import { N, H, I, V, Case, host, f64, compare, verify, scoped, mismatch, tunedCase } from './case.js';
import type { Storage16 } from './matmul_io.js';
import { withNative, storedValues, nanFill, readRange, ULP16 } from './matmul16_variants.js';

/** A GEMM's dimensions and strides (C[m,n] = Σ_k A[m·am + k·ak]·B[k·bk + n·bn]); io: 16-bit
 *  storage (absent: all float32), a shape class of its own. */
export interface GemmShape { M: number; N: number; K: number; am: number; ak: number; bk: number; bn: number; io?: Storage16 }

/** Load modes the layout allows: register tiles on 8-lane subgroups (ra, rb) and workgroup-memory
 *  tiles (la, lb); see matmul_register.ts and matmul_shared.ts. */
function modes(s: GemmShape) {
  const ra = s.ak === 1 && s.am % 4 === 0 ? 'k4' : s.am === 1 && s.ak % 4 === 0 && s.M % 4 === 0 ? 'm4' : s.am === 1 ? 'm' : 'k';
  const rb = s.bk === 1 && s.bn % 4 === 0 ? 'k' : s.bn === 1 && s.bk % 4 === 0 && s.N % 4 === 0 ? 'n' : 's';
  const la = s.ak === 1 && s.am % 4 === 0 && s.K % 4 === 0 ? 'k4' : s.am === 1 && s.ak % 4 === 0 && s.M % 4 === 0 ? 'm4' : 's';
  const lb = s.bk === 1 && s.bn % 4 === 0 && s.K % 4 === 0 ? 'k4' : s.bn === 1 && s.bk % 4 === 0 && s.N % 4 === 0 ? 'n4' : 's';
  return { ra, rb, la, lb } as { ra: RegisterTile['a']; rb: RegisterTile['b']; la: SharedCompiled['la']; lb: SharedCompiled['lb'] };
}

export function compiledShared(v: SharedTile, s: GemmShape): SharedCompiled {
  const { kind: _k, g: _g, ...tile } = v;
  const { la, lb } = modes(s);
  return { ...tile, la, lb };
}

/** The register kernel's subgroup broadcasts assume subgroups of exactly 8 lanes (lavapipe's). */
function eightLanes(): boolean {
  const { features, adapter } = gpu();
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  return features.has('subgroups') && info.subgroupMinSize === 8 && info.subgroupMaxSize === 8;
}

const GROUPS = [1, 4, 16];
/** Register tiles (tm × tn) per layout: the fallback first. */
/** Register tiles (tm × tn) per layout, the fallback first: a larger and a smaller one beside it
 *  (a small cache, or a CPU with 16 vector registers instead of 32, may prefer less). Three, since
 *  each takes lavapipe 3–10 s to compile on a machine's first run. */
function registerTiles(a: RegisterTile['a'], b: RegisterTile['b']): [number, number][] {
  if (b === 'k') return [[16, 8], [16, 4], [8, 8]];
  if (a === 'k4') return [[24, 4], [16, 4], [16, 8]];
  if (a === 'm4') return [[16, 4], [32, 4], [8, 4]];
  return [[16, 4], [8, 4]]; // layouts without vec4 loads: no MiniMind shape has them
}
/** Workgroup-memory tiles [bm, bn, bk, tm, tn]: the fallback first. */
const SHARED: [number, number, number, number, number][] = [[64, 64, 16, 4, 4], [128, 128, 8, 8, 8], [128, 64, 16, 8, 4], [32, 32, 16, 4, 4]];

const validRegister = (v: RegisterTile) => !((v.a !== 's' && v.wg !== 8) || ((v.a === 'm' || v.a === 'k4') && v.tm % v.wg)
  || (v.a === 'm4' && ![8, 16, 32].includes(v.tm)) || (v.b === 'n' && v.tn % 4));
const reg = (tm: number, tn: number, a: RegisterTile['a'], b: RegisterTile['b'], g = 1): RegisterTile => ({ kind: 'register', wg: 8, tm, tn, u: 4, a, b, g });
const shared = ([bm, bn, bk, tm, tn]: number[], g = 1): SharedTile => ({ kind: 'shared', bm, bn, bk, tm, tn, g });

function sharedFits(v: SharedTile, s: GemmShape): boolean {
  const { limits } = gpu();
  return (v.bm * v.bk + v.bk * v.bn) * 4 <= limits.maxComputeWorkgroupStorageSize
    && unsupported(kernels.matmul_shared, { ...compiledShared(v, s), h: false }) === null;
}

/** Register tiles to time: the layout's list, with subgroup loads where the adapter has 8-lane subgroups. */
function registerCandidates(s: GemmShape): RegisterTile[] {
  const { ra, rb } = modes(s);
  const a = eightLanes() ? ra : 's';
  const tiles = eightLanes() ? registerTiles(a, rb) : [[8, 4], [4, 4], [8, 8]] as [number, number][];
  return tiles.map(([tm, tn]) => reg(tm, tn, a, rb)).filter(validRegister);
}

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
/** s with at most `flops`' worth of C's rows (never fewer than 256: enough row tiles for the grouped orders to differ). */
const capRows = (s: GemmShape, flops: number): GemmShape => ({ ...s, M: Math.min(s.M, Math.max(256, Math.ceil(flops / (2 * s.N * s.K) / 64) * 64)) });

export const matmulTunable: Tunable<GemmShape, MatmulVariant> = {
  name: 'matmul',
  key(s) {
    const { ra, rb, la, lb } = modes(s);
    return `${ra}.${rb}.${la}.${lb} ${p2(s.M)}x${p2(s.N)}x${p2(s.K)}${s.io ? ` ${s.io.ab}>${s.io.c}` : ''}`;
  },
  fallback(s) {
    if (!gpu().isSoftware) return shared(SHARED[0]);
    return registerCandidates(s)[0];
  },
  candidates(s) {
    return withNative(s.io, gpu().isSoftware ? registerCandidates(s) : SHARED.map((t) => shared(t)).filter((v) => sharedFits(v, s)));
  },
  neighbours(best) {
    return best.kind === 'naive' ? [] : GROUPS.filter((g) => g !== best.g).map((g) => ({ ...best, g }));
  },
  variants(s) {
    const { rb } = modes(s);
    const out: MatmulVariant[] = [{ kind: 'naive' }];
    for (const v of registerCandidates(s)) out.push(...GROUPS.map((g) => ({ ...v, g })));
    // The loads of an adapter without 8-lane subgroups (scalar A), so that they are tested here too.
    out.push(reg(8, 4, 's', rb));
    for (const t of SHARED) out.push(...GROUPS.map((g) => shared(t, g)).filter((v) => sharedFits(v, s)));
    const unique = new Map([matmulTunable.fallback(s), ...out].map((v) => [JSON.stringify(v), v]));
    return withNative(s.io, [...unique.values()].filter((v) => v.kind !== 'register' || validRegister(v)));
  },
  label(v) {
    const native = v.native ? ' native-f16' : '';
    if (v.kind === 'naive') return `naive${native}`;
    if (v.kind === 'register') return `reg ${v.tm}x${v.tn} ${v.a}/${v.b} g${v.g}${native}`;
    return `shared ${v.bm}x${v.bn}x${v.bk} ${v.tm}x${v.tn} g${v.g}${native}`;
  },
  trial: (s) => gemmTrial(s),
  // At most ~1 GFLOP per timed call (≈ 20 ms on lavapipe on a quiet Xeon, 0.1 s on a 2-core EPYC):
  // fewer rows of C, never fewer than 256 (enough row tiles for the grouped orders to differ). The
  // duel with the hand-picked tiles: the real problem up to ~4 GFLOP, four times the round's. With
  // 2 and 8 GFLOP, the rounds and duels of MiniMind2-small's 17 matmul classes took ~60 s of the
  // 85 s that tuning its step took on the shared 2-core Xeon (npm run tune; the goal is < 60 s).
  tuningShape: (s) => capRows(s, 1e9),
  duelShape: (s) => capRows(s, 4e9),
  cost: (s) => s.M * s.N * s.K,
  // The capped problems are the first rows of the duel's: one set of inputs serves both.
  trials(tuning, duel) {
    const io = gemmInputs(duel);
    return { round: gemmTrial(tuning, io), duel: gemmTrial(duel, io), dispose: () => io.dispose() };
  },
};

/** Random A and B (uniform in ±1; 16-bit shapes: rounded to the operands' dtype) laid out by the shape's
 *  strides, and C, on the GPU and A and B on the host. */
function gemmInputs(s: GemmShape) {
  const ab = s.io?.ab ?? 'f32';
  const ah = storedValues(host([Math.ceil(span(s.M, s.am, s.K, s.ak) / 4) * 4], 301), ab);
  const bh = storedValues(host([Math.ceil(span(s.K, s.bk, s.N, s.bn) / 4) * 4], 302), ab);
  const a = Tensor.fromArray(ah, [ah.length], ab).keep(), b = Tensor.fromArray(bh, [bh.length], ab).keep();
  const c = Tensor.empty([s.M * s.N], s.io?.c ?? 'f32').keep();
  return { ah, bh, a, b, c, dispose() { a.dispose(); b.dispose(); c.dispose(); } };
}

/** A trial of s on inputs made for s, or for a problem whose first rows s is (`io`: then disposing
 *  the trial leaves them to their owner). The check compares every output for small problems, and
 *  for large ones whole rows (the first and last 16, and 16 spread between) read from C filled with
 *  NaN first, so a skipped tile shows. Tolerance: float32 sums of K terms (of exact products, for
 *  16-bit operands), plus one ulp of a 16-bit output. */
function gemmTrial(s: GemmShape, io?: ReturnType<typeof gemmInputs>): Trial<MatmulVariant> {
  const { ah, bh, a, b, c } = io ?? gemmInputs(s);
  const run = (v: MatmulVariant) => gemm({ a, b, c, M: s.M, N: s.N, K: s.K, am: s.am, ak: s.ak, bk: s.bk, bn: s.bn, beta: 0 }, { variant: v });
  // Every output when the float64 reference is cheap (≤ 2^26 multiply-adds on the host), else rows.
  const all = s.M * s.N * s.K <= 2 ** 26;
  const rows = all ? [...Array(s.M).keys()]
    : [...new Set([...Array(16).keys(), ...Array.from({ length: 16 }, (_, i) => Math.floor(((i + 0.5) * s.M) / 16)), ...Array.from({ length: 16 }, (_, i) => s.M - 1 - i)])]
      .filter((m) => m >= 0 && m < s.M).sort((x, y) => x - y);
  // float32 sums of K products of values in ±1: partial sums grow like √k, so the rounding error of
  // the whole sum like 2^-24·K/√6; the first term bounds it for small K.
  const rtol = s.io && s.io.c !== 'f32' ? ULP16[s.io.c] : 2e-5, atol = Math.max(2e-6 * Math.sqrt(s.K), 1.2e-7 * s.K);
  let want: Float64Array[] | undefined; // per checked row, computed once
  let nan: Float32Array | Uint32Array | undefined;
  // Each output sums its K products in k order, accumulated over rows of B: B as rows of N contiguous
  // values (itself when bn = 1, else a transposed copy), so the inner loop walks memory in order and
  // carries no dependency, four rows a pass (one load and store of w per four products; the sums
  // are the same, left to right). A dot product per output along strided B took seconds.
  const { N: Nc, K: Kc, am, ak, bk, bn } = s;
  const reference = () => {
    let b = bh, bs = bk;
    if (bn !== 1) {
      b = new Float32Array(Kc * Nc);
      for (let n = 0; n < Nc; n++) for (let k = 0; k < Kc; k++) b[k * Nc + n] = bh[k * bk + n * bn];
      bs = Nc;
    }
    return rows.map((m) => {
      const w = new Float64Array(Nc), a0 = m * am;
      let k = 0;
      for (; k + 4 <= Kc; k += 4) {
        const x0 = ah[a0 + k * ak], x1 = ah[a0 + (k + 1) * ak], x2 = ah[a0 + (k + 2) * ak], x3 = ah[a0 + (k + 3) * ak];
        const b0 = k * bs, b1 = b0 + bs, b2 = b1 + bs, b3 = b2 + bs;
        for (let n = 0; n < Nc; n++) w[n] = w[n] + x0 * b[b0 + n] + x1 * b[b1 + n] + x2 * b[b2 + n] + x3 * b[b3 + n];
      }
      for (; k < Kc; k++) {
        const x = ah[a0 + k * ak], b0 = k * bs;
        for (let n = 0; n < Nc; n++) w[n] += x * b[b0 + n];
      }
      return w;
    });
  };
  return {
    run,
    async check(v, exec = recordNow) {
      writeBuffer(c.buffer, 0, (nan ??= nanFill(c)));
      await exec(() => run(v));
      // One read back of this problem's rows (a read per checked row took a round trip each).
      const got = await readRange(c, 0, s.M * s.N);
      want ??= reference();
      for (const [i, m] of rows.entries()) {
        const bad = mismatch(got.subarray(m * s.N, (m + 1) * s.N), want[i], rtol, atol, (n) => m * s.N + n);
        if (bad) return bad;
      }
      return null;
    },
    dispose() { if (!io) { a.dispose(); b.dispose(); c.dispose(); } },
  };
}

/** The shapes of a Linear's three products, x [M, K] and W [N, K]. */
export const linearShapes = (M: number, N: number, K: number): Record<'forward' | 'dX' | 'dW', GemmShape> => ({
  forward: { M, N, K, am: K, ak: 1, bk: 1, bn: K },
  dX: { M, N: K, K: N, am: N, ak: 1, bk: K, bn: 1 },
  dW: { M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1 },
});

/** Column n of a row-major [M, N] array. */
const column = (a: Float32Array, M: number, Nc: number, n: number) => Float64Array.from({ length: M }, (_, m) => a[m * Nc + n]);

/** Bench rows: the FFN's three products and the LM head's forward (the tuner's choices), the naive
 *  forward (the baseline), and forward+backward through the tape (the variants the rule picks). */
export function cases(): Case[] {
  const ffn = linearShapes(N, I, H), head = linearShapes(N, V, H);
  const flops = (s: GemmShape) => ({ flops: bench.matmul(s.M, s.N, s.K).flops });
  const xh = host([N, H], 1), wh = host([I, H], 2), gyh = host([N, I], 3);
  const name = 'matmul_forward+backward';
  return [
    tunedCase(matmulTunable, ffn.forward, { name: 'matmul', shape: `${N}x${H}·${I}x${H}ᵀ`, bound: 'compute', work: flops(ffn.forward) }),
    tunedCase(matmulTunable, head.forward, { name: 'matmul', shape: `${N}x${H}·${V}x${H}ᵀ`, bound: 'compute', work: flops(head.forward) }),
    tunedCase(matmulTunable, ffn.forward, {
      name: 'matmul_naive', shape: `${N}x${H}·${I}x${H}ᵀ`, bound: 'compute', work: flops(ffn.forward), variant: { kind: 'naive' },
      slow: true, sampling: { minSamples: 2, maxTime: 0 },
    }),
    tunedCase(matmulTunable, ffn.dX, { name: 'matmul_dX', shape: `${N}x${I}·${I}x${H}`, bound: 'compute', work: flops(ffn.dX) }),
    tunedCase(matmulTunable, ffn.dW, { name: 'matmul_dW', shape: `${I}x${N}·${N}x${H}`, bound: 'compute', work: flops(ffn.dW) }),
    // The same products over 16-bit storage (kernels/matmul16.ts), 16-bit outputs.
    ...(['bf16', 'f16'] as const).flatMap((d) => (['forward', 'dX', 'dW'] as const).map((p) => tunedCase(matmulTunable, { ...ffn[p], io: { ab: d, c: d } },
      { name: p === 'forward' ? 'matmul' : `matmul_${p}`, shape: `FFN ${p} ${d}`, bound: 'compute', work: flops(ffn[p]) }))),
    {
      // The naive forward row gives the naive ratio: a naive forward+backward would take 40 s of the bench.
      name, shape: `${N}x${H}·${I}x${H}ᵀ`, bound: 'compute', work: { flops: 3 * bench.matmul(N, I, H).flops }, warm: true,
      setup: async (held) => {
        const x = Tensor.fromArray(xh, [N, H], 'f32', true), w = Tensor.fromArray(wh, [I, H], 'f32', true), gy = Tensor.fromArray(gyh, [N, I]);
        held.push(gradSlot(w));
        const call = scoped(() => backward(matmul(x, w), gy));
        call();
        held.push(x.grad!);
        // dX on the first rows, dW on its first and last rows.
        compare(`${name} dX`, (await x.grad!.readF32()).subarray(0, 2 * H), referenceBackward(f64(xh, 2 * H), f64(wh), f64(gyh, 2 * I), 2, I, H).dx);
        const dw = await w.grad!.readF32();
        for (const n of [0, I - 1]) {
          compare(`${name} dW`, dw.subarray(n * H, (n + 1) * H), referenceBackward(f64(xh), new Float64Array(H), column(gyh, N, I, n), N, 1, H).dw, n * H);
        }
        await verify(`${name} y`, () => matmul(x, w), reference(f64(xh, 2 * H), f64(wh), 2, I, H));
        return call;
      },
    },
  ];
}
