// add_rmsnorm with a 16-bit residual stream (kernels/add_rmsnorm.ts, option `out`), as torch.autocast's
// bfloat16 MiniMind block has it: `h += residual` keeps h 16-bit, and MiniMind2's RMSNorm is
// `weight * _norm(x.float()).type_as(x)`. Per row of H values, x and res float32 or of out's type:
//   s = round16(x + res)                 (summed in float32, stored 16-bit: the residual stream, saved)
//   x̂ = s·rstd, rstd = 1/sqrt(mean(s²) + eps)   (float32, from the stored s)
//   t = round16(x̂),  y = w·t             (y float32: a float32 weight times a 16-bit t promotes)
// Backward, torch's roundings: dt = round16(w·dy) (the gradient of the 16-bit t), dw = Σ_rows dy·t,
// g = round16(rstd·(dt − x̂·mean(x̂·dt))) (the float32 norm backward, then the gradient of the 16-bit s),
// total = round16(g + ds) with ds s's gradient from its other consumer (16-bit), handed to x and res in
// their dtypes. The passes are rmsnorm.ts's: a row pass for mean(x̂·dt), then one per (column, chunk of
// rows) writing total and dw partials, summed by rmsnorm_dw.
// Two forms: 'oct' (H % 8 == 0), a unit of 8 values, one vec4<u32> of each 16-bit array and two vec4<f32>
// of each float32 one (on lavapipe a load costs about the same whatever its width: narrower 16-bit loads
// left 16-bit add_rmsnorm no faster than float32); otherwise by element, where neighbouring invocations
// share a word of s: s and total are then written as float32 values (already 16-bit values) to a scratch
// tensor that pack16 packs, exactly. Odd H is no training shape.
import { defineKernel, launch } from '../runtime/kernel.js';
import { vecType, wgSumFn } from '../runtime/wgsl.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import { Tensor, is16, type DType16 } from '../runtime/tensor.js';
import { WG, rowGroups, rowLoop, rowSum, FORWARD_PARAMS, BACKWARD_PARAMS, type BackwardVariant } from './rmsnorm_wgsl.js';
import { rowEnable, rowSize, type RowLayout } from './row_layout.js';
import { kernels as rmsnormKernels } from './rmsnorm.js';
import { kernels as packKernels } from './packed16.js';
import { reference as round16 } from './cast.js';
import { round16Wgsl } from './swiglu.js';

/** out: s's type; oct: H % 8 == 0 (units of 8 values); x16, res16: that input is of out's type, else float32. */
export interface Out16 { out: DType16; oct: boolean }
export interface Forward16 extends Out16 { x16: boolean; res16: boolean }

/** WGSL shared by the passes: VT (vec4<f32> for oct), un(word), rd (round a float32 value or vec4 to out's type,
 *  back as float32), and for oct O (8 values: a, b), u8(words) and p8(O) between a vec4<u32> and O. The roundings
 *  are swiglu.ts's (pk, r16: bfloat16's without packBf16's NaN guard, float16's by a scaled round()): every value
 *  rounded here is a float32 arithmetic result, so a NaN is quiet and rounds to itself. */
function common(v: Out16): string {
  const oct = `struct O { a: vec4<f32>, b: vec4<f32> }
fn w2(a: vec4<f32>) -> vec2<u32> { return vec2<u32>(pk(a.xy), pk(a.zw)); }
fn p8(a: vec4<f32>, b: vec4<f32>) -> vec4<u32> { return vec4<u32>(w2(a), w2(b)); }
fn u8(q: vec4<u32>) -> O { return O(vec4<f32>(un(q.x), un(q.y)), vec4<f32>(un(q.z), un(q.w))); }
fn rd(a: vec4<f32>) -> vec4<f32> { return vec4<f32>(r16(a.xy), r16(a.zw)); }`;
  const scalar = `fn rd(a: f32) -> f32 { return r16(vec2<f32>(a, 0.0)).x; }
fn at16(q: u32, e: u32) -> f32 { return un(q)[e & 1u]; }`;
  return `${vecType(v.oct)}fn un(q: u32) -> vec2<f32> { return ${v.out === 'f16' ? 'unpackF16' : 'unpackBf16'}(q); }
${round16Wgsl(v.out)}
${v.oct ? oct : scalar}
${PACKED16_WGSL}`;
}

/** Element type and loader `ld_name(unit) -> O | f32` of an input that is float32 or of out's type. */
function input(name: string, narrow: boolean, oct: boolean): { type: string; fn: string } {
  if (oct) {
    return narrow
      ? { type: 'vec4<u32>', fn: `fn ld_${name}(q: u32) -> O { return u8(${name}[q]); }` }
      : { type: 'vec4<f32>', fn: `fn ld_${name}(q: u32) -> O { return O(${name}[2u * q], ${name}[2u * q + 1u]); }` };
  }
  return narrow
    ? { type: 'u32', fn: `fn ld_${name}(e: u32) -> f32 { return at16(${name}[e >> 1u], e); }` }
    : { type: 'f32', fn: `fn ld_${name}(e: u32) -> f32 { return ${name}[e]; }` };
}

