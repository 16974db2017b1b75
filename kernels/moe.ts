// moe: MiniMind's mixture-of-experts FFN (spec §3). For x [N = B·T, H], E routed experts, top-k:
//   scores = softmax(x·Wgᵀ) [N,E];  top-k per token (ties: lower expert); w = s_top / (Σ s_top + 1e-20)
//   when normTopk;  y = Σ_k w_k·expert_k(x) + Σ shared(x);  expert(x) = down(silu(gate(x))·up(x)).
// Aux loss, linear in the scores with count-dependent coefficients: aux = Σ_{n,e} coef[g(n),e]·s[n,e],
//   coef[g,e] = alpha·E·cnt[g,e] / (kEff·M²·G), with groups g of M tokens:
//   seq_aux:   G = B, M = T, kEff = k   (alpha·mean_b Σ_e ce[b,e]·mean_t s, ce = cnt/(T·k/E))
//   global:    G = 1, M = N, kEff = k   (alpha·Σ_e E·f_e·P_e, f_e = cnt/(N·k))
//   minimind3: G = 1, M = N, kEff = 1   (alpha·E·Σ_e f_e·P_e, f_e = mean over tokens of the one-hot
//   summed over slots, as minimind-3's code computes it; = cnt/N for its top-1)
// Kernels: moe_route (softmax, top-k, renorm; a thread per token), moe_lists (one workgroup: per-expert
// token lists in token order by workgroup prefix sums, counts, aux coefficients and the aux value),
// moe_gather (rows of x per expert), moe_combine (weighted scatter-add into y, per expert: rows of one
// expert are distinct tokens, so no write races and no atomics), and their backward kernels.
// Expert MLPs run on exactly the gathered rows with matmul + swiglu, so they need each expert's row
// count on the host: moeFFN reads the E counts back once per layer. That sync drains the queue (on
// lavapipe ~0.1–0.4 ms plus the GPU idling while the host records the next commands); the alternative,
// worst-case N rows per expert, would multiply expert FLOPs by E/k (2× MiniMind2, 4× minimind-3).
// MiniMind2's PyTorch training path itself syncs per expert (boolean-mask indexing).
// Backward: dlogits from dw (through the renorm and softmax) plus the aux coefficients times d(aux);
// saved: scores [N,E], top-k indices and weights [N,k], lists [E,N], coef [G,E] (all small).
// Note: MiniMind2's training path rounds expert outputs to float16 before the weighted sum; we keep f32. In mixed
// precision an expert's gate|up output stays 16-bit for the 16-bit SwiGLU (torch.autocast's roundings), and its
// down_proj output is widened for the float32 combine.
import { defineKernel, launch, readBuffer, clearBuffer, copyBuffer, isPlanning, type Binding } from '../runtime/kernel.js';
import { treeSum } from '../runtime/wgsl.js';
import type { WaitPacer } from '../runtime/wait_pacer.js';
import { Tensor, needsGrad, record, noGrad, isGradEnabled } from '../runtime/tensor.js';
import type { BackwardRule } from '../runtime/autograd.js';
import { matmul, type MatmulOptions } from './matmul.js';
import { swiglu, swigluPacked } from './swiglu.js';
import { add } from './elementwise.js';

/** gate_up: gate_proj and up_proj as one [2I, H] weight (stored back to back), for one matmul.
 *  name: the module's name (`model.layers.0.mlp.experts.1`), for MoEConfig.adapt. */
export interface ExpertWeights { gate_proj: Tensor; up_proj: Tensor; down_proj: Tensor; gate_up?: Tensor; name?: string }
/** name: the MoE block's module name (its router is `${name}.gate`), for MoEConfig.adapt. */
export interface MoEWeights { gate: Tensor /* [E,H] */; experts: ExpertWeights[]; shared?: ExpertWeights[]; name?: string }
/** What the model adds to the output y of the Linear modules `modules` (side by side in y) for input x: LoRA. */
export type Adapt = (x: Tensor, y: Tensor, modules: string[]) => Tensor;
export type AuxForm = 'seq_aux' | 'global' | 'minimind3';
export interface MoEConfig {
  topK: number; normTopk: boolean; auxForm: AuxForm; alpha: number;
  /** Paces the count read-back (the host sleeps through most of the GPU work before it; see wait_pacer.ts). */
  pacer?: WaitPacer;
  /** Options of every matmul (router and experts) without `linear` (tests: a forced variant). */
  matmul?: MatmulOptions;
  /** Applied to every projection of a named module (router and experts; model/lora.ts). */
  adapt?: Adapt;
  /** The model's Linear for the projections of named modules, instead of matmul + adapt (its mixed
   *  precision: model/minimind.ts linear()); out16: the output may stay 16-bit (an expert's gate|up, read by
   *  the 16-bit SwiGLU), else it is float32 (the router's logits, an expert's output for the combine). */
  linear?: (x: Tensor, w: Tensor, modules: string[], out16: boolean) => Tensor;
}

