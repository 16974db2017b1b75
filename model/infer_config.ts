// A model's config from its weight file alone, for a file saved without a config.json: the tensor shapes
// give hidden size and vocab (embed_tokens [V,H]), layers (the highest layer index), the generation
// (q_norm keys exist only in minimind-3), FFN width, MoE (mlp.gate [E,H], experts and shared experts
// counted), and kv heads given head_dim. head_dim itself is in the file only for minimind-3 (q_norm [hd]);
// a MiniMind2 file stores q_proj [H,H] whatever the head count, so the heads are MiniMind's default (8)
// unless the caller says otherwise. What no shape shows (top-k, eps, rope) takes that generation's default.
import { minimind2, minimind3, validate, type MiniMindConfig } from './config.js';

type Shapes = Map<string, { shape: readonly number[] }>;

export interface Inferred { config: MiniMindConfig; /** What came from defaults rather than the shapes. */ assumed: string[] }

export function inferConfig(sd: Shapes, where: string, heads?: number): Inferred {
  const shape = (k: string) => {
    const t = sd.get(k);
    if (!t) throw new Error(`${where}: no ${k}, so the model's shape cannot be read from the file; give --config or the shape flags`);
    return t.shape;
  };
  const [V, H] = shape('model.embed_tokens.weight');
  let L = 0;
  for (const k of sd.keys()) {
    const m = k.match(/^model\.layers\.(\d+)\./);
    if (m) L = Math.max(L, Number(m[1]) + 1);
  }
  if (!L) throw new Error(`${where}: no model.layers.* keys`);
  const a = 'model.layers.0.self_attn', v3 = sd.has(`${a}.q_norm.weight`);
  const assumed: string[] = [];
  const qRows = shape(`${a}.q_proj.weight`)[0], kRows = shape(`${a}.k_proj.weight`)[0];
  let hd: number, nh: number;
  if (v3) {
    hd = shape(`${a}.q_norm.weight`)[0];
    nh = qRows / hd;
  } else {
    nh = heads ?? 8;
    if (heads === undefined) assumed.push('num_attention_heads 8 (MiniMind\'s default; a MiniMind2 file does not record it)');
    hd = qRows / nh;
  }
  if (!Number.isInteger(hd) || !Number.isInteger(nh) || !Number.isInteger(kRows / hd)) {
    throw new Error(`${where}: q_proj [${qRows},${H}] and k_proj [${kRows},${H}] do not split into ${nh} heads of one size; give --config`);
  }
  const moe = sd.has('model.layers.0.mlp.gate.weight');
  const count = (pre: string) => [...sd.keys()].filter((k) => k.startsWith(pre) && k.endsWith('.gate_proj.weight')).length;
  const over: Partial<MiniMindConfig> = {
    vocab_size: V, hidden_size: H, num_hidden_layers: L, num_attention_heads: nh, num_key_value_heads: kRows / hd, head_dim: hd,
    use_moe: moe,
    intermediate_size: shape(moe ? 'model.layers.0.mlp.experts.0.gate_proj.weight' : 'model.layers.0.mlp.gate_proj.weight')[0],
  };
  if (moe) {
    over.n_routed_experts = shape('model.layers.0.mlp.gate.weight')[0];
    over.n_shared_experts = count('model.layers.0.mlp.shared_experts.');
    const base = (v3 ? minimind3 : minimind2)().num_experts_per_tok;
    over.num_experts_per_tok = Math.min(base, over.n_routed_experts);
    assumed.push(`num_experts_per_tok ${over.num_experts_per_tok} (${v3 ? 'minimind-3' : 'MiniMind2'}'s default)`);
  }
  const config = validate((v3 ? minimind3 : minimind2)(over), where);
  return { config, assumed };
}
