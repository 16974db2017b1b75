// float16 rounding for --dtype float16 (torch.autocast's matmul): the WGSL hv/hs every matmul kernel
// passes its operands and results through, and its float64 twin for references.
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';

/** hv/hs: what an operand or result passes through. float32: nothing. float16 (torch.autocast's
 *  matmul: float16 operands and result, float32 accumulation): rounded to the nearest float16, ties
 *  to even: packed as float16 storage is (integer operations on the bits, runtime/packed16_wgsl.ts), unpacked;
 *  ≥ 65520 (which rounds past 65504) gives ±inf, so the loss scaler sees the overflow; inf and NaN pass. */
export function precisionFns(h: boolean): string {
  if (!h) return 'fn hv(x: vec4<f32>) -> vec4<f32> { return x; }\nfn hs(x: f32) -> f32 { return x; }\n';
  return `fn hv(x: vec4<f32>) -> vec4<f32> { return vec4<f32>(unpackF16(packF16(x.x, x.y)), unpackF16(packF16(x.z, x.w))); }
fn hs(x: f32) -> f32 { return unpackF16(packF16(x, 0.0)).x; }
${PACKED16_WGSL}`;
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