const WG = 256;
const ROW_WG = 64;
/** Experts and top-k, compile-time (per-token arrays are sized by them). */
interface EK { E: number; K: number }
const EK = (v: EK) => `const E = ${v.E}u;\nconst K = ${v.K}u;\n`;
/** Per-expert row kernels: row r of expert e is pick lists[off + r] = n·K + slot, token n. */
const ROWS = `let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  if (i >= p.rows * p.H) { return; }
  let r = i / p.H;
  let pick = lists[p.off + r];
  let t = (pick / p.K) * p.H + i % p.H;`;
const rowParams = [['rows', 'u32'], ['H', 'u32'], ['K', 'u32'], ['off', 'u32']] as const;

export const kernels = {
  moe_route: defineKernel<EK>({
    name: 'moe_route', params: [['N', 'u32'], ['norm', 'u32']], workgroup: 64,
    buffers: [['logits', 'read', 'f32'], ['scores', 'rw', 'f32'], ['idx', 'rw', 'u32'], ['w', 'rw', 'f32']],
    wgsl: (v, entry) => `${EK(v)}${entry} {
  let n = wgIndex(wid, nwg) * 64u + lid.x;
  if (n >= p.N) { return; }
  var s: array<f32, E>;
  var mx = logits[n * E];
  for (var e = 1u; e < E; e++) { mx = max(mx, logits[n * E + e]); }
  var sum = 0.0;
  for (var e = 0u; e < E; e++) { s[e] = exp(logits[n * E + e] - mx); sum += s[e]; }
  let inv = 1.0 / sum;
  for (var e = 0u; e < E; e++) { s[e] *= inv; scores[n * E + e] = s[e]; }
  var taken = 0u;
  var tot = 0.0;
  var tw: array<f32, K>;
  for (var j = 0u; j < K; j++) {
    var best = -1.0;
    var bi = 0u;
    for (var e = 0u; e < E; e++) { if ((taken & (1u << e)) == 0u && s[e] > best) { best = s[e]; bi = e; } }
    taken |= 1u << bi;
    tw[j] = best;
    tot += best;
    idx[n * K + j] = bi;
  }
  for (var j = 0u; j < K; j++) { w[n * K + j] = select(tw[j], tw[j] / (tot + 1e-20), p.norm != 0u); }
}
`,
  }),
  /** One workgroup. For each expert e, group g, chunk of WG tokens: flag tokens picking e, inclusive
   *  scan, append picks n·K+slot to lists[e·N ..] in token order; cnt[g,e] from the running count. */
  moe_lists: defineKernel<EK>({
    name: 'moe_lists', params: [['N', 'u32'], ['G', 'u32'], ['M', 'u32'], ['cscale', 'f32']], workgroup: WG,
    buffers: [['idx', 'read', 'u32'], ['scores', 'read', 'f32'], ['lists', 'rw', 'u32'], ['counts', 'rw', 'u32'],
      ['coef', 'rw', 'f32'], ['aux', 'rw', 'f32']],
    wgsl: (v, entry) => `${EK(v)}var<workgroup> scan: array<u32, ${WG}>;
var<workgroup> red: array<f32, ${WG}>;
${entry} {
  var auxAcc = 0.0;
  for (var e = 0u; e < E; e++) {
    var base = 0u;
    for (var g = 0u; g < p.G; g++) {
      let start = base;
      var ssum = 0.0;
      for (var c = 0u; c < p.M; c += ${WG}u) {
        let n = g * p.M + c + lid.x;
        var slot = K;
        if (c + lid.x < p.M) {
          ssum += scores[n * E + e];
          for (var j = 0u; j < K; j++) { if (idx[n * K + j] == e) { slot = j; } }
        }
        scan[lid.x] = select(0u, 1u, slot < K);
        workgroupBarrier();
        for (var o = 1u; o < ${WG}u; o <<= 1u) {
          var a = scan[lid.x];
          if (lid.x >= o) { a += scan[lid.x - o]; }
          workgroupBarrier();
          scan[lid.x] = a;
          workgroupBarrier();
        }
        if (slot < K) { lists[e * p.N + base + scan[lid.x] - 1u] = n * K + slot; }
        base += scan[${WG - 1}];
        workgroupBarrier();
      }
      red[lid.x] = ssum;
      ${treeSum('red', WG)}
      if (lid.x == 0u) {
        let cf = p.cscale * f32(base - start);
        coef[g * E + e] = cf;
        auxAcc += cf * red[0];
      }
      workgroupBarrier();
    }
    if (lid.x == 0u) { counts[e] = base; }
  }
  if (lid.x == 0u) { aux[0] = auxAcc; }
}
`,
  }),
  moe_gather: defineKernel({
    name: 'moe_gather', params: rowParams, workgroup: WG,
    buffers: [['x', 'read', 'f32'], ['lists', 'read', 'u32'], ['xe', 'rw', 'f32']],
    wgsl: (_, entry) => `${entry} {\n  ${ROWS}\n  xe[i] = x[t];\n}\n`,
  }),
  /** Backward of moe_gather: dx[token] += dxe[row]. */
  moe_scatter: defineKernel({
    name: 'moe_scatter', params: rowParams, workgroup: WG,
    buffers: [['dxe', 'read', 'f32'], ['lists', 'read', 'u32'], ['dx', 'rw', 'f32']],
    wgsl: (_, entry) => `${entry} {\n  ${ROWS}\n  dx[t] += dxe[i];\n}\n`,
  }),
  moe_combine: defineKernel({
    name: 'moe_combine', params: rowParams, workgroup: WG,
    buffers: [['ye', 'read', 'f32'], ['lists', 'read', 'u32'], ['w', 'read', 'f32'], ['y', 'rw', 'f32']],
    wgsl: (_, entry) => `${entry} {\n  ${ROWS}\n  y[t] += w[pick] * ye[i];\n}\n`,
  }),
  /** A workgroup per row: dye[r] = w[pick]·dy[n], dw[pick] = dy[n]·ye[r]. */
  moe_combine_backward: defineKernel({
    name: 'moe_combine_backward', params: rowParams, workgroup: ROW_WG,
    buffers: [['ye', 'read', 'f32'], ['lists', 'read', 'u32'], ['w', 'read', 'f32'], ['dy', 'read', 'f32'],
      ['dye', 'rw', 'f32'], ['dw', 'rw', 'f32']],
    wgsl: (_, entry) => `var<workgroup> red: array<f32, ${ROW_WG}>;
${entry} {
  let r = wgIndex(wid, nwg);
  if (r >= p.rows) { return; }
  let pick = lists[p.off + r];
  let n = pick / p.K;
  let wv = w[pick];
  var acc = 0.0;
  for (var h = lid.x; h < p.H; h += ${ROW_WG}u) {
    let d = dy[n * p.H + h];
    dye[r * p.H + h] = wv * d;
    acc += d * ye[r * p.H + h];
  }
  red[lid.x] = acc;
  ${treeSum('red', ROW_WG)}
  if (lid.x == 0u) { dw[pick] = red[0]; }
}
`,
  }),
  /** dlogits = s ⊙ (ds − Σ s·ds), ds = d(aux)·coef + the renorm's backward of dw. */
  moe_route_backward: defineKernel<EK>({
    name: 'moe_route_backward', params: [['N', 'u32'], ['M', 'u32'], ['norm', 'u32'], ['hasDw', 'u32'], ['hasAux', 'u32']], workgroup: 64,
    buffers: [['scores', 'read', 'f32'], ['idx', 'read', 'u32'], ['w', 'read', 'f32'], ['dw', 'read', 'f32'],
      ['coef', 'read', 'f32'], ['daux', 'read', 'f32'], ['dlogits', 'rw', 'f32']],
    wgsl: (v, entry) => `${EK(v)}${entry} {
  let n = wgIndex(wid, nwg) * 64u + lid.x;
  if (n >= p.N) { return; }
  var ds: array<f32, E>;
  var ga = 0.0;
  if (p.hasAux != 0u) { ga = daux[0]; }
  let g = n / p.M;
  for (var e = 0u; e < E; e++) { ds[e] = ga * coef[g * E + e]; }
  if (p.hasDw != 0u) {
    var tot = 0.0;
    var dot = 0.0;
    for (var j = 0u; j < K; j++) { tot += scores[n * E + idx[n * K + j]]; dot += dw[n * K + j] * w[n * K + j]; }
    for (var j = 0u; j < K; j++) {
      let d = dw[n * K + j];
      ds[idx[n * K + j]] += select(d, (d - dot) / (tot + 1e-20), p.norm != 0u);
    }
  }
  var sd = 0.0;
  for (var e = 0u; e < E; e++) { sd += scores[n * E + e] * ds[e]; }
  for (var e = 0u; e < E; e++) { dlogits[n * E + e] = scores[n * E + e] * (ds[e] - sd); }
}
`,
  }),
};

