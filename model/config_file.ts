// The config.json the trainer writes next to each weight file: MiniMind's own MiniMindConfig keys
// (`model_type: "minimind"`), MiniMind2's for a MiniMind2 model and minimind-3's for a minimind-3 one
// (spec §17), so readConfig (model/config_json.ts) reads it back to the same config. It is named after the
// weight file (`out/full_sft_512.pth` → `out/full_sft_512.config.json`) so that the several weight files a
// save folder holds (pretrain, full_sft, each hidden size) keep their own.
import { existsSync } from 'node:fs';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import { yarnOf, type MiniMindConfig } from './config.js';

/** Where the config of weight file `weights` is: its name with the extension replaced by `.config.json`. */
export function configPathFor(weights: string): string {
  return weights.replace(/\.(pth|pt|bin|safetensors)$/, '') + '.config.json';
}

/** MiniMindConfig's rope_scaling as it writes it (model/config.ts yarnOf), null without inference_rope_scaling. */
function ropeScalingJson(c: MiniMindConfig): Record<string, unknown> | null {
  const y = yarnOf(c);
  return y && { beta_fast: y.betaFast, beta_slow: y.betaSlow, factor: y.factor, original_max_position_embeddings: y.originalMax, attention_factor: y.attentionFactor, type: 'yarn' };
}

/** MiniMindConfig keys of the generation `c` belongs to (qk_norm marks minimind-3), sorted as transformers writes. */
export function minimindConfigJson(c: MiniMindConfig): Record<string, unknown> {
  const common = {
    architectures: ['MiniMindForCausalLM'], model_type: 'minimind', hidden_size: c.hidden_size, num_hidden_layers: c.num_hidden_layers,
    num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads, intermediate_size: c.intermediate_size,
    vocab_size: c.vocab_size, rms_norm_eps: c.rms_norm_eps, rope_theta: c.rope_theta, max_position_embeddings: c.max_position_embeddings,
    bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id, pad_token_id: c.pad_token_id, hidden_act: 'silu', dropout: 0.0,
    flash_attn: true, inference_rope_scaling: c.inference_rope_scaling, rope_scaling: ropeScalingJson(c), use_moe: c.use_moe, num_experts_per_tok: c.num_experts_per_tok,
    norm_topk_prob: c.norm_topk_prob, dtype: 'float16',
  };
  let out: Record<string, unknown>;
  if (c.qk_norm) {
    if (c.n_shared_experts !== 0) throw new Error(`config: minimind-3 has no shared experts, got n_shared_experts ${c.n_shared_experts}`);
    out = { ...common, head_dim: c.head_dim, num_experts: c.n_routed_experts, moe_intermediate_size: c.intermediate_size, router_aux_loss_coef: c.aux_loss_alpha };
  } else {
    // MiniMind2's config has no head_dim: it is always hidden_size / num_attention_heads.
    if (c.head_dim * c.num_attention_heads !== c.hidden_size) {
      throw new Error(`config: a MiniMind2 model has head_dim = hidden_size / num_attention_heads, got ${c.head_dim} with ${c.hidden_size} / ${c.num_attention_heads}`);
    }
    out = {
      ...common, n_routed_experts: c.n_routed_experts, n_shared_experts: c.n_shared_experts, scoring_func: 'softmax',
      aux_loss_alpha: c.aux_loss_alpha, seq_aux: c.seq_aux,
    };
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Write the config next to the weight file `weights`, atomically. */
export function writeConfigFor(weights: string, c: MiniMindConfig): string {
  const path = configPathFor(weights);
  writeFileAtomic(path, JSON.stringify(minimindConfigJson(c), null, 2) + '\n');
  return path;
}

/** The config file of `weights` if there is one. */
export function findConfigFor(weights: string): string | undefined {
  const path = configPathFor(weights);
  return existsSync(path) ? path : undefined;
}