/** Forward: per row r (units b + i, b = r·hv), s, y, rstd. Scalar: s is the float32 scratch. */
function forwardWgsl(v: RowLayout & Forward16, entry: string): string {
  const { head, loop } = rowLoop(v);
  const x = input('x', v.x16, v.oct), res = input('res', v.res16, v.oct);
  const body = v.oct
    ? {
      first: `let a = ld_x(b + i); let c = ld_res(b + i); let q = p8(a.a + c.a, a.b + c.b); s[b + i] = q; let e = u8(q); acc += e.a * e.a; acc += e.b * e.b;`,
      second: `let e = u8(s[b + i]); y[2u * (b + i)] = w[2u * i] * rd(e.a * rs); y[2u * (b + i) + 1u] = w[2u * i + 1u] * rd(e.b * rs);`,
    }
    : { first: 'let e = rd(ld_x(b + i) + ld_res(b + i)); s[b + i] = e; acc += e * e;', second: 'y[b + i] = w[i] * rd(s[b + i] * rs);' };
  return `${common(v)}${x.fn}
${res.fn}
${v.rows === 'wg' ? wgSumFn(v.wg, v.sub) : ''}
${entry} {
  ${head}
  let b = r * p.hv;
  var acc = VT(0.0);
  ${loop} { ${body.first} }
  ${rowSum(v, 'ss', 'acc')}
  let rs = inverseSqrt(ss / f32(p.h) + p.eps);
  ${loop} { ${body.second} }
  ${v.rows === 'wg' ? 'if (li == 0u) { rstd[r] = rs; }' : 'rstd[r] = rs;'}
}
`;
}

/** Backward, row pass: c[r] = mean over the row of x̂·dt, x̂ = s·rstd, dt = round16(w·dy). */
function dotWgsl(v: RowLayout & Out16, entry: string): string {
  const { head, loop } = rowLoop(v);
  const term = v.oct
    ? `let e = u8(s[b + i]); let j = 2u * (b + i); acc += (e.a * rs) * rd(w[2u * i] * dy[j]); acc += (e.b * rs) * rd(w[2u * i + 1u] * dy[j + 1u]);`
    : 'acc += (at16(s[(b + i) >> 1u], b + i) * rs) * rd(w[i] * dy[b + i]);';
  return `${common(v)}${v.rows === 'wg' ? wgSumFn(v.wg, v.sub) : ''}
${entry} {
  ${head}
  let b = r * p.hv;
  let rs = rstd[r];
  var acc = VT(0.0);
  ${loop} { ${term} }
  ${rowSum(v, 'd', 'acc')}
  ${v.rows === 'wg' ? 'if (li == 0u) { ' : ''}c[r] = d / f32(p.h);${v.rows === 'wg' ? ' }' : ''}
}
`;
}

/** Backward, column pass: total[r, unit i] for the rows of chunk k, and part[k, i] = Σ dy·t over them. ds: s has
 *  a gradient of its own (16-bit); dw: false for a frozen weight. Scalar: total is the float32 scratch. */
export interface Column16 extends Out16 { ds: boolean; dw: boolean }
function columnWgsl(v: Column16, entry: string): string {
  const row = v.oct
    ? `let e = u8(s[j]);
    let xa = e.a * rs; let xb = e.b * rs;
    let dya = dy[2u * j]; let dyb = dy[2u * j + 1u];
    let dta = rd(wa * dya); let dtb = rd(wb * dyb);
    ${v.ds ? `let d = u8(ds[j]);
    total[j] = p8(rd(rs * (dta - xa * c[r])) + d.a, rd(rs * (dtb - xb * c[r])) + d.b);` : 'total[j] = p8(rs * (dta - xa * c[r]), rs * (dtb - xb * c[r]));'}
    ${v.dw ? 'acc += dya * rd(xa); acc2 += dyb * rd(xb);' : ''}`
    : `let xv = at16(s[j >> 1u], j) * rs;
    let gv = dy[j];
    let g = rd(rs * (rd(wa * gv) - xv * c[r]));
    total[j] = ${v.ds ? 'rd(g + at16(ds[j >> 1u], j))' : 'g'};
    ${v.dw ? 'acc += gv * rd(xv);' : ''}`;
  const store = !v.dw ? '' : v.oct ? 'part[2u * (k * p.hv + i)] = acc; part[2u * (k * p.hv + i) + 1u] = acc2;' : 'part[k * p.hv + i] = acc;';
  return `${common(v)}
${entry} {
  let t = wgIndex(wid, nwg) * ${WG}u + lid.x;
  let i = t % p.hv;
  let k = t / p.hv;
  if (k >= p.chunks) { return; }
  ${v.oct ? 'let wa = w[2u * i]; let wb = w[2u * i + 1u];' : 'let wa = w[i];'}
  var acc = VT(0.0);
  ${v.oct ? 'var acc2 = VT(0.0);' : ''}
  for (var r = k * p.rpi; r < min((k + 1u) * p.rpi, p.rows); r++) {
    let j = r * p.hv + i;
    let rs = rstd[r];
    ${row}
  }
  ${store}
}
`;
}


