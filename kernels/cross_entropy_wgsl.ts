// WGSL of cross_entropy's per-row pass (kernels/cross_entropy.ts launches it; kernels/logprob.ts too)
// for both row layouts (kernels/row_layout.ts): losses[gr] = lse − x[label] per row, and with `grad`
// the row becomes (softmax − onehot)·w in place, w a WGSL expression of the row gr given by the
// caller (cross_entropy: 1/count; logprob: minus the sequence's weight). Max and Σexp come from one pass (online softmax per lane):
// exp(−|x − m|) is exp(x − m) when x ≤ m, else the factor that rescales the sum to the new max; one
// exp per element (on lavapipe the exps, not the memory, bound this kernel). In the workgroup
// layout each lane keeps its own (max, sum) over a strided part of the row, and the workgroup
// combines them: M = max of the lanes' maxima, S = Σ sum·exp(max − M).
// Over 16-bit logits (forward16Wgsl: kernels/cross_entropy16.ts, kernels/logprob16.ts) the same pass
// reads the packed words (runtime/packed16_wgsl.ts) into float32 and writes, besides losses, the row's
// lse = log(Σexp) + max for the backward, which makes the 16-bit dlogits (backward16Wgsl).
import { vecType, wgSumCall, wgSumFn } from '../runtime/wgsl.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import type { DType16 } from '../runtime/tensor.js';
import type { RowLayout } from './row_layout.js';

export type ForwardCompiled = RowLayout & { vec4: boolean; grad: boolean };
/** The 16-bit pass: vec4, four elements per vec2<u32> entry (V % 4 == 0), else one element at a time. */
export type Forward16Compiled = RowLayout & { vec4: boolean; format: DType16 };

/** NaN made at run time (WGSL rejects a constant NaN): the loss of a row whose label is out of range. */
const NAN = 'bitcast<f32>(0x7fc00000u | (p.V & 0u))';

/** How the pass reads the logits: `load(k)` is the VT at index k of the row-major logits (in VTs);
 *  `head` declares VT (and load's helpers). */
interface Storage { head: string; load: (k: string) => string }

const f32Storage = (vec4: boolean): Storage => ({ head: vecType(vec4), load: (k) => `logits[${k}]` });

/** The 16-bit logits as array<LT>: LT = vec2<u32> (4 elements) with vec4, else u32 (2 elements; a row
 *  may start or end in the middle of a word when V is odd), unpacked exactly to float32. */
function storage16(vec4: boolean, format: DType16): Storage {
  const un = format === 'f16' ? 'unpackF16' : 'unpackBf16';
  return {
    head: `${vecType(vec4)}alias LT = ${vec4 ? 'vec2<u32>' : 'u32'};
${vec4 ? `fn ld(k: u32) -> VT { let w = logits[k]; return VT(${un}(w.x), ${un}(w.y)); }`
    : `fn ld(k: u32) -> VT { return ${un}(logits[k >> 1u])[k & 1u]; }`}
${PACKED16_WGSL}`,
    load: (k) => `ld(${k})`,
  };
}

/** The online max/Σexp update of lane-private m, s over the loop `loop`. */
const online = (loop: string, load: Storage['load']) => `var m = VT(-3.4e38);
  var s = VT(0.0);
  ${loop} {
    let v = ${load('b + i')};
    let e = exp(-abs(v - m));
    let up = v > m;
    s = select(s + e, s * e + 1.0, up);
    m = select(m, v, up);
  }`;

/** `label` declares labelOf(gr) (−100: not trained); `weight` is the expression w of the row gr. */
export function forwardWgsl(v: ForwardCompiled, entry: string, label: string, weight: string): string {
  return rowPass(v, entry, label, f32Storage(v.vec4), v.grad ? { weight } : null);
}

/** The pass over 16-bit logits: losses and lse[gr] (0 on rows with no valid label). */
export function forward16Wgsl(v: Forward16Compiled, entry: string, label: string): string {
  return rowPass(v, entry, label, storage16(v.vec4, v.format), 'lse');
}

