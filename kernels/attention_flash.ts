// WGSL of the flash attention kernels (attention.ts launches them). Each kernel has two bodies,
// picked by the variant:
//  - sg (CPU adapters with subgroups, lavapipe): one subgroup per workgroup (wg = subgroup size S,
//    8 on lavapipe). Mesa 25 loads storage lane by lane even when every lane reads the same address,
//    so a load should bring each lane a distinct value: per block of S keys, lane l loads key row
//    j0+l (hd/4 vec4 loads) and the subgroup hands each row to all lanes, bc lanes per unrolled step
//    (see lanes()); the per-lane rows are named registers (qr0.., acc0..), unrolled over hd/4.
//    Measured at B16 T340 nh8 hd64: forward 139 ms, forward+backward 469 ms (naive: 1819, 5784 ms).
//  - loop (GPUs, or no subgroups): every lane reads the same key row from memory (cached on a GPU);
//    rows are private arrays, blocks of bc keys, loops over hd with a runtime bound (p.n4) so the
//    compiler does not unroll them: lavapipe took minutes to compile the fully unrolled version.
// Scores are in log2 units: q (or k) is pre-scaled by scale2 = log2(e)/sqrt(hd) and exp2 is used.
// 16-bit storage (variant format bf16/f16, mixed precision as torch's SDPA under autocast): q, k, v,
// o, dO and dq, dk, dv are packed words (runtime/packed16_wgsl.ts), 4 elements (one vec4 of a row) to
// a vec2<u32>: ld unpacks each load to vec4<f32>, every sum and the softmax stay float32, st rounds
// each stored vec4 once into two whole words (hd % 4 == 0: a row never splits a word). lse and dsum
// stay float32.
import { defineKernel } from '../runtime/kernel.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import type { DType16 } from '../runtime/tensor.js';

/** sg: subgroup-broadcast body (wg = bc = subgroup size); else the loop body, wg rows × bc keys. */
export interface FlashTile { sg: boolean; wg: number; bc: number }
/** format: 16-bit storage of the row tensors, absent for float32. */
export interface FlashVariant extends FlashTile { hd: number; format?: DType16 }

const LOG2E = Math.LOG2E;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const each = (n: number, f: (i: number) => string, sep = '\n    ') => range(n).map(f).join(sep);
/** Σ_i dot(a_i, b_i) over the n4 vec4 slices of a row. */
const dots = (n4: number, a: (i: number) => string, b: (i: number) => string) => each(n4, (i) => `dot(${a(i)}, ${b(i)})`, ' + ');
/** sg mode handles a block's S lanes bc at a time: all at once with constant-lane broadcasts when
 *  bc = S, else in a runtime loop over c0 with subgroupShuffle (less code: a much faster compile). */
function lanes(v: FlashVariant) {
  const all = v.bc === v.wg;
  const lane = (c: number) => (all ? `${c}u` : `(c0 + ${c}u)`);
  return {
    U: v.bc, lane,
    sh: (x: string, c: number) => (all ? `subgroupBroadcast(${x}, ${c}u)` : `subgroupShuffle(${x}, c0 + ${c}u)`),
    open: all ? '' : `for (var c0 = 0u; c0 < ${v.wg}u; c0 += ${v.bc}u) {`,
    close: all ? '' : '}',
  };
}

/** ld(x): a loaded vec4 of a row as vec4<f32>; st(x): a vec4<f32> as stored (identity for float32). */
const io = (v: FlashVariant) => (v.format
  ? { ld: (x: string) => `h4(${x})`, st: (x: string) => `p4(${x})` } : { ld: (x: string) => x, st: (x: string) => x });

/** Header shared by all three: the tile (rows [r0, r0+wg) of head pair bh); 2-D folding extras return. */
function prologue(v: FlashVariant, entry: string, heads: string): string {
  return `
const N4 = ${v.hd / 4}u;
${entry} {
  let nTB = (p.T + ${v.wg}u - 1u) / ${v.wg}u;
  let w = wgIndex(wid, nwg);
  if (w >= p.B * ${heads} * nTB) { return; }
  let bh = w / nTB;
  let r0 = (w - bh * nTB) * ${v.wg}u;`;
}

