// attention, naive version (v1): materialises the probabilities P [B,nh,T,T] and keeps them for
// backward, one output element per invocation. It is the second reference for attention.ts and
// the bench baseline. Work goes in chunks of batch rows so that each [bc,nh,T,T] buffer fits one
// storage binding (128 MiB on lavapipe); all chunks of P stay alive until backward.
// Also the float64 CPU reference, exported from attention.ts as `reference`.
import { defineKernel, launch } from '../runtime/kernel.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import { gpu } from '../runtime/device.js';

const WG = 64;
const SHAPE: [string, 'u32'][] = [['n', 'u32'], ['T', 'u32'], ['nh', 'u32'], ['nkv', 'u32'], ['hd', 'u32'], ['b0', 'u32']];
const HEAD = (entry: string) => `${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (i >= p.n) { return; }
  let rep = p.nh / p.nkv;`;
const f32s = (...names: string[]) => names.map((n) => [n, 'read', 'f32'] as const);

export const kernels = {
  /** m[bl,h,r,c] = scale·q_r·k_c for c ≤ r, else 0 (softmax skips it). */
  attention_naive_scores: defineKernel({
    name: 'attention_naive_scores', workgroup: WG, params: [...SHAPE, ['scale', 'f32']], buffers: [...f32s('q', 'k'), ['m', 'rw', 'f32']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let c = i % p.T; let r = (i / p.T) % p.T; let h = (i / (p.T * p.T)) % p.nh; let b = p.b0 + i / (p.T * p.T * p.nh);
  var s = 0.0;
  if (c <= r) {
    for (var d = 0u; d < p.hd; d++) { s += q[((b * p.T + r) * p.nh + h) * p.hd + d] * k[((b * p.T + c) * p.nkv + h / rep) * p.hd + d]; }
  }
  m[i] = s * p.scale;
}`,
  }),
  /** One row per invocation: m = softmax over c ≤ r in place (0 beyond), lse = max + log Σ exp. */
  attention_naive_softmax: defineKernel({
    name: 'attention_naive_softmax', workgroup: WG, params: SHAPE, buffers: [['m', 'rw', 'f32'], ['lse', 'rw', 'f32']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let r = i % p.T; let base = i * p.T;
  var mx = -1e30;
  for (var c = 0u; c <= r; c++) { mx = max(mx, m[base + c]); }
  var sum = 0.0;
  for (var c = 0u; c <= r; c++) { sum += exp(m[base + c] - mx); }
  for (var c = 0u; c < p.T; c++) { m[base + c] = select(0.0, exp(m[base + c] - mx) / sum, c <= r); }
  lse[p.b0 * p.nh * p.T + i] = mx + log(sum);
}`,
  }),
  /** y[b,r,h,d] = alpha·Σ_{c≤r} m[bl,h,r,c]·x[b,c,g,d]: O = P·V, and dQ = scale·dS·K. */
  attention_naive_pv: defineKernel({
    name: 'attention_naive_pv', workgroup: WG, params: [...SHAPE, ['alpha', 'f32']], buffers: [...f32s('m', 'x'), ['y', 'rw', 'f32']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let d = i % p.hd; let h = (i / p.hd) % p.nh; let r = (i / (p.hd * p.nh)) % p.T; let bl = i / (p.hd * p.nh * p.T);
  var s = 0.0;
  for (var c = 0u; c <= r; c++) { s += m[((bl * p.nh + h) * p.T + r) * p.T + c] * x[(((p.b0 + bl) * p.T + c) * p.nkv + h / rep) * p.hd + d]; }
  y[p.b0 * p.T * p.nh * p.hd + i] = s * p.alpha;
}`,
  }),
  /** y[b,c,g,d] = alpha·Σ_{h∈g} Σ_{r≥c} m[bl,h,r,c]·x[b,r,h,d]: dV = Pᵀ·dO, dK = scale·dSᵀ·Q. */
  attention_naive_ptx: defineKernel({
    name: 'attention_naive_ptx', workgroup: WG, params: [...SHAPE, ['alpha', 'f32']], buffers: [...f32s('m', 'x'), ['y', 'rw', 'f32']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let d = i % p.hd; let g = (i / p.hd) % p.nkv; let c = (i / (p.hd * p.nkv)) % p.T; let bl = i / (p.hd * p.nkv * p.T);
  var s = 0.0;
  for (var h = g * rep; h < g * rep + rep; h++) {
    for (var r = c; r < p.T; r++) { s += m[((bl * p.nh + h) * p.T + r) * p.T + c] * x[(((p.b0 + bl) * p.T + r) * p.nh + h) * p.hd + d]; }
  }
  y[p.b0 * p.T * p.nkv * p.hd + i] = s * p.alpha;
}`,
  }),
  /** ds[bl,h,r,c] = P·(dO_r·v_c − D_r), D_r = dO_r·O_r (recomputed per element: it is the naive one). */
  attention_naive_ds: defineKernel({
    name: 'attention_naive_ds', workgroup: WG, params: SHAPE, buffers: [...f32s('m', 'v', 'o', 'dout'), ['ds', 'rw', 'f32']],
    wgsl: (_, entry) => `${HEAD(entry)}
  let c = i % p.T; let r = (i / p.T) % p.T; let h = (i / (p.T * p.T)) % p.nh; let b = p.b0 + i / (p.T * p.T * p.nh);
  let qr = ((b * p.T + r) * p.nh + h) * p.hd;
  var dp = 0.0; var D = 0.0;
  for (var d = 0u; d < p.hd; d++) {
    dp += dout[qr + d] * v[((b * p.T + c) * p.nkv + h / rep) * p.hd + d];
    D += dout[qr + d] * o[qr + d];
  }
  ds[i] = m[i] * (dp - D);
}`,
  }),
};

