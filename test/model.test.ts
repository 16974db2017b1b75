// The whole model against our PyTorch reference (test/fixtures/ref, README there): logits, loss,
// aux loss and the gradient of every parameter for tiny MiniMind2 dense/MoE and minimind-3 configs;
// greedy KV-cache generation; and the .pth weights path.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, noGradAsync } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { add } from '../kernels/index.js';
import { MiniMind } from '../model/minimind.js';
import { MiniMindConfig, minimind2 } from '../model/config.js';
import { readSafetensors } from '../model/safetensors.js';
import { readPth } from '../model/pth.js';
import { generate } from '../model/generate.js';
import { setupGpu, assertClose } from './util.js';

const DIR = join(import.meta.dirname, 'fixtures', 'ref');
const s = suite('model');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

function fixture(name: string, o: { frozen?: boolean; over?: Partial<MiniMindConfig> } = {}) {
  const json = JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8'));
  const weights = readSafetensors(join(DIR, `${name}.weights.safetensors`)).tensors;
  const cfg: MiniMindConfig = { ...minimind2(), ...json.config, ...o.over };
  const model = new MiniMind(cfg, 0, o);
  const sd = new Map([...weights].filter(([k]) => k.startsWith('param.')).map(([k, t]) => [k.slice(6), t as { shape: number[]; data: Float32Array }]));
  model.load(sd, true);
  return { json, model, out: readSafetensors(join(DIR, `${name}.safetensors`)).tensors };
}

const maxErr = (got: ArrayLike<number>, want: ArrayLike<number>) => {
  let abs = 0, ref = 0;
  for (let i = 0; i < want.length; i++) { abs = Math.max(abs, Math.abs(got[i] - want[i])); ref = Math.max(ref, Math.abs(want[i])); }
  return { abs, rel: abs / ref };
};

for (const name of ['model_dense', 'model_moe', 'model_v3', 'model_v3_moe']) {
  s(`${name}: logits, loss, aux loss and every parameter gradient match PyTorch`, async () => {
    const { json, model, out } = fixture(name);
    const ids = out.get('ids')!.data as Int32Array, labels = out.get('labels')!.data as Int32Array;
    const [B, T] = out.get('ids')!.shape;
    const idsT = Tensor.fromArray(ids, [B, T], 'i32');
    const { logits } = await noGradAsync(() => model.logits(idsT, { hostIds: ids }));
    const lg = maxErr(await logits.readF32(), out.get('logits')!.data);
    assertClose(await logits.readF32(), out.get('logits')!.data, 'logits', 1e-4, 1e-5);
    const { loss, aux, count } = await model.loss(idsT, Tensor.fromArray(labels, [B, T], 'i32'), ids);
    const l = (await loss.readF32())[0], a = aux ? (await aux.readF32())[0] : 0;
    assertClose([l], [json.loss], 'loss', 1e-5, 0);
    assertClose([a], [json.aux_loss], 'aux_loss', 1e-4, 1e-9);
    assert.is((await count.readF32())[0], json.n_valid);
    backward(aux ? add(loss, aux) : loss);
    let worst = { abs: 0, rel: 0, name: '' };
    for (const gname of json.grad_names as string[]) {
      const want = out.get(`grad.${gname}`)!.data;
      const got = await model.p(gname).grad!.readF32();
      const e = maxErr(got, want);
      if (e.rel > worst.rel) worst = { ...e, name: gname };
      assertClose(got, want, `grad ${gname}`, 1e-3, 2e-4 * Math.max(...Array.from(want, Math.abs)));
    }
    assert.ok(worst.rel < 1e-4, `worst gradient ${worst.name}: rel ${worst.rel}`);
    model.dispose();
    report.push(`${name}: logits max abs ${lg.abs.toExponential(2)} (rel ${lg.rel.toExponential(2)}), loss rel ${(Math.abs(l - json.loss) / json.loss).toExponential(2)}, worst grad ${worst.name} rel ${worst.rel.toExponential(2)}`);
  });
}
const report: string[] = [];

for (const name of ['model_moe', 'model_v3']) {
  s(`${name} frozen: no gradient buffer, the same logits and loss, nothing recorded for backward`, async () => {
    const { json, model, out } = fixture(name, { frozen: true });
    const ids = out.get('ids')!.data as Int32Array, labels = out.get('labels')!.data as Int32Array;
    const [B, T] = out.get('ids')!.shape;
    assert.throws(() => model.store.grads, /frozen/);
    assert.ok(model.parameters().every((p) => !p.requiresGrad && p.grad === null));
    const idsT = Tensor.fromArray(ids, [B, T], 'i32');
    const { logits } = await model.logits(idsT, { hostIds: ids });
    assert.is(logits.node, null, 'no tape');
    assertClose(await logits.readF32(), out.get('logits')!.data, 'logits', 1e-4, 1e-5);
    const { loss } = await model.loss(idsT, Tensor.fromArray(labels, [B, T], 'i32'), ids);
    assert.is(loss.requiresGrad, false);
    assertClose([(await loss.readF32())[0]], [json.loss], 'loss', 1e-5, 0);
    model.dispose();
  });
}

