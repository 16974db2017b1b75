/** mulberry32: a small seeded uniform [0, 1) generator, reproducible across runs and machines. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal draws from a uniform [0, 1) generator: Box–Muller, both values of each pair used. */
export function gaussian(uniform: () => number): () => number {
  let spare: number | null = null;
  return () => {
    if (spare !== null) { const v = spare; spare = null; return v; }
    const r = Math.sqrt(-2 * Math.log(1 - uniform())), t = 2 * Math.PI * uniform(); // 1 − u ∈ (0, 1]: no log(0)
    spare = r * Math.sin(t);
    return r * Math.cos(t);
  };
}
