// qkv_rope: splits the output of the fused q/k/v projection, qkv [B, T, (nh + 2·nkv)·hd] (one
// matmul against q_proj, k_proj and v_proj stored back to back), into q [B, T, nh, hd] and k, v
// [B, T, nkv, hd], rotating q and k by RoPE on the way (rope.ts's rotate-half formula and float32
// table). Backward gathers dq, dk (rotated back) and dv into one dqkv, so the projection's backward
// is one dX and one dW matmul instead of three of each plus two adds.
// One invocation per (token, head) row, vec4s of the half head when hd % 8 == 0.
// With rope = false (minimind-3 normalises q and k per head before RoPE) it only splits.
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { gpu } from '../runtime/device.js';
import { tuner } from '../runtime/tuner.js';
import { qkvRopeTunables } from './qkv_rope_variants.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { ropeTableTensor } from './rope.js';

const WG = 64;
// Head counts are compile-time constants (one pipeline per model shape): x86 has no vector integer
// division, and dividing the row index by uniforms slowed the backward by a fifth. The loop over the
// half head stays a uniform bound: a constant one, fully unrolled, halved the speed on lavapipe.
const PARAMS = [['hhv', 'u32'], ['T', 'u32'], ['pos0', 'u32'], ['sgn', 'f32'], ['rot', 'u32']] as const;

/** WGSL of one direction. fwd: packed row → q/k/v row; bwd: q/k/v row → packed row. In the 'row'
 *  layout an invocation moves a row's half-head vectors in a loop; in 'elem' one vector j of it (the
 *  half head HHV a constant), so neighbouring lanes touch neighbouring addresses. */
function body(fwd: boolean, v: Compiled): string {
  // Moves the half-head vectors j of one row; rotation applies to q and k rows.
  const part = (buf: string, base: string, rotate: boolean) => {
    const [from, to] = fwd ? ['qkv', buf] : [buf, 'qkv'];
    const [fb, tb] = fwd ? ['a0', base] : [base, 'a0'];
    const move = rotate
      ? `let c = select(VT(1.0), tab[c0 + j], rot); let s = select(VT(0.0), p.sgn * tab[c0 + p.hhv + j], rot);
        let x0 = ${from}[${fb} + j]; let x1 = ${from}[${fb} + p.hhv + j];
        ${to}[${tb} + j] = x0 * c - x1 * s; ${to}[${tb} + p.hhv + j] = x1 * c + x0 * s;`
      : `${to}[${tb} + j] = ${from}[${fb} + j]; ${to}[${tb} + p.hhv + j] = ${from}[${fb} + p.hhv + j];`;
    return v.layout === 'row' ? `for (var j = 0u; j < p.hhv; j++) {
        ${move}
      }` : `{
        ${move}
      }`;
  };
  // Per sequence (workgroup row y = batch index b), rows in output order: T·NH q rows, then T·NKV k
  // rows, then T·NKV v rows, so a workgroup (but those at a border) takes one branch and consecutive
  // lanes write consecutive rows (lanes interleaving the three kinds ran all three branches, masked).
  const kind = (first: string, heads: string, at: string, buf: string, rotate: boolean) => `
    let r = row - ${first};
    let t = r / ${heads};                                           // position in the sequence
    let tok = wid.y * p.T + t;
    let a0 = (tok * (NH + 2u * NKV) + ${at} + r % ${heads}) * 2u * p.hhv;  // the row in qkv
    let c0 = (p.pos0 + t) * 2u * p.hhv;                               // table row: cos (hhv) then sin (hhv); hhv = half head in VT units
    let b0 = (tok * ${heads} + r % ${heads}) * 2u * p.hhv;             // the row in ${buf}
    ${part(buf, 'b0', rotate)}`;
  return `
${v.layout === 'row' ? `  let row = wid.x * ${WG}u + lid.x;
  if (row >= p.T * (NH + 2u * NKV)) { return; }` : `  let e = wid.x * ${WG}u + lid.x;
  if (e >= p.T * (NH + 2u * NKV) * ${v.hhv}u) { return; }
  let row = e / ${v.hhv}u;
  let j = e % ${v.hhv}u;`}
  let rot = p.rot != 0u;
  if (row < p.T * NH) {${kind('0u', 'NH', '0u', 'q', true)}
  } else if (row < p.T * (NH + NKV)) {${kind('p.T * NH', 'NKV', 'NH', 'k', true)}
  } else {${kind('p.T * (NH + NKV)', 'NKV', '(NH + NKV)', 'v', false)}
  }
}
`;
}

/** The tuned part: 'row' (one invocation per row, the fallback) or 'elem' (per vector of the half head). */
export interface QkvVariant { layout: 'row' | 'elem' }
/** VT: f32, or vec4 of the half head when hd % 8 == 0; NH, NKV: q and kv heads; hhv: the half head
 *  in VT units (compile-time in the element layout, 0 in the row one). */
type Compiled = QkvVariant & { vec4: boolean; nh: number; nkv: number; hhv: number };
const header = (v: Compiled) => `${vecType(v.vec4)}const NH = ${v.nh}u;\nconst NKV = ${v.nkv}u;\n`;

