import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { preset, countParameters, readConfig, parameterShapes } from '../model/config.js';
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