const rowLaunch = (k: (typeof kernels)['moe_gather'], rows: number, H: number, K: number, off: number, buffers: Binding[]) =>
  launch(k, { params: { rows, H, K, off }, buffers, workgroups: Math.ceil((rows * H) / WG) });

/** Aux-loss groups: G groups of M tokens, and the k that normalises the pick fractions. */
function auxGroups(form: AuxForm, B: number, T: number, K: number): { G: number; M: number; kEff: number } {
  if (form === 'seq_aux') return { G: B, M: T, kEff: K };
  if (form === 'global') return { G: 1, M: B * T, kEff: K };
  if (form === 'minimind3') return { G: 1, M: B * T, kEff: 1 };
  throw new Error(`moeFFN: unknown auxForm '${form as string}'`);
}

/** x·wᵀ for the Linear modules `modules` of w, plus what cfg.adapt adds (when both are given). */
function linear(x: Tensor, w: Tensor, modules: string[] | null, cfg: MoEConfig, out16 = false): Tensor {
  if (cfg.linear && modules) return cfg.linear(x, w, modules, out16);
  const y = matmul(x, w, cfg.matmul);
  return cfg.adapt && modules ? cfg.adapt(x, y, modules) : y;
}

function mlp(x: Tensor, f: ExpertWeights, cfg: MoEConfig): Tensor {
  const mod = (p: string) => (f.name ? [`${f.name}.${p}`] : null);
  const h = f.gate_up ? swigluPacked(linear(x, f.gate_up, f.name ? [`${f.name}.gate_proj`, `${f.name}.up_proj`] : null, cfg, true))
    : swiglu(linear(x, f.gate_proj, mod('gate_proj'), cfg), linear(x, f.up_proj, mod('up_proj'), cfg));
  return linear(h, f.down_proj, mod('down_proj'), cfg);
}

