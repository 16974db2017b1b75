// swiglu: y = silu(g)·u (MiniMind MLP: down_proj(silu(gate_proj(x)) * up_proj(x))), fused, and its
// backward in one kernel: with σ = sigmoid(g),  dg = dy·u·σ·(1 + g·(1 − σ)),  du = dy·g·σ.
// Nothing is saved: backward reads g and u, the op's inputs.
// swiglu_packed takes g and u side by side in one gu [..., 2I] (the output of one matmul against
// gate_proj|up_proj stored back to back) and gives dgu in the same layout, so the projection's
// backward is one dX and one dW matmul.
// One invocation per vec4 (copy speed on lavapipe; scalar f32 loads run at a third of it); a
// trailing partial vec4 is handled element by element so n need not be a multiple of 4.
// Mixed precision: swiglu_packed also takes a 16-bit gu (bf16 or f16, the 16-bit output of the fused
// gate|up Linear) with torch.autocast's roundings (torch computes silu on the 16-bit gate into a 16-bit
// tensor, then the 16-bit product): y = round16(round16(silu(g))·u), 16-bit, computed in float32 from
// the 16-bit values. Backward, as torch's mul and silu backward on 16-bit tensors: with a16 =
// round16(silu(g)) recomputed, d_act = round16(dy·u), du = round16(dy·a16), dg = round16(d_act·silu'(g)),
// dgu 16-bit; a float32 dy is first rounded to the 16-bit type (torch's engine casts the gradient of a
// 16-bit tensor to its dtype).
import { defineKernel, launch } from '../runtime/kernel.js';
import { tuner } from '../runtime/tuner.js';
import { swigluF16Tunable } from './swiglu_variants.js';
import { Tensor, needsGrad, record, is16, type DType16 } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { mul, silu } from './elementwise.js';
import { cast, reference as round16 } from './cast.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import { noTargets } from '../runtime/autograd.js';
import { N, I, Case, host, f64, verify, scoped } from './case.js';

const WG = 256;
const HEAD = (entry: string) => `${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // vec4 index; p.n counts scalars
  if (i * 4u >= p.n) { return; }
  let full = i * 4u + 4u <= p.n;`;

