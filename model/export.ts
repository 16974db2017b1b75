// Export to a Hugging Face folder in the layout of MiniMind's scripts/convert_model.py (spec §16), which
// transformers, llama.cpp's convert_hf_to_gguf.py and vLLM load (transformers.js after its ONNX conversion): config.json,
// generation_config.json, model.safetensors (float16, the tied lm_head.weight left out), tokenizer.json and
// tokenizer_config.json. MiniMind2 dense → LlamaForCausalLM; minimind-3 → Qwen3ForCausalLM, or
// Qwen3MoeForCausalLM with the per-expert keys of transformers 4.x (the key names are MiniMind's own; transformers 5
// fuses them on load). test/fixtures/export/check_transformers.py loads all three in transformers.
// MiniMind2 MoE has no transformers architecture (shared experts, its own aux loss): refused, as MiniMind's
// script sends it to its own remote-code classes instead.
// The folder is built next to the output under a temp name and renamed into place at the end, so a failed
// or killed export leaves nothing half-written; an existing non-empty output folder is never touched.
//
// CLI: npx tsx model/export.ts WEIGHTS OUT_DIR --tokenizer_path DIR [--config FILE | --preset NAME |
//      --hidden_size N --num_hidden_layers N --use_moe 0|1]
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { writeFileAtomic, syncDir } from '../runtime/write_file_atomic.js';
import { basename, dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { loadWeights, checkStateDict } from './weights.js';
import { writeSafetensors } from './safetensors.js';
import { minimind2, parameterShapes, preset, validate, type MiniMindConfig } from './config.js';
import { readConfig } from './config_json.js';
import { configPathFor, findConfigFor } from './config_file.js';
import { inferConfig } from './infer_config.js';

export type Architecture = 'LlamaForCausalLM' | 'Qwen3ForCausalLM' | 'Qwen3MoeForCausalLM';

export function architectureOf(c: MiniMindConfig): Architecture {
  if (!c.use_moe) return c.qk_norm ? 'Qwen3ForCausalLM' : 'LlamaForCausalLM';
  if (c.aux_form === 'minimind3' && c.qk_norm && c.n_shared_experts === 0) return 'Qwen3MoeForCausalLM';
  throw new Error('MiniMind2 MoE (shared experts, its own routing and aux loss) has no transformers architecture to export to; '
    + "MiniMind's convert script keeps its own model classes for it (trust_remote_code). Dense MiniMind2 and minimind-3 (dense or MoE) export");
}

/** config.json as transformers 4.57 writes it for the architecture (its keys sorted, as to_json_string does). */
export function hfConfig(c: MiniMindConfig): Record<string, unknown> {
  const arch = architectureOf(c);
  const common = {
    architectures: [arch], vocab_size: c.vocab_size, hidden_size: c.hidden_size, intermediate_size: c.intermediate_size,
    num_hidden_layers: c.num_hidden_layers, num_attention_heads: c.num_attention_heads, num_key_value_heads: c.num_key_value_heads,
    head_dim: c.head_dim, max_position_embeddings: c.max_position_embeddings, rms_norm_eps: c.rms_norm_eps, rope_theta: c.rope_theta,
    rope_scaling: null, tie_word_embeddings: true, hidden_act: 'silu', attention_bias: false, attention_dropout: 0.0,
    initializer_range: 0.02, use_cache: true, dtype: 'float16',
  };
  let out: Record<string, unknown>;
  if (arch === 'LlamaForCausalLM') {
    out = { ...common, model_type: 'llama', bos_token_id: c.bos_token_id, eos_token_id: c.eos_token_id, mlp_bias: false, pretraining_tp: 1 };
  } else {
    // Qwen3Config sets no bos/eos ids (they come from the tokenizer and generation_config.json).
    out = {
      ...common, model_type: arch === 'Qwen3ForCausalLM' ? 'qwen3' : 'qwen3_moe', use_sliding_window: false, sliding_window: null,
      max_window_layers: 28, layer_types: Array(c.num_hidden_layers).fill('full_attention'),
    };
    if (arch === 'Qwen3MoeForCausalLM') {
      Object.assign(out, {
        num_experts: c.n_routed_experts, num_experts_per_tok: c.num_experts_per_tok, moe_intermediate_size: c.intermediate_size,
        norm_topk_prob: c.norm_topk_prob, decoder_sparse_step: 1, mlp_only_layers: [], router_aux_loss_coef: 0.001, output_router_logits: false,
      });
    }
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

export interface ExportOptions { weights: string; out: string; config: MiniMindConfig; tokenizerDir: string }

/** Write the folder; returns the architecture and the files written (in `out`). */
export function exportHF(o: ExportOptions): { arch: Architecture; files: string[] } {
  const out = resolve(o.out);
  if (existsSync(out)) {
    if (!statSync(out).isDirectory()) throw new Error(`${out}: exists and is not a folder; choose another output folder`);
    const there = readdirSync(out);
    if (there.length) throw new Error(`${out}: exists and is not empty (${there.slice(0, 5).join(', ')}${there.length > 5 ? ', ...' : ''}); nothing was changed: remove it or choose another output folder`);
  }
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) {
    if (!existsSync(join(o.tokenizerDir, f))) throw new Error(`--tokenizer_path ${o.tokenizerDir}: no ${f} there (the tokenizer the model was trained with)`);
  }
  if (!existsSync(o.weights)) throw new Error(`${o.weights}: no such weights file`);
  const arch = architectureOf(o.config);
  const sd = loadWeights(o.weights);
  const expected = new Map<string, readonly number[]>(parameterShapes(o.config));
  const embed = sd.get('model.embed_tokens.weight'), head = sd.get('lm_head.weight');
  if (head) {
    // The exported model ties lm_head to the embedding, so the two must hold the same values.
    expected.set('lm_head.weight', expected.get('model.embed_tokens.weight')!);
    if (embed && !(embed.data.length === head.data.length && embed.data.every((x, i) => Object.is(x, head.data[i])))) {
      throw new Error(`${o.weights}: lm_head.weight differs from model.embed_tokens.weight; the export ties them (tie_word_embeddings)`);
    }
  }
  checkStateDict(sd, expected, { strict: true, where: o.weights });

  const tokConfig = readJson(join(o.tokenizerDir, 'tokenizer_config.json'));
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(tmp, { recursive: true });
  try {
    const json = (name: string, v: unknown) => writeFileAtomic(join(tmp, name), JSON.stringify(v, null, 2) + '\n');
    json('config.json', hfConfig(o.config));
    json('generation_config.json', {
      _from_model_config: true, bos_token_id: o.config.bos_token_id, eos_token_id: o.config.eos_token_id, pad_token_id: o.config.pad_token_id,
    });
    writeSafetensors(join(tmp, 'model.safetensors'), parameterShapes(o.config).map(([name]) => ({ name, ...sd.get(name)! })),
      { dtype: 'float16', metadata: { format: 'pt' } }); // transformers refuses safetensors without format pt
    writeFileAtomic(join(tmp, 'tokenizer.json'), readFileSync(join(o.tokenizerDir, 'tokenizer.json')));
    // MiniMind's convert script patches these two in, for transformers 5.
    json('tokenizer_config.json', { ...tokConfig, tokenizer_class: 'PreTrainedTokenizerFast', extra_special_tokens: {} });
    if (existsSync(out)) rmdirSync(out); // empty (checked above); rmdir refuses anything else
    renameSync(tmp, out);
    syncDir(dirname(out)); // the files are on disk (writeFileAtomic); now the folder's new name is
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { arch, files: readdirSync(out).sort() };
}

function readJson(path: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not readable JSON (${(e as Error).message})`);
  }
}

const USAGE = `npx tsx model/export.ts WEIGHTS OUT_DIR --tokenizer_path DIR [--config FILE | --preset NAME | --hidden_size N --num_hidden_layers N --use_moe 0|1]

Writes a Hugging Face folder (config.json, generation_config.json, model.safetensors in float16, tokenizer files)
in the layout of MiniMind's scripts/convert_model.py: MiniMind2 dense as LlamaForCausalLM, minimind-3 as
Qwen3ForCausalLM / Qwen3MoeForCausalLM. WEIGHTS is a .pth or .safetensors state_dict (e.g. out/full_sft_512.pth);
the model's shape comes from --config, else --preset, else the MiniMind2 flags as in training, else (none given) the
config.json the trainer wrote beside WEIGHTS (NAME.config.json), else the shapes of the file's tensors.
OUT_DIR must not exist or be empty.`;

/** No shape given: the config.json the trainer wrote beside the weights, else the shape their tensors show. */
function fileConfig(weights: string): MiniMindConfig {
  const path = findConfigFor(weights);
  if (path) return readConfig(path);
  if (!existsSync(weights)) throw new Error(`${weights}: no such weights file`);
  const { config, assumed } = inferConfig(loadWeights(weights), weights);
  console.log(`[export] no ${configPathFor(weights)}: shape read from the tensors${assumed.length ? `; assumed ${assumed.join(', ')}` : ''}`);
  return config;
}

function main(argv: string[]): void {
  const { values: v, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      tokenizer_path: { type: 'string' }, config: { type: 'string' }, preset: { type: 'string' },
      hidden_size: { type: 'string' }, num_hidden_layers: { type: 'string' }, use_moe: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) { console.log(USAGE); return; }
  if (positionals.length !== 2 || !v.tokenizer_path) throw new Error(`expected WEIGHTS, OUT_DIR and --tokenizer_path\n\n${USAGE}`);
  const int = (name: 'hidden_size' | 'num_hidden_layers' | 'use_moe') => {
    const s = v[name];
    if (s === undefined) return undefined;
    if (!/^\d+$/.test(s)) throw new Error(`--${name} must be a non-negative integer, got '${s}'`);
    return Number(s);
  };
  const over: Partial<MiniMindConfig> = {};
  const h = int('hidden_size'), l = int('num_hidden_layers'), moe = int('use_moe');
  if (h !== undefined) over.hidden_size = h;
  if (l !== undefined) over.num_hidden_layers = l;
  if (moe !== undefined) over.use_moe = moe === 1;
  if (v.config && Object.keys(over).length) throw new Error(`--config ${v.config} sets the model: leave out --hidden_size, --num_hidden_layers and --use_moe`);
  const [weights, out] = positionals;
  const config = v.config ? readConfig(v.config) : v.preset ? preset(v.preset, over)
    : Object.keys(over).length ? validate(minimind2(over), 'flags') : fileConfig(weights);
  const { arch, files } = exportHF({ weights, out, config, tokenizerDir: v.tokenizer_path });
  console.log(`[export] ${arch}: ${weights} → ${resolve(out)}: ${files.join(', ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main(process.argv.slice(2));
  } catch (e) {
    console.error(`export: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
