import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { PRESETS, preset, parameterShapes } from '../model/config.js';
import { readConfig } from '../model/config_json.js';
import { configPathFor, writeConfigFor } from '../model/config_file.js';
import { inferConfig } from '../model/infer_config.js';

const s = suite('config_file');
const shapes = (name: string, over = {}) => new Map(parameterShapes(preset(name, over)).map(([k, shape]) => [k, { shape }]));

s('the config written next to a weight file reads back to the same config, for every preset', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfgfile-'));
  for (const name of Object.keys(PRESETS)) {
    const c = preset(name, { vocab_size: 300 });
    const path = writeConfigFor(join(dir, `${name}_${c.hidden_size}.pth`), c);
    assert.is(path, join(dir, `${name}_${c.hidden_size}.config.json`));
    assert.equal(readConfig(path), c, name);
  }
});

s('each generation writes its own MiniMindConfig keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfgfile-'));
  const v2 = JSON.parse(readFileSync(writeConfigFor(join(dir, 'a.pth'), preset('minimind2-moe')), 'utf8'));
  const v3 = JSON.parse(readFileSync(writeConfigFor(join(dir, 'b.safetensors'), preset('minimind3-moe')), 'utf8'));
  assert.is(v2.model_type, 'minimind');
  assert.equal([v2.n_routed_experts, v2.n_shared_experts, v2.aux_loss_alpha, v2.head_dim], [4, 1, 0.01, undefined]);
  assert.equal([v3.num_experts, v3.router_aux_loss_coef, v3.head_dim, v3.n_routed_experts], [4, 5e-4, 96, undefined]);
  assert.is(configPathFor('out/x_512.safetensors'), 'out/x_512.config.json');
});

s('the shape is inferred from the tensor shapes of every preset', () => {
  for (const name of Object.keys(PRESETS)) {
    const c = preset(name, { vocab_size: 300 });
    const { config, assumed } = inferConfig(shapes(name, { vocab_size: 300 }), name, c.qk_norm ? undefined : c.num_attention_heads);
    assert.equal(config, c, name);
    assert.is(assumed.length, c.use_moe ? 1 : 0, `${name}: ${assumed}`);
  }
});

s('a MiniMind2 file does not record its heads: 8 is assumed, and said', () => {
  const { config, assumed } = inferConfig(shapes('tiny'), 'tiny.pth'); // really 4 heads of 32, kv 2
  assert.equal([config.num_attention_heads, config.head_dim, config.num_key_value_heads], [8, 16, 4]);
  assert.match(assumed[0], /num_attention_heads 8/);
  const sd = shapes('tiny');
  sd.delete('model.embed_tokens.weight');
  assert.throws(() => inferConfig(sd, 'x.pth'), /x\.pth: no model\.embed_tokens\.weight/);
  const odd = shapes('tiny');
  odd.set('model.layers.0.self_attn.q_proj.weight', { shape: [100, 128] });
  assert.throws(() => inferConfig(odd, 'x.pth'), /x\.pth: q_proj \[100,128\]/);
});

s.run();
