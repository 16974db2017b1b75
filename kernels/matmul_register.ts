// WGSL of the register-tiled GEMM of kernels/matmul.ts, for CPU adapters (lavapipe):
// C[m,n] (+)= Σ_k A[m·am + k·ak]·B[k·bk + n·bn], C row-major [M,N]; A and B bound as arrays of vec4,
// params M N K am ak bk bn beta group. Every operand load goes through hv/hs and every result
// through hs (kernels/matmul.ts defines them: identity in float32, rounding to float16 in float16 mode).
// Over 16-bit storage (io given) the loads and stores are kernels/matmul_io.ts's instead.
// Tiles are visited in groups of p.group row tiles (tileOf, kernels/matmul_shared.ts): consecutive
// workgroups then share B's columns as well as A's rows, which keeps them in a small cache.
import { TILE_OF, F32_LOADS } from './matmul_shared.js';
import { pairs, type GemmIO } from './matmul_io.js';

/** Register-tiled GEMM for CPU-like adapters. lavapipe runs a workgroup's invocations as the 8 lanes
 *  of one SIMD vector and (Mesa 25.0) loads every storage element lane by lane, even when all lanes
 *  read the same address: a load costs ~8 scalar loads however many distinct values it brings. So
 *  every load should bring a distinct value to each lane. A workgroup of one subgroup (8 lanes)
 *  computes a tm × (8·tn) tile of C; its tm rows are shared by all lanes, each lane owns tn columns.
 *  - A (the shared rows): lanes load different elements, then subgroupBroadcast hands each value
 *    to all lanes. `'k'`: lane l loads A[m, k0+l] (8 k-steps per load); `'m'`: lane l loads
 *    A[m0+8r+l, k] (8 rows per load); `'k4'`: lane l loads A[m0+8r+l, k..k+3] as a vec4 (needs
 *    ak = 1, am % 4 = 0); `'m4'`: lanes load vec4s of 4 rows, tm/4 lanes per k-step (needs am = 1,
 *    ak % 4 = 0, M % 4 = 0, tm in 8, 16, 32); `'s'`: no subgroups, all lanes load the same element.
 *  - B (each lane's columns): `'k'`: vec4 loads along contiguous k (bk = 1, bn % 4 = 0); `'n'`: lane
 *    l owns tn contiguous columns, vec4 loads along contiguous n (bn = 1, bk % 4 = 0, N % 4 = 0);
 *    `'s'`: scalar loads.
 *  Constraints: subgroup modes need wg = 8, 'm'/'k4' tm % 8 = 0, 'n' tn % 4 = 0, u % 4 = 0; a packed
 *  16-bit C, tn even.
 *  The k loop is unrolled by u (8 for a 'k') since lavapipe stores loop-carried values (the
 *  accumulators) to the stack once per iteration. Partial tiles: out-of-range rows and columns are
 *  clamped for loading and skipped for writing; leftover k-steps run one at a time. */
export interface RegisterTile {
  kind: 'register'; wg: number; tm: number; tn: number; u: number; a: 'k' | 'm' | 'k4' | 'm4' | 's'; b: 'k' | 'n' | 's';
  /** Row tiles per group of the tile order (a runtime parameter: no recompilation). */
  g: number;
}
/** What a register variant compiles (the group is a uniform). */
export type RegisterCompiled = Omit<RegisterTile, 'kind' | 'g'>;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sb = (v: string, lane: number) => `subgroupBroadcast(${v}, ${lane}u)`;

/** How the shared A rows are loaded: row bases, loads per chunk, and the value of A[m0+i, k+kk]. */
function aSource(v: RegisterCompiled): { u: number; bases: string[]; loads: (kk: number) => string[]; value: (i: number, kk: number) => string } {
  const { wg, tm, a } = v;
  const rowsPerLane = (clamp: string) => range(tm / wg).map((r) => `let ar${r} = min(m0 + ${r * wg}u + lid.x, ${clamp}) * p.am;`);
  const perRow = range(tm).map((i) => `let ar${i} = min(m0 + ${i}u, p.M - 1u) * p.am;`);
  switch (a) {
    case 's': return { u: v.u, bases: perRow, loads: () => [], value: (i, kk) => `loadA(ar${i} + (k + ${kk}u) * p.ak)` };
    case 'k': return {
      u: wg, bases: perRow, value: (i, kk) => sb(`va${i}`, kk),
      loads: (kk) => (kk ? [] : range(tm).map((i) => `let va${i} = loadA(ar${i} + (k + lid.x) * p.ak);`)),
    };
    case 'm': return {
      u: v.u, bases: rowsPerLane('p.M - 1u'), value: (i, kk) => sb(`va${Math.floor(i / wg)}_${kk}`, i % wg),
      loads: (kk) => range(tm / wg).map((r) => `let va${r}_${kk} = loadA(ar${r} + (k + ${kk}u) * p.ak);`),
    };
    case 'k4': return {
      u: v.u, bases: rowsPerLane('p.M - 1u'), value: (i, kk) => sb(`va${Math.floor(i / wg)}_${kk >> 2}[${kk & 3}]`, i % wg),
      loads: (kk) => (kk % 4 ? [] : range(tm / wg).map((r) => `let va${r}_${kk >> 2} = hv(a[(ar${r} + k) / 4u + ${kk >> 2}u]);`)),
    };
    case 'm4': {
      const G = tm / 4, S = wg / G; // lanes per k-step (4 rows each), k-steps per load
      return {
        u: Math.max(v.u, S), value: (i, kk) => sb(`va${Math.floor(kk / S)}[${i & 3}]`, (kk % S) * G + (i >> 2)),
        bases: [`let ar0 = min(m0 + 4u * (lid.x % ${G}u), p.M - 4u) + (lid.x / ${G}u) * p.ak;`],
        loads: (kk) => (kk % S ? [] : [`let va${kk / S} = hv(a[(ar0 + (k + ${kk}u) * p.ak) / 4u]);`]),
      };
    }
  }
}