/** Batch rows per chunk so one [bc,nh,T,T] f32 buffer fits a storage binding. */
function chunk(B: number, nh: number, T: number): number {
  const per = nh * T * T * 4, max = gpu().limits.maxStorageBufferBindingSize;
  if (per > max) throw new Error(`attention (naive): one batch row needs ${per} bytes of probabilities, over the ${max}-byte binding limit`);
  return Math.min(B, Math.floor(max / per));
}

const run = (name: keyof typeof kernels, n: number, shape: Record<string, number>, bufs: Tensor[], extra: Record<string, number> = {}) =>
  launch(kernels[name], { params: { n, ...shape, ...extra }, buffers: bufs.map((t) => t.binding()), workgroups: Math.ceil(n / WG) });

export function attentionNaive(q: Tensor, k: Tensor, v: Tensor): Tensor {
  const [B, T, nh, hd] = q.shape, nkv = k.shape[2], scale = 1 / Math.sqrt(hd);
  const o = Tensor.empty(q.shape), lse = Tensor.empty([B, nh, T]);
  const probs: Tensor[] = [];
  for (let b0 = 0, bc = chunk(B, nh, T); b0 < B; b0 += bc) {
    const n = Math.min(bc, B - b0), sh = { T, nh, nkv, hd, b0 };
    const m = Tensor.empty([n, nh, T, T]);
    run('attention_naive_scores', n * nh * T * T, sh, [q, k, m], { scale });
    run('attention_naive_softmax', n * nh * T, sh, [m, lse]);
    run('attention_naive_pv', n * T * nh * hd, sh, [m, v, o], { alpha: 1 });
    probs.push(m);
  }
  if (needsGrad(q, k, v)) record('attention', [q, k, v], [o], { p: probs, lse });
  else for (const m of probs) m.dispose();
  return o;
}