export const kernels: Record<'qkv_rope_forward' | 'qkv_rope_backward', Kernel<Compiled>> = {
  qkv_rope_forward: defineKernel<Compiled>({
    name: 'qkv_rope_forward', params: PARAMS, workgroup: WG,
    buffers: [['qkv', 'read', 'VT'], ['tab', 'read', 'VT'], ['q', 'rw', 'VT'], ['k', 'rw', 'VT'], ['v', 'rw', 'VT']],
    wgsl: (v, entry) => `${header(v)}${entry} {${body(true, v)}`,
  }),
  qkv_rope_backward: defineKernel<Compiled>({
    name: 'qkv_rope_backward', params: PARAMS, workgroup: WG,
    buffers: [['q', 'read', 'VT'], ['k', 'read', 'VT'], ['v', 'read', 'VT'], ['tab', 'read', 'VT'], ['qkv', 'rw', 'VT']],
    wgsl: (v, entry) => `${header(v)}${entry} {${body(false, v)}`,
  }),
};

export interface QkvShape { nh: number; nkv: number; hd: number; posOffset: number; theta: number; rope: boolean }

/** Launch arguments for a direction; v: the layout, default the tuner's pick for the direction. */
function params(qkvShape: readonly number[], o: QkvShape, sgn: 1 | -1, v?: QkvVariant) {
  const [B, T] = qkvShape;
  const vec4 = o.hd % 8 === 0, hhv = vec4 ? o.hd / 8 : o.hd / 2;
  const layout = v ?? tuner().pick(sgn > 0 ? qkvRopeTunables.forward : qkvRopeTunables.backward, { B, T, nh: o.nh, nkv: o.nkv, hd: o.hd });
  const x = Math.ceil((T * (o.nh + 2 * o.nkv) * (layout.layout === 'row' ? 1 : hhv)) / WG);
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (B > max || x > max) throw new Error(`qkv_rope: a grid of ${x}×${B} workgroups exceeds the adapter's ${max} per dimension`);
  return {
    p: { hhv, T, pos0: o.posOffset, sgn, rot: o.rope ? 1 : 0 },
    variant: { ...layout, vec4, nh: o.nh, nkv: o.nkv, hhv: layout.layout === 'row' ? 0 : hhv },
    tab: ropeTableTensor(o.hd, o.theta, o.posOffset + T),
    workgroups: [x, B, 1] as [number, number, number],
  };
}

/** q [B,T,nh,hd], k and v [B,T,nkv,hd] from qkv [B,T,(nh+2nkv)·hd]; q and k rotated unless o.rope is false. */
export function qkvRope(qkv: Tensor, o: QkvShape): [Tensor, Tensor, Tensor] {
  qkv.assertLive();
  const [B, T, W] = qkv.shape;
  if (qkv.shape.length !== 3 || W !== (o.nh + 2 * o.nkv) * o.hd || o.hd % 2) {
    throw new Error(`qkv_rope: qkv must be [B, T, (nh + 2·nkv)·hd] = [·, ·, ${(o.nh + 2 * o.nkv) * o.hd}] with hd even, got [${qkv.shape}]`);
  }
  if (!Number.isInteger(o.posOffset) || o.posOffset < 0) throw new Error(`qkv_rope: posOffset must be an integer ≥ 0, got ${o.posOffset}`);
  const q = Tensor.empty([B, T, o.nh, o.hd]), k = Tensor.empty([B, T, o.nkv, o.hd]), v = Tensor.empty([B, T, o.nkv, o.hd]);
  launchQkv(true, qkv, [q, k, v], o);
  if (needsGrad(qkv)) record('qkv_rope', [qkv], [q, k, v], { o }, []);
  return [q, k, v];
}

/** One direction with layout v (default the tuner's pick): forward qkv → [q, k, v], backward
 *  [dq, dk, dv] → dqkv (qkv is then the output). */
export function launchQkv(fwd: boolean, qkv: Tensor, parts: Tensor[], o: QkvShape, v?: QkvVariant): void {
  const l = params(qkv.shape, o, fwd ? 1 : -1, v);
  launch(fwd ? kernels.qkv_rope_forward : kernels.qkv_rope_backward, {
    params: l.p, workgroups: l.workgroups, variant: l.variant,
    buffers: (fwd ? [qkv, l.tab, ...parts] : [...parts, l.tab, qkv]).map((t) => t.binding()),
  });
}

export const backward: Record<string, BackwardRule> = {
  qkv_rope: (node, grads) => {
    const qkv = node.inputs[0], o = node.saved.o as QkvShape;
    // A missing output gradient (that output unused) counts as zeros.
    const [dq, dk, dv] = grads.map((g, i) => g ?? Tensor.zeros(node.outputs[i].shape));
    const dqkv = Tensor.empty(qkv.shape);
    launchQkv(false, dqkv, [dq, dk, dv], o);
    return [dqkv];
  },
};

/** Bench metadata: qkv read once, q, k, v written once (the table stays in cache). */
export const bench = { qkv_rope: (size: number) => ({ bytes: 8 * size }) };
