// embedding: out[b, t, :] = table[ids[b, t], :] (MiniMind embed_tokens, no scaling); ids i32 [B, T],
// table [V, H]. Backward is a deterministic scatter-add into the table's gradient (the tied LM head's
// matmul dW accumulates into the same gradient, so this adds, never overwrites):
//  - with the ids known on the host (pass them: the data loader has them anyway), a counting sort on
//    the host groups positions by id; one invocation per (distinct id, vec4 column) sums its
//    positions' rows in ascending position order and adds the sum once into the gradient.
//    Out-of-range ids are a host-side error naming the position.
//  - without host ids, one invocation per vocab row scans all positions in order and adds each match
//    (the scan reads the same id in every lane, which is cheap); the forward clamps out-of-range ids
//    and records the last bad position in a flag that checkEmbeddingIds() turns into an error.
// Both orders are fixed, so the result is bit-identical run to run (no float atomics).
import { defineKernel, launch, readBuffer, writeBuffer, clearBuffer } from '../runtime/kernel.js';
import { vecType } from '../runtime/wgsl.js';
import { tuner } from '../runtime/tuner.js';
import { embeddingTunable } from './embedding_variants.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import { acquireBuffer } from '../runtime/buffer.js';
import type { BackwardRule } from '../runtime/autograd.js';

const WG = 64;
/** Host-sorted backward: columns (in VT units) per invocation; 1 (an integer division per element) ran at
 *  ~45-65% of copy speed, 16 at 70-90%, and a whole row per invocation serialises a frequent id. */
const COLS = 16;
/** VT is vec4<f32> when H % 4 == 0 (hv = H/4), else f32. */
interface Width { vec4: boolean }

/** The forward's layout (embedding_variants.ts): 'row', one invocation per position copying its row
 *  (the fallback), or 'elem', one per vector of the output (coalesced on a GPU). */
export interface EmbeddingVariant { layout: 'row' | 'elem' }

export const kernels = {
  /** Position r's row of the table into y; bad ids clamp and set flag = 1 + r. */
  embedding_forward: defineKernel<EmbeddingVariant & Width>({
    name: 'embedding_forward', workgroup: WG, params: [['N', 'u32'], ['hv', 'u32'], ['V', 'u32']],
    buffers: [['ids', 'read', 'i32'], ['table', 'read', 'VT'], ['y', 'rw', 'VT'], ['flag', 'rw', 'atomic<u32>']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
${v.layout === 'row' ? `  let r = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (r >= p.N) { return; }` : `  let e = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (e >= p.N * p.hv) { return; }
  let r = e / p.hv;`}
  let id = ids[r];
  if ((id < 0 || u32(id) >= p.V)${v.layout === 'row' ? '' : ' && e % p.hv == 0u'}) { atomicMax(&flag[0], r + 1u); }
  let src = u32(clamp(id, 0, i32(p.V) - 1)) * p.hv;
  ${v.layout === 'row' ? 'for (var j = 0u; j < p.hv; j++) { y[r * p.hv + j] = table[src + j]; }' : 'let j = e % p.hv; y[r * p.hv + j] = table[src + j];'}
}
`,
  }),
  /** Host-sorted: groups = [uniq(U) | start(U+1) | positions(N)]; dw[uniq[k]] += Σ dy[positions of k],
   *  one invocation per (distinct id k, block of cb columns): a frequent id (padding) spreads over lanes. */
  embedding_backward: defineKernel<Width>({
    name: 'embedding_backward', workgroup: WG, params: [['n', 'u32'], ['hv', 'u32'], ['U', 'u32'], ['cb', 'u32'], ['nb', 'u32']],
    buffers: [['groups', 'read', 'i32'], ['dy', 'read', 'VT'], ['dw', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // over U · nb
  if (i >= p.n) { return; }
  let k = i / p.nb;
  let j0 = (i - k * p.nb) * p.cb;
  let q0 = u32(groups[p.U + k]);
  let q1 = u32(groups[p.U + k + 1u]);
  let o = u32(groups[k]) * p.hv;
  for (var j = j0; j < min(j0 + p.cb, p.hv); j++) {
    var s = VT(0.0);
    for (var q = q0; q < q1; q++) { s += dy[u32(groups[2u * p.U + 1u + q]) * p.hv + j]; }
    dw[o + j] = dw[o + j] + s;
  }
}
`,
  }),
  /** GPU-only: one invocation per vocab row v, scanning all N positions in order. */
  embedding_backward_scan: defineKernel<Width>({
    name: 'embedding_backward_scan', workgroup: WG, params: [['V', 'u32'], ['hv', 'u32'], ['N', 'u32']],
    buffers: [['ids', 'read', 'i32'], ['dy', 'read', 'VT'], ['dw', 'rw', 'VT']],
    wgsl: (v, entry) => `${vecType(v.vec4)}
${entry} {
  let v = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (v >= p.V) { return; }
  for (var r = 0u; r < p.N; r++) {
    if (u32(ids[r]) == v) {
      for (var j = 0u; j < p.hv; j++) { dw[v * p.hv + j] += dy[r * p.hv + j]; }
    }
  }
}
`,
  }),
};

/** Persistent flag: 0, or 1 + the last position whose id was out of range (GPU path). */
let flagBuf: GPUBuffer | undefined;

/** Throws if any embedding forward since the last call saw an out-of-range id (GPU path), then resets. */
export async function checkEmbeddingIds(): Promise<void> {
  if (!flagBuf) return;
  const bad = new Uint32Array(await readBuffer(flagBuf, 0, 4))[0];
  if (!bad) return;
  writeBuffer(flagBuf, 0, new Uint32Array(1));
  throw new Error(`embedding: token id out of range at flat position ${bad - 1} (clamped in the forward)`);
}