export function registerTiled(v: RegisterCompiled, entry: string, io?: GemmIO): string {
  const { wg, tm, tn, b: bm } = v;
  const bad = (v.a !== 's' && wg !== 8) || ((v.a === 'm' || v.a === 'k4') && tm % wg) || (v.a === 'm4' && ![8, 16, 32].includes(tm))
    || (bm === 'n' && tn % 4) || v.u % 4 || (io !== undefined && pairs(io) && tn % 2);
  if (bad) throw new Error(`matmul_tiled: register tile ${JSON.stringify(v)} is not supported (see RegisterTile)`);
  const A = aSource(v), u = A.u;
  const R = range(tm), C = range(tn);
  // A packed 16-bit C is written a word (two columns) at a time: with 'n' a lane's columns are
  // contiguous already; otherwise lanes own pairs of columns, column pairs strided by the subgroup.
  const two = io !== undefined && pairs(io);
  const col = (j: number) => (bm === 'n' ? `n0 + lid.x * ${tn}u + ${j}u`
    : two ? `n0 + 2u * lid.x + ${(j & 1) + (j >> 1) * 2 * wg}u` : `n0 + lid.x + ${j * wg}u`);
  const outs = two ? R.flatMap((i) => C.filter((j) => j % 2 === 0).map((j) => `out2(m0 + ${i}u, ${col(j)}, c${i}_${j}, c${i}_${j + 1});`))
    : R.flatMap((i) => C.map((j) => `out(m0 + ${i}u, ${col(j)}, c${i}_${j});`));
  const scalarB = (j: number, k: string) => `loadB(bc${j} + (${k}) * p.bk)`;
  const fmas = (ai: (i: number) => string, bj: (j: number) => string) =>
    [...R.map((i) => `let a${i} = ${ai(i)};`), ...C.map((j) => `let b${j} = ${bj(j)};`),
      ...R.flatMap((i) => C.map((j) => `c${i}_${j} += a${i} * b${j};`))].join(' ');
  // One unrolled chunk of u k-steps starting at k (a multiple of u).
  const chunk: string[] = [];
  for (let kk = 0; kk < u; kk++) {
    chunk.push(...A.loads(kk));
    if (bm === 'k' && kk % 4 === 0) chunk.push(...C.map((j) => `let vb${kk >> 2}_${j} = hv(b[(bc${j} + k) / 4u + ${kk >> 2}u]);`));
    if (bm === 'n') chunk.push(...range(tn / 4).map((q) => `let vb${q}_${kk} = hv(b[(bc${4 * q} + (k + ${kk}u) * p.bk) / 4u]);`));
    const bj = (j: number) => bm === 'k' ? `vb${kk >> 2}_${j}[${kk & 3}]`
      : bm === 'n' ? `vb${j >> 2}_${kk}[${j & 3}]` : scalarB(j, `k + ${kk}u`);
    chunk.push(`{ ${fmas((i) => A.value(i, kk), bj)} }`);
  }
  const cols = bm === 'n' ? C.map((j) => `let bc${j} = min(${col(j - (j & 3))}, p.N - 4u) * p.bn + ${j & 3}u;`)
    : C.map((j) => `let bc${j} = min(${col(j)}, p.N - 1u) * p.bn;`);
  return `${io ? '' : F32_LOADS}
${TILE_OF}
${entry} {
  let t = wgIndex(wid, nwg);
  let tilesM = (p.M + ${tm - 1}u) / ${tm}u;
  let tilesN = (p.N + ${wg * tn - 1}u) / ${wg * tn}u;
  if (t >= tilesM * tilesN) { return; } // a folded 2-D grid overshoots
  let tile = tileOf(t, tilesM, tilesN);
  let m0 = tile.x * ${tm}u;
  let n0 = tile.y * ${wg * tn}u;
  ${A.bases.join(' ')}
  ${R.map((i) => `let ur${i} = min(m0 + ${i}u, p.M - 1u) * p.am;`).join(' ')}
  ${cols.join(' ')}
  ${R.flatMap((i) => C.map((j) => `var c${i}_${j} = 0.0;`)).join(' ')}
  var k = 0u;
  for (; k + ${u}u <= p.K; k += ${u}u) {
    ${chunk.join('\n    ')}
  }
  for (; k < p.K; k++) { ${fmas((i) => `loadA(ur${i} + k * p.ak)`, (j) => scalarB(j, 'k'))} }
  ${outs.join('\n  ')}
}
${io ? '' : `fn out(m: u32, n: u32, v: f32) {
  if (m >= p.M || n >= p.N) { return; }
  let o = m * p.N + n;
  if (p.beta != 0.0) { c[o] = hs(v) + p.beta * c[o]; } else { c[o] = hs(v); }
}
`}`;
}