/** Per-lane row registers: named lets/vars in sg mode, private arrays in loop mode. */
const rows = (v: FlashVariant) => ({
  n4: v.hd / 4,
  load: (name: string, expr: (i: string) => string) => v.sg ? each(v.hd / 4, (i) => `let ${name}${i} = ${expr(`${i}u`)};`, '\n  ')
    : `var ${name}: array<vec4<f32>, N4>;\n  for (var i = 0u; i < p.n4; i++) { ${name}[i] = ${expr('i')}; }`,
  zero: (name: string) => v.sg ? each(v.hd / 4, (i) => `var ${name}${i} = vec4<f32>(0.0);`, '\n  ')
    : `var ${name}: array<vec4<f32>, N4>;\n  for (var i = 0u; i < p.n4; i++) { ${name}[i] = vec4<f32>(0.0); }`,
  store: (name: string, expr: (r: string, i: string) => string) => v.sg ? each(v.hd / 4, (i) => expr(`${name}${i}`, `${i}u`))
    : `for (var i = 0u; i < p.n4; i++) { ${expr(`${name}[i]`, 'i')} }`,
});

/** Online-softmax forward for one query row per lane; keys 0..qpos0+t are visible to row t. */
function forward(v: FlashVariant, entry: string): string {
  const r = rows(v), S = v.wg, L = lanes(v), U = L.U, { ld, st } = io(v);
  const head = `${prologue(v, entry, 'p.nh')}
  let h = bh % p.nh;
  let b = bh / p.nh;
  let t = min(r0 + lid.x, p.T - 1u);
  let qpos = p.qpos0 + t;
  let qi = ((b * p.T + t) * p.nh + h) * N4;
  ${r.load('qr', (i) => `${ld(`q[qi + ${i}]`)} * p.scale2`)}
  ${r.zero('acc')}
  var m = -1e30;
  var l = 0.0;
  let jEnd = p.qpos0 + min(r0 + ${v.wg}u, p.T);   // keys needed by the block's last row
  let kvRow = p.nkv * N4;
  let kvBase = (b * p.kvT * p.nkv + h / (p.nh / p.nkv)) * N4;`;
  const tail = `
  if (r0 + lid.x < p.T) {
    ${r.store('acc', (a, i) => `o[qi + ${i}] = ${st(`${a} / l`)};`)}
    lse[(b * p.nh + h) * p.T + t] = (m + log2(l)) * ${Math.LN2};
  }
}
`;
  if (v.sg) {
    return `${head}
  for (var j0 = 0u; j0 < jEnd; j0 += ${S}u) {
    let kr = kvBase + min(j0 + lid.x, jEnd - 1u) * kvRow;   // this lane's key row
    ${each(r.n4, (i) => `let kl${i} = ${ld(`k[kr + ${i}u]`)};`)}
    ${each(r.n4, (i) => `let vl${i} = ${ld(`v[kr + ${i}u]`)};`)}
    ${L.open}
    ${each(U, (c) => `let s${c} = select(-1e30, ${dots(r.n4, (i) => `qr${i}`, (i) => L.sh(`kl${i}`, c))}, j0 + ${L.lane(c)} <= qpos);`)}
    let mn = max(m, ${range(U).map((c) => `s${c}`).reduce((a, s) => `max(${a}, ${s})`)});
    let corr = exp2(m - mn);
    ${each(U, (c) => `let p${c} = select(0.0, exp2(s${c} - mn), j0 + ${L.lane(c)} <= qpos);`)}
    l = l * corr + ${each(U, (c) => `p${c}`, ' + ')};
    ${each(r.n4, (i) => `acc${i} = acc${i} * corr + ${each(U, (c) => `p${c} * ${L.sh(`vl${i}`, c)}`, ' + ')};`)}
    m = mn;
    ${L.close}
  }${tail}`;
  }
  return `${head}
  var s: array<f32, ${v.bc}>;   // a block's scores, then its probabilities
  for (var j0 = 0u; j0 < jEnd; j0 += ${v.bc}u) {
    var mn = m;
    for (var c = 0u; c < ${v.bc}u; c++) {
      let kc = kvBase + min(j0 + c, jEnd - 1u) * kvRow;
      var d = 0.0;
      for (var i = 0u; i < p.n4; i++) { d += dot(qr[i], ${ld('k[kc + i]')}); }
      s[c] = select(-1e30, d, j0 + c <= qpos);
      mn = max(mn, s[c]);
    }
    let corr = exp2(m - mn);
    var ls = 0.0;
    for (var c = 0u; c < ${v.bc}u; c++) { s[c] = select(0.0, exp2(s[c] - mn), j0 + c <= qpos); ls += s[c]; }
    l = l * corr + ls;
    for (var i = 0u; i < p.n4; i++) {
      var a = acc[i] * corr;
      for (var c = 0u; c < ${v.bc}u; c++) { a += s[c] * ${ld('v[kvBase + min(j0 + c, jEnd - 1u) * kvRow + i]')}; }
      acc[i] = a;
    }
    m = mn;
  }${tail}`;
}

