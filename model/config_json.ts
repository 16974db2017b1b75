// Reading a config.json into a MiniMindConfig (spec §1, §16, §17): MiniMind's own MiniMindConfig in both
// generations (`model_type: "minimind"`: MiniMind2's keys or minimind-3's), and the Llama / Qwen3 / Qwen3-MoE
// configs MiniMind's convert script writes. Every key is mapped, checked against what this model can do, or
// known not to change the model; any other key is an error naming it and the file.
import { readFileSync } from 'node:fs';
import { ffnSizeV2, ffnSizeV3, minimind2, minimind3, validate, type MiniMindConfig } from './config.js';

type Fields = Partial<Record<keyof MiniMindConfig, unknown>>;
/** What a key does: set a field (type-checked), require the one value this model supports, or nothing. */
type Rule = { set: keyof MiniMindConfig } | { must: unknown; why: string } | 'ignore';

const set = (field: keyof MiniMindConfig): Rule => ({ set: field });
const must = (value: unknown, why: string): Rule => ({ must: value, why });

/** Keys transformers' PretrainedConfig writes and that do not change the model (metadata, output switches). */
const METADATA = [
  'model_type', 'architectures', 'auto_map', 'torch_dtype', 'dtype', 'transformers_version', '_name_or_path',
  'use_cache', 'initializer_range', 'return_dict', 'output_hidden_states', 'output_attentions', 'torchscript',
  'use_bfloat16', 'tf_legacy_loss', 'pruned_heads', 'chunk_size_feed_forward', 'is_encoder_decoder', 'is_decoder',
  'cross_attention_hidden_size', 'add_cross_attention', 'tie_encoder_decoder', 'finetuning_task', 'id2label',
  'label2id', 'tokenizer_class', 'prefix', 'sep_token_id', 'decoder_start_token_id', 'task_specific_params', 'problem_type',
];

const SHAPE: Record<string, Rule> = {
  hidden_size: set('hidden_size'), num_hidden_layers: set('num_hidden_layers'), num_attention_heads: set('num_attention_heads'),
  num_key_value_heads: set('num_key_value_heads'), intermediate_size: set('intermediate_size'), vocab_size: set('vocab_size'),
  rms_norm_eps: set('rms_norm_eps'), rope_theta: set('rope_theta'), max_position_embeddings: set('max_position_embeddings'),
  bos_token_id: set('bos_token_id'), eos_token_id: set('eos_token_id'), pad_token_id: set('pad_token_id'),
  hidden_act: must('silu', 'the MLP is SwiGLU'),
  tie_word_embeddings: must(true, 'lm_head is always tied to embed_tokens'),
};

/** MiniMindConfig keys of both generations (M2:model/model_minimind.py:8-78, H:model/model_minimind.py:10-45). */
const NATIVE: Record<string, Rule> = {
  ...SHAPE,
  use_moe: set('use_moe'), num_experts_per_tok: set('num_experts_per_tok'), norm_topk_prob: set('norm_topk_prob'),
  dropout: must(0, 'there is no dropout'),
  inference_rope_scaling: set('inference_rope_scaling'),
  // Recomputed from inference_rope_scaling by MiniMindConfig; the JSON value is never read.
  rope_scaling: 'ignore',
  flash_attn: 'ignore', // SDPA or the explicit softmax: the same attention
  max_seq_len: 'ignore', // a stray keyword of the convert script, stored as-is
};

const MINIMIND2: Record<string, Rule> = {
  ...NATIVE,
  n_routed_experts: set('n_routed_experts'), n_shared_experts: set('n_shared_experts'),
  aux_loss_alpha: set('aux_loss_alpha'), seq_aux: set('seq_aux'),
  scoring_func: must('softmax', 'the router scores with softmax'),
};

const MINIMIND3: Record<string, Rule> = {
  ...NATIVE,
  head_dim: set('head_dim'), num_experts: set('n_routed_experts'), router_aux_loss_coef: set('aux_loss_alpha'),
  moe_intermediate_size: 'ignore', // read in readConfig: the experts' width when use_moe
};

