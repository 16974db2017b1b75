// WGSL of the workgroup-memory tiled GEMM of kernels/matmul.ts, for GPUs: C[m,n] (+)= Σ_k
// A[m·am + k·ak]·B[k·bk + n·bn], C row-major [M,N]; A and B bound as arrays of vec4.
// A (bn/tn)×(bm/tm) workgroup computes a bm×bn tile of C. Per step of bk, its invocations stage a
// bm×bk block of A and a bk×bn block of B in workgroup memory, read from global memory as vec4s along
// the operand's contiguous dimension where the layout allows (consecutive invocations read
// consecutive addresses: coalesced), zero-filled outside the matrix. Each invocation then computes
// tm×tn outputs from vec4 reads of the blocks: its rows are tm/4 groups of 4 strided by the
// workgroup's rows, its columns tn/4 groups of 4 strided by its columns, so neighbouring invocations
// read neighbouring vec4s (no bank conflicts) and each FMA is a vec4.
// Loads go through hv/hs and results through hs (kernels/matmul.ts: float16 rounding in that mode).
// Over 16-bit storage (io given) the loads and the stores (out4) are kernels/matmul_io.ts's instead.

import type { GemmIO } from './matmul_io.js';

export interface SharedTile {
  kind: 'shared'; bm: number; bn: number; bk: number; tm: number; tn: number;
  /** Row tiles per group of the tile order (a runtime parameter: no recompilation). */
  g: number;
}
/** How the blocks are read from global memory, from the operands' layout: A 'k4' (vec4 along k:
 *  ak = 1, am % 4 = 0, K % 4 = 0), 'm4' (along m: am = 1, ak % 4 = 0, M % 4 = 0) or 's' (scalars);
 *  B 'k4' (bk = 1, bn % 4 = 0, K % 4 = 0), 'n4' (bn = 1, bk % 4 = 0, N % 4 = 0) or 's'. */
export type SharedCompiled = Omit<SharedTile, 'kind' | 'g'> & { la: 'k4' | 'm4' | 's'; lb: 'k4' | 'n4' | 's' };

/** WGSL: tile (row tile, column tile) of linear tile t, in groups of p.group row tiles (row tiles
 *  fastest within a group, then column tiles): with p.group = 1, row-major order. A group's
 *  workgroups share B's columns and A's rows, so on a small cache they stay resident. */
export const TILE_OF = `fn tileOf(t: u32, tilesM: u32, tilesN: u32) -> vec2<u32> {
  let span = p.group * tilesN;
  let grp = t / span;
  let first = grp * p.group;
  let rows = min(tilesM - first, p.group);
  let r = t - grp * span;
  return vec2<u32>(first + r % rows, r / rows);
}`;

/** The float32 kernels' element loads (A and B bound as arrays of vec4<f32>). */
export const F32_LOADS = `
fn loadA(i: u32) -> f32 { return hs(a[i >> 2u][i & 3u]); }
fn loadB(i: u32) -> f32 { return hs(b[i >> 2u][i & 3u]); }`;

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