/** One query row per lane: D = dO·O (to dsum, for pass 2) and dq = scale·Σ_j p(dp − D)·k_j. */
function backwardDq(v: FlashVariant, entry: string): string {
  const r = rows(v), S = v.wg, L = lanes(v), U = L.U, { ld, st } = io(v);
  const head = `${prologue(v, entry, 'p.nh')}
  let h = bh % p.nh;
  let b = bh / p.nh;
  let t = min(r0 + lid.x, p.T - 1u);
  let qi = ((b * p.T + t) * p.nh + h) * N4;
  ${r.load('qr', (i) => `${ld(`q[qi + ${i}]`)} * p.scale2`)}
  ${r.load('gr', (i) => ld(`dout[qi + ${i}]`))}
  ${r.zero('acc')}
  var D = 0.0;
  ${r.store('gr', (d, i) => `D += dot(${d}, ${ld(`o[qi + ${i}]`)});`)}
  let row = (b * p.nh + h) * p.T + t;
  let L2 = lse[row] * ${LOG2E};
  let jEnd = min(r0 + ${v.wg}u, p.T);
  let kvRow = p.nkv * N4;
  let kvBase = (b * p.T * p.nkv + h / (p.nh / p.nkv)) * N4;`;
  const tail = `
  if (r0 + lid.x < p.T) {
    ${r.store('acc', (a, i) => `dq[qi + ${i}] = ${st(`${a} * p.scale`)};`)}
    dsum[row] = D;
  }
}
`;
  if (v.sg) {
    return `${head}
  for (var j0 = 0u; j0 < jEnd; j0 += ${S}u) {
    let kr = kvBase + min(j0 + lid.x, jEnd - 1u) * kvRow;   // this lane's key row
    ${each(r.n4, (i) => `let kl${i} = ${ld(`k[kr + ${i}u]`)};`)}
    ${each(r.n4, (i) => `let vl${i} = ${ld(`v[kr + ${i}u]`)};`)}
    ${L.open}
    ${each(U, (c) => `let ds${c} = select(0.0, exp2(${dots(r.n4, (i) => `qr${i}`, (i) => L.sh(`kl${i}`, c))} - L2)
      * (${dots(r.n4, (i) => `gr${i}`, (i) => L.sh(`vl${i}`, c))} - D), j0 + ${L.lane(c)} <= t);`)}
    ${each(r.n4, (i) => `acc${i} += ${each(U, (c) => `ds${c} * ${L.sh(`kl${i}`, c)}`, ' + ')};`)}
    ${L.close}
  }${tail}`;
  }
  return `${head}
  var ds: array<f32, ${v.bc}>;
  for (var j0 = 0u; j0 < jEnd; j0 += ${v.bc}u) {
    for (var c = 0u; c < ${v.bc}u; c++) {
      let kc = kvBase + min(j0 + c, jEnd - 1u) * kvRow;
      var sc = 0.0;
      var dp = 0.0;
      for (var i = 0u; i < p.n4; i++) { sc += dot(qr[i], ${ld('k[kc + i]')}); dp += dot(gr[i], ${ld('v[kc + i]')}); }
      ds[c] = select(0.0, exp2(sc - L2) * (dp - D), j0 + c <= t);
    }
    for (var i = 0u; i < p.n4; i++) {
      var a = acc[i];
      for (var c = 0u; c < ${v.bc}u; c++) { a += ds[c] * ${ld('k[kvBase + min(j0 + c, jEnd - 1u) * kvRow + i]')}; }
      acc[i] = a;
    }
  }${tail}`;
}