/** The MoE FFN of one layer: y [B,T,H] and its aux loss [1]. Async: reads the E expert row counts back. */
export async function moeFFN(x: Tensor, p: MoEWeights, cfg: MoEConfig): Promise<{ y: Tensor; aux: Tensor }> {
  if (x.shape.length !== 3) throw new Error(`moeFFN: x must be [B,T,H], got [${x.shape}]`);
  const [B, T, H] = x.shape;
  const E = p.experts.length, K = cfg.topK, N = B * T;
  if (p.gate.shape[0] !== E || p.gate.shape[1] !== H) throw new Error(`moeFFN: gate [${p.gate.shape}] for ${E} experts, hidden ${H}`);
  if (!(K >= 1 && K <= E && E <= 32)) throw new Error(`moeFFN: need 1 ≤ topK (${K}) ≤ experts (${E}) ≤ 32`);
  if (N === 0) throw new Error('moeFFN: empty batch');
  const variant = { E, K };
  const x2 = x.reshape([N, H]);
  const logits = linear(x2, p.gate, p.name ? [`${p.name}.gate`] : null, cfg); // [N, E]
  const scores = Tensor.empty([N, E]), idx = Tensor.empty([N, K], 'u32'), w = Tensor.empty([N, K]);
  launch(kernels.moe_route, {
    params: { N, norm: cfg.normTopk ? 1 : 0 }, buffers: [logits.binding(), scores.binding(), idx.binding(), w.binding()],
    workgroups: Math.ceil(N / 64), variant,
  });
  const { G, M, kEff } = auxGroups(cfg.auxForm, B, T, K);
  const lists = Tensor.empty([E, N], 'u32'), countsT = Tensor.empty([E], 'u32'), coef = Tensor.empty([G, E]), aux = Tensor.empty([1]);
  launch(kernels.moe_lists, {
    params: { N, G, M, cscale: (cfg.alpha * E) / (kEff * M * M * G) }, workgroups: 1, variant,
    buffers: [idx.binding(), scores.binding(), lists.binding(), countsT.binding(), coef.binding(), aux.binding()],
  });
  if (needsGrad(logits)) record('moe_router', [logits], [w, aux], { scores, idx, coef, M, norm: cfg.normTopk }, [w]);
  const gradMode = isGradEnabled(); // noGrad() around an async call ends at its first await
  const read = (sleepMs: number) => readBuffer(countsT.buffer, countsT.offset, 4 * E, sleepMs);
  // Planning a step (runtime/kernel.ts plan) runs no kernel: assume balanced routing.
  const counts = isPlanning() ? Array.from({ length: E }, () => Math.ceil((N * K) / E))
    : Array.from(new Uint32Array(await (cfg.pacer ? cfg.pacer.pace(N, read) : read(0))));
  const run = () => experts(x2, w, lists, counts, p, K, cfg).reshape([B, T, H]);
  return { y: gradMode ? run() : noGrad(run), aux };
}

