// Memory-bound kernels (rmsnorm, rope, swiglu, embedding, cross_entropy) at MiniMind2-small training
// shapes (B·T = 16·340 = 5440 rows, H 512, FFN 1408, V 6400, nh 8, nkv 2, hd 64), next to a vec4 copy
// kernel measured the same way: the roofline these kernels are judged against (target ≥ 50% of it).
// Timing: wall clock over a batch of calls; the host sleeps through most of the expected time before
// awaiting, because Dawn's Node binding spins a core while a GPU promise is pending (LAVAPIPE-NOTES).
// Bytes per call come from each kernel module's bench metadata (the minimum traffic of the op).
// Run alone: npx tsx bench/memory_bound.ts
import { pathToFileURL } from 'node:url';
import { initGpu, closeGpu } from '../runtime/device.js';
import { defineKernel, launch, flush, sync } from '../runtime/kernel.js';
import { Tensor, beginScope, endScope, noGrad } from '../runtime/tensor.js';
import * as rmsnormK from '../kernels/rmsnorm.js';
import * as ropeK from '../kernels/rope.js';
import * as swigluK from '../kernels/swiglu.js';
import * as embeddingK from '../kernels/embedding.js';
import * as ceK from '../kernels/cross_entropy.js';
import '../kernels/index.js';

/** pctCopy: GB/s as a percent of the copy probe timed right next to it (the machine's load drifts). */
export interface Row { name: string; shape: string; ms: number; gbps: number; pctCopy: number }

const B = 16, T = 340, R = B * T, H = 512, FFN = 1408, V = 6400, NH = 8, NKV = 2, HD = 64;