/** One key row j per lane, over the group's query heads and query rows i ≥ j: dk, dv. */
function backwardDkv(v: FlashVariant, entry: string): string {
  const r = rows(v), S = v.wg, L = lanes(v), U = L.U, { ld, st } = io(v);
  const head = `${prologue(v, entry, 'p.nkv')}
  let g = bh % p.nkv;
  let b = bh / p.nkv;
  let j = min(r0 + lid.x, p.T - 1u);
  let ki = ((b * p.T + j) * p.nkv + g) * N4;
  ${r.load('kr', (i) => `${ld(`k[ki + ${i}]`)} * p.scale2`)}
  ${r.load('vr', (i) => ld(`v[ki + ${i}]`))}
  ${r.zero('dka')}
  ${r.zero('dva')}
  let rep = p.nh / p.nkv;
  let qRow = p.nh * N4;
  for (var hh = 0u; hh < rep; hh++) {
    let h = g * rep + hh;
    let rows = (b * p.nh + h) * p.T;
    let qBase = (b * p.T * p.nh + h) * N4;`;
  const tail = `
  }
  if (r0 + lid.x < p.T) {
    ${r.store('dka', (a, i) => `dk[ki + ${i}] = ${st(`${a} * p.scale`)};`)}
    ${r.store('dva', (a, i) => `dv[ki + ${i}] = ${st(a)};`)}
  }
}
`;
  const ok = (c: string) => `i0 + ${c} >= j && i0 + ${c} < p.T`;
  if (v.sg) {
    return `${head}
    for (var i0 = r0; i0 < p.T; i0 += ${S}u) {
      let ir = min(i0 + lid.x, p.T - 1u);   // this lane's query row
      let qr = qBase + ir * qRow;
      ${each(r.n4, (i) => `let ql${i} = ${ld(`q[qr + ${i}u]`)};`, '\n      ')}
      ${each(r.n4, (i) => `let gl${i} = ${ld(`dout[qr + ${i}u]`)};`, '\n      ')}
      let L2 = lse[rows + ir] * ${LOG2E};
      let D = dsum[rows + ir];
      ${L.open}
      ${each(U, (c) => `let p${c} = select(0.0, exp2(${dots(r.n4, (i) => `kr${i}`, (i) => L.sh(`ql${i}`, c))} - ${L.sh('L2', c)}), ${ok(L.lane(c))});
      let ds${c} = p${c} * (${dots(r.n4, (i) => `vr${i}`, (i) => L.sh(`gl${i}`, c))} - ${L.sh('D', c)});`, '\n      ')}
      ${each(r.n4, (i) => `dva${i} += ${each(U, (c) => `p${c} * ${L.sh(`gl${i}`, c)}`, ' + ')};`, '\n      ')}
      ${each(r.n4, (i) => `dka${i} += ${each(U, (c) => `ds${c} * ${L.sh(`ql${i}`, c)}`, ' + ')};`, '\n      ')}
      ${L.close}
    }${tail}`;
  }
  return `${head}
    var pc: array<f32, ${v.bc}>;
    var ds: array<f32, ${v.bc}>;
    for (var i0 = r0; i0 < p.T; i0 += ${v.bc}u) {
      for (var c = 0u; c < ${v.bc}u; c++) {
        let ic = min(i0 + c, p.T - 1u);
        let qc = qBase + ic * qRow;
        var sc = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < p.n4; i++) { sc += dot(kr[i], ${ld('q[qc + i]')}); dp += dot(vr[i], ${ld('dout[qc + i]')}); }
        pc[c] = select(0.0, exp2(sc - lse[rows + ic] * ${LOG2E}), ${ok('c')});
        ds[c] = pc[c] * (dp - dsum[rows + ic]);
      }
      for (var i = 0u; i < p.n4; i++) {
        var a = dva[i];
        var e = dka[i];
        for (var c = 0u; c < ${v.bc}u; c++) {
          let qc = qBase + min(i0 + c, p.T - 1u) * qRow + i;
          a += pc[c] * ${ld('dout[qc]')};
          e += ds[c] * ${ld('q[qc]')};
        }
        dva[i] = a;
        dka[i] = e;
      }
    }${tail}`;
}

