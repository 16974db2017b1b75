// WGSL of rmsnorm and add_rmsnorm (kernels/rmsnorm.ts, kernels/add_rmsnorm.ts launch it): the
// forward and backward bodies for both row layouts, their params and variant types. A module of
// its own so the op modules and their variants (rmsnorm_variants.ts) can import it in any order.
import { vecType, wgSumFn, wgSumCall } from '../runtime/wgsl.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import type { RowLayout } from './row_layout.js';
import type { DType16 } from '../runtime/tensor.js';

export const WG = 64;

/** The forward's variant, and the backward's: the dot pass's row layout and the number of row
 *  chunks the second pass splits the rows into (more chunks: more invocations, more partials). */
export type ForwardVariant = RowLayout;
export interface BackwardVariant extends RowLayout { chunks: number }
/** What a kernel compiles: the layout and VT's width (vec4<f32> when H % 4 == 0, hv = H/4, else f32). */
export type RowWidth = RowLayout & { vec4: boolean };

/** The row index r and the loop over its vectors for a layout; returns early past the last row. */
export function rowLoop(v: RowLayout): { head: string; loop: string } {
  return v.rows === 'wg'
    ? { head: 'let r = wgIndex(wid, nwg);\n  if (r >= p.rows) { return; }', loop: `for (var i = li; i < p.hv; i += ${v.wg}u)` }
    : { head: `let r = wgIndex(wid, nwg) * ${WG}u + lid.x;\n  if (r >= p.rows) { return; }`, loop: 'for (var i = 0u; i < p.hv; i++)' };
}
/** Statement: `let name = Σ over the row of the per-lane partial`. */
export const rowSum = (v: RowLayout, name: string, partial: string) =>
  v.rows === 'wg' ? `let ${name} = ${wgSumCall(`hsum(${partial})`, v.sub)};` : `let ${name} = hsum(${partial});`;
/** Workgroups for `rows` rows. */
export const rowGroups = (v: RowLayout, rows: number) => (v.rows === 'wg' ? rows : Math.ceil(rows / WG));

/** add_rmsnorm's 16-bit res (packed words, runtime/packed16_wgsl.ts) read as VT: RT is vec2<u32> (4 values)
 *  when VT is vec4<f32>, else u32 with element j in half j & 1 of word j / 2 (rows of an odd H straddle words). */
function res16Wgsl(vec4: boolean, format: DType16): string {
  const un = format === 'f16' ? 'unpackF16' : 'unpackBf16';
  return vec4
    ? `alias RT = vec2<u32>;\nfn resAt(j: u32) -> VT { let w = res[j]; return vec4<f32>(${un}(w.x), ${un}(w.y)); }\n${PACKED16_WGSL}`
    : `alias RT = u32;\nfn resAt(j: u32) -> VT { return ${un}(res[j >> 1u])[j & 1u]; }\n${PACKED16_WGSL}`;
}

/** Forward WGSL: y[r, :] and rstd[r] of x, or with `add` of s = x + res (also written out: the
 *  fused residual add of add_rmsnorm.ts); with `res16` res is 16-bit, widened exactly before the float32 add
 *  (torch promotes float32 + bfloat16 to float32). */
export function forwardWgsl(entry: string, v: RowWidth, add: boolean, res16?: DType16): string {
  const xv = add ? `x[b + i] + ${res16 ? 'resAt(b + i)' : 'res[b + i]'}` : 'x[b + i]';
  const { head, loop } = rowLoop(v);
  return `${vecType(v.vec4)}${res16 ? res16Wgsl(v.vec4, res16) : ''}${v.rows === 'wg' ? wgSumFn(v.wg, v.sub) : ''}
${entry} {
  ${head}
  let b = r * p.hv;
  var acc = VT(0.0);
  ${loop} { let v = ${xv}; ${add ? 's[b + i] = v; ' : ''}acc += v * v; }
  ${rowSum(v, 'ss', 'acc')}
  let rs = inverseSqrt(ss / f32(p.h) + p.eps);
  ${loop} { y[b + i] = w[i] * (${add ? 's' : 'x'}[b + i] * rs); }
  ${v.rows === 'wg' ? 'if (li == 0u) { rstd[r] = rs; }' : 'rstd[r] = rs;'}
}
`;
}

/** Backward WGSL, first pass: c[r] = rstd[r]³ · Σ_i w[i]·dy[r, i]·x[r, i] / H per row. */
export function dotWgsl(v: RowWidth, entry: string): string {
  const { head, loop } = rowLoop(v);
  return `${vecType(v.vec4)}${v.rows === 'wg' ? wgSumFn(v.wg, v.sub) : ''}
${entry} {
  ${head}
  let b = r * p.hv;
  var acc = VT(0.0);
  ${loop} { acc += w[i] * dy[b + i] * x[b + i]; }
  ${rowSum(v, 'd', 'acc')}
  let rs = rstd[r];
  ${v.rows === 'wg' ? 'if (li == 0u) { ' : ''}c[r] = rs * rs * rs * d / f32(p.h);${v.rows === 'wg' ? ' }' : ''}
}
`;
}

/** Backward WGSL, second pass: dx[r, i] for the rows r of chunk k = [k·rpi, (k+1)·rpi) and
 *  part[k, i] = Σ_r dy·x·rstd over them, one (column i, chunk k) per invocation, i fastest (neighbouring
 *  lanes read neighbouring columns); c from rmsnorm_backward_dot. With `add`, dx also takes the
 *  gradient ds that reached the norm's input directly. Without `dw` (a frozen weight) part is
 *  neither summed nor written. */
export function backwardWgsl(entry: string, vec4: boolean, add: boolean, dw: boolean): string {
  return `${vecType(vec4)}
${entry} {
  let t = wgIndex(wid, nwg) * ${WG}u + lid.x;
  let i = t % p.hv;
  let k = t / p.hv;
  if (k >= p.chunks) { return; }
  let wi = w[i];
  var acc = VT(0.0);
  for (var r = k * p.rpi; r < min((k + 1u) * p.rpi, p.rows); r++) {
    let j = r * p.hv + i;
    let xv = x[j];
    let g = dy[j];
    let rs = rstd[r];
    dx[j] = rs * (wi * g) - xv * c[r]${add ? ' + ds[j]' : ''};
    ${dw ? 'acc += g * (xv * rs);' : ''}
  }
  ${dw ? 'part[k * p.hv + i] = acc;' : ''}
}
`;
}

export const FORWARD_PARAMS = [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32'], ['eps', 'f32']] as const;
export const BACKWARD_PARAMS = [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32'], ['rpi', 'u32'], ['chunks', 'u32']] as const;