const copyKernel = defineKernel({
  name: 'copy_probe', params: [['n', 'u32']], buffers: [['x', 'read', 'vec4<f32>'], ['y', 'rw', 'vec4<f32>']],
  wgsl: () => `@compute @workgroup_size(256) fn copy_probe(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wgIndex(wid, nwg) * 256u + lid.x;
  if (i < p.n) { y[i] = x[i]; }
}`,
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** ms per call of `fn` over one batch of ≥ ~150 ms (after a first call that compiles and fills the pool). */
async function timeBatch(fn: () => void): Promise<number> {
  const once = async () => { const t = performance.now(); fn(); await sync(); return performance.now() - t; };
  await once();
  const est = Math.max(0.05, await once());
  const iters = Math.max(3, Math.ceil(150 / est));
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) fn();
  flush();
  await sleep(est * iters * 0.8);
  await sync();
  return (performance.now() - t0) / iters;
}

/** Each call inside its own scope, so temporaries go back to the pool. */
const scoped = (fn: () => void) => () => { beginScope(); try { fn(); } finally { endScope(); } };

export async function benchMemoryBound(): Promise<Row[]> {
  const rows: Row[] = [];
  const nv = (64 << 20) / 16, ca = Tensor.zeros([nv * 4]).keep(), cb = Tensor.empty([nv * 4]).keep();
  const copy = () => launch(copyKernel, { params: { n: nv }, buffers: [ca.buffer, cb.buffer], workgroups: nv / 256 });
  const copyBytes = 2 * (64 << 20);
  /** Kernel and copy probe timed alternately, three times; the medians of ms and of the ratio. */
  const add = async (name: string, shape: string, bytes: number, fn: () => void) => {
    const ms: number[] = [], pct: number[] = [];
    for (let k = 0; k < 3; k++) {
      const t = await timeBatch(fn), c = await timeBatch(copy);
      ms.push(t);
      pct.push((100 * bytes / t) / (copyBytes / c));
    }
    const med = (a: number[]) => a.sort((x, y) => x - y)[1];
    rows.push({ name, shape, ms: med(ms), gbps: bytes / med(ms) / 1e6, pctCopy: med(pct) });
  };
  const rand = (n: number, s = 1) => { const a = new Float32Array(n); for (let i = 0; i < n; i++) a[i] = (((i * 2654435761) >>> 0) % 2001 - 1000) * s / 1000; return Tensor.fromArray(a, [n]).keep(); };
  const held: Tensor[] = [];
  const keep = (t: Tensor) => { held.push(t.keep()); return t; };

  await add('copy_probe', '64 MiB vec4', copyBytes, copy); // the roofline itself (≈ 100%)

  // rmsnorm: hidden [5440, 512] and per-head q norm [5440·8, 64].
  for (const [rows_, h] of [[R, H], [R * NH, HD]]) {
    const x = keep(rand(rows_ * h).reshape([rows_, h])), w = keep(rand(h)), dy = keep(rand(rows_ * h).reshape([rows_, h]));
    const rstd = keep(Tensor.zeros([rows_])), dw = keep(Tensor.zeros([h]));
    await add('rmsnorm_forward', `${rows_}×${h}`, rmsnormK.bench.rmsnorm_forward(rows_, h).bytes, scoped(() => noGrad(() => rmsnormK.rmsnorm(x, w, 1e-5))));
    await add('rmsnorm_backward', `${rows_}×${h}`, rmsnormK.bench.rmsnorm_backward(rows_, h).bytes, scoped(() => rmsnormK.rmsnormBackward(x, w, rstd, dy, dw, 1)));
  }

  // rope on q [16, 340, 8, 64] and k [16, 340, 2, 64]; the backward is the same kernel with −angle.
  for (const nh of [NH, NKV]) {
    const x = keep(rand(R * nh * HD).reshape([B, T, nh, HD]));
    await add('rope', `${B}×${T}×${nh}×${HD}`, ropeK.bench.rope(x.size).bytes, scoped(() => noGrad(() => ropeK.rope(x, 0, 1e6))));
  }

  // swiglu on [5440, 1408].
  const n = R * FFN, g = keep(rand(n, 4)), u = keep(rand(n)), dyf = keep(rand(n));
  await add('swiglu_forward', `${R}×${FFN}`, swigluK.bench.swiglu_forward(n).bytes, scoped(() => noGrad(() => swigluK.swiglu(g, u))));
  await add('swiglu_backward', `${R}×${FFN}`, swigluK.bench.swiglu_backward(n).bytes, scoped(() => {
    swigluK.backward.swiglu({ op: 'swiglu', inputs: [g, u], outputs: [], saved: {} }, [dyf]);
  }));

  // embedding: 5440 ids into [6400, 512]; backward both ways (host-sorted groups, GPU scan).
  const hostIds = Int32Array.from({ length: R }, (_, i) => (i * 7919) % V);
  const ids = keep(Tensor.fromArray(hostIds, [B, T], 'i32')), table = keep(rand(V * H).reshape([V, H]));
  table.requiresGrad = true;
  const dye = keep(rand(R * H).reshape([B, T, H]));
  const distinct = new Set(hostIds).size;
  await add('embedding_forward', `${R} ids × ${H}`, embeddingK.bench.embedding_forward(R, H).bytes, scoped(() => noGrad(() => embeddingK.embedding(ids, table))));
  for (const host of [true, false]) {
    const y = embeddingK.embedding(ids, table, host ? hostIds : undefined).keep();
    held.push(y);
    const node = y.node!;
    await add(`embedding_backward${host ? '' : '_scan'}`, `${R} ids × ${H}`, embeddingK.bench.embedding_backward(R, H, distinct).bytes,
      scoped(() => embeddingK.backward.embedding(node, [dye])));
  }

  // cross_entropy on [16, 340, 6400]: fused loss + dlogits in place; forward only; backward scale.
  const logits = keep(rand(R * V, 8).reshape([B, T, V]));
  const labels = keep(Tensor.fromArray(hostIds.map((v, i) => (i % 3 ? v : -100)), [B, T], 'i32'));
  logits.requiresGrad = true;
  await add('cross_entropy', `${B}×${T}×${V} fused fwd+bwd`, ceK.bench.cross_entropy(R, V).bytes, scoped(() => ceK.crossEntropy(logits, labels)));
  await add('cross_entropy_forward', `${B}×${T}×${V} loss only`, ceK.bench.cross_entropy(R, V, false).bytes, scoped(() => noGrad(() => ceK.crossEntropy(logits, labels))));
  for (const s of [1, 0.5]) {
    const gs = keep(Tensor.fromArray([s], [1]));
    await add('cross_entropy_backward', `${B}×${T}×${V} upstream ${s}`, s === 1 ? 0 : 8 * R * V, scoped(() => {
      ceK.backward.cross_entropy({ op: 'cross_entropy', inputs: [logits, labels], outputs: [], saved: {} }, [gs, null]);
    }));
  }
  for (const t of [...held, ca, cb]) t.dispose();
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await initGpu();
  for (const r of await benchMemoryBound()) {
    console.log(`${r.name.padEnd(24)} ${r.shape.padEnd(30)} ${r.ms.toFixed(2).padStart(8)} ms ${r.gbps.toFixed(2).padStart(6)} GB/s ${r.pctCopy.toFixed(0).padStart(4)}% of copy`);
  }
  closeGpu();
}
