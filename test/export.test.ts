// Export to a Hugging Face folder (model/export.ts, spec §16): config.json as transformers writes it for Llama
// (MiniMind2), Qwen3 and Qwen3-MoE (minimind-3); float16 model.safetensors without the tied lm_head, read back by
// our own loaders into a model whose weights are the source's rounded to float16; clear errors that change
// nothing on disk. (Outside the tests, test/fixtures/export/check_export.py loads an export into the PyTorch model, and
// check_transformers.py next to it into transformers.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { exportHF } from '../model/export.js';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { loadWeights } from '../model/weights.js';
import { encode } from '../model/dtype.js';
import { MiniMind } from '../model/minimind.js';
import { minimind2, parameterShapes, type MiniMindConfig } from '../model/config.js';
import { readConfig } from '../model/config_json.js';
import { setupGpu } from './util.js';

const REF = join(import.meta.dirname, 'fixtures', 'ref');
const root = join(import.meta.dirname, '..');
const s = suite('export');
let dir = '', tok = '';
s.before(async () => {
  await setupGpu();
  dir = mkdtempSync(join(tmpdir(), 'export-'));
  tok = join(dir, 'tok'); // the export copies the tokenizer files; their content is not parsed
  mkdirSync(tok);
  writeFileSync(join(tok, 'tokenizer.json'), '{"model": {"type": "BPE"}}');
  writeFileSync(join(tok, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<|im_start|>', eos_token: '<|im_end|>', chat_template: '{{ x }}' }));
});
s.after(() => rmSync(dir, { recursive: true, force: true }));

const configOf = (name: string): MiniMindConfig => ({ ...minimind2(), ...JSON.parse(readFileSync(join(REF, `${name}.json`), 'utf8')).config });

/** The fixture's weights as a plain state_dict file (both tied keys), as a trainer saves it. */
function stateDictFile(name: string): string {
  const p = join(dir, `${name}.safetensors`);
  const t = readSafetensors(join(REF, `${name}.weights.safetensors`)).tensors;
  writeSafetensors(p, [...t].map(([k, v]) => ({ name: k.slice('param.'.length), shape: v.shape, data: v.data as Float32Array })));
  return p;
}

const json = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

s('MiniMind2 dense → LlamaForCausalLM: the files, config.json and generation_config.json of convert_model.py', () => {
  const out = join(dir, 'llama');
  const { arch, files } = exportHF({ weights: join(REF, 'model_dense.pth'), out, config: configOf('model_dense'), tokenizerDir: tok });
  assert.is(arch, 'LlamaForCausalLM');
  assert.equal(files, ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  const c = json(join(out, 'config.json'));
  assert.equal(Object.keys(c), [...Object.keys(c)].sort(), 'keys sorted, as transformers writes them');
  assert.equal(c, {
    architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0, bos_token_id: 1, dtype: 'float16', eos_token_id: 2,
    head_dim: 16, hidden_act: 'silu', hidden_size: 64, initializer_range: 0.02, intermediate_size: 192, max_position_embeddings: 32768,
    mlp_bias: false, model_type: 'llama', num_attention_heads: 4, num_hidden_layers: 2, num_key_value_heads: 2, pretraining_tp: 1,
    rms_norm_eps: 1e-5, rope_scaling: null, rope_theta: 1e6, tie_word_embeddings: true, use_cache: true, vocab_size: 512,
  });
  assert.equal(json(join(out, 'generation_config.json')), { _from_model_config: true, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
  const t = json(join(out, 'tokenizer_config.json'));
  assert.equal([t.tokenizer_class, t.extra_special_tokens, t.chat_template], ['PreTrainedTokenizerFast', {}, '{{ x }}']);
  assert.is(readFileSync(join(out, 'tokenizer.json'), 'utf8'), readFileSync(join(tok, 'tokenizer.json'), 'utf8'));
  assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temp folder left');
});

s('model.safetensors: float16, format pt, state-dict order without lm_head, the source rounded to float16; our loaders read it back', async () => {
  const cfg = configOf('model_dense'), out = join(dir, 'llama');
  const st = readSafetensors(join(out, 'model.safetensors'));
  assert.equal(st.metadata, { format: 'pt' });
  assert.equal([...st.tensors.keys()], parameterShapes(cfg).map(([n]) => n));
  const src = loadWeights(join(REF, 'model_dense.pth'));
  for (const [k, t] of st.tensors) {
    assert.is(t.dtype, 'float16', k);
    assert.ok(Buffer.from(t.raw).equals(encode(src.get(k)!.data, 'float16', k)), `${k}: torch's .half() bytes`);
  }
  // Back through the project's loaders: config.json gives the same shape, the weights load into a model.
  const back = readConfig(join(out, 'config.json'));
  for (const k of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim', 'intermediate_size', 'vocab_size', 'rms_norm_eps', 'rope_theta'] as const) {
    assert.is(back[k], cfg[k], k);
  }
  const model = new MiniMind(back, 1);
  assert.equal(model.load(loadWeights(join(out, 'model.safetensors')), true), { missing: [], unexpected: [] });
  for (const w of await model.exportWeights()) {
    const want = st.tensors.get(w.name === 'lm_head.weight' ? 'model.embed_tokens.weight' : w.name)!.data;
    assert.equal(w.data, want, w.name);
  }
  model.dispose();
});

s('minimind-3 → Qwen3ForCausalLM (q/k norm weights kept), minimind-3 MoE → Qwen3MoeForCausalLM with per-expert keys', () => {
  const dense = join(dir, 'qwen3');
  assert.is(exportHF({ weights: stateDictFile('model_v3'), out: dense, config: configOf('model_v3'), tokenizerDir: tok }).arch, 'Qwen3ForCausalLM');
  const c = json(join(dense, 'config.json'));
  assert.equal([c.model_type, c.head_dim, c.rms_norm_eps, c.intermediate_size, c.use_sliding_window, c.sliding_window, c.max_window_layers, c.layer_types],
    ['qwen3', 16, 1e-6, 256, false, null, 28, ['full_attention', 'full_attention']]);
  assert.not.ok('bos_token_id' in c || 'eos_token_id' in c, 'Qwen3Config sets no bos/eos ids');
  assert.ok(readSafetensors(join(dense, 'model.safetensors')).tensors.has('model.layers.1.self_attn.k_norm.weight'));

  const moe = join(dir, 'qwen3_moe');
  assert.is(exportHF({ weights: stateDictFile('model_v3_moe'), out: moe, config: configOf('model_v3_moe'), tokenizerDir: tok }).arch, 'Qwen3MoeForCausalLM');
  const m = json(join(moe, 'config.json'));
  assert.equal([m.model_type, m.num_experts, m.num_experts_per_tok, m.moe_intermediate_size, m.norm_topk_prob, m.decoder_sparse_step, m.mlp_only_layers],
    ['qwen3_moe', 4, 1, 64, true, 1, []]);
  const keys = [...readSafetensors(join(moe, 'model.safetensors')).tensors.keys()];
  assert.ok(keys.includes('model.layers.0.mlp.gate.weight') && keys.includes('model.layers.0.mlp.experts.3.down_proj.weight'));
});

s('refused with the reason, and nothing written: MiniMind2 MoE, weights that do not fit, an untied lm_head, missing inputs', () => {
  const none = (out: string) => {
    assert.not.ok(existsSync(out), `${out} written`);
    assert.equal(readdirSync(dir).filter((f) => f.includes('.tmp-')), [], 'no temp folder left');
  };
  const out = join(dir, 'refused');
  assert.throws(() => exportHF({ weights: stateDictFile('model_moe'), out, config: configOf('model_moe'), tokenizerDir: tok }), /MiniMind2 MoE .* has no transformers architecture/);
  assert.throws(() => exportHF({ weights: join(REF, 'model_dense.pth'), out, config: { ...configOf('model_dense'), intermediate_size: 128 }, tokenizerDir: tok }),
    /model_dense\.pth: mis-shaped: model\.layers\.0\.mlp\.gate_proj\.weight \[192,64\] in file, \[128,64\] in model/);
  const untied = join(dir, 'untied.safetensors');
  const t = readSafetensors(stateDictFile('model_dense')).tensors;
  writeSafetensors(untied, [...t].map(([k, v]) => ({ name: k, shape: v.shape, data: k === 'lm_head.weight' ? (v.data as Float32Array).map((x) => x + 1) : v.data as Float32Array })));
  assert.throws(() => exportHF({ weights: untied, out, config: configOf('model_dense'), tokenizerDir: tok }), /untied\.safetensors: lm_head\.weight differs from model\.embed_tokens\.weight/);
  assert.throws(() => exportHF({ weights: join(dir, 'nope.pth'), out, config: configOf('model_dense'), tokenizerDir: tok }), /nope\.pth: no such weights file/);
  assert.throws(() => exportHF({ weights: join(REF, 'model_dense.pth'), out, config: configOf('model_dense'), tokenizerDir: dir }), /--tokenizer_path .*: no tokenizer\.json there/);
  none(out);
});

s('an existing non-empty output folder is left as it was; an empty one is filled', () => {
  const out = join(dir, 'busy');
  mkdirSync(out);
  writeFileSync(join(out, 'notes.txt'), 'mine');
  assert.throws(() => exportHF({ weights: join(REF, 'model_dense.pth'), out, config: configOf('model_dense'), tokenizerDir: tok }),
    /busy: exists and is not empty \(notes\.txt\); nothing was changed/);
  assert.equal(readdirSync(out), ['notes.txt']);
  assert.is(readFileSync(join(out, 'notes.txt'), 'utf8'), 'mine');
  const empty = join(dir, 'empty');
  mkdirSync(empty);
  assert.is(exportHF({ weights: join(REF, 'model_dense.pth'), out: empty, config: configOf('model_dense'), tokenizerDir: tok }).files.length, 5);
});

s('the command line: a config.json gives the model, errors exit 1 with the message', () => {
  const cfgFile = join(dir, 'model_dense.config.json');
  // MiniMind2's config.json keys only (head_dim, qk_norm and aux_form are this project's derived fields).
  const { head_dim: _h, qk_norm: _q, aux_form: _a, ...minimind2Keys } = configOf('model_dense');
  writeFileSync(cfgFile, JSON.stringify(minimind2Keys));
  const cli = (args: string[]) => spawnSync('npx', ['tsx', 'model/export.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const ok = cli([join(REF, 'model_dense.pth'), join(dir, 'cli'), '--tokenizer_path', tok, '--config', cfgFile]);
  assert.is(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /LlamaForCausalLM: .*model_dense\.pth → .*cli: config\.json, generation_config\.json, model\.safetensors/);
  const bad = cli([join(REF, 'model_dense.pth'), join(dir, 'cli2'), '--tokenizer_path', tok, '--hidden_size', '512']); // MiniMind2 at 512
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^export: .*model_dense\.pth: missing keys: .*mis-shaped: model\.embed_tokens\.weight \[512,64\] in file, \[6400,512\] in model/);
});

s.run();
