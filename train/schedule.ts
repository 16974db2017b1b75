/** MiniMind's LR at micro-step t of total (t = epoch·iters + step, step 1-based): cosine from base
 *  down to base/10, no warmup: base · (0.1 + 0.45 · (1 + cos(π·t/total))). */
export function lrAt(t: number, total: number, base: number): number {
  return base * (0.1 + 0.45 * (1 + Math.cos((Math.PI * t) / total)));
}
