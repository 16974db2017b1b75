import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { preset, countParameters, parameterShapes } from '../model/config.js';
import { readConfig } from '../model/config_json.js';
import { parseArgs, wasGiven } from '../train/args.js';

const s = suite('config');

// The spec's §1 numbers (tied embedding counted once).
const COUNTS: [string, number, number][] = [
  ['minimind2-small', 25_829_888, 25_829_888],
  ['minimind2', 104_030_976, 104_030_976],
  ['minimind2-moe', 145_029_760, 91_945_600],
  ['minimind3', 63_912_192, 63_912_192],
  ['minimind3-moe', 198_416_640, 63_936_768],
];
for (const [name, total, active] of COUNTS) {
  s(`preset ${name} has ${total} parameters (${active} active)`, () => {
    assert.equal(countParameters(preset(name)), { total, active });
  });
}

s('minimind2-small has the 75 keys of the spec (with lm_head) in state-dict order', () => {
  const keys = parameterShapes(preset('minimind2-small')).map(([k]) => k);
  assert.is(keys.length + 1, 75);
  assert.is(keys[0], 'model.embed_tokens.weight');
  assert.equal(keys.slice(1, 10), ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `model.layers.0.self_attn.${p}.weight`)
    .concat(['input_layernorm', 'post_attention_layernorm'].map((p) => `model.layers.0.${p}.weight`))
    .concat(['gate_proj', 'down_proj', 'up_proj'].map((p) => `model.layers.0.mlp.${p}.weight`)));
});

s('readConfig takes HF keys, derives head_dim and intermediate_size, and names a bad field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const p = join(dir, 'config.json');
  writeFileSync(p, JSON.stringify({ hidden_size: 768, num_hidden_layers: 16, architectures: ['MiniMindForCausalLM'] }));
  const c = readConfig(p);
  assert.is(c.head_dim, 96);
  assert.is(c.intermediate_size, 2048);
  writeFileSync(p, JSON.stringify({ hidden_size: '768' }));
  assert.throws(() => readConfig(p), /config\.json: field 'hidden_size'/);
  writeFileSync(p, JSON.stringify({ num_attention_heads: 8, num_key_value_heads: 3 }));
  assert.throws(() => readConfig(p), /multiple of num_key_value_heads/);
});

// config.json files as MiniMind writes them (test/fixtures/config/README.md says how each was derived).
const FIXTURES = join(import.meta.dirname, 'fixtures', 'config');
const CASES: [string, string, Record<string, unknown>][] = [
  ['minimind2_small.json', 'minimind2-small', {}],
  ['minimind2_moe.json', 'minimind2-moe', {}],
  ['minimind3.json', 'minimind3', {}],
  ['minimind3_moe.json', 'minimind3-moe', {}],
  ['llama_minimind2_small.json', 'minimind2-small', {}],
  // MiniMind's Qwen3-MoE export writes Qwen's default aux coefficient, not minimind-3's 5e-4.
  ['qwen3_moe_minimind3.json', 'minimind3-moe', { aux_loss_alpha: 0.001 }],
];
for (const [file, name, diff] of CASES) {
  s(`${file} maps to the ${name} preset${Object.keys(diff).length ? ' (with its aux coefficient)' : ''}`, () => {
    assert.equal(readConfig(join(FIXTURES, file)), { ...preset(name), ...diff });
  });
}

s('a minimind-3 MoE config.json builds q/k norms, the gate and 4 experts without a shared one, at the spec\'s count', () => {
  const c = readConfig(join(FIXTURES, 'minimind3_moe.json'));
  const keys = parameterShapes(c).map(([k]) => k);
  assert.ok(keys.includes('model.layers.7.self_attn.q_norm.weight') && keys.includes('model.layers.7.mlp.gate.weight'));
  assert.ok(keys.includes('model.layers.7.mlp.experts.3.down_proj.weight'));
  assert.not.ok(keys.some((k) => k.includes('shared_experts')));
  assert.equal(countParameters(c), { total: 198_416_640, active: 63_936_768 });
});

