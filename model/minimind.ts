// The MiniMind model (MiniMind2 dense/MoE and minimind-3) on our runtime, in the order of the
// architecture diagram: embedding → N × [RMSNorm → GQA attention with RoPE → residual →
// RMSNorm → SwiGLU or MoE → residual] → RMSNorm → tied LM head → shifted masked CE (+ aux loss).
import { Tensor, dropUnread, is16, type DType16 } from '../runtime/tensor.js';
import { ParamStore } from '../runtime/param_store.js';
import { writeBuffer } from '../runtime/kernel.js';
import { mulberry32 } from '../runtime/random.js';
import { add, matmul } from '../kernels/index.js';
import { linear16 } from '../kernels/linear16.js';
import { cast } from '../kernels/cast.js';
import { ParamCopy16 } from '../kernels/param_copy16.js';
import { rmsnorm } from '../kernels/rmsnorm.js';
import { rope } from '../kernels/rope.js';
import { qkvRope } from '../kernels/qkv_rope.js';
import { addRmsnorm } from '../kernels/add_rmsnorm.js';
import { attention, attentionDecode, writeKV } from '../kernels/attention.js';
import { swigluPacked } from '../kernels/swiglu.js';
import { embedding } from '../kernels/embedding.js';
import { crossEntropy } from '../kernels/cross_entropy.js';
import { moeFFN } from '../kernels/moe.js';
import { WaitPacer } from '../runtime/wait_pacer.js';
import { MiniMindConfig, parameterShapes, validate, yarnOf } from './config.js';
import type { LoRA } from './lora.js';

/** What forward and backward compute in: 'f32', or mixed precision with 16-bit Linears (--dtype bfloat16 /
 *  float16, torch.autocast's semantics: see linear()). */
export type Precision = 'f32' | DType16;

export interface Loss {
  /** Shifted masked CE, mean over the batch's non-ignored tokens ([1]). */
  loss: Tensor;
  /** Sum over layers of the MoE aux loss ([1]); null for dense models. */
  aux: Tensor | null;
  /** Number of non-ignored tokens ([1], f32). */
  count: Tensor;
}

/** One SwiGLU MLP (module name `name`): gate_proj and up_proj as their separate views and as one spanned [2I, H] weight. */
type FFN = { name: string; gate_proj: Tensor; up_proj: Tensor; gate_up: Tensor; down_proj: Tensor };

/** Per-layer key/value caches for generation: [B, maxT, nkv, hd] each. */
export interface KVCache { k: Tensor[]; v: Tensor[]; maxT: number }

export class MiniMind {
  /** Parameters in state-dict order: views into `store`. */
  readonly params = new Map<string, Tensor>();
  /** Flat parameter and gradient buffers (one optimizer dispatch, one clear). */
  readonly store: ParamStore;
  /** Training steps' MoE count read-backs, one pacer per layer (each waits for a different share of
   *  the forward); generation is not paced (its waits are short and per token far longer). */
  private readonly moePacers: WaitPacer[] = [];
  /** Mixed precision's 16-bit working copy of the weights, which the Linears read (setPrecision). */
  private copy: ParamCopy16 | null = null;
  /** Adapters added to the projections' outputs (apply_lora); null: the plain model. */
  lora: LoRA | null = null;