export function backwardNaive(q: Tensor, k: Tensor, v: Tensor, o: Tensor, probs: Tensor[], gy: Tensor): Tensor[] {
  const [B, T, nh, hd] = q.shape, nkv = k.shape[2], scale = 1 / Math.sqrt(hd);
  const dq = Tensor.empty(q.shape), dk = Tensor.empty(k.shape), dv = Tensor.empty(v.shape);
  for (let b0 = 0, i = 0; b0 < B; b0 += probs[i++].shape[0]) {
    const m = probs[i], n = m.shape[0], sh = { T, nh, nkv, hd, b0 };
    const ds = Tensor.empty(m.shape);
    run('attention_naive_ds', n * nh * T * T, sh, [m, v, o, gy, ds]);
    run('attention_naive_pv', n * T * nh * hd, sh, [ds, k, dq], { alpha: scale });
    run('attention_naive_ptx', n * T * nkv * hd, sh, [ds, q, dk], { alpha: scale });
    run('attention_naive_ptx', n * T * nkv * hd, sh, [m, gy, dv], { alpha: 1 });
    ds.dispose(); // later commands only may reuse it (queue order)
  }
  return [dq, dk, dv];
}

// ---- float64 CPU reference (layouts as above) ----------------------------------------------
/** out and lse for T queries at positions kvT−T.. over kvT keys/values (kvT = T: training; T = 1:
 *  one decode step over a cache). */
function forward(q: Float64Array, k: Float64Array, v: Float64Array, B: number, T: number, nh: number, nkv: number, hd: number, kvT = T) {
  const out = new Float64Array(B * T * nh * hd), lse = new Float64Array(B * nh * T), scale = 1 / Math.sqrt(hd), rep = nh / nkv;
  const p = new Float64Array(kvT);
  for (let b = 0; b < B; b++) for (let h = 0; h < nh; h++) for (let r = 0; r < T; r++) {
    const qi = ((b * T + r) * nh + h) * hd, last = kvT - T + r;
    let mx = -Infinity, sum = 0;
    for (let c = 0; c <= last; c++) {
      const ki = ((b * kvT + c) * nkv + Math.floor(h / rep)) * hd;
      let s = 0;
      for (let d = 0; d < hd; d++) s += q[qi + d] * k[ki + d];
      p[c] = s * scale;
      mx = Math.max(mx, p[c]);
    }
    for (let c = 0; c <= last; c++) sum += (p[c] = Math.exp(p[c] - mx));
    for (let c = 0; c <= last; c++) {
      const vi = ((b * kvT + c) * nkv + Math.floor(h / rep)) * hd;
      for (let d = 0; d < hd; d++) out[qi + d] += (p[c] / sum) * v[vi + d];
    }
    lse[(b * nh + h) * T + r] = mx + Math.log(sum);
  }
  return { out, lse };
}

/** dq, dk, dv; `stored`: the output as the kernels read it for D = rowsum(dO∘O) (16 bits: o rounded),
 *  default the float64 forward's. */
function backward(q: Float64Array, k: Float64Array, v: Float64Array, dout: Float64Array, B: number, T: number, nh: number, nkv: number, hd: number,
  stored?: Float64Array) {
  const fwd = forward(q, k, v, B, T, nh, nkv, hd), lse = fwd.lse, out = stored ?? fwd.out;
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const scale = 1 / Math.sqrt(hd), rep = nh / nkv;
  for (let b = 0; b < B; b++) for (let h = 0; h < nh; h++) for (let r = 0; r < T; r++) {
    const qi = ((b * T + r) * nh + h) * hd;
    let D = 0;
    for (let d = 0; d < hd; d++) D += dout[qi + d] * out[qi + d];
    for (let c = 0; c <= r; c++) {
      const ki = ((b * T + c) * nkv + Math.floor(h / rep)) * hd;
      let s = 0, dp = 0;
      for (let d = 0; d < hd; d++) { s += q[qi + d] * k[ki + d]; dp += dout[qi + d] * v[ki + d]; }
      const pr = Math.exp(s * scale - lse[(b * nh + h) * T + r]), ds = pr * (dp - D);
      for (let d = 0; d < hd; d++) {
        dq[qi + d] += scale * ds * k[ki + d];
        dk[ki + d] += scale * ds * q[qi + d];
        dv[ki + d] += pr * dout[qi + d];
      }
    }
  }
  return { dq, dk, dv };
}

export const reference = { forward, backward };