/** A copy of a fixture with `over` written on top; returns its path. */
function variant(file: string, over: Record<string, unknown>): string {
  const raw = { ...JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')), ...over };
  const p = join(mkdtempSync(join(tmpdir(), 'cfg-')), 'config.json');
  writeFileSync(p, JSON.stringify(raw));
  return p;
}

s('an unknown key is an error naming the key and the file; metadata keys are accepted', () => {
  const p = variant('minimind3.json', { num_local_experts: 8 });
  assert.throws(() => readConfig(p), (e: Error) => e.message.startsWith(`${p}: unknown key 'num_local_experts'`));
  assert.is(readConfig(variant('minimind2_small.json', { torch_dtype: 'float32', _name_or_path: 'x', use_cache: true })).hidden_size, 512);
});

s('what the model cannot do is an error naming the key, not ignored', () => {
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['minimind2_small.json', { dropout: 0.1 }, /dropout 0\.1 is not supported/],
    ['minimind2_moe.json', { scoring_func: 'sigmoid' }, /scoring_func "sigmoid" is not supported/],
    ['minimind3.json', { hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
    ['minimind3.json', { tie_word_embeddings: false }, /tie_word_embeddings false is not supported/],
    ['minimind3_moe.json', { num_experts: 64 }, /num_experts must be an integer from 1 to 32/],
    ['minimind2_moe.json', { num_experts_per_tok: 5 }, /num_experts_per_tok must be an integer from 1 to n_routed_experts \(4\)/],
    ['llama_minimind2_small.json', { rope_scaling: { type: 'yarn', factor: 16 } }, /rope_scaling .* is not supported/],
    ['qwen3_moe_minimind3.json', { mlp_only_layers: [0] }, /mlp_only_layers \[0\] is not supported/],
    ['qwen3_moe_minimind3.json', { layer_types: ['sliding_attention'] }, /layer_types .* is not supported/],
    ['minimind3.json', { n_shared_experts: 1 }, /mixes minimind-3 keys \(.*head_dim\) with MiniMind2 keys \(n_shared_experts\)/],
    ['minimind3.json', { model_type: 'gpt2' }, /model_type "gpt2" is not supported/],
  ];
  for (const [file, over, re] of bad) assert.throws(() => readConfig(variant(file, over)), re, `${file} ${JSON.stringify(over)}`);
});

s('MiniMind2 configs: null intermediate_size and num_key_value_heads are derived; a boolean n_shared_experts counts as one', () => {
  const c = readConfig(variant('minimind2_moe.json', { intermediate_size: null, num_key_value_heads: null, n_shared_experts: true }));
  assert.equal([c.intermediate_size, c.num_key_value_heads, c.n_shared_experts], [1728, 8, 1]);
  // The rope_scaling MiniMindConfig recomputes from inference_rope_scaling is never read from the file.
  assert.is(readConfig(variant('minimind3.json', { rope_scaling: { type: 'yarn' } })).rope_theta, 1e6);
  // inference_rope_scaling is read (YaRN at inference: model/config.ts yarnOf).
  assert.is(readConfig(variant('minimind3.json', { inference_rope_scaling: true })).inference_rope_scaling, true);
  assert.is(readConfig(variant('minimind3.json', {})).inference_rope_scaling, false);
  // minimind-3 MoE experts are moe_intermediate_size wide; a dense model keeps intermediate_size.
  assert.is(readConfig(variant('minimind3_moe.json', { moe_intermediate_size: 640 })).intermediate_size, 640);
  assert.is(readConfig(variant('minimind3.json', { moe_intermediate_size: 640 })).intermediate_size, 2432);
});

s('model flags change a preset before its derived sizes follow; a bad result names the preset', () => {
  const moe = preset('tiny', { use_moe: true });
  assert.equal([moe.use_moe, moe.hidden_size, moe.num_hidden_layers], [true, 128, 2]);
  const wide = preset('minimind2-small', { hidden_size: 768, num_hidden_layers: 2 });
  assert.equal([wide.head_dim, wide.intermediate_size, wide.num_hidden_layers], [96, 2048, 2]);
  assert.throws(() => preset('tiny', { hidden_size: 132 }), /preset tiny: head_dim must be even/);
});

s('parseArgs tells the flags on the command line from defaults and built-in settings', () => {
  const a = parseArgs(['--use_moe', '1', '--hidden_size=256'], { preset: 'tiny', num_hidden_layers: 2 });
  assert.equal([wasGiven(a, 'use_moe'), wasGiven(a, 'hidden_size'), wasGiven(a, 'num_hidden_layers'), wasGiven(a, 'preset')], [true, true, false, false]);
  assert.equal([a.use_moe, a.hidden_size, a.num_hidden_layers], [1, 256, 2]);
});

s.run();
