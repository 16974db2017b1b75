// WGSL of cross_entropy's per-row pass (kernels/cross_entropy.ts launches it; kernels/logprob.ts too)
// for both row layouts (kernels/row_layout.ts): losses[gr] = lse − x[label] per row, and with `grad`
// the row becomes (softmax − onehot)·w in place, w a WGSL expression of the row gr given by the
// caller (cross_entropy: 1/count; logprob: minus the sequence's weight). Max and Σexp come from one pass (online softmax per lane):
// exp(−|x − m|) is exp(x − m) when x ≤ m, else the factor that rescales the sum to the new max; one
// exp per element (on lavapipe the exps, not the memory, bound this kernel). In the workgroup
// layout each lane keeps its own (max, sum) over a strided part of the row, and the workgroup
// combines them: M = max of the lanes' maxima, S = Σ sum·exp(max − M).
import { vecType, wgSumCall, wgSumFn } from '../runtime/wgsl.js';
import type { RowLayout } from './row_layout.js';

export type ForwardCompiled = RowLayout & { vec4: boolean; grad: boolean };

/** NaN made at run time (WGSL rejects a constant NaN): the loss of a row whose label is out of range. */
const NAN = 'bitcast<f32>(0x7fc00000u | (p.V & 0u))';

/** The online max/Σexp update of lane-private m, s over the loop `loop`. */
const online = (loop: string) => `var m = VT(-3.4e38);
  var s = VT(0.0);
  ${loop} {
    let v = logits[b + i];
    let e = exp(-abs(v - m));
    let up = v > m;
    s = select(s + e, s * e + 1.0, up);
    m = select(m, v, up);
  }`;

/** `label` declares labelOf(gr) (−100: not trained); `weight` is the expression w of the row gr. */
export function forwardWgsl(v: ForwardCompiled, entry: string, label: string, weight: string): string {
  const at = (l: string) => (v.vec4 ? `logits[b + ${l} / 4u][${l} % 4u]` : `logits[b + ${l}]`);
  if (v.rows === 'lane') {
    const loop = 'for (var i = 0u; i < p.vv; i++)';
    return `${vecType(v.vec4)}${label}
${entry} {
  let r = wgIndex(wid, nwg) * 64u + lid.x;   // row within this chunk of the logits
  if (r >= p.rows) { return; }
  let gr = p.r0 + r;
  let label = labelOf(gr);
  let b = r * p.vv;
  if (label == IGNORE || label < 0 || u32(label) >= p.V) {
    losses[gr] = select(${NAN}, 0.0, label == IGNORE);
    ${v.grad ? `${loop} { logits[b + i] = VT(0.0); }` : ''}
    return;
  }
  ${online(loop)}
  let mx = hmax(m);
  let sum = hsum(s * exp(m - mx));
  let l = u32(label);
  losses[gr] = log(sum) + mx - ${at('l')};
  ${v.grad ? `let wt = ${weight};
  let k = wt / sum;
  ${loop} { logits[b + i] = exp(logits[b + i] - mx) * k; }
  ${at('l')} -= wt;` : ''}
}
`;
  }
  const W = v.wg, loop = `for (var i = li; i < p.vv; i += ${W}u)`;
  // The lane that owns the label's element reads it (for the loss) before anyone rewrites the row,
  // and subtracts 1/count from it after its own writes.
  return `${vecType(v.vec4)}${label}
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
    ${v.grad ? `${loop} { logits[b + i] = VT(0.0); }` : ''}
    return;
  }
  ${online(loop)}
  let lm = hmax(m);
  let mx = ${wgSumCall('lm', v.sub, 'max')};
  let sum = ${wgSumCall('hsum(s * exp(m - VT(lm))) * exp(lm - mx)', v.sub)};
  let l = u32(label);
  let owner = li == (${v.vec4 ? 'l / 4u' : 'l'}) % ${W}u;
  if (owner) { losses[gr] = log(sum) + mx - ${at('l')}; }
  ${v.grad ? `let wt = ${weight};
  let k = wt / sum;
  ${loop} { logits[b + i] = exp(logits[b + i] - mx) * k; }
  if (owner) { ${at('l')} -= wt; }` : ''}
}
`;
}