  /** o.frozen: the store has no gradient buffer and no parameter requires a gradient (the base of
   *  LoRA, DPO's reference model): backward computes no weight gradient, only those of inputs that need one. */
  constructor(readonly cfg: MiniMindConfig, seed = 0, o: { frozen?: boolean } = {}) {
    validate(cfg);
    const shapes = parameterShapes(cfg);
    this.store = new ParamStore(storeLayout(shapes), { frozen: o.frozen });
    const rand = mulberry32(seed);
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (name.endsWith('norm.weight')) data.fill(1);
      else {
        // PyTorch's default Linear init: U(±1/sqrt(in_features)); the tied embedding takes lm_head's.
        const bound = 1 / Math.sqrt(shape[1]);
        for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * bound;
      }
      const t = this.store.get(name);
      writeBuffer(t.buffer, t.offset, data);
      this.params.set(name, t);
    }
  }

  /** Release the parameter and gradient buffers (and the working copy). */
  dispose(): void {
    this.setPrecision('f32');
    this.store.dispose();
  }

  get precision(): Precision {
    return this.copy?.dtype ?? 'f32';
  }

  /** 'bf16' / 'f16' (the trainer's --dtype): keep a 16-bit working copy of the weights, made now from the
   *  float32 master weights, for the Linears; whoever steps the weights rewrites it (AdamW's `copy`), and
   *  load() refreshes it. 'f32': drop it. */
  setPrecision(p: Precision): void {
    if (p === this.precision) return;
    this.copy?.dispose();
    this.copy = p === 'f32' ? null : new ParamCopy16(this.store, p);
    this.copy?.refresh();
  }

  /** The 16-bit working copy (null in float32). */
  get workingCopy(): ParamCopy16 | null {
    return this.copy;
  }

  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`MiniMind: no parameter ${name}`);
    return t;
  }

  /** Every parameter once (the optimizer's list). */
  parameters(): Tensor[] {
    return [...this.params.values()];
  }

  /** State-dict entries as MiniMind saves them: both tied keys present, sharing one tensor. */
  stateDict(): [string, Tensor][] {
    return [...this.params.entries(), ['lm_head.weight', this.p('model.embed_tokens.weight')]];
  }

  private ffn(pre: string): FFN {
    return {
      name: pre, gate_proj: this.p(`${pre}.gate_proj.weight`), up_proj: this.p(`${pre}.up_proj.weight`), down_proj: this.p(`${pre}.down_proj.weight`),
      gate_up: this.store.span([`${pre}.gate_proj.weight`, `${pre}.up_proj.weight`]),
    };
  }

  /** y = x·wᵀ for the Linear modules `modules` (w spans them when several), plus their adapters (float32).
   *  Mixed precision: torch.autocast's Linear (kernels/linear16.ts) on w's working copy, 16-bit operands and
   *  output, float32 sums; the copy's 16-bit dW goes into w's float32 gradient. out16: y stays 16-bit for an
   *  op that reads 16-bit storage (forward's act16), else it is widened for the float32 ops that read it (the
   *  MoE router and combine, minimind-3's q/k norms, the adapters, generation with a KV cache). */
  private linear(x: Tensor, w: Tensor, modules: string[], out16 = false): Tensor {
    // The tied LM head has no lm_head.weight of its own: one module, w's rows.
    const rows = () => (modules.length === 1 ? [w.shape[0]] : modules.map((m) => this.p(`${m}.weight`).shape[0]));
    const y = this.copy ? linear16(x, this.copy.cast(w), rows(), { out16 }) : matmul(x, w);
    return this.lora ? this.lora.adapt(x, y, modules) : y;
  }

  /** Empty KV caches for batch B and up to maxT positions (kept: free them with freeCache). */
  newCache(B: number, maxT: number): KVCache {
    const { num_hidden_layers: L, num_key_value_heads: nkv, head_dim: hd } = this.cfg;
    const make = () => Array.from({ length: L }, () => Tensor.zeros([B, maxT, nkv, hd]).keep());
    return { k: make(), v: make(), maxT };
  }

  /** Logits [B,T,V] for ids [B,T] (i32): float32, or 16-bit in mixed precision without a cache or adapters.
   *  Without a cache: positions 0..T-1, full causal attention (training). With a cache: the ids sit at
   *  positions pos..pos+T-1, their keys/values are written into the cache, and queries attend to everything
   *  cached so far (prefill needs pos = 0).
   *  `pace`: the host sleeps before MoE read-backs (training steps of a steady size). */
  async logits(ids: Tensor, o: ForwardOptions = {}): Promise<{ logits: Tensor; aux: Tensor | null }> {
    // Of the tensors between the layers, too, only what backward reads outlives the forward.
    const [logits, aux] = await dropUnread(() => this.forward(ids, o));
    return { logits, aux };
  }

  private async forward(ids: Tensor, o: ForwardOptions): Promise<[Tensor, Tensor | null]> {
    const { cache, pos = 0, pace = false } = o;
    const c = this.cfg;
    const [B, T] = ids.shape;
    const { num_attention_heads: nh, num_key_value_heads: nkv, head_dim: hd, rms_norm_eps: eps } = c;
    // Mixed precision keeps the tensors torch.autocast makes 16-bit in 16 bits (the Linears' outputs, attention's
    // q, k, v and output, SwiGLU's output, the logits), so what backward reads of them takes half the bytes;
    // the norms' outputs stay float32 (README.md, "--dtype"), the residual stream is as below. Not with adapters
    // (their float32 outputs add into the projections') nor with a KV cache (generation's cache is float32).
    const act16 = this.copy !== null && !this.lora && !cache;
    // MiniMind's block adds the residual in place onto the 16-bit attention output (`h += residual`), so the
    // residual stream is 16-bit after every attention add, and after an MLP add of a 16-bit MLP output (the dense
    // MLP's; MoE's float32 one promotes it back). MiniMind2's RMSNorm then rounds its normalised values to 16 bits
    // (`.type_as(x)`). minimind-3's RMSNorm rounds after its weight: not modelled, its stream stays float32.
    const res16: Precision = act16 && !c.qk_norm ? this.copy!.dtype : 'f32';
    const yarn = yarnOf(c); // --inference_rope_scaling
    let h = embedding(ids, this.p('model.embed_tokens.weight'), o.hostIds); // (B, T, H)
    // Each residual add is fused with the norm that reads its result (add_rmsnorm): `a` is the
    // normed input of the next block, `h` the residual stream.
    let a = rmsnorm(h, this.p('model.layers.0.input_layernorm.weight'), eps);
    let aux: Tensor | null = null;
    for (let i = 0; i < c.num_hidden_layers; i++) {
      // What no backward reads (qkv before the split, attention's projection, the MLP's output, a layer's
      // temporaries without grad) is freed at the layer's end, not the step's: runtime/tensor.ts dropUnread.
      const input = a;
      [h, a, aux] = await dropUnread(async (): Promise<[Tensor, Tensor, Tensor | null]> => {
        const l = `model.layers.${i}`;
        // Attention block
        // One matmul against q_proj|k_proj|v_proj (stored back to back), then split (+ RoPE).
        const qkvNames = ['q_proj', 'k_proj', 'v_proj'].map((n) => `${l}.self_attn.${n}`);
        const qkv = this.linear(a, this.store.span(qkvNames.map((n) => `${n}.weight`)), qkvNames, act16 && !c.qk_norm);
        const split = { nh, nkv, hd, posOffset: pos, theta: c.rope_theta, yarn };
        const [qs, ks, v] = qkvRope(qkv, { ...split, rope: !c.qk_norm });
        // minimind-3: per-head RMSNorm of q and k before RoPE.
        const q = c.qk_norm ? rope(rmsnorm(qs, this.p(`${l}.self_attn.q_norm.weight`), eps), pos, c.rope_theta, yarn) : qs;
        const k = c.qk_norm ? rope(rmsnorm(ks, this.p(`${l}.self_attn.k_norm.weight`), eps), pos, c.rope_theta, yarn) : ks;
        let o: Tensor;
        if (!cache) o = attention(q, k, v);
        else {
          if (pos + T > cache.maxT) throw new Error(`KV cache full: position ${pos + T} > ${cache.maxT}`);
          writeKV(cache.k[i], k, pos);
          writeKV(cache.v[i], v, pos);
          if (T > 1 && pos !== 0) throw new Error('prefill with a cache must start at position 0');
          o = T > 1 ? attention(q, k, v) : attentionDecode(q, cache.k[i], cache.v[i], pos + 1);
        }
        o = o.reshape([B, T, nh * hd]); // (B, T, nh·hd)
        let m: Tensor;
        const attnOut = this.linear(o, this.p(`${l}.self_attn.o_proj.weight`), [`${l}.self_attn.o_proj`], act16);
        [h, m] = addRmsnorm(h, attnOut, this.p(`${l}.post_attention_layernorm.weight`), eps, { out: res16 });
        // MLP block
        let y: Tensor;
        if (!c.use_moe) {
          const f = this.ffn(`${l}.mlp`);
          const gu = this.linear(m, f.gate_up, [`${f.name}.gate_proj`, `${f.name}.up_proj`], act16); // one matmul for gate and up
          y = this.linear(swigluPacked(gu), f.down_proj, [`${f.name}.down_proj`], act16);
        } else {
          const experts = Array.from({ length: c.n_routed_experts }, (_, e) => this.ffn(`${l}.mlp.experts.${e}`));
          const shared = Array.from({ length: c.n_shared_experts }, (_, e) => this.ffn(`${l}.mlp.shared_experts.${e}`));
          const r = await moeFFN(m, { name: `${l}.mlp`, gate: this.p(`${l}.mlp.gate.weight`), experts, shared }, {
            // MiniMind2 renormalises the top-k weights only when k > 1; minimind-3 also at k = 1.
            topK: c.num_experts_per_tok, normTopk: c.norm_topk_prob && (c.num_experts_per_tok > 1 || c.aux_form === 'minimind3'), alpha: c.aux_loss_alpha,
            auxForm: c.aux_form === 'minimind3' ? 'minimind3' : c.seq_aux ? 'seq_aux' : 'global',
            pacer: pace ? (this.moePacers[i] ??= new WaitPacer()) : undefined,
            linear: (x, w, modules, out16) => this.linear(x, w, modules, act16 && out16),
          });
          y = r.y;
          aux = aux ? add(aux, r.aux) : r.aux;
        }
        const next = i + 1 < c.num_hidden_layers ? `model.layers.${i + 1}.input_layernorm.weight` : 'model.norm.weight';
        // MoE's float32 output promotes a 16-bit stream back to float32 (exactly; its gradient rounds to 16 bits).
        if (is16(h.dtype) && !is16(y.dtype)) h = cast(h, 'f32');
        [h, a] = addRmsnorm(h, y, this.p(next), eps, { out: is16(y.dtype) ? res16 : 'f32' });
        return [h, a, aux];
      });
      // The layer's normed input is done with: freed now unless a backward reads it (float32 Linears do; 16-bit
      // ones keep their own 16-bit copy), not at the forward's end (8 float32 [B,T,H] of a step otherwise).
      input.giveUp();
    }
    const logits = this.linear(a, this.p('model.embed_tokens.weight'), ['lm_head'], act16); // tied LM head
    a.giveUp();
    return [logits, aux];
  }

  /** The training loss of spec §4. The logits are consumed (the CE kernel overwrites them with dlogits). */
  async loss(ids: Tensor, labels: Tensor, hostIds?: Int32Array): Promise<Loss> {
    const { logits, aux } = await this.logits(ids, { hostIds, pace: true });
    const { loss, count } = crossEntropy(logits, labels);
    return { loss, aux, count };
  }

  /** Load a state dict (name → float32 data). Reports missing, unexpected and mis-shaped keys;
   *  with strict, any of them is an error. The tied lm_head.weight must equal embed_tokens if both exist. */
  load(sd: Map<string, { shape: number[]; data: Float32Array }>, strict: boolean): { missing: string[]; unexpected: string[] } {
    const missing: string[] = [], unexpected: string[] = [], misshaped: string[] = [];
    const expected = new Map(parameterShapes(this.cfg));
    expected.set('lm_head.weight', expected.get('model.embed_tokens.weight')!);
    for (const [name, shape] of expected) {
      const t = sd.get(name);
      if (!t) { if (name !== 'lm_head.weight' || !sd.has('model.embed_tokens.weight')) missing.push(name); continue; }
      if (t.shape.join() !== shape.join()) misshaped.push(`${name}: file [${t.shape}] vs model [${shape}]`);
    }
    for (const name of sd.keys()) if (!expected.has(name)) unexpected.push(name);
    if (misshaped.length) throw new Error(`weights do not fit the model: ${misshaped.join('; ')}`);
    if (strict && (missing.length || unexpected.length)) {
      throw new Error(`strict load: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
    }
    // Written into the existing buffers, so optimizer references stay valid.
    for (const [name, t] of sd) {
      const tiedOnly = name === 'lm_head.weight' && !sd.has('model.embed_tokens.weight');
      const target = tiedOnly ? this.p('model.embed_tokens.weight') : this.params.get(name);
      if (target) writeBuffer(target.buffer, target.offset, t.data);
    }
    this.copy?.refresh();
    return { missing, unexpected };
  }

  /** Current weights as float32 host arrays, in state-dict order (lm_head included). */
  async exportWeights(): Promise<{ name: string; shape: number[]; data: Float32Array }[]> {
    const out = [];
    for (const [name, t] of this.stateDict()) out.push({ name, shape: [...t.shape], data: await t.readF32() });
    return out;
  }
}

interface ForwardOptions { hostIds?: Int32Array; cache?: KVCache; pos?: number; pace?: boolean }

/** Store order: state-dict order, with up_proj moved before down_proj; k_proj and v_proj packed
 *  right after q_proj, up_proj after gate_proj, so each group is one spanned weight (one matmul). */
function storeLayout(shapes: [string, number[]][]): [string, number[], boolean][] {
  const out = [...shapes];
  for (let i = 0; i + 2 < out.length; i++) {
    if (out[i][0].endsWith('.gate_proj.weight') && out[i + 2][0].endsWith('.up_proj.weight')) [out[i + 1], out[i + 2]] = [out[i + 2], out[i + 1]];
  }
  return out.map(([name, shape]) => [name, shape, /\.(k_proj|v_proj|up_proj)\.weight$/.test(name)]);
}
