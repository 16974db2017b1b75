// qkv_rope: splits the output of the fused q/k/v projection, qkv [B, T, (nh + 2·nkv)·hd] (one
// matmul against q_proj, k_proj and v_proj stored back to back), into q [B, T, nh, hd] and k, v
// [B, T, nkv, hd], rotating q and k by RoPE on the way (rope.ts's rotate-half formula and float32
// table). Backward gathers dq, dk (rotated back) and dv into one dqkv, so the projection's backward
// is one dX and one dW matmul instead of three of each plus two adds.
// One invocation per (token, head) row of qkv, vec4s of the half head when hd % 8 == 0.
// With rope = false (minimind-3 normalises q and k per head before RoPE) it only splits.
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { ropeTableTensor } from './rope.js';

const WG = 64;
const PARAMS = [['rows', 'u32'], ['nH', 'u32'], ['nh', 'u32'], ['nkv', 'u32'], ['T', 'u32'], ['pos0', 'u32'], ['hhv', 'u32'],
  ['sgn', 'f32'], ['rot', 'u32']] as const;

/** WGSL of one direction. fwd: packed row → q/k/v row; bwd: q/k/v row → packed row. */
function body(fwd: boolean): string {
  // `src`/`dst` expressions for one half-element j of the row; rotation applies to q and k rows.
  const part = (buf: string, base: string, rotate: boolean) => {
    const [from, to] = fwd ? ['qkv', buf] : [buf, 'qkv'];
    const [fb, tb] = fwd ? ['a0', base] : [base, 'a0'];
    const move = rotate
      ? `let c = select(VT(1.0), tab[c0 + j], rot); let s = select(VT(0.0), p.sgn * tab[c0 + p.hhv + j], rot);
        let x0 = ${from}[${fb} + j]; let x1 = ${from}[${fb} + p.hhv + j];
        ${to}[${tb} + j] = x0 * c - x1 * s; ${to}[${tb} + p.hhv + j] = x1 * c + x0 * s;`
      : `${to}[${tb} + j] = ${from}[${fb} + j]; ${to}[${tb} + p.hhv + j] = ${from}[${fb} + p.hhv + j];`;
    return `for (var j = 0u; j < p.hhv; j++) {
        ${move}
      }`;
  };
  return `
  let row = wgIndex(wid, nwg) * ${WG}u + lid.x;   // row = token·nH + head, nH = nh + 2·nkv
  if (row >= p.rows) { return; }
  let tok = row / p.nH;
  let h = row % p.nH;
  let rot = p.rot != 0u;
  let c0 = (p.pos0 + tok % p.T) * 2u * p.hhv;      // table row: cos (hhv) then sin (hhv)
  let a0 = row * 2u * p.hhv;                       // the row in qkv; hhv = half head dim in VT units
  if (h < p.nh) {
    let qb = (tok * p.nh + h) * 2u * p.hhv;
    ${part('q', 'qb', true)}
  } else if (h < p.nh + p.nkv) {
    let kb = (tok * p.nkv + h - p.nh) * 2u * p.hhv;
    ${part('k', 'kb', true)}
  } else {
    let vb = (tok * p.nkv + h - p.nh - p.nkv) * 2u * p.hhv;
    ${part('v', 'vb', false)}
  }
}
`;
}

const entry = (name: string) => `@compute @workgroup_size(${WG}) fn ${name}(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {`;
const VT = (v: Record<string, unknown>) => `alias VT = ${v.vec4 ? 'vec4<f32>' : 'f32'};\n`;

export const kernels: Record<'qkv_rope_forward' | 'qkv_rope_backward', Kernel> = {
  qkv_rope_forward: defineKernel({
    name: 'qkv_rope_forward', params: PARAMS,
    buffers: [['qkv', 'read', 'VT'], ['tab', 'read', 'VT'], ['q', 'rw', 'VT'], ['k', 'rw', 'VT'], ['v', 'rw', 'VT']],
    wgsl: (v) => VT(v) + entry('qkv_rope_forward') + body(true),
  }),
  qkv_rope_backward: defineKernel({
    name: 'qkv_rope_backward', params: PARAMS,
    buffers: [['q', 'read', 'VT'], ['k', 'read', 'VT'], ['v', 'read', 'VT'], ['tab', 'read', 'VT'], ['qkv', 'rw', 'VT']],
    wgsl: (v) => VT(v) + entry('qkv_rope_backward') + body(false),
  }),
};

export interface QkvShape { nh: number; nkv: number; hd: number; posOffset: number; theta: number; rope: boolean }

function params(qkvShape: readonly number[], o: QkvShape, sgn: 1 | -1) {
  const [B, T] = qkvShape;
  const vec4 = o.hd % 8 === 0, nH = o.nh + 2 * o.nkv;
  return {
    p: { rows: B * T * nH, nH, nh: o.nh, nkv: o.nkv, T, pos0: o.posOffset, hhv: vec4 ? o.hd / 8 : o.hd / 2, sgn, rot: o.rope ? 1 : 0 },
    vec4, tab: ropeTableTensor(o.hd, o.theta, o.posOffset + T), workgroups: Math.ceil((B * T * nH) / WG),
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
  const l = params(qkv.shape, o, 1);
  launch(kernels.qkv_rope_forward, {
    params: l.p, workgroups: l.workgroups, variant: { vec4: l.vec4 },
    buffers: [qkv.binding(), l.tab.binding(), q.binding(), k.binding(), v.binding()],
  });
  if (needsGrad(qkv)) record('qkv_rope', [qkv], [q, k, v], { o });
  return [q, k, v];
}

export const backward: Record<string, BackwardRule> = {
  qkv_rope: (node, grads) => {
    const qkv = node.inputs[0], o = node.saved.o as QkvShape;
    // A missing output gradient (that output unused) counts as zeros.
    const [dq, dk, dv] = grads.map((g, i) => g ?? Tensor.zeros(node.outputs[i].shape));
    const dqkv = Tensor.empty(qkv.shape);
    const l = params(qkv.shape, o, -1);
    launch(kernels.qkv_rope_backward, {
      params: l.p, workgroups: l.workgroups, variant: { vec4: l.vec4 },
      buffers: [dq.binding(), dk.binding(), dv.binding(), l.tab.binding(), dqkv.binding()],
    });
    return [dqkv];
  },
};

/** Bench metadata: qkv read once, q, k, v written once (the table stays in cache). */
export const bench = { qkv_rope: (size: number) => ({ bytes: 8 * size }) };