/** Gather each expert's rows, run its MLP on exactly those rows, combine with the shared experts. */
function experts(x2: Tensor, w: Tensor, lists: Tensor, counts: number[], p: MoEWeights, K: number, cfg: MoEConfig): Tensor {
  const [N, H] = x2.shape;
  const xe = counts.map((c, e) => {
    const t = Tensor.empty([c, H]);
    rowLaunch(kernels.moe_gather, c, H, K, e * N, [x2.binding(), lists.binding(), t.binding()]);
    return t;
  });
  if (needsGrad(x2)) record('moe_gather', [x2], xe, { lists, counts, K }, []);
  const ye = xe.map((t, e) => mlp(t, p.experts[e], cfg)); // [c_e, H]; an expert with no rows still gets a (zero) gradient
  const base = p.shared?.length ? p.shared.map((f) => mlp(x2, f, cfg)).reduce((a, b) => add(a, b)) : null;
  // y = base + Σ_e scatter(w·ye), in place on a copy of the shared output.
  const y = Tensor.empty([N, H]);
  if (base) copyBuffer(base.buffer, base.offset, y.buffer, y.offset, N * H * 4);
  else clearBuffer(y.buffer, N * H * 4, y.offset);
  ye.forEach((t, e) => rowLaunch(kernels.moe_combine, counts[e], H, K, e * N, [t.binding(), lists.binding(), w.binding(), y.binding()]));
  const inputs = [...ye, w, ...(base ? [base] : [])];
  if (needsGrad(...inputs)) record('moe_combine', inputs, [y], { lists, counts, K }, [...ye, w]);
  return y;
}

