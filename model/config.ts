// MiniMind configuration with the HF/MiniMind key names (config_json.ts reads a config.json), the named
// presets of the spec (§1), and parameter counting. MiniMind2 and minimind-3 differ only by config.
import type { Yarn } from '../kernels/rope.js';
export interface MiniMindConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  intermediate_size: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  /** MiniMind's inference_rope_scaling: YaRN-scaled RoPE frequencies (yarnOf), for generation past the trained
   *  context; MiniMind never trains with it. */
  inference_rope_scaling: boolean;
  /** minimind-3: RMSNorm(head_dim) on q and k per head, before RoPE. */
  qk_norm: boolean;
  use_moe: boolean;
  n_routed_experts: number;
  num_experts_per_tok: number;
  n_shared_experts: number;
  norm_topk_prob: boolean;
  seq_aux: boolean;
  aux_loss_alpha: number;
  /** 'minimind2' aux forms (seq_aux or global) or minimind-3's `5e-4·E·Σ f·P`. */
  aux_form: 'minimind2' | 'minimind3';
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
}

/** The rope_scaling MiniMindConfig sets with inference_rope_scaling (both generations): YaRN, factor 16 over
 *  an original 2048 positions, beta_fast 32, beta_slow 1, attention_factor 1; null without it. */
export function yarnOf(c: MiniMindConfig): Yarn | null {
  if (!c.inference_rope_scaling) return null;
  return { factor: 16, originalMax: 2048, betaFast: 32, betaSlow: 1, attentionFactor: 1, maxPositions: c.max_position_embeddings };
}

/** MiniMind2: 64·ceil(floor(H·8/3)/64). */
export const ffnSizeV2 = (h: number) => 64 * Math.ceil(Math.floor((h * 8) / 3) / 64);
/** minimind-3: ceil(H·π/64)·64. */
export const ffnSizeV3 = (h: number) => Math.ceil((h * Math.PI) / 64) * 64;

export function minimind2(over: Partial<MiniMindConfig> = {}): MiniMindConfig {
  const hidden = over.hidden_size ?? 512;
  const heads = over.num_attention_heads ?? 8;
  return {
    hidden_size: hidden, num_hidden_layers: 8, num_attention_heads: heads, num_key_value_heads: 2,
    head_dim: hidden / heads, intermediate_size: ffnSizeV2(hidden), vocab_size: 6400, rms_norm_eps: 1e-5,
    rope_theta: 1e6, max_position_embeddings: 32768, inference_rope_scaling: false, qk_norm: false, use_moe: false, n_routed_experts: 4,
    num_experts_per_tok: 2, n_shared_experts: 1, norm_topk_prob: true, seq_aux: true, aux_loss_alpha: 0.01,
    aux_form: 'minimind2', bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
    ...over,
  };
}

export function minimind3(over: Partial<MiniMindConfig> = {}): MiniMindConfig {
  const hidden = over.hidden_size ?? 768;
  return minimind2({
    hidden_size: hidden, num_key_value_heads: 4, head_dim: hidden / (over.num_attention_heads ?? 8),
    intermediate_size: ffnSizeV3(hidden), rms_norm_eps: 1e-6, qk_norm: true, n_routed_experts: 4,
    num_experts_per_tok: 1, n_shared_experts: 0, norm_topk_prob: true, seq_aux: false, aux_loss_alpha: 5e-4,
    aux_form: 'minimind3', ...over,
  });
}

type Over = Partial<MiniMindConfig>;
/** Named configurations; `over` changes fields before the derived ones (head_dim, FFN width) follow. */
export const PRESETS: Record<string, (over?: Over) => MiniMindConfig> = {
  'minimind2-small': (over = {}) => minimind2(over),
  minimind2: (over = {}) => minimind2({ hidden_size: 768, num_hidden_layers: 16, ...over }),
  'minimind2-moe': (over = {}) => minimind2({ hidden_size: 640, use_moe: true, ...over }),
  minimind3: (over = {}) => minimind3(over),
  'minimind3-moe': (over = {}) => minimind3({ use_moe: true, ...over }),
  /** The built-in default run's model: small enough to learn the generated set in minutes on lavapipe. */
  tiny: (over = {}) => minimind2({ hidden_size: 128, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, ...over }),
};

export function preset(name: string, over: Over = {}): MiniMindConfig {
  const make = PRESETS[name];
  if (!make) throw new Error(`unknown preset '${name}'; choose one of: ${Object.keys(PRESETS).join(', ')}`);
  return validate(make(over), `preset ${name}`);
}

export function validate(c: MiniMindConfig, where = 'config'): MiniMindConfig {
  const int = (k: keyof MiniMindConfig) => {
    if (!Number.isInteger(c[k]) || (c[k] as number) <= 0) throw new Error(`${where}: ${k} must be a positive integer, got ${c[k]}`);
  };
  (['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'intermediate_size', 'vocab_size'] as const).forEach(int);
  if (c.num_attention_heads % c.num_key_value_heads) {
    throw new Error(`${where}: num_attention_heads (${c.num_attention_heads}) must be a multiple of num_key_value_heads (${c.num_key_value_heads})`);
  }
  if (c.head_dim % 2) throw new Error(`${where}: head_dim must be even for RoPE, got ${c.head_dim}`);
  return c;
}

/** [name, shape] of every parameter in MiniMind's state-dict order; lm_head is tied to embed_tokens. */
export function parameterShapes(c: MiniMindConfig): [string, number[]][] {
  const H = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  const ffn = (pre: string): [string, number[]][] => [
    [`${pre}.gate_proj.weight`, [c.intermediate_size, H]],
    [`${pre}.down_proj.weight`, [H, c.intermediate_size]],
    [`${pre}.up_proj.weight`, [c.intermediate_size, H]],
  ];
  const out: [string, number[]][] = [['model.embed_tokens.weight', [c.vocab_size, H]]];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const l = `model.layers.${i}`;
    out.push([`${l}.self_attn.q_proj.weight`, [q, H]], [`${l}.self_attn.k_proj.weight`, [kv, H]],
      [`${l}.self_attn.v_proj.weight`, [kv, H]], [`${l}.self_attn.o_proj.weight`, [H, q]]);
    if (c.qk_norm) out.push([`${l}.self_attn.q_norm.weight`, [c.head_dim]], [`${l}.self_attn.k_norm.weight`, [c.head_dim]]);
    out.push([`${l}.input_layernorm.weight`, [H]], [`${l}.post_attention_layernorm.weight`, [H]]);
    if (!c.use_moe) out.push(...ffn(`${l}.mlp`));
    else {
      for (let e = 0; e < c.n_routed_experts; e++) out.push(...ffn(`${l}.mlp.experts.${e}`));
      out.push([`${l}.mlp.gate.weight`, [c.n_routed_experts, H]]);
      for (let e = 0; e < c.n_shared_experts; e++) out.push(...ffn(`${l}.mlp.shared_experts.${e}`));
    }
  }
  out.push(['model.norm.weight', [H]]);
  return out;
}

/** Parameters counted once (tied head not repeated): total, and active per token for MoE. */
export function countParameters(c: MiniMindConfig): { total: number; active: number } {
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  let total = 0, inactive = 0;
  const idle = c.use_moe ? c.n_routed_experts - c.num_experts_per_tok : 0;
  for (const [name, shape] of parameterShapes(c)) {
    total += size(shape);
    const m = name.match(/\.mlp\.experts\.(\d+)\./);
    if (m && Number(m[1]) < idle) inactive += size(shape);
  }
  return { total, active: total - inactive };
}
