// float16 rounding for --dtype float16 (torch.autocast's matmul): the WGSL hv/hs every matmul kernel
// passes its operands and results through, and its float64 twin for references.

/** hv/hs: what an operand or result passes through. float32: nothing. float16 (torch.autocast's
 *  matmul: float16 operands and result, float32 accumulation): rounded to the nearest float16, ties
 *  to even, with integer operations on the bits (Mesa's pack2x16float on lavapipe gave wrong
 *  roundings once lanes held different values): normal range, drop 13 mantissa bits; subnormal
 *  range (< 2^-14), round to a multiple of 2^-24; ≥ 65520 (which rounds past 65504) ±inf, so the
 *  loss scaler sees the overflow; inf and NaN pass. The infinity comes from a uniform (p.infBits):
 *  WGSL forbids an infinite constant. */
export function precisionFns(h: boolean): string {
  if (!h) return 'fn hv(x: vec4<f32>) -> vec4<f32> { return x; }\nfn hs(x: f32) -> f32 { return x; }\n';
  return `fn hv(x: vec4<f32>) -> vec4<f32> {
  let u = bitcast<vec4<u32>>(x);
  let normal = bitcast<vec4<f32>>((u + vec4<u32>(0xfffu) + ((u >> vec4<u32>(13u)) & vec4<u32>(1u))) & vec4<u32>(0xffffe000u));
  let sub = round(x * 16777216.0) * 5.9604644775390625e-8;
  let r = select(normal, sub, abs(x) < vec4<f32>(6.103515625e-5));
  let big = select(r, sign(x) * bitcast<f32>(p.infBits), abs(x) >= vec4<f32>(65520.0));
  return select(big, x, (u & vec4<u32>(0x7f800000u)) == vec4<u32>(0x7f800000u));
}
fn hs(x: f32) -> f32 { return hv(vec4<f32>(x)).x; }
`;
}

/** x rounded to the nearest float16 (ties to even), as a number; ±inf past float16's range. */
export function roundF16(x: number): number {
  const a = Math.abs(x);
  if (!Number.isFinite(x) || a === 0) return x;
  if (a >= 65520) return Math.sign(x) * Infinity;
  let e = Math.max(Math.floor(Math.log2(a)), -14); // below 2^-14: subnormal spacing 2^-24
  if (e > -14 && 2 ** e > a) e--;
  const ulp = 2 ** (e - 10);
  const q = a / ulp, f = Math.floor(q), r = q - f;
  const n = r > 0.5 || (r === 0.5 && f % 2 === 1) ? f + 1 : f;
  return Math.sign(x) * n * ulp;
}