s('greedy KV-cache generation reproduces the reference tokens', async () => {
  const gen = JSON.parse(readFileSync(join(DIR, 'generation.json'), 'utf8'));
  for (const name of ['model_dense', 'model_v3']) {
    const { model } = fixture(name);
    for (const run of gen.models[name].runs as { prompt: number[]; tokens: number[] }[]) {
      const got: number[] = [];
      for await (const id of generate(model, run.prompt, { maxNewTokens: gen.n_new, temperature: 0, eosId: -1 })) got.push(id);
      assert.equal(got, run.tokens, `${name} prompt ${run.prompt}`);
    }
    model.dispose();
  }
});

// --inference_rope_scaling: YaRN's tables (pinned against torch in rope.test.ts) reach both RoPE paths (MiniMind2's
// fused qkv_rope, minimind-3's rope after the q/k norms) in the full forward and in cached decoding alike.
s('YaRN rope scaling: cached decoding equals the full forward, and the scaled frequencies change the logits', async () => {
  for (const name of ['model_dense', 'model_v3']) {
    const over = { max_position_embeddings: 32768 };
    const plain = fixture(name, { over }).model, yarn = fixture(name, { over: { ...over, inference_rope_scaling: true } }).model;
    const n = 40, V = yarn.cfg.vocab_size, ids = Int32Array.from({ length: n }, (_, i) => (i * 37 + 5) % V);
    const last = async (m: MiniMind) => (await noGradAsync(() => m.logits(Tensor.fromArray(ids, [1, n], 'i32')))).logits.read()
      .then((l) => l.slice((n - 1) * V));
    const cache = yarn.newCache(1, n);
    await noGradAsync(() => yarn.logits(Tensor.fromArray(ids.subarray(0, n - 1), [1, n - 1], 'i32'), { cache, pos: 0 }));
    const step = await (await noGradAsync(() => yarn.logits(Tensor.fromArray(ids.subarray(n - 1), [1, 1], 'i32'), { cache, pos: n - 1 }))).logits.read();
    const full = await last(yarn);
    assertClose(step, full, `${name}: decoding at position ${n - 1}`, 1e-4, 1e-5);
    assert.ok(maxErr(await last(plain), full).abs > 1e-3, `${name}: YaRN changed nothing`);
    for (const t of [...cache.k, ...cache.v]) t.dispose();
    plain.dispose(); yarn.dispose();
  }
});

s('top-1 routing: MiniMind2 ignores norm_topk_prob (it renormalises only when k > 1), minimind-3 does not', async () => {
  const base = fixture('model_moe');
  const weights = readSafetensors(join(DIR, 'model_moe.weights.safetensors')).tensors;
  const sd = new Map([...weights].filter(([k]) => k.startsWith('param.')).map(([k, t]) => [k.slice(6), t as { shape: number[]; data: Float32Array }]));
  const ids = base.out.get('ids')!.data as Int32Array;
  const [B, T] = base.out.get('ids')!.shape;
  const logitsOf = async (over: Partial<MiniMindConfig>) => {
    const m = new MiniMind({ ...base.model.cfg, num_experts_per_tok: 1, ...over }, 0);
    m.load(sd, true);
    const { logits } = await noGradAsync(() => m.logits(Tensor.fromArray(ids, [B, T], 'i32'), { hostIds: ids }));
    const out = await logits.readF32();
    m.dispose();
    return Array.from(out);
  };
  const on = await logitsOf({ norm_topk_prob: true }), off = await logitsOf({ norm_topk_prob: false });
  assert.equal(on, off);
  assert.not.equal(await logitsOf({ norm_topk_prob: true, aux_form: 'minimind3' }), off, 'minimind-3 renormalises one weight to 1');
  base.model.dispose();
});

s('the torch.save .pth of the dense fixture loads into the model with every key', () => {
  const sd = readPth(join(DIR, 'model_dense.pth'));
  const { model } = fixture('model_dense');
  const r = model.load(new Map([...sd].map(([k, t]) => [k, t as { shape: number[]; data: Float32Array }])), true);
  assert.equal(r, { missing: [], unexpected: [] });
  model.dispose();
});

s.after(() => { if (process.env.MODEL_REPORT) console.log('\n' + report.join('\n')); });
s.run();