/** The row pass, then: the gradient in place ({ weight }: float32 logits), the row's lse ('lse'), or nothing. */
function rowPass(v: RowLayout & { vec4: boolean }, entry: string, label: string, io: Storage, then: { weight: string } | 'lse' | null): string {
  const at = (l: string) => (v.vec4 ? `${io.load(`b + ${l} / 4u`)}[${l} % 4u]` : io.load(`b + ${l}`));
  const grad = then !== null && then !== 'lse', weight = grad ? then.weight : '';
  if (v.rows === 'lane') {
    const loop = 'for (var i = 0u; i < p.vv; i++)';
    return `${io.head}${label}
${entry} {
  let r = wgIndex(wid, nwg) * 64u + lid.x;   // row within this chunk of the logits
  if (r >= p.rows) { return; }
  let gr = p.r0 + r;
  let label = labelOf(gr);
  let b = r * p.vv;
  if (label == IGNORE || label < 0 || u32(label) >= p.V) {
    losses[gr] = select(${NAN}, 0.0, label == IGNORE);
    ${grad ? `${loop} { logits[b + i] = VT(0.0); }` : then === 'lse' ? 'lse[gr] = 0.0;' : ''}
    return;
  }
  ${online(loop, io.load)}
  let mx = hmax(m);
  let sum = hsum(s * exp(m - mx));
  let l = u32(label);
  losses[gr] = log(sum) + mx - ${at('l')};
  ${grad ? `let wt = ${weight};
  let k = wt / sum;
  ${loop} { logits[b + i] = exp(logits[b + i] - mx) * k; }
  ${at('l')} -= wt;` : then === 'lse' ? 'lse[gr] = log(sum) + mx;' : ''}
}
`;
  }
  const W = v.wg, loop = `for (var i = li; i < p.vv; i += ${W}u)`;
  // The lane that owns the label's element reads it (for the loss) before anyone rewrites the row,
  // and subtracts 1/count from it after its own writes.
  return `${io.head}${label}
${wgSumFn(W, v.sub)}${wgSumFn(W, v.sub, 'max')}
var<workgroup> rowLabel: i32;
${entry} {
  let r = wgIndex(wid, nwg);   // row within this chunk of the logits
  if (r >= p.rows) { return; }
  let gr = p.r0 + r;
  if (li == 0u) { rowLabel = labelOf(gr); }
  let label = workgroupUniformLoad(&rowLabel);
  let b = r * p.vv;
  if (label == IGNORE || label < 0 || u32(label) >= p.V) {
    if (li == 0u) { losses[gr] = select(${NAN}, 0.0, label == IGNORE); }
    ${grad ? `${loop} { logits[b + i] = VT(0.0); }` : then === 'lse' ? 'if (li == 0u) { lse[gr] = 0.0; }' : ''}
    return;
  }
  ${online(loop, io.load)}
  let lm = hmax(m);
  let mx = ${wgSumCall('lm', v.sub, 'max')};
  let sum = ${wgSumCall('hsum(s * exp(m - VT(lm))) * exp(lm - mx)', v.sub)};
  let l = u32(label);
  let owner = li == (${v.vec4 ? 'l / 4u' : 'l'}) % ${W}u;
  if (owner) { losses[gr] = log(sum) + mx - ${at('l')}; }
  ${grad ? `let wt = ${weight};
  let k = wt / sum;
  ${loop} { logits[b + i] = exp(logits[b + i] - mx) * k; }
  if (owner) { ${at('l')} -= wt; }` : then === 'lse' ? 'if (owner) { lse[gr] = log(sum) + mx; }' : ''}
}
`;
}

/** The 16-bit backward's variant: the row layout of the forward that saved the lse (the tuner's choice for
 *  the pair, kernels/cross_entropy_variants.ts; no reduction here, so no subgroups), vec4 and format as there. */
export type Backward16Compiled = { rows: RowLayout['rows']; wg: number; vec4: boolean; format: DType16 };
export const backward16Variant = (v: RowLayout, vec4: boolean, format: DType16): Backward16Compiled => ({ rows: v.rows, wg: v.wg, vec4, format });

/** The 16-bit backward: dlogits = round16(exp(x − lse)·k − onehot·k), k = `scale` (a WGSL expression of
 *  the row gr: cross_entropy g/count, logprob −w_n·g_n), written in place of the logits, whole words:
 *  with vec4 a vec2<u32> of 4 elements (rows are whole entries), else a u32 word per step, owned by the
 *  row that holds its low half (with V odd its high half may be the next row's first element, or
 *  padding past the last row: 0). Rows with no valid label get 0. `label` declares labelOf(gr).
 *  Lane layout: a row per invocation (64 to a workgroup), walking it; wg: a workgroup per row, its lanes striding. */
export function backward16Wgsl(v: Backward16Compiled, entry: string, label: string, scale: string): string {
  const [un, pk] = v.format === 'f16' ? ['unpackF16', 'packF16'] : ['unpackBf16', 'packBf16'];
  const [row, first, step] = v.rows === 'lane' ? ['wgIndex(wid, nwg) * 64u + lid.x', '0u', '1u'] : ['wgIndex(wid, nwg)', 'li', `${v.wg}u`];
  if (v.vec4) {
    const loop = `for (var j = ${first}; j < p.vv; j += ${step})`;
    return `alias LT = vec2<u32>;
${label}
${entry} {
  let r = ${row};   // row within this chunk of the logits
  if (r >= p.rows) { return; }
  let gr = p.r0 + r;
  let y = labelOf(gr);
  let b = r * p.vv;
  if (y == IGNORE || y < 0 || u32(y) >= p.V) {
    ${loop} { d[b + j] = vec2<u32>(0u); }
    return;
  }
  let k = ${scale};
  let z = lse[gr];
  let onehot = vec4<u32>(u32(y));
  ${loop} {
    let w = d[b + j];
    let col = 4u * j + vec4<u32>(0u, 1u, 2u, 3u);
    let g = exp(vec4<f32>(${un}(w.x), ${un}(w.y)) - z) * k - select(vec4<f32>(0.0), vec4<f32>(k), col == onehot);
    d[b + j] = vec2<u32>(${pk}(g.x, g.y), ${pk}(g.z, g.w));
  }
}
${PACKED16_WGSL}`;
  }
  return `alias LT = u32;
${label}
fn dl(gr: u32, col: u32, x: f32) -> f32 {
  let y = labelOf(gr);
  if (y == IGNORE || y < 0 || u32(y) >= p.V) { return 0.0; }
  let k = ${scale};
  return exp(x - lse[gr]) * k - select(0.0, k, col == u32(y));
}
${entry} {
  let r = ${row};   // row within this chunk of the logits
  if (r >= p.rows) { return; }
  let e0 = r * p.V;   // the row's elements [e0, e0 + V) of the chunk, which starts on a word
  let e1 = e0 + p.V;
  for (var w = (e0 + 1u) / 2u + ${first}; 2u * w < e1; w += ${step}) {
    let x = ${un}(d[w]);
    var hi = 0.0;
    if (2u * w + 1u < e1) { hi = dl(p.r0 + r, 2u * w + 1u - e0, x.y); }
    else if (r + 1u < p.rows) { hi = dl(p.r0 + r + 1u, 0u, x.y); }
    d[w] = ${pk}(dl(p.r0 + r, 2u * w - e0, x.x), hi);
  }
}
${PACKED16_WGSL}`;
}