export const kernels = {
  swiglu_forward: defineKernel({
    name: 'swiglu_forward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['g', 'read', 'vec4<f32>'], ['u', 'read', 'vec4<f32>'], ['y', 'rw', 'vec4<f32>']],
    wgsl: (_, entry) => `fn f(g: vec4<f32>, u: vec4<f32>) -> vec4<f32> { return g / (1.0 + exp(-g)) * u; }
${HEAD(entry)}
  if (full) { y[i] = f(g[i], u[i]); return; }
  let v = f(g[i], u[i]);
  for (var k = 0u; i * 4u + k < p.n; k++) { y[i][k] = v[k]; }
}
`,
  }),
  swiglu_backward: defineKernel({
    name: 'swiglu_backward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['g', 'read', 'vec4<f32>'], ['u', 'read', 'vec4<f32>'], ['dy', 'read', 'vec4<f32>'],
      ['dg', 'rw', 'vec4<f32>'], ['du', 'rw', 'vec4<f32>']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let gv = g[i];
  let sg = 1.0 / (1.0 + exp(-gv));
  let d = dy[i];
  let a = d * u[i] * sg * (1.0 + gv * (1.0 - sg));
  let b = d * gv * sg;
  if (full) { dg[i] = a; du[i] = b; return; }
  for (var k = 0u; i * 4u + k < p.n; k++) { dg[i][k] = a[k]; du[i][k] = b[k]; }
}
`,
  }),
};

// One invocation per vec4 of y over a 1-D grid; the row length IV (in VT units) is a compile-time
// constant so the division finding the row is a multiply (a workgroup row per token row left a
// quarter of the lanes idle at I = 1408 and ran at 54% of copy speed).
const PACKED_HEAD = (entry: string) => `${entry} {
  let yi = wgIndex(wid, nwg) * ${WG}u + lid.x;   // index of y in VT units
  if (yi >= p.n) { return; }
  let r = yi / IV;
  let gi = yi + r * IV;                            // g[r, c] at row r of gu, then u[r, c] IV later
  let ui = gi + IV;`;
/** vec4: VT is vec4<f32> (I % 4 == 0); iv: I in VT units. */
interface Packed { vec4: boolean; iv: number }
const VT = (v: Packed) => `alias VT = ${v.vec4 ? 'vec4<f32>' : 'f32'};\nconst IV = ${v.iv}u;\n`;

export const packedKernels = {
  swiglu_packed_forward: defineKernel<Packed>({
    name: 'swiglu_packed_forward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['gu', 'read', 'VT'], ['y', 'rw', 'VT']],
    wgsl: (v, entry) => `${VT(v)}${PACKED_HEAD(entry)}
  let g = gu[gi];
  y[yi] = g / (1.0 + exp(-g)) * gu[ui];
}
`,
  }),
  swiglu_packed_backward: defineKernel<Packed>({
    name: 'swiglu_packed_backward', params: [['n', 'u32']], workgroup: WG,
    buffers: [['gu', 'read', 'VT'], ['dy', 'read', 'VT'], ['dgu', 'rw', 'VT']],
    wgsl: (v, entry) => `${VT(v)}${PACKED_HEAD(entry)}
  let g = gu[gi];
  let sg = 1.0 / (1.0 + exp(-g));
  let d = dy[yi];
  dgu[gi] = d * gu[ui] * sg * (1.0 + g * (1.0 - sg));
  dgu[ui] = d * g * sg;
}
`,
  }),
};

function launchPacked(k: (typeof packedKernels)[keyof typeof packedKernels], gu: Tensor, bufs: Tensor[]): void {
  const I = gu.shape.at(-1)! / 2, rows = gu.size / (2 * I), vec4 = I % 4 === 0, iv = vec4 ? I / 4 : I;
  launch(k, { params: { n: rows * iv }, buffers: bufs.map((t) => t.binding()), workgroups: Math.ceil((rows * iv) / WG), variant: { vec4, iv } });
}

// 16-bit packed: words of two values (runtime/packed16_wgsl.ts). 'vec4' (I % 8 == 0): one invocation
// per vec4<u32> of y, 8 values, as the float32 kernels load vec4s (scalar loads ran at a third of copy
// speed on lavapipe), IV = I/8 a compile-time constant. Otherwise one invocation per output word:
// forward per word of y (a word straddles two rows when I is odd), backward per word of dgu (rows of gu
// are whole words, but one straddles g and u when I is odd); each value is fetched by its element index
// and the halves of a word are assembled with bit operations. p.i = I is a uniform there: odd I is no
// training shape, one pipeline serves them all.
/** vec4: the layout above; iv: I/8 for vec4 (else 0); dy16: backward's dy is 16-bit, else float32; native:
 *  float16 through WGSL's f16 conversions (adapters with shader-f16), else packed-integer rounding. */
interface Packed16 { format: DType16; vec4: boolean; iv: number; dy16?: boolean; native?: boolean }

/** Rounding to the 16-bit type: pk(x) packs two values into a word, r16(x) rounds them in place. float16
 *  takes packF16 (runtime/packed16_wgsl.ts). bfloat16 rounds the low 16 bits off to nearest even in 5 integer
 *  operations a value, without packBf16's NaN guard (half of its work): every value pk and r16 round is a float32
 *  arithmetic result (r16in rounds a float32 dy as read), so a NaN is quiet (top mantissa bit set) and rounds to itself as packBf16 makes it; the
 *  guard is for NaNs with only low payload bits. With the guard the bf16 backward took 2× float32's time on
 *  lavapipe (compute-bound). */
export function round16Wgsl(f: DType16): string {
  if (f === 'f16') return F16_ROUNDING;
  return `fn rb(x: vec2<f32>) -> vec2<u32> { let u = bitcast<vec2<u32>>(x); return u + 0x7fffu + ((u >> vec2<u32>(16u)) & vec2<u32>(1u)); }
fn pk(x: vec2<f32>) -> u32 { let r = rb(x); return (r.x >> 16u) | (r.y & 0xffff0000u); }
fn r16(x: vec2<f32>) -> vec2<f32> { return bitcast<vec2<f32>>(rb(x) & vec2<u32>(0xffff0000u)); }`;
}

/** float16: r16 rounds with a float round() (to nearest, ties to even): x times sc(k) = 2^(137 − k), k = max(x's
 *  biased exponent, 113), has float16's ulp at x's exponent (2^-24 below the normal range) as its unit, so round()
 *  rounds it as float16 storage does, and both scalings are exact powers of two; from 65536 on (what rounds past
 *  65504) ±inf, NaN stays NaN. pk reads the bits off the same scaling: |x|·sc(k) + 2^23 is rounded to an integer by
 *  float32's own addition (to nearest even: its ulp there is 1), leaving the rounded significand m in the low bits,
 *  and the float16 bits are ((k − 113) << 10) + m (a significand that rounds up to 2048 carries into the exponent;
 *  subnormals are k = 113, m < 1024), capped at inf; NaN becomes the quiet 0x7e00 (every value pk packs is an
 *  arithmetic result, whose NaNs carry no payload). Measured on lavapipe (one bench run, Xeon; float32 20.8 ms
 *  forward, 31.6 backward): float16 forward 16.1 ms, backward 28.0 (with packF16: 1.04× and 1.06× float32's time). */
const F16_R16 = `fn kx(a: vec2<u32>) -> vec2<u32> { return max(a >> vec2<u32>(23u), vec2<u32>(113u)); }
fn sc(k: vec2<u32>) -> vec2<f32> { return bitcast<vec2<f32>>((vec2<u32>(264u) - k) << vec2<u32>(23u)); }
fn r16(x: vec2<f32>) -> vec2<f32> {
  let u = bitcast<vec2<u32>>(x);
  let k = kx(u & vec2<u32>(0x7fffffffu));
  let r = round(x * sc(k)) * bitcast<vec2<f32>>((k - vec2<u32>(10u)) << vec2<u32>(23u));
  return select(r, bitcast<vec2<f32>>((u & vec2<u32>(0x80000000u)) | vec2<u32>(0x7f800000u)), abs(r) >= vec2<f32>(65536.0));
}`;
const F16_ROUNDING = `${F16_R16}
fn pk(x: vec2<f32>) -> u32 {
  let u = bitcast<vec2<u32>>(x);
  let a = u & vec2<u32>(0x7fffffffu);
  let k = kx(a);
  let m = bitcast<vec2<u32>>(bitcast<vec2<f32>>(a) * sc(k) + 8388608.0) - vec2<u32>(0x4b000000u);
  var h = min(((k - vec2<u32>(113u)) << vec2<u32>(10u)) + m, vec2<u32>(0x7c00u));
  h = select(h, vec2<u32>(0x7e00u), a > vec2<u32>(0x7f800000u));
  h = h | ((u >> vec2<u32>(16u)) & vec2<u32>(0x8000u));
  return h.x | (h.y << 16u);
}`;

/** float16 on an adapter with shader-f16: WGSL's f16 conversions, only where they are exact whatever the
 *  adapter's rounding mode (WGSL leaves it open; lavapipe's plain f32 → f16 conversion was up to 3 ulps off the
 *  reference): widening a float16 to float32, and narrowing a value r16 has already rounded. A single instruction
 *  on a GPU; on lavapipe slower than F16_ROUNDING (kernels/swiglu_variants.ts). */
const F16_NATIVE = `${F16_R16}
fn un(w: u32) -> vec2<f32> { return vec2<f32>(bitcast<vec2<f16>>(w)); }
fn pk(x: vec2<f32>) -> u32 { return bitcast<u32>(vec2<f16>(r16(x))); }
fn r16in(x: vec2<f32>) -> vec2<f32> { return r16(x); }`;

/** Word math: fwd(g, u) the y word of a g word and a u word, bwd(g, u, dy) the [dg, du] words (dy: two
 *  16-bit values as float32). silu(g) is g·σ(g) in both, so backward recomputes forward's a16. */
function math16(v: Packed16): string {
  const word = v.vec4 ? 'vec4<u32>' : 'u32', dy = v.dy16 === undefined ? '' : `alias DT = ${v.dy16 ? word : v.vec4 ? 'vec4<f32>' : 'f32'};\n`;
  return `alias GT = ${word};
${dy}const IV = ${v.iv}u;
${v.native ? F16_NATIVE : `fn un(w: u32) -> vec2<f32> { return ${v.format === 'f16' ? 'unpackF16' : 'unpackBf16'}(w); }
${round16Wgsl(v.format)}
fn r16in(x: vec2<f32>) -> vec2<f32> { return un(${v.format === 'f16' ? 'packF16' : 'packBf16'}(x.x, x.y)); } // a float32 dy: any NaN`}
fn fwd(gw: u32, uw: u32) -> u32 { let g = un(gw); return pk(r16(g * (1.0 / (1.0 + exp(-g)))) * un(uw)); }
fn bwd(gw: u32, uw: u32, d: vec2<f32>) -> vec2<u32> {
  let g = un(gw);
  let sg = 1.0 / (1.0 + exp(-g));
  return vec2<u32>(pk(r16(d * un(uw)) * (sg * (1.0 + g * (1.0 - sg)))), pk(d * r16(g * sg)));
}
${v.native ? '' : PACKED16_WGSL}`;
}

/** Element-indexed access (the word layout): the 16 bits of element e of a packed array, a word of two. */
const HALVES = (arr: string) => `fn half_${arr}(e: u32) -> u32 { return (${arr}[e >> 1u] >> ((e & 1u) << 4u)) & 0xffffu; }
fn pair_${arr}(a: u32, b: u32) -> u32 { return half_${arr}(a) | (half_${arr}(b) << 16u); }`;

const HEAD16 = (entry: string) => `${entry} {
  let t = wgIndex(wid, nwg) * ${WG}u + lid.x;`;

export const packed16Kernels = {
  swiglu_packed_forward: defineKernel<Packed16>({
    name: 'swiglu_packed_forward', params: [['n', 'u32'], ['i', 'u32']], workgroup: WG, enable: (v) => (v.native ? ['f16'] : []),
    buffers: [['gu', 'read', 'GT'], ['y', 'rw', 'GT']],
    // vec4: n = vec4s of y; word: n = values of y (t: its word), g of y value e at gu element e + (e / I)·I.
    wgsl: (v, entry) => `${math16(v)}
${v.vec4 ? `${HEAD16(entry)}
  if (t >= p.n) { return; }
  let gi = t + (t / IV) * IV;
  let g = gu[gi];
  let u = gu[gi + IV];
  y[t] = vec4<u32>(fwd(g.x, u.x), fwd(g.y, u.y), fwd(g.z, u.z), fwd(g.w, u.w));
}` : `${HALVES('gu')}
${HEAD16(entry)}
  if (2u * t >= p.n) { return; }
  let e1 = min(2u * t + 1u, p.n - 1u);
  let g0 = 2u * t + (2u * t / p.i) * p.i;
  let g1 = e1 + (e1 / p.i) * p.i;
  let w = fwd(pair_gu(g0, g1), pair_gu(g0 + p.i, g1 + p.i));
  y[t] = select(w & 0xffffu, w, 2u * t + 1u < p.n); // an odd count leaves the last high half 0, as pack16
}`}
`,
  }),
  swiglu_packed_backward: defineKernel<Packed16>({
    name: 'swiglu_packed_backward', params: [['n', 'u32'], ['i', 'u32']], workgroup: WG, enable: (v) => (v.native ? ['f16'] : []),
    buffers: [['gu', 'read', 'GT'], ['dy', 'read', 'DT'], ['dgu', 'rw', 'GT']],
    // vec4: n = vec4s of y. word: n = words of dgu (rows·I); element e of gu is dg (column c < I) or du of
    // the y value at row r, column c mod I.
    wgsl: (v, entry) => `${math16(v)}
${v.vec4 ? `${HEAD16(entry)}
  if (t >= p.n) { return; }
  let gi = t + (t / IV) * IV;
  let g = gu[gi];
  let u = gu[gi + IV];
  ${v.dy16 ? 'let d = dy[t];' : 'let d0 = dy[2u * t];\n  let d1 = dy[2u * t + 1u];'}
  ${['x', 'y', 'z', 'w'].map((c, k) => `let b${c} = bwd(g.${c}, u.${c}, ${v.dy16 ? `un(d.${c})` : `r16in(d${k >> 1}.${k & 1 ? 'zw' : 'xy'})`});`).join('\n  ')}
  dgu[gi] = vec4<u32>(bx.x, by.x, bz.x, bw.x);
  dgu[gi + IV] = vec4<u32>(bx.y, by.y, bz.y, bw.y);
}` : `${HALVES('gu')}
${v.dy16 ? HALVES('dy') : ''}
struct Src { g: u32, y: u32, up: bool }
fn src(e: u32) -> Src {
  let r = e / (2u * p.i);
  let c = e - 2u * p.i * r;
  let k = select(c, c - p.i, c >= p.i);
  return Src(2u * p.i * r + k, p.i * r + k, c >= p.i);
}
${HEAD16(entry)}
  if (t >= p.n) { return; }
  let a = src(2u * t);
  let b = src(2u * t + 1u);
  let d = bwd(pair_gu(a.g, b.g), pair_gu(a.g + p.i, b.g + p.i), ${v.dy16 ? 'un(pair_dy(a.y, b.y))' : 'r16in(vec2<f32>(dy[a.y], dy[b.y]))'});
  dgu[t] = (select(d.x, d.y, a.up) & 0xffffu) | (select(d.x, d.y, b.up) & 0xffff0000u);
}`}
`,
  }),
};

/** How float16 is converted: 'native' (WGSL's f16 conversions, see F16_NATIVE; adapters with shader-f16) or
 *  'packed' (integer rounding). Default: the tuner's choice (kernels/swiglu_variants.ts); tests force each. */
export interface SwigluOptions { f16?: 'native' | 'packed' }

/** The 16-bit forward (dy, dgu absent) or backward of gu [rows, 2I] into y or dgu, float16 converted as o.f16 says. */
export function launchPacked16Pass(o: Required<SwigluOptions>, gu: Tensor, out: Tensor, dy?: Tensor): void {
  if (dy) launchPacked16(packed16Kernels.swiglu_packed_backward, gu, [gu, dy, out], o, is16(dy.dtype));
  else launchPacked16(packed16Kernels.swiglu_packed_forward, gu, [gu, out], o);
}

/** The 16-bit kernel k over gu [rows, 2I] with buffers bufs; dy16 for backward. */
function launchPacked16(k: (typeof packed16Kernels)[keyof typeof packed16Kernels], gu: Tensor, bufs: Tensor[], o: SwigluOptions, dy16?: boolean): void {
  const I = gu.shape.at(-1)! / 2, n = gu.size / 2, vec4 = I % 8 === 0, back = dy16 !== undefined;
  const units = vec4 ? n / 8 : back ? n : Math.ceil(n / 2); // invocations
  const format = gu.dtype as DType16;
  const native = format === 'f16' && (o.f16 ?? tuner().pick(swigluF16Tunable, { rows: n / I, I }).f16) === 'native';
  launch(k, {
    params: { n: vec4 ? n / 8 : n, i: I }, buffers: bufs.map((t) => t.binding()), workgroups: Math.ceil(units / WG),
    variant: { format, vec4, iv: vec4 ? I / 8 : 0, ...(back ? { dy16 } : {}), ...(native ? { native } : {}) },
  });
}

/** y [..., I] = silu(g)·u for gu [..., 2I] holding g then u in each row; float32, or for a 16-bit gu
 *  16-bit with torch's two roundings (see the top). */
export function swigluPacked(gu: Tensor, o: SwigluOptions = {}): Tensor {
  gu.assertLive();
  const I2 = gu.shape.at(-1)!;
  if (I2 % 2) throw new Error(`swiglu_packed: gu must be [..., 2·I], got [${gu.shape}]`);
  const y = Tensor.empty([...gu.shape.slice(0, -1), I2 / 2], is16(gu.dtype) ? gu.dtype : 'f32');
  if (is16(gu.dtype)) launchPacked16(packed16Kernels.swiglu_packed_forward, gu, [gu, y], o);
  else launchPacked(packedKernels.swiglu_packed_forward, gu, [gu, y]);
  if (needsGrad(gu)) record('swiglu_packed', [gu], [y], { ...o }, [gu]);
  return y;
}

const groups = (n: number) => Math.ceil(n / 4 / WG);

/** y = silu(g)·u, elementwise; g and u of the same shape. */
export function swiglu(g: Tensor, u: Tensor): Tensor {
  g.assertLive(); u.assertLive();
  if (g.size !== u.size) throw new Error(`swiglu: gate [${g.shape}] and up [${u.shape}] differ`);
  const y = Tensor.empty(g.shape);
  launch(kernels.swiglu_forward, { params: { n: y.size }, buffers: [g.binding(), u.binding(), y.binding()], workgroups: groups(y.size) });
  if (needsGrad(g, u)) record('swiglu', [g, u], [y], {}, [g, u]);
  return y;
}

/** The composite twin, from differentiable elementwise ops (tests compare against it). */
export function swigluComposite(g: Tensor, u: Tensor): Tensor {
  return mul(silu(g), u);
}

export const backward: Record<string, BackwardRule> = {
  swiglu: (node, [dy]) => {
    const [g, u] = node.inputs;
    const dg = Tensor.empty(g.shape), du = Tensor.empty(u.shape);
    launch(kernels.swiglu_backward, {
      params: { n: g.size }, buffers: [g.binding(), u.binding(), dy!.binding(), dg.binding(), du.binding()], workgroups: groups(g.size),
    });
    if (!g.requiresGrad) dg.dispose();
    if (!u.requiresGrad) du.dispose();
    return [g.requiresGrad ? dg : null, u.requiresGrad ? du : null];
  },
  swiglu_packed: (node, [dy]) => {
    const gu = node.inputs[0], dgu = Tensor.empty(gu.shape, gu.dtype);
    if (!is16(gu.dtype)) {
      launchPacked(packedKernels.swiglu_packed_backward, gu, [gu, dy!, dgu]);
      return [dgu];
    }
    // A float32 dy is rounded to gu's type in the kernel; a 16-bit one of the other type is cast to it.
    const d = is16(dy!.dtype) ? cast(dy!, gu.dtype) : dy!;
    launchPacked16(packed16Kernels.swiglu_packed_backward, gu, [gu, d, dgu], node.saved as SwigluOptions, is16(d.dtype));
    if (d !== dy) d.dispose();
    return [dgu];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------
const sig = (x: number) => 1 / (1 + Math.exp(-x));

export const reference = {
  forward: (g: Float64Array, u: Float64Array) => g.map((x, i) => x * sig(x) * u[i]),
  backward: (g: Float64Array, u: Float64Array, dy: Float64Array) => ({
    dg: g.map((x, i) => dy[i] * u[i] * sig(x) * (1 + x * (1 - sig(x)))),
    du: g.map((x, i) => dy[i] * x * sig(x)),
  }),
};

/** float64 reference of the 16-bit path: g, u values of type `to`, dy float32 values (or 16-bit ones: the
 *  first rounding leaves them as they are). Each result is rounded to float32 and then to `to`, as the
 *  kernel stores its float32 values. */
export const reference16 = {
  forward(g: Float64Array, u: Float64Array, to: DType16): Float64Array {
    const a = r16(g.map((x) => x * sig(x)), to);
    return r16(a.map((x, i) => x * u[i]), to);
  },
  backward(g: Float64Array, u: Float64Array, dy: Float64Array, to: DType16): { dg: Float64Array; du: Float64Array } {
    const d = r16(dy, to), a = r16(g.map((x) => x * sig(x)), to), act = r16(d.map((x, i) => x * u[i]), to);
    return { dg: r16(g.map((x, i) => act[i] * sig(x) * (1 + x * (1 - sig(x)))), to), du: r16(d.map((x, i) => x * a[i]), to) };
  },
};
const r16 = (v: Float64Array, to: DType16) => round16(Float32Array.from(v), to);

/** Bench metadata for n elements: forward reads g, u and writes y; backward reads g, u, dy, writes dg, du;
 *  4 bytes each, 2 for the 16-bit path (dy 16-bit too, as the gradient of a 16-bit y is). */
export const bench = {
  swiglu_forward: (n: number) => ({ bytes: 12 * n }),
  swiglu_backward: (n: number) => ({ bytes: 20 * n }),
  swiglu_forward16: (n: number) => ({ bytes: 6 * n }),
  swiglu_backward16: (n: number) => ({ bytes: 10 * n }),
};

/** Bench rows at MiniMind2-small's FFN activations 5440 × 1408: forward and backward, separate and packed. */
export function cases(): Case[] {
  const n = N * I, k = 4096; // checked on the first k elements
  const data = () => [host([N, I], 13), host([N, I], 14), host([N, I], 15)];
  return [{
    name: 'swiglu_forward', shape: `${N}x${I}`, work: bench.swiglu_forward(n),
    setup: async () => {
      const [gh, uh] = data();
      const g = Tensor.fromArray(gh, [N, I]), u = Tensor.fromArray(uh, [N, I]);
      await verify('swiglu_forward', () => swiglu(g, u), reference.forward(f64(gh, k), f64(uh, k)));
      return scoped(() => swiglu(g, u));
    },
  }, {
    name: 'swiglu_backward', shape: `${N}x${I}`, work: bench.swiglu_backward(n),
    setup: async () => {
      const [gh, uh, dyh] = data();
      const g = Tensor.fromArray(gh, [N, I], 'f32', true), u = Tensor.fromArray(uh, [N, I], 'f32', true), dy = Tensor.fromArray(dyh, [N, I]);
      const node = swiglu(g, u).node!;
      const want = reference.backward(f64(gh, k), f64(uh, k), f64(dyh, k));
      await verify('swiglu_backward dg', () => backward.swiglu(node, [dy], noTargets)[0]!, want.dg);
      await verify('swiglu_backward du', () => backward.swiglu(node, [dy], noTargets)[1]!, want.du);
      return scoped(() => backward.swiglu(node, [dy], noTargets));
    },
  }, ...swigluPackedCases()];
}

/** Host side of the packed layout (references of the bench rows and trials): g (second false) or u of the first
 *  `rows` rows of gu [rows, 2I], and dg, du [rows, I] side by side as dgu [rows, 2I]. */
export const packedHalf = (gu: ArrayLike<number>, rows: number, I: number, second: boolean) =>
  Float64Array.from({ length: rows * I }, (_, i) => gu[Math.floor(i / I) * 2 * I + (second ? I : 0) + (i % I)]);
export const packedSides = ({ dg, du }: { dg: Float64Array; du: Float64Array }, rows: number, I: number) =>
  Float64Array.from({ length: rows * 2 * I }, (_, i) => { const r = Math.floor(i / (2 * I)), c = i % (2 * I); return c < I ? dg[r * I + c] : du[r * I + c - I]; });

/** The 16-bit forms: bfloat16, and float16 each way the adapter can convert it. */
const FORMS16 = (): [DType16, SwigluOptions][] => [['bf16', {}], ...swigluF16Tunable.variants({ rows: N, I }).map((v): [DType16, SwigluOptions] => ['f16', v])];

/** g and u side by side in one gu [N, 2·I] (the fused gate/up projection's output), float32 and 16-bit. */
function swigluPackedCases(): Case[] {
  const n = N * I, rows = 2; // checked on the first rows
  const half = (gu: ArrayLike<number>, second: boolean) => packedHalf(gu, rows, I, second);
  const sideBySide = (d: { dg: Float64Array; du: Float64Array }) => packedSides(d, rows, I);
  const h = () => host([N, 2 * I], 29), dyh = () => host([N, I], 30);
  return [{
    name: 'swiglu_packed_forward', shape: `${N}x2·${I}`, work: bench.swiglu_forward(n),
    setup: async () => {
      const x = h(), gu = Tensor.fromArray(x, [N, 2 * I]);
      await verify('swiglu_packed_forward', () => swigluPacked(gu), reference.forward(half(x, false), half(x, true)));
      return scoped(() => swigluPacked(gu));
    },
  }, {
    name: 'swiglu_packed_backward', shape: `${N}x2·${I}`, work: bench.swiglu_backward(n),
    setup: async () => {
      const x = h(), d = dyh(), dy = Tensor.fromArray(d, [N, I]);
      const node = swigluPacked(Tensor.fromArray(x, [N, 2 * I], 'f32', true)).node!;
      const want = sideBySide(reference.backward(half(x, false), half(x, true), f64(d, rows * I)));
      await verify('swiglu_packed_backward', () => backward.swiglu_packed(node, [dy], noTargets)[0]!, want);
      return scoped(() => backward.swiglu_packed(node, [dy], noTargets));
    },
  }, ...FORMS16().flatMap(([d, o]): Case[] => {
    const tag = `${d}${o.f16 ? ` ${o.f16}` : ''}`, v = (x: Float32Array) => round16(x.subarray(0, rows * 2 * I), d);
    return [{
      name: 'swiglu_packed_forward', shape: `${N}x2·${I} ${tag}`, work: bench.swiglu_forward16(n),
      setup: async () => {
        const x = h(), gu = Tensor.fromArray(x, [N, 2 * I], d), s = v(x);
        await verify(`swiglu_packed_forward ${tag}`, () => swigluPacked(gu, o), reference16.forward(half(s, false), half(s, true), d));
        return scoped(() => swigluPacked(gu, o));
      },
    }, {
      name: 'swiglu_packed_backward', shape: `${N}x2·${I} ${tag}`, work: bench.swiglu_backward16(n),
      setup: async () => {
        const x = h(), dd = dyh(), dy = Tensor.fromArray(dd, [N, I], d), s = v(x);
        const node = swigluPacked(Tensor.fromArray(x, [N, 2 * I], d, true), o).node!;
        const want = sideBySide(reference16.backward(half(s, false), half(s, true), f64(dd, rows * I), d));
        await verify(`swiglu_packed_backward ${tag}`, () => backward.swiglu_packed(node, [dy], noTargets)[0]!, want);
        return scoped(() => backward.swiglu_packed(node, [dy], noTargets));
      },
    }];
  })];
}