export const backward: Record<string, BackwardRule> = {
  moe_router: (node, [dw, daux]) => {
    const [logits] = node.inputs;
    const [w] = node.outputs;
    const s = node.saved as { scores: Tensor; idx: Tensor; coef: Tensor; M: number; norm: boolean };
    const [N, E] = logits.shape, K = w.shape[1];
    const dl = Tensor.empty([N, E]);
    launch(kernels.moe_route_backward, {
      params: { N, M: s.M, norm: s.norm ? 1 : 0, hasDw: dw ? 1 : 0, hasAux: daux ? 1 : 0 }, workgroups: Math.ceil(N / 64), variant: { E, K },
      buffers: [s.scores.binding(), s.idx.binding(), w.binding(), (dw ?? w).binding(), s.coef.binding(), (daux ?? s.coef).binding(), dl.binding()],
    });
    return [dl];
  },
  moe_gather: (node, dxe) => {
    const [x2] = node.inputs;
    const { lists, counts, K } = node.saved as { lists: Tensor; counts: number[]; K: number };
    const [N, H] = x2.shape;
    const dx = Tensor.zeros([N, H]);
    dxe.forEach((g, e) => { if (g) rowLaunch(kernels.moe_scatter, counts[e], H, K, e * N, [g.binding(), lists.binding(), dx.binding()]); });
    return [dx];
  },
  moe_combine: (node, [dy]) => {
    const { lists, counts, K } = node.saved as { lists: Tensor; counts: number[]; K: number };
    const E = counts.length, ye = node.inputs.slice(0, E), w = node.inputs[E];
    const N = w.shape[0], H = dy!.size / N;
    const dw = Tensor.empty(w.shape);
    const dye = ye.map((t, e) => {
      const d = Tensor.empty(t.shape);
      launch(kernels.moe_combine_backward, {
        params: { rows: counts[e], H, K, off: e * N }, workgroups: counts[e],
        buffers: [t.binding(), lists.binding(), w.binding(), dy!.binding(), d.binding(), dw.binding()],
      });
      return d;
    });
    return [...dye, dw, ...(node.inputs.length > E + 1 ? [dy] : [])];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------
export interface ExpertRef { gate_proj: Float64Array; up_proj: Float64Array; down_proj: Float64Array }
export interface MoERef { gate: Float64Array; experts: ExpertRef[]; shared?: ExpertRef[] }

function mlpRef(x: Float64Array, o: number, H: number, f: ExpertRef, y: Float64Array, yo: number, scale: number): void {
  const I = f.gate_proj.length / H;
  for (let i = 0; i < I; i++) {
    let g = 0, u = 0;
    for (let h = 0; h < H; h++) { g += f.gate_proj[i * H + h] * x[o + h]; u += f.up_proj[i * H + h] * x[o + h]; }
    const a = (g / (1 + Math.exp(-g))) * u * scale;
    for (let h = 0; h < H; h++) y[yo + h] += f.down_proj[h * I + i] * a;
  }
}

/** float64 forward of moeFFN for x [B,T,H]: y, aux, and the chosen experts [N,k]. */
export function reference(x: Float64Array, wt: MoERef, cfg: MoEConfig, B: number, T: number, H: number) {
  const E = wt.experts.length, K = cfg.topK, N = B * T;
  const { G, M, kEff } = auxGroups(cfg.auxForm, B, T, K);
  const y = new Float64Array(N * H), idx = new Int32Array(N * K), cnt = new Float64Array(G * E), ssum = new Float64Array(G * E);
  for (let n = 0; n < N; n++) {
    const l = Array.from({ length: E }, (_, e) => { let s = 0; for (let h = 0; h < H; h++) s += x[n * H + h] * wt.gate[e * H + h]; return s; });
    const mx = Math.max(...l), ex = l.map((v) => Math.exp(v - mx)), tot = ex.reduce((a, b) => a + b, 0);
    const s = ex.map((v) => v / tot);
    const g = Math.floor(n / M);
    s.forEach((v, e) => { ssum[g * E + e] += v; });
    const order = s.map((v, e) => [v, e]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).slice(0, K);
    const den = order.reduce((a, [v]) => a + v, 0) + 1e-20;
    order.forEach(([v, e], j) => {
      idx[n * K + j] = e;
      cnt[g * E + e]++;
      mlpRef(x, n * H, H, wt.experts[e], y, n * H, cfg.normTopk ? v / den : v);
    });
    for (const f of wt.shared ?? []) mlpRef(x, n * H, H, f, y, n * H, 1);
  }
  let aux = 0;
  for (let i = 0; i < G * E; i++) aux += (cfg.alpha * E * cnt[i] * ssum[i]) / (kEff * M * M * G);
  return { y, aux, idx };
}

/** Bench metadata for one layer (forward): expert and shared MLP FLOPs on N tokens, plus the gate. */
export const bench = {
  moe: (N: number, H: number, I: number, E: number, K: number, shared: number) => ({ flops: 6 * H * I * N * (K + shared) + 2 * N * H * E }),
};