/** HF attention/MLP options of the Llama and Qwen3 exports (spec §16). */
const HF: Record<string, Rule> = {
  ...SHAPE,
  head_dim: set('head_dim'),
  attention_bias: must(false, 'projections have no bias'),
  attention_dropout: must(0, 'there is no dropout'),
  rope_scaling: must(null, 'YaRN and other rope scalings are not implemented'),
};

const LLAMA: Record<string, Rule> = {
  ...HF, mlp_bias: must(false, 'projections have no bias'),
  pretraining_tp: 'ignore', // splits the projections into slices: the same products
};

const QWEN3: Record<string, Rule> = {
  ...HF,
  use_sliding_window: must(false, 'attention is full causal'),
  sliding_window: 'ignore', max_window_layers: 'ignore', // read only with use_sliding_window
  layer_types: 'ignore', // checked in readConfig: every layer full_attention
};

const QWEN3_MOE: Record<string, Rule> = {
  ...QWEN3,
  num_experts: set('n_routed_experts'), num_experts_per_tok: set('num_experts_per_tok'), norm_topk_prob: set('norm_topk_prob'),
  // MiniMind's export writes Qwen's default (0.001), not minimind-3's 5e-4; taken as written.
  router_aux_loss_coef: set('aux_loss_alpha'),
  moe_intermediate_size: 'ignore', // read in readConfig: the experts' width
  decoder_sparse_step: must(1, 'every layer is MoE'),
  mlp_only_layers: must([], 'every layer is MoE'),
  output_router_logits: 'ignore',
};

/** Keys that only one generation's MiniMindConfig has (spec §17, loader rule). */
const ONLY_V3 = ['num_experts', 'router_aux_loss_coef', 'moe_intermediate_size', 'head_dim'];
const ONLY_V2 = ['n_routed_experts', 'n_shared_experts', 'aux_loss_alpha', 'seq_aux', 'scoring_func'];

interface Kind { name: string; rules: Record<string, Rule>; base: (hidden?: number) => MiniMindConfig }

