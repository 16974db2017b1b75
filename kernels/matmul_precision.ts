// float16 rounding of a number on the host (MiniMind's .half() of adapter files: model/lora_file.ts, and
// references in the tests).

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
