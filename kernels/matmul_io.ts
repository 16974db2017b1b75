// The loads and stores of a matmul kernel over 16-bit storage (kernels/matmul16.ts), for the tile
// generators of kernels/matmul_register.ts and kernels/matmul_shared.ts, which read their operands
// only through hv (a group of 4 consecutive elements as vec4<f32>) and loadA/loadB (one element) and
// write only through out/out2/out4. torch.autocast's matmul: 16-bit operands (both bf16 or both
// f16), float32 accumulation, the output float32 or the operands' dtype, rounded once at the end.
// - Packed (any adapter): A and B bound as array<vec2<u32>> (4 elements per entry, runtime/packed16_wgsl.ts
//   layout), a 16-bit C as array<u32>. Two outputs share a word, so one invocation writes both:
//   out2(m, n, v0, v1) for an even n with N even (the kernels own columns in pairs; kernels/matmul16.ts
//   takes another path for an odd N).
// - Native f16 (adapters with shader-f16): WGSL f16 arrays, A and B as array<vec4<f16>>, C as
//   array<f16>; every element stores on its own, so out() serves any N.
// With beta ≠ 0 a 16-bit C gets round16(round16(v) + beta·C), the sum torch makes when it adds the
// product (a bf16 tensor) to a bf16 gradient.
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import type { DType16 } from '../runtime/tensor.js';

/** Every GEMM kernel's uniform params: C[m,n] (+)= Σ_k A[m·am + k·ak]·B[k·bk + n·bn] (C row-major
 *  [M,N]; strides in elements), beta 0 or 1, group the row tiles per group of the tile order. */
export const GEMM_PARAMS = [['M', 'u32'], ['N', 'u32'], ['K', 'u32'], ['am', 'u32'], ['ak', 'u32'], ['bk', 'u32'], ['bn', 'u32'],
  ['beta', 'f32'], ['group', 'u32']] as const;

/** A 16-bit GEMM's storage as a shape class sees it: both operands' dtype, the output's. */
export interface Storage16 {
  ab: DType16;
  c: 'f32' | DType16;
}

/** A 16-bit GEMM's storage as a kernel compiles it. */
export interface GemmIO extends Storage16 {
  /** WGSL f16 arrays (ab = 'f16', the adapter has shader-f16) instead of packed u32 words. */
  native: boolean;
}

/** Whether the kernel must write 16-bit outputs two at a time (packed words). */
export const pairs = (io: GemmIO) => io.c !== 'f32' && !io.native;

export const enables = (io: GemmIO): string[] => (io.native ? ['f16'] : []);

export function buffers(io: GemmIO) {
  const ab = io.native ? 'vec4<f16>' : 'vec2<u32>';
  const c = io.c === 'f32' ? 'f32' : io.native ? 'f16' : 'u32';
  return [['a', 'read', ab], ['b', 'read', ab], ['c', 'rw', c]] as const;
}

/** WGSL: hv, hs (the identity: no float16 rounding mode here), loadA, loadB, out, out2, out4. */
export function ioWgsl(io: GemmIO): string {
  const un = io.ab === 'f16' ? 'unpackF16' : 'unpackBf16', pk = io.ab === 'f16' ? 'packF16' : 'packBf16';
  const loads = io.native
    ? `fn hv(x: vec4<f16>) -> vec4<f32> { return vec4<f32>(x); }
fn loadA(i: u32) -> f32 { return f32(a[i >> 2u][i & 3u]); }
fn loadB(i: u32) -> f32 { return f32(b[i >> 2u][i & 3u]); }`
    : `fn hv(x: vec2<u32>) -> vec4<f32> { return vec4<f32>(${un}(x.x), ${un}(x.y)); }
fn loadA(i: u32) -> f32 { return ${un}(a[i >> 2u][(i >> 1u) & 1u])[i & 1u]; }
fn loadB(i: u32) -> f32 { return ${un}(b[i >> 2u][(i >> 1u) & 1u])[i & 1u]; }`;
  // put(o, v): element o of C; put2(w, v0, v1): word w of a packed C (elements 2w, 2w + 1).
  const put = io.c === 'f32'
    ? 'fn put(o: u32, v: f32) { if (p.beta != 0.0) { c[o] = v + p.beta * c[o]; } else { c[o] = v; } }'
    : io.native
      // Rounded with integer operations (WGSL leaves f32 → f16 rounding to the implementation);
      // bitcast puts the low half in component 0, as packed storage does.
      ? `fn r16(v: f32) -> f16 { return bitcast<vec2<f16>>(f16FromF32Bits(bitcast<u32>(v))).x; }
fn put(o: u32, v: f32) { if (p.beta != 0.0) { c[o] = r16(f32(r16(v)) + p.beta * f32(c[o])); } else { c[o] = r16(v); } }`
      : `fn put2(w: u32, v0: f32, v1: f32) {
  if (p.beta != 0.0) { let r = ${un}(${pk}(v0, v1)); let old = ${un}(c[w]); c[w] = ${pk}(r.x + p.beta * old.x, r.y + p.beta * old.y); }
  else { c[w] = ${pk}(v0, v1); }
}`;
  const outs = pairs(io)
    ? `fn out2(m: u32, n: u32, v0: f32, v1: f32) { if (m < p.M && n < p.N) { put2((m * p.N + n) >> 1u, v0, v1); } }
fn out4(m: u32, n: u32, v: vec4<f32>) { out2(m, n, v.x, v.y); out2(m, n + 2u, v.z, v.w); }`
    : `fn out(m: u32, n: u32, v: f32) { if (m < p.M && n < p.N) { put(m * p.N + n, v); } }
fn out4(m: u32, n: u32, v: vec4<f32>) { for (var j = 0u; j < 4u; j++) { out(m, n + j, v[j]); } }`;
  return `fn hs(x: f32) -> f32 { return x; }
${loads}
${put}
${outs}
${PACKED16_WGSL}`;
}
