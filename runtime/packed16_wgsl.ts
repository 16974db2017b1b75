// WGSL for 16-bit storage: float16 and bfloat16 values stored two to a u32 word, element 2i in the
// low half and 2i+1 in the high half. That is the little-endian byte order of a 16-bit tensor in a
// .pth or safetensors file, so a packed buffer holds the bytes model/dtype.ts's encode() writes.
// Packing rounds to nearest, ties to even, with integer operations on the float32 bits: WGSL leaves
// the rounding of f32 → f16 to the implementation, and Mesa's pack2x16float on lavapipe rounded
// wrongly once lanes held different values. The bit conversions have the names and the results of
// their host twins in model/dtype.ts (f16FromF32Bits, bf16FromF32Bits), NaN payloads included.

/** Declarations, no adapter feature needed:
 *  - f16FromF32Bits(u: u32) -> u32: float32 bits → float16 bits (low 16). Normal range [2^-14, 65520):
 *    rebias the exponent (127 → 15), round off 13 mantissa bits. Below 2^-14: the subnormal
 *    m·2^-24, the 24-bit significand shifted right by 126 − exponent (14 to 24; 25 gives 0, as for
 *    float32 subnormals). From 65520 on (which rounds past 65504): ±inf. NaN keeps the top 10
 *    payload bits, or becomes the quiet 0x7e00 where they are all zero.
 *  - bf16FromF32Bits(u: u32) -> u32: float32 bits → bfloat16 bits (low 16): round off the low 16
 *    bits (a carry reaches inf from the largest finite values); NaN is made quiet (bit 6).
 *  - packF16(a, b) / packBf16(a, b): two f32 → one u32, a in the low half.
 *  - unpackF16(w) / unpackBf16(w): one u32 → vec2<f32> (x from the low half), exact. unpackF16 is
 *    unpack2x16float: on lavapipe exact for all 65536 patterns, subnormals and infinities included,
 *    except that a signalling NaN comes back quiet, as an IEEE conversion makes it (test/packed16.test.ts). */
export const PACKED16_WGSL = `
fn f16FromF32Bits(u: u32) -> u32 {
  let a = u & 0x7fffffffu;
  let normal = (a - 0x38000000u + 0xfffu + ((a >> 13u) & 1u)) >> 13u;
  let m = (a & 0x7fffffu) | 0x800000u;
  let s = min(126u - min(a >> 23u, 112u), 25u);
  let sub = (m + (1u << (s - 1u)) - 1u + ((m >> s) & 1u)) >> s;
  let nan = select(0x7c00u | ((a >> 13u) & 0x3ffu), 0x7e00u, (a & 0x7fe000u) == 0u);
  var h = select(normal, sub, a < 0x38800000u);
  h = select(h, 0x7c00u, a >= 0x477ff000u);
  h = select(h, nan, a > 0x7f800000u);
  return ((u >> 16u) & 0x8000u) | h;
}
fn bf16FromF32Bits(u: u32) -> u32 {
  let r = (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
  return select(r, (u >> 16u) | 0x40u, (u & 0x7fffffffu) > 0x7f800000u);
}
fn packF16(a: f32, b: f32) -> u32 { return f16FromF32Bits(bitcast<u32>(a)) | (f16FromF32Bits(bitcast<u32>(b)) << 16u); }
fn packBf16(a: f32, b: f32) -> u32 { return bf16FromF32Bits(bitcast<u32>(a)) | (bf16FromF32Bits(bitcast<u32>(b)) << 16u); }
fn unpackF16(w: u32) -> vec2<f32> { return unpack2x16float(w); }
fn unpackBf16(w: u32) -> vec2<f32> { return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u)); }
`;