export function sharedTiled(v: SharedCompiled, entry: string, io?: GemmIO): string {
  const { bm, bn, bk, tm, tn, la, lb } = v;
  const TX = bn / tn, TY = bm / tm, threads = TX * TY;
  const QI = range(tm / 4), QJ = range(tn / 4), I4 = range(4);
  // Staging: element e of a block, e = li, li + threads, ...; As[kk][m] and Bs[kk][n] as vec4 rows.
  const stageA = la === 'm4'
    ? `for (var e = li; e < ${(bm * bk) / 4}u; e += ${threads}u) {
      let kk = e / ${bm / 4}u; let m = m0 + (e % ${bm / 4}u) * 4u; let k = k0 + kk;
      As[e] = select(vec4<f32>(0.0), hv(a[(min(m, p.M - 4u) * p.am + min(k, p.K - 1u) * p.ak) / 4u]), m < p.M && k < p.K);
    }`
    : la === 'k4'
      ? `for (var e = li; e < ${(bm * bk) / 4}u; e += ${threads}u) {
      let i = e / ${bk / 4}u; let kk = (e % ${bk / 4}u) * 4u; let m = m0 + i; let k = k0 + kk;
      let x = select(vec4<f32>(0.0), hv(a[(min(m, p.M - 1u) * p.am + min(k, p.K - 4u)) / 4u]), m < p.M && k < p.K);
      ${I4.map((j) => `As[((kk + ${j}u) * ${bm}u + i) / 4u][i % 4u] = x[${j}];`).join(' ')}
    }`
      : `for (var e = li; e < ${bm * bk}u; e += ${threads}u) {
      let i = select(e % ${bm}u, e / ${bk}u, p.ak == 1u); let kk = select(e / ${bm}u, e % ${bk}u, p.ak == 1u);
      let m = m0 + i; let k = k0 + kk;
      As[(kk * ${bm}u + i) / 4u][i % 4u] = select(0.0, loadA(min(m, p.M - 1u) * p.am + min(k, p.K - 1u) * p.ak), m < p.M && k < p.K);
    }`;
  const stageB = lb === 'n4'
    ? `for (var e = li; e < ${(bk * bn) / 4}u; e += ${threads}u) {
      let kk = e / ${bn / 4}u; let n = n0 + (e % ${bn / 4}u) * 4u; let k = k0 + kk;
      Bs[e] = select(vec4<f32>(0.0), hv(b[(min(k, p.K - 1u) * p.bk + min(n, p.N - 4u) * p.bn) / 4u]), n < p.N && k < p.K);
    }`
    : lb === 'k4'
      ? `for (var e = li; e < ${(bk * bn) / 4}u; e += ${threads}u) {
      let j = e / ${bk / 4}u; let kk = (e % ${bk / 4}u) * 4u; let n = n0 + j; let k = k0 + kk;
      let x = select(vec4<f32>(0.0), hv(b[(min(k, p.K - 4u) + min(n, p.N - 1u) * p.bn) / 4u]), n < p.N && k < p.K);
      ${I4.map((q) => `Bs[((kk + ${q}u) * ${bn}u + j) / 4u][j % 4u] = x[${q}];`).join(' ')}
    }`
      : `for (var e = li; e < ${bk * bn}u; e += ${threads}u) {
      let j = select(e % ${bn}u, e / ${bk}u, p.bk == 1u); let kk = select(e / ${bn}u, e % ${bk}u, p.bk == 1u);
      let n = n0 + j; let k = k0 + kk;
      Bs[(kk * ${bn}u + j) / 4u][j % 4u] = select(0.0, loadB(min(k, p.K - 1u) * p.bk + min(n, p.N - 1u) * p.bn), n < p.N && k < p.K);
    }`;
  // Invocation (tx, ty): rows 4·(qi·TY + ty) + i, columns 4·(qj·TX + tx) + j.
  const acc = (qi: number, i: number, qj: number) => `c${qi}_${i}_${qj}`;
  return `${io ? '' : F32_LOADS}
var<workgroup> As: array<vec4<f32>, ${(bm * bk) / 4}>; // [bk][bm / 4]
var<workgroup> Bs: array<vec4<f32>, ${(bk * bn) / 4}>; // [bk][bn / 4]
${TILE_OF}
${entry} {
  let t = wgIndex(wid, nwg);
  let tilesM = (p.M + ${bm - 1}u) / ${bm}u;
  let tilesN = (p.N + ${bn - 1}u) / ${bn}u;
  // A folded 2-D grid overshoots; the extra workgroups skip the work but not the barriers.
  let live = t < tilesM * tilesN;
  let tile = tileOf(min(t, tilesM * tilesN - 1u), tilesM, tilesN);
  let m0 = tile.x * ${bm}u;
  let n0 = tile.y * ${bn}u;
  let tx = lid.x;
  let ty = lid.y;
  ${QI.flatMap((qi) => I4.flatMap((i) => QJ.map((qj) => `var ${acc(qi, i, qj)} = vec4<f32>(0.0);`))).join(' ')}
  for (var k0 = 0u; k0 < p.K; k0 += ${bk}u) {
    ${stageA}
    ${stageB}
    workgroupBarrier();
    for (var kk = 0u; kk < ${bk}u; kk++) {
      ${QI.map((qi) => `let a${qi} = As[kk * ${bm / 4}u + ${qi * TY}u + ty];`).join(' ')}
      ${QJ.map((qj) => `let b${qj} = Bs[kk * ${bn / 4}u + ${qj * TX}u + tx];`).join(' ')}
      ${QI.flatMap((qi) => I4.flatMap((i) => QJ.map((qj) => `${acc(qi, i, qj)} = fma(vec4<f32>(a${qi}[${i}]), b${qj}, ${acc(qi, i, qj)});`))).join(' ')}
    }
    workgroupBarrier();
  }
  if (!live) { return; }
  ${QI.flatMap((qi) => I4.flatMap((i) => QJ.map((qj) => `out4(m0 + ${4 * qi * TY}u + 4u * ty + ${i}u, n0 + ${4 * qj * TX}u + 4u * tx, ${acc(qi, i, qj)});`))).join('\n  ')}
}
${io ? '' : `fn out4(m: u32, n: u32, v: vec4<f32>) {
  if (m >= p.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    if (n + j < p.N) {
      let o = m * p.N + n + j;
      if (p.beta != 0.0) { c[o] = hs(v[j]) + p.beta * c[o]; } else { c[o] = hs(v[j]); }
    }
  }
}
`}`;
}