/** Which config class wrote the file, and the defaults of the keys it omits. */
function kindOf(raw: Record<string, unknown>, path: string): Kind {
  const type = raw.model_type ?? 'minimind';
  const v3 = (h?: number) => minimind3({ hidden_size: h ?? 768 });
  const v2 = (h?: number) => minimind2({ hidden_size: h ?? 512 });
  if (type === 'llama') return { name: 'llama (MiniMind2 dense)', rules: LLAMA, base: v2 };
  if (type === 'qwen3') return { name: 'qwen3 (minimind-3 dense)', rules: QWEN3, base: v3 };
  if (type === 'qwen3_moe') return { name: 'qwen3_moe (minimind-3 MoE)', rules: QWEN3_MOE, base: (h) => ({ ...v3(h), use_moe: true }) };
  if (type !== 'minimind') throw new Error(`${path}: model_type ${JSON.stringify(type)} is not supported (minimind, llama, qwen3 or qwen3_moe)`);
  const has3 = ONLY_V3.filter((k) => k in raw), has2 = ONLY_V2.filter((k) => k in raw);
  if (has3.length && has2.length) {
    throw new Error(`${path}: mixes minimind-3 keys (${has3.join(', ')}) with MiniMind2 keys (${has2.join(', ')}); a config is one or the other`);
  }
  // Neither set: MiniMind2, the generation this project defaults to.
  return has3.length ? { name: 'minimind-3', rules: MINIMIND3, base: v3 } : { name: 'MiniMind2', rules: MINIMIND2, base: v2 };
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** Read a MiniMind or HF config.json. Keys it omits take that generation's MiniMind defaults; head_dim and the
 *  FFN width follow hidden_size unless given (minimind-3 MoE: the experts are moe_intermediate_size wide). */
export function readConfig(path: string): MiniMindConfig {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not a readable JSON config (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${path}: not a JSON object`);
  const kind = kindOf(raw, path);
  const hidden = raw.hidden_size;
  if (hidden !== undefined && typeof hidden !== 'number') throw new Error(`${path}: field 'hidden_size' should be a number, got ${JSON.stringify(hidden)}`);
  const base = kind.base(hidden);
  const out: Fields = { ...base };
  for (const [key, v] of Object.entries(raw)) {
    const rule = METADATA.includes(key) ? 'ignore' : kind.rules[key];
    if (rule === undefined) {
      throw new Error(`${path}: unknown key '${key}' for a ${kind.name} config; it may change the model, so it is refused `
        + `(remove it if it does not)`);
    }
    if (rule === 'ignore') continue;
    if ('must' in rule) {
      if (!same(v, rule.must)) throw new Error(`${path}: ${key} ${JSON.stringify(v)} is not supported (${rule.why}; only ${JSON.stringify(rule.must)})`);
      continue;
    }
    if (v === null) continue; // MiniMind2 writes intermediate_size / num_key_value_heads null: derived below
    const want = typeof base[rule.set];
    // MiniMind2 configs before late 2025 had a boolean n_shared_experts (range(True) is one expert).
    const value = rule.set === 'n_shared_experts' && typeof v === 'boolean' ? Number(v) : v;
    if (typeof value !== want) throw new Error(`${path}: field '${key}' should be a ${want}, got ${JSON.stringify(v)}`);
    out[rule.set] = value;
  }
  const c = out as MiniMindConfig;
  const given = (k: string) => raw[k] !== undefined && raw[k] !== null;
  if (raw.num_key_value_heads === null) c.num_key_value_heads = c.num_attention_heads; // MiniMind2: None means no GQA
  if (!given('head_dim')) c.head_dim = Math.floor(c.hidden_size / c.num_attention_heads); // MiniMind: H // nh
  if (!given('intermediate_size')) c.intermediate_size = c.qk_norm ? ffnSizeV3(c.hidden_size) : ffnSizeV2(c.hidden_size);
  if (c.use_moe && given('moe_intermediate_size')) {
    if (typeof raw.moe_intermediate_size !== 'number') throw new Error(`${path}: field 'moe_intermediate_size' should be a number, got ${JSON.stringify(raw.moe_intermediate_size)}`);
    c.intermediate_size = raw.moe_intermediate_size; // every block is MoE: the dense width is never used
  }
  if (Array.isArray(raw.layer_types) && raw.layer_types.some((t) => t !== 'full_attention')) {
    throw new Error(`${path}: layer_types ${JSON.stringify(raw.layer_types)} is not supported (attention is full causal; only "full_attention")`);
  }
  if (c.use_moe) checkMoE(c, path, kind.rules === MINIMIND2);
  return validate(c, path);
}

/** What kernels/moe.ts can route: 1 ≤ top-k ≤ experts ≤ 32. */
function checkMoE(c: MiniMindConfig, path: string, v2: boolean): void {
  const experts = v2 ? 'n_routed_experts' : 'num_experts';
  if (!(Number.isInteger(c.n_routed_experts) && c.n_routed_experts >= 1 && c.n_routed_experts <= 32)) {
    throw new Error(`${path}: ${experts} must be an integer from 1 to 32 (the router's limit), got ${c.n_routed_experts}`);
  }
  if (!(Number.isInteger(c.num_experts_per_tok) && c.num_experts_per_tok >= 1 && c.num_experts_per_tok <= c.n_routed_experts)) {
    throw new Error(`${path}: num_experts_per_tok must be an integer from 1 to ${experts} (${c.n_routed_experts}), got ${c.num_experts_per_tok}`);
  }
  if (!(Number.isInteger(c.n_shared_experts) && c.n_shared_experts >= 0)) throw new Error(`${path}: n_shared_experts must be an integer ≥ 0, got ${c.n_shared_experts}`);
}