const S16 = (v: Out16) => (v.oct ? 'vec4<u32>' : 'u32');
const F32 = (v: Out16) => (v.oct ? 'vec4<f32>' : 'f32');

export const kernels = {
  add_rmsnorm_forward: defineKernel<RowLayout & Forward16>({
    name: 'add_rmsnorm_forward', params: FORWARD_PARAMS, workgroup: rowSize, enable: rowEnable,
    buffers: [['x', 'read', 'XT'], ['res', 'read', 'RT'], ['w', 'read', 'VT'], ['s', 'rw', 'ST'], ['y', 'rw', 'VT'], ['rstd', 'rw', 'f32']],
    wgsl: (v, entry) => `alias XT = ${input('x', v.x16, v.oct).type};\nalias RT = ${input('res', v.res16, v.oct).type};\nalias ST = ${v.oct ? 'vec4<u32>' : 'f32'};\n${forwardWgsl(v, entry)}`,
  }),
  add_rmsnorm_backward_dot: defineKernel<RowLayout & Out16>({
    name: 'add_rmsnorm_backward_dot', params: [['rows', 'u32'], ['hv', 'u32'], ['h', 'u32']], workgroup: rowSize, enable: rowEnable,
    buffers: [['s', 'read', 'ST'], ['w', 'read', 'VT'], ['dy', 'read', 'VT'], ['rstd', 'read', 'f32'], ['c', 'rw', 'f32']],
    wgsl: (v, entry) => `alias ST = ${S16(v)};\n${dotWgsl(v, entry)}`,
  }),
  add_rmsnorm_backward: defineKernel<Column16>({
    name: 'add_rmsnorm_backward', params: BACKWARD_PARAMS, workgroup: WG,
    buffers: [['s', 'read', 'ST'], ['w', 'read', 'FT'], ['dy', 'read', 'FT'], ['rstd', 'read', 'f32'], ['c', 'read', 'f32'],
      ['ds', 'read', 'ST'], ['total', 'rw', 'TT'], ['part', 'rw', 'FT']],
    wgsl: (v, entry) => `alias ST = ${S16(v)};\nalias FT = ${F32(v)};\nalias TT = ${v.oct ? 'vec4<u32>' : 'f32'};\n${columnWgsl(v, entry)}`,
  }),
};

/** Units of 8 values per row when H % 8 == 0, else of 1. */
const unitsOf = (h: number) => (h % 8 === 0 ? { oct: true, hv: h / 8 } : { oct: false, hv: h });

/** Packs the float32 scratch f (16-bit values) into the 16-bit tensor dst, exactly; f is released. pack16 runs one
 *  invocation per word, 256 a workgroup. */
function packInto(f: Tensor, dst: Tensor): void {
  const words = Math.ceil(f.size / 2);
  launch(packKernels.pack16, { params: { n: f.size }, buffers: [f.binding(), dst.binding()], workgroups: Math.ceil(words / 256), variant: { format: dst.dtype as DType16 } });
  f.dispose(); // later commands may reuse the buffer: WebGPU orders them after this one
}

/** Forward with row layout v into s (out's type, the shape of x), y and rstd; x, res float32 or of s's type. */
export function forward16(v: RowLayout, x: Tensor, res: Tensor, w: Tensor, s: Tensor, y: Tensor, rstd: Tensor, eps: number): void {
  const h = w.shape[0], rows = x.size / h, { oct, hv } = unitsOf(h), out = s.dtype as DType16;
  const sOut = oct ? s : Tensor.empty(s.shape);
  launch(kernels.add_rmsnorm_forward, {
    params: { rows, hv, h, eps }, buffers: [x, res, w, sOut, y, rstd].map((t) => t.binding()), workgroups: rowGroups(v, rows),
    variant: { ...v, out, oct, x16: is16(x.dtype), res16: is16(res.dtype) },
  });
  if (!oct) packInto(sOut, s);
}

/** Backward with variant bv: total (out's type, s's shape) = round16(g + ds), dw (into `dw`: beta 1 adds) unless
 *  null; dy float32, ds null or of s's type. */