/** The subgroup body needs WGSL's subgroups extension. */
const common = { workgroup: (v: FlashVariant) => v.wg, enable: (v: FlashVariant) => (v.sg ? ['subgroups'] : []) };
const BWD_PARAMS = [['B', 'u32'], ['n4', 'u32'], ['T', 'u32'], ['nh', 'u32'], ['nkv', 'u32'], ['scale', 'f32'], ['scale2', 'f32']] as const;

/** h4 / p4 (the variant's ld / st) over the format's pack functions. */
function wgsl16(v: FlashVariant): string {
  const [un, pk] = v.format === 'f16' ? ['unpackF16', 'packF16'] : ['unpackBf16', 'packBf16'];
  return `fn h4(x: vec2<u32>) -> vec4<f32> { return vec4<f32>(${un}(x.x), ${un}(x.y)); }
fn p4(x: vec4<f32>) -> vec2<u32> { return vec2<u32>(${pk}(x.x, x.y), ${pk}(x.z, x.w)); }
${PACKED16_WGSL}`;
}

/** The three kernels with rows stored as `row` (vec4<f32>, or vec2<u32> for 16 bits). */
function make(row: string, tail: (v: FlashVariant) => string) {
  const reads = (...names: string[]) => names.map((n) => [n, 'read', row] as const);
  const gen = (body: (v: FlashVariant, entry: string) => string) => (v: FlashVariant, entry: string) => body(v, entry) + tail(v);
  return {
    attention_forward: defineKernel<FlashVariant>({
      name: 'attention_forward', ...common,
      params: [['B', 'u32'], ['n4', 'u32'], ['T', 'u32'], ['nh', 'u32'], ['nkv', 'u32'], ['kvT', 'u32'], ['qpos0', 'u32'], ['scale2', 'f32']],
      buffers: [...reads('q', 'k', 'v'), ['o', 'rw', row], ['lse', 'rw', 'f32']],
      wgsl: gen(forward),
    }),
    attention_backward_dq: defineKernel<FlashVariant>({
      name: 'attention_backward_dq', params: BWD_PARAMS, ...common,
      buffers: [...reads('q', 'k', 'v', 'o', 'dout'), ['lse', 'read', 'f32'], ['dq', 'rw', row], ['dsum', 'rw', 'f32']],
      wgsl: gen(backwardDq),
    }),
    attention_backward_dkv: defineKernel<FlashVariant>({
      name: 'attention_backward_dkv', params: BWD_PARAMS, ...common,
      buffers: [...reads('q', 'k', 'v', 'dout'), ['lse', 'read', 'f32'], ['dsum', 'read', 'f32'], ['dk', 'rw', row], ['dv', 'rw', row]],
      wgsl: gen(backwardDkv),
    }),
  };
}

export const kernels = make('vec4<f32>', () => '');
/** The same kernels over 16-bit rows (variants with a format). */
export const kernels16 = make('vec2<u32>', wgsl16);