/** Counting sort of positions by id: [uniq ids ascending | start offsets (U+1) | positions], and U. */
export function groupIds(ids: Int32Array, V: number): { groups: Int32Array; U: number } {
  const count = new Int32Array(V);
  ids.forEach((id, r) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`embedding: id ${id} at flat position ${r} is outside [0, ${V})`);
    count[id]++;
  });
  let U = 0;
  for (let v = 0; v < V; v++) if (count[v]) U++;
  const groups = new Int32Array(2 * U + 1 + ids.length);
  const next = new Int32Array(V); // write cursor of each id inside the positions block
  let k = 0, off = 0;
  for (let v = 0; v < V; v++) {
    if (!count[v]) continue;
    groups[k] = v; groups[U + k] = off; next[v] = off;
    off += count[v]; k++;
  }
  groups[2 * U] = off;
  ids.forEach((id, r) => { groups[2 * U + 1 + next[id]++] = r; });
  return { groups, U };
}

/** y = table[ids] with layout v; out-of-range ids clamp and are flagged (checkEmbeddingIds). */
export function launchForward(v: EmbeddingVariant, ids: Tensor, table: Tensor, y: Tensor): void {
  const [V, H] = table.shape;
  const vec4 = H % 4 === 0, hv = vec4 ? H / 4 : H;
  flagBuf ??= (() => { const b = acquireBuffer(4); writeBuffer(b, 0, new Uint32Array(1)); return b; })();
  launch(kernels.embedding_forward, {
    params: { N: ids.size, hv, V }, buffers: [ids.binding(), table.binding(), y.binding(), flagBuf],
    workgroups: Math.ceil((v.layout === 'row' ? ids.size : ids.size * hv) / WG), variant: { ...v, vec4 },
  });
}

/** out [..ids.shape, H] = table[ids]. Pass `hostIds` (the same ids, on the host) for the sorted backward. */
export function embedding(ids: Tensor, table: Tensor, hostIds?: Int32Array): Tensor {
  ids.assertLive(); table.assertLive();
  if (ids.dtype !== 'i32') throw new Error(`embedding: ids must be i32, got ${ids.dtype}`);
  if (table.shape.length !== 2) throw new Error(`embedding: table must be [V, H], got [${table.shape}]`);
  const [V, H] = table.shape;
  if (hostIds && hostIds.length !== ids.size) throw new Error(`embedding: ${hostIds.length} host ids for ids [${ids.shape}]`);
  const sorted = hostIds ? groupIds(hostIds, V) : undefined; // validates the ids on the host
  const y = Tensor.empty([...ids.shape, H]);
  launchForward(tuner().pick(embeddingTunable, { N: ids.size, V, H }), ids, table, y);
  if (needsGrad(table)) {
    const groups = sorted ? Tensor.fromArray(sorted.groups, [sorted.groups.length], 'i32') : undefined;
    record('embedding', [ids, table], [y], { groups, U: sorted?.U }, groups ? [] : [ids]);
  }
  return y;
}

export const backward: Record<string, BackwardRule> = {
  embedding: (node, [dy], into) => {
    const [ids, table] = node.inputs;
    if (!table.requiresGrad) return [null, null];
    const [V, H] = table.shape;
    const vec4 = H % 4 === 0, hv = vec4 ? H / 4 : H;
    // The kernels add into dw: a leaf's gradient in place (zeroed first if it held nothing), else zeros.
    const t = into(1);
    const dw = t?.tensor ?? Tensor.zeros(table.shape);
    if (t && !t.accumulate) clearBuffer(dw.buffer, dw.size * 4, dw.offset);
    const groups = node.saved.groups as Tensor | undefined;
    if (groups) {
      const nb = Math.ceil(hv / COLS), n = (node.saved.U as number) * nb;
      launch(kernels.embedding_backward, {
        params: { n, hv, U: node.saved.U as number, cb: COLS, nb }, buffers: [groups.binding(), dy!.binding(), dw.binding()],
        workgroups: Math.ceil(n / WG), variant: { vec4 },
      });
    } else {
      launch(kernels.embedding_backward_scan, {
        params: { V, hv, N: ids.size }, buffers: [ids.binding(), dy!.binding(), dw.binding()], workgroups: Math.ceil(V / WG), variant: { vec4 },
      });
    }
    return [null, dw];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

export const reference = {
  forward: (ids: ArrayLike<number>, table: Float64Array, H: number) => {
    const y = new Float64Array(ids.length * H);
    for (let r = 0; r < ids.length; r++) for (let j = 0; j < H; j++) y[r * H + j] = table[ids[r] * H + j];
    return y;
  },
  /** dTable [V, H] = Σ over positions r of dy[r] into row ids[r]. */
  backward: (ids: ArrayLike<number>, dy: Float64Array, V: number, H: number) => {
    const dw = new Float64Array(V * H);
    for (let r = 0; r < ids.length; r++) for (let j = 0; j < H; j++) dw[ids[r] * H + j] += dy[r * H + j];
    return dw;
  },
};

/** Bench metadata: N positions × H (forward: row read + write; backward: dy read, touched rows RMW ≤ 2·N·H). */
export const bench = {
  embedding_forward: (N: number, H: number) => ({ bytes: 4 * (2 * N * H + N) }),
  embedding_backward: (N: number, H: number, distinct: number) => ({ bytes: 4 * (N * H + 2 * distinct * H + 2 * N) }),
};