export function backward16(s: Tensor, w: Tensor, rstd: Tensor, dy: Tensor, ds: Tensor | null, dw: Tensor | null, beta: 0 | 1,
  bv: BackwardVariant, total: Tensor = Tensor.empty(s.shape, s.dtype)): Tensor {
  const h = w.shape[0], rows = s.size / h, { oct, hv } = unitsOf(h), out = s.dtype as DType16;
  const rpi = Math.max(1, Math.ceil(rows / bv.chunks)), chunks = Math.ceil(rows / rpi);
  // Without dw, part is bound but never written (two vec4s); the scalar form's total is a float32 scratch.
  const c = Tensor.empty([rows]), part = Tensor.empty(dw ? [chunks, h] : [8]), tOut = oct ? total : Tensor.empty(s.shape);
  const { chunks: _c, ...layout } = bv;
  launch(kernels.add_rmsnorm_backward_dot, {
    params: { rows, hv, h }, buffers: [s, w, dy, rstd, c].map((t) => t.binding()), workgroups: rowGroups(layout, rows), variant: { ...layout, out, oct },
  });
  launch(kernels.add_rmsnorm_backward, {
    params: { rows, hv, h, rpi, chunks }, buffers: [s, w, dy, rstd, c, ds ?? s, tOut, part].map((t) => t.binding()),
    workgroups: Math.ceil((chunks * hv) / WG), variant: { out, oct, ds: ds !== null, dw: dw !== null },
  });
  if (dw) {
    const vec4 = h % 4 === 0;
    launch(rmsnormKernels.rmsnorm_dw, {
      params: { hv: vec4 ? h / 4 : h, chunks, beta }, buffers: [part.binding(), dw.binding()], workgroups: Math.ceil((vec4 ? h / 4 : h) / WG), variant: { vec4 },
    });
  }
  c.dispose(); part.dispose(); // later commands may reuse the buffers: WebGPU orders them after these
  if (!oct) packInto(tOut, total);
  return total;
}

// ---- float64 CPU reference ------------------------------------------------------------------

const r16 = (v: Float64Array, to: DType16) => round16(Float32Array.from(v), to);

/** s, t (the 16-bit normed values), y and rstd of x, res (their values as stored) for out's type. */
export function reference16(x: Float64Array, res: Float64Array, w: Float64Array, eps: number, out: DType16) {
  const h = w.length, rows = x.length / h;
  const s = r16(x.map((v, i) => v + res[i]), out), t = new Float64Array(s.length), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let i = 0; i < h; i++) ss += s[r * h + i] ** 2;
    rstd[r] = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) t[r * h + i] = s[r * h + i] * rstd[r];
  }
  const tr = r16(t, out);
  return { s, t: tr, y: tr.map((v, i) => w[i % h] * v), rstd };
}

/** The backward's float64 reference from s (16-bit values), dy (float32), ds (16-bit values or null): g (the
 *  gradient of s through the norm, rounded), total = round16(g + ds), dw = Σ dy·t with t the forward's 16-bit
 *  values (pass the kernel's own to compare dw at float32 level). */
export function referenceBackward16(s: Float64Array, w: Float64Array, dy: Float64Array, ds: Float64Array | null, t: Float64Array, eps: number, out: DType16) {
  const h = w.length, rows = s.length / h, g = new Float64Array(s.length), dw = new Float64Array(h);
  const dt = r16(dy.map((v, i) => w[i % h] * v), out);
  for (let r = 0; r < rows; r++) {
    let ss = 0, d = 0;
    for (let i = 0; i < h; i++) ss += s[r * h + i] ** 2;
    const rs = 1 / Math.sqrt(ss / h + eps);
    for (let i = 0; i < h; i++) d += s[r * h + i] * rs * dt[r * h + i];
    for (let i = 0; i < h; i++) {
      const j = r * h + i;
      g[j] = rs * (dt[j] - s[j] * rs * (d / h));
      dw[i] += dy[j] * t[j];
    }
  }
  const gr = r16(g, out);
  return { g: gr, total: ds ? r16(gr.map((v, i) => v + ds[i]), out) : gr, dw };
}

/** Bytes moved for rows × h, x and res 16-bit (counted as add_rmsnorm.ts counts float32's): forward reads x, res,
 *  writes s (2 bytes each), writes y (4), w, rstd; backward reads s twice, dy twice (4), ds, writes total (2), rstd twice, c out and in, w twice, the
 *  dw partials (64 chunks) out and in, dw read and written. */
export const bench = {
  forward: (rows: number, h: number) => ({ bytes: 2 * 3 * rows * h + 4 * (rows * h + h + rows) }),
  backward: (rows: number, h: number) => {
    const chunks = Math.ceil(rows / Math.max(1, Math.ceil(rows / 64)));
    return { bytes: 2 * 4 * rows * h + 4 * (2 * rows * h + 4 * rows + 4 * h + 2 * chunks * h) };
  },
};
