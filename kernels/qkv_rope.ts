// qkv_rope: splits the output of the fused q/k/v projection, qkv [B, T, (nh + 2·nkv)·hd] (one
// matmul against q_proj, k_proj and v_proj stored back to back), into q [B, T, nh, hd] and k, v
// [B, T, nkv, hd], rotating q and k by RoPE on the way (rope.ts's rotate-half formula and float32
// table). Backward gathers dq, dk (rotated back) and dv into one dqkv, so the projection's backward
// is one dX and one dW matmul instead of three of each plus two adds.
// One invocation per (token, head) row, vec4s of the half head when hd % 8 == 0.
// With rope = false (minimind-3 normalises q and k per head before RoPE) it only splits.
// 16-bit qkv (mixed precision: the projection's bf16/f16 output), as torch: RoPE multiplies the 16-bit
// q, k by the float32 table in float32, and SDPA's autocast rounds the results once to 16 bits; v is
// copied word for word (exact). q, k, v have qkv's dtype. Backward takes 16-bit gradients (a float32
// one is rounded first: SDPA's backward gives bf16 dq, dk, dv) and writes a 16-bit dqkv, the float32
// rope-backward rounded once (the gradient of the 16-bit projection output, which the Linear's backward
// reads as 16 bits anyway). Packed words hold 4 (vec4 path, hd % 8 == 0) or 2 (hd % 4 == 0) elements
// of a half head: both halves start on a whole word, so each invocation writes whole words.
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import { gpu } from '../runtime/device.js';
import { tuner } from '../runtime/tuner.js';
import { qkvRopeTunables } from './qkv_rope_variants.js';
import { Tensor, needsGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { ropeTableTensor, type Yarn } from './rope.js';
import { cast } from './cast.js';

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
  // 16-bit: ld unpacks a storage unit (ST) to VT, st rounds VT into one; a plain copy moves the words.
  const [ld, st] = v.format ? [(x: string) => `ld(${x})`, (x: string) => `st(${x})`] : [(x: string) => x, (x: string) => x];
  const part = (buf: string, base: string, rotate: boolean) => {
    const [from, to] = fwd ? ['qkv', buf] : [buf, 'qkv'];
    const [fb, tb] = fwd ? ['a0', base] : [base, 'a0'];
    const move = rotate
      ? `let c = select(VT(1.0), tab[c0 + j], rot); let s = select(VT(0.0), p.sgn * tab[c0 + p.hhv + j], rot);
        let x0 = ${ld(`${from}[${fb} + j]`)}; let x1 = ${ld(`${from}[${fb} + p.hhv + j]`)};
        ${to}[${tb} + j] = ${st('x0 * c - x1 * s')}; ${to}[${tb} + p.hhv + j] = ${st('x1 * c + x0 * s')};`
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
/** VT: f32, or vec4 of the half head when hd % 8 == 0 (16-bit storage: vec2 when not); NH, NKV: q and
 *  kv heads; hhv: the half head in VT units (compile-time in the element layout, 0 in the row one);
 *  format: 16-bit storage (qkv, q, k, v as packed words ST), absent for float32. */
type Compiled = QkvVariant & { vec4: boolean; nh: number; nkv: number; hhv: number; format?: DType16 };
const heads = (v: Compiled) => `const NH = ${v.nh}u;\nconst NKV = ${v.nkv}u;\n`;
/** 16-bit storage: ST holds a VT's elements as packed words (runtime/packed16_wgsl.ts). */
function header16(v: Compiled): string {
  const [un, pk] = v.format === 'f16' ? ['unpackF16', 'packF16'] : ['unpackBf16', 'packBf16'];
  return v.vec4
    ? `alias VT = vec4<f32>;\nalias ST = vec2<u32>;\nfn ld(x: ST) -> VT { return VT(${un}(x.x), ${un}(x.y)); }\nfn st(x: VT) -> ST { return ST(${pk}(x.x, x.y), ${pk}(x.z, x.w)); }\n`
    : `alias VT = vec2<f32>;\nalias ST = u32;\nfn ld(x: ST) -> VT { return ${un}(x); }\nfn st(x: VT) -> ST { return ${pk}(x.x, x.y); }\n`;
}

type Names = 'qkv_rope_forward' | 'qkv_rope_backward';
/** The two directions with q/k/v/qkv bound as `store` (VT for float32, ST for 16 bits). */
function make(store: string, header: (v: Compiled) => string, tail: string): Record<Names, Kernel<Compiled>> {
  return {
    qkv_rope_forward: defineKernel<Compiled>({
      name: 'qkv_rope_forward', params: PARAMS, workgroup: WG,
      buffers: [['qkv', 'read', store], ['tab', 'read', 'VT'], ['q', 'rw', store], ['k', 'rw', store], ['v', 'rw', store]],
      wgsl: (v, entry) => `${header(v)}${entry} {${body(true, v)}${tail}`,
    }),
    qkv_rope_backward: defineKernel<Compiled>({
      name: 'qkv_rope_backward', params: PARAMS, workgroup: WG,
      buffers: [['q', 'read', store], ['k', 'read', store], ['v', 'read', store], ['tab', 'read', 'VT'], ['qkv', 'rw', store]],
      wgsl: (v, entry) => `${header(v)}${entry} {${body(false, v)}${tail}`,
    }),
  };
}

export const kernels = make('VT', (v) => `${vecType(v.vec4)}${heads(v)}`, '');
/** The same kernels over 16-bit storage (the variant's format picks the pack functions). */
export const kernels16 = make('ST', (v) => `${header16(v)}${heads(v)}`, PACKED16_WGSL);

/** yarn: YaRN-scaled frequencies (kernels/rope.ts), absent or null for MiniMind's plain RoPE. */
export interface QkvShape { nh: number; nkv: number; hd: number; posOffset: number; theta: number; rope: boolean; yarn?: Yarn | null }

/** Launch arguments for a direction over storage `dtype`; v: the layout, default the tuner's pick. */
function params(qkvShape: readonly number[], dtype: Tensor['dtype'], o: QkvShape, sgn: 1 | -1, v?: QkvVariant) {
  const [B, T] = qkvShape;
  const format = is16(dtype) ? dtype : undefined;
  const vec4 = o.hd % 8 === 0, hhv = vec4 ? o.hd / 8 : format ? o.hd / 4 : o.hd / 2;
  const shape = { B, T, nh: o.nh, nkv: o.nkv, hd: o.hd, ...(format ? { dtype: format } : {}) };
  const layout = v ?? tuner().pick(sgn > 0 ? qkvRopeTunables.forward : qkvRopeTunables.backward, shape);
  const x = Math.ceil((T * (o.nh + 2 * o.nkv) * (layout.layout === 'row' ? 1 : hhv)) / WG);
  const max = gpu().limits.maxComputeWorkgroupsPerDimension;
  if (B > max || x > max) throw new Error(`qkv_rope: a grid of ${x}×${B} workgroups exceeds the adapter's ${max} per dimension`);
  return {
    p: { hhv, T, pos0: o.posOffset, sgn, rot: o.rope ? 1 : 0 },
    variant: { ...layout, vec4, nh: o.nh, nkv: o.nkv, hhv: layout.layout === 'row' ? 0 : hhv, ...(format ? { format } : {}) },
    tab: ropeTableTensor(o.hd, o.theta, o.posOffset + T, o.yarn ?? null),
    workgroups: [x, B, 1] as [number, number, number],
  };
}

/** q [B,T,nh,hd], k and v [B,T,nkv,hd] from qkv [B,T,(nh+2nkv)·hd] (float32 or 16-bit: q, k, v have
 *  its dtype); q and k rotated unless o.rope is false. */
export function qkvRope(qkv: Tensor, o: QkvShape): [Tensor, Tensor, Tensor] {
  qkv.assertLive();
  const [B, T, W] = qkv.shape;
  if (qkv.dtype !== 'f32' && !is16(qkv.dtype)) throw new Error(`qkv_rope: qkv is ${qkv.dtype}, not a float dtype`);
  const unit = is16(qkv.dtype) ? 4 : 2; // 16 bits: each half head whole words
  if (qkv.shape.length !== 3 || W !== (o.nh + 2 * o.nkv) * o.hd || o.hd % unit) {
    throw new Error(`qkv_rope: qkv must be [B, T, (nh + 2·nkv)·hd] = [·, ·, ${(o.nh + 2 * o.nkv) * o.hd}] with hd a multiple of ${unit}, got ${qkv.dtype} [${qkv.shape}]`);
  }
  if (!Number.isInteger(o.posOffset) || o.posOffset < 0) throw new Error(`qkv_rope: posOffset must be an integer ≥ 0, got ${o.posOffset}`);
  const d = qkv.dtype;
  const q = Tensor.empty([B, T, o.nh, o.hd], d), k = Tensor.empty([B, T, o.nkv, o.hd], d), v = Tensor.empty([B, T, o.nkv, o.hd], d);
  launchQkv(true, qkv, [q, k, v], o);
  if (needsGrad(qkv)) record('qkv_rope', [qkv], [q, k, v], { o }, []);
  return [q, k, v];
}

/** One direction with layout v (default the tuner's pick): forward qkv → [q, k, v], backward
 *  [dq, dk, dv] → dqkv (qkv is then the output). All four of one dtype. */
export function launchQkv(fwd: boolean, qkv: Tensor, parts: Tensor[], o: QkvShape, v?: QkvVariant): void {
  if (parts.some((t) => t.dtype !== qkv.dtype)) throw new Error(`qkv_rope: q, k, v are ${parts.map((t) => t.dtype)}, qkv ${qkv.dtype}`);
  const l = params(qkv.shape, qkv.dtype, o, fwd ? 1 : -1, v);
  const k = is16(qkv.dtype) ? kernels16 : kernels;
  launch(fwd ? k.qkv_rope_forward : k.qkv_rope_backward, {
    params: l.p, workgroups: l.workgroups, variant: l.variant,
    buffers: (fwd ? [qkv, l.tab, ...parts] : [...parts, l.tab, qkv]).map((t) => t.binding()),
  });
}

export const backward: Record<string, BackwardRule> = {
  qkv_rope: (node, grads) => {
    const qkv = node.inputs[0], o = node.saved.o as QkvShape, d = qkv.dtype;
    // A missing output gradient (that output unused) counts as zeros; 16-bit qkv: gradients rounded to 16 bits.
    const parts = grads.map((g, i) => (g ? (is16(d) ? cast(g, d) : g) : Tensor.zeros(node.outputs[i].shape, d)));
    const dqkv = Tensor.empty(qkv.shape, d);
    launchQkv(false, dqkv, parts, o);
    parts.forEach((t, i) => { if (t !== grads[i]) t.dispose(); }); // later commands only may reuse them (queue order)
    return [dqkv];
  },
};

/** Bench metadata: qkv read once, q, k, v written once (the table stays in cache); 4 or 2 bytes an element. */
export const bench = { qkv_rope: (size: number, elemBytes = 4) => ({ bytes: 2 * elemBytes * size }) };
