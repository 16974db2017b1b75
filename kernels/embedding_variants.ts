// embedding's variants (the forward's layout: a row per invocation, the fallback, or a vector per
// invocation), its trial and bench rows (forward; backward host-sorted and by GPU scan).
import { Tensor, gradSlot } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import type { Tunable } from '../runtime/tuner.js';
import { embedding, launchForward, backward, reference, bench, type EmbeddingVariant } from './embedding.js';
import { B, T, N, H, V, Case, host, rand, f64, compare, fixedTrial, tunedCase } from './case.js';

/** N positions looking up a [V, H] table. */
export interface EmbeddingShape { N: number; V: number; H: number }

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const LAYOUTS: EmbeddingVariant[] = [{ layout: 'row' }, { layout: 'elem' }];
const idsFor = (n: number, V: number, seed: number) => { const r = mulberry32(seed); return Int32Array.from({ length: n }, () => Math.floor(r() * V)); };

export const embeddingTunable: Tunable<EmbeddingShape, EmbeddingVariant> = {
  name: 'embedding_forward', key: (s) => `H${s.H} N${p2(s.N)}`,
  fallback: () => LAYOUTS[0], variants: () => LAYOUTS, label: (v) => v.layout,
  trial(s) {
    const ih = idsFor(s.N, s.V, 91), th = host([s.V, s.H], 92);
    const ids = Tensor.fromArray(ih, [s.N], 'i32').keep(), table = Tensor.fromArray(th, [s.V, s.H]).keep(), y = Tensor.empty([s.N, s.H]).keep();
    const n = Math.min(s.N, 1024); // positions compared
    return fixedTrial<EmbeddingVariant>({
      run: (v) => launchForward(v, ids, table, y), outputs: [y],
      want: () => [reference.forward(ih.subarray(0, n), Float64Array.from(th), s.H)], rtol: 0, atol: 0, owned: [ids, table, y],
    });
  },
};

/** Bench rows at MiniMind2-small's 5440 ids into a 6400 × 512 table. */
export function cases(): Case[] {
  const ids = idsFor(N, V, 16);
  const distinct = new Set(ids).size;
  const backwardCase = (hostIds: boolean): Case => ({
    name: 'embedding_backward', shape: `${N} ids, ${V}x${H}, ${hostIds ? 'host-sorted' : 'GPU scan'}`,
    work: bench.embedding_backward(N, H, distinct),
    note: `${distinct} distinct ids${hostIds ? '' : '; the fallback when the ids are not on the host'}`,
    setup: async (held) => {
      const dyh = host([B, T, H], 18);
      const table = rand([V, H], 17, 1, true), dy = Tensor.fromArray(dyh, [B, T, H]);
      const node = embedding(Tensor.fromArray(ids, [B, T], 'i32'), table, hostIds ? ids : undefined).node!;
      const grad = gradSlot(table); // a leaf's gradient, zero until now, accumulated in place
      held.push(grad);
      const call = () => { backward.embedding(node, [dy], (i) => (i === 1 ? { tensor: grad, accumulate: true } : null)); };
      call();
      compare('embedding_backward', await grad.readF32(), reference.backward(ids, f64(dyh), V, H));
      return call;
    },
  });
  return [tunedCase(embeddingTunable, { N, V, H }, { name: 'embedding_forward', shape: `${N} ids, ${V}x${H}`, work: bench.embedding_forward(N, H) }),
    backwardCase(true), backwardCase(false)];
}
