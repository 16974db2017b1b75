// LoRA (model/lora.ts, model/lora_file.ts) against our PyTorch transcription of MiniMind's apply_lora
// (test/fixtures/ref/make_lora.py): the selection rule, the adapted forward, the adapters' gradients and 3 AdamW
// steps on the tiny dense, MoE (every expert projection square: adapted too) and minimind-3 models; the frozen
// base (no gradient buffer, bit-identical after training); adapter files (MiniMind's keys and dtype, torch's
// own files read, rank errors); and merging.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Tensor, beginScope, endScope, noGradAsync } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { readBuffer } from '../runtime/kernel.js';
import { add } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { MiniMind } from '../model/minimind.js';
import { minimind2, preset, type MiniMindConfig } from '../model/config.js';
import { readSafetensors } from '../model/safetensors.js';
import { readPth } from '../model/pth.js';
import { LoRA, loraTargets } from '../model/lora.js';
import { adapterFile, evalAdapterFile, loadAdapters, mergedStateDict, readAdapters, writeAdapters } from '../model/lora_file.js';
import { lrAt } from '../train/schedule.js';
import { roundF16 } from '../kernels/matmul_precision.js';
import { setupGpu, assertClose } from './util.js';

const DIR = join(import.meta.dirname, 'fixtures', 'ref');
const s = suite('lora');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const moduleNames = (c: MiniMindConfig) => loraTargets(c).map((m) => m.name);
const perLayer = (L: number, mods: string[]) => Array.from({ length: L }, (_, i) => mods.map((m) => `model.layers.${i}.${m}`)).flat();

s('the rule on every shipped preset: q_proj and o_proj of each layer; rank 8 (MiniMind2) or 16 (minimind-3); sizes of spec §11', () => {
  for (const name of ['minimind2-small', 'minimind2', 'minimind2-moe', 'minimind3', 'minimind3-moe']) {
    const c = preset(name);
    assert.equal(moduleNames(c), perLayer(c.num_hidden_layers, ['self_attn.q_proj', 'self_attn.o_proj']), name);
  }
  const sizes = { 'minimind3': [16, 393_216], 'minimind2-small': [8, 131_072], 'minimind2': [8, 393_216], 'minimind2-moe': [8, 163_840] };
  for (const [name, [rank, size]] of Object.entries(sizes)) {
    const lora = new LoRA(preset(name));
    assert.is(lora.rank, rank, name);
    assert.is([...lora.store.params.values()].reduce((a, t) => a + t.size, 0), size, name);
    lora.dispose();
  }
});

s('the rule, not a list: nkv = nh adds k/v, intermediate = H the MLP, a square MoE the experts (not MiniMind2\'s router)', () => {
  const c = minimind2({ hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 4, vocab_size: 100 });
  assert.equal(moduleNames(c), perLayer(1, ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj']));
  const mlp = minimind2({ hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, intermediate_size: 64, vocab_size: 100 });
  assert.equal(moduleNames(mlp), perLayer(1, ['self_attn.q_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.down_proj', 'mlp.up_proj']));
  const moe = { ...mlp, use_moe: true, n_routed_experts: 2, n_shared_experts: 1 };
  assert.equal(moduleNames(moe), perLayer(1, ['self_attn.q_proj', 'self_attn.o_proj',
    ...['experts.0', 'experts.1', 'shared_experts.0'].flatMap((e) => ['gate_proj', 'down_proj', 'up_proj'].map((p) => `mlp.${e}.${p}`))]));
  const head = minimind2({ hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 4, vocab_size: 64 });
  assert.equal(moduleNames(head).at(-1), 'lm_head', 'vocab = H: the tied head is a square Linear too');
  assert.throws(() => new LoRA(minimind2({ hidden_size: 8, num_attention_heads: 2, num_key_value_heads: 1 })), /rank 8 equals/);
});

// ---- the PyTorch fixtures -------------------------------------------------------------------

function fixture(kind: string) {
  const json = JSON.parse(readFileSync(join(DIR, `lora_${kind}.json`), 'utf8'));
  const out = readSafetensors(join(DIR, `lora_${kind}.safetensors`)).tensors;
  const batch = readSafetensors(join(DIR, `model_${kind}.safetensors`)).tensors;
  const cfg: MiniMindConfig = { ...minimind2(), ...json.config };
  const model = new MiniMind(cfg, 0, { frozen: true });
  const weights = readSafetensors(join(DIR, json.base)).tensors;
  model.load(new Map([...weights].map(([k, t]) => [k.slice('param.'.length), t as { shape: number[]; data: Float32Array }])), true);
  const lora = new LoRA(cfg);
  const given = (prefix: string) => new Map([...out].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t as { shape: number[]; dtype: 'float32'; data: Float32Array; raw: Uint8Array }]));
  model.lora = lora;
  const ids = batch.get('ids')!.data as Int32Array, labels = batch.get('labels')!.data as Int32Array;
  const [B, T] = batch.get('ids')!.shape;
  const loss = async () => {
    const r = await model.loss(Tensor.fromArray(ids, [B, T], 'i32'), Tensor.fromArray(labels, [B, T], 'i32'), ids);
    return { ...r, total: r.aux ? add(r.loss, r.aux) : r.loss };
  };
  return { json, out, cfg, model, lora, given, ids, B, T, loss };
}

const maxAbs = (a: ArrayLike<number>) => Array.from(a, Math.abs).reduce((x, y) => Math.max(x, y), 0);

for (const kind of ['dense', 'moe', 'v3']) {
  s(`${kind}: the adapted forward (logits, loss, aux) and every adapter gradient match PyTorch; the base gets none`, async () => {
    const f = fixture(kind);
    assert.equal(f.lora.targets.map((m) => m.name), f.json.modules);
    assert.equal([...f.lora.store.params.keys()], f.json.param_names);
    assert.is(f.lora.rank, f.json.rank);
    loadAdapters(f.lora, f.given('state.'), 'fixture');
    const { logits } = await noGradAsync(() => f.model.logits(Tensor.fromArray(f.ids, [f.B, f.T], 'i32'), { hostIds: f.ids }));
    assertClose(await logits.readF32(), f.out.get('logits')!.data, 'logits', 1e-4, 1e-5);
    const r = await f.loss();
    assertClose([(await r.loss.readF32())[0]], [f.json.state.loss], 'loss', 1e-5, 0);
    if (r.aux) assertClose([(await r.aux.readF32())[0]], [f.json.state.aux_loss], 'aux', 1e-4, 1e-9);
    backward(r.total);
    for (const [name, t] of f.lora.entries()) {
      const want = f.out.get(`grad.${name}`)!.data;
      assertClose(await t.grad!.readF32(), want, `grad ${name}`, 1e-3, 1e-4 * maxAbs(want));
    }
    assert.throws(() => f.model.store.grads, /frozen/);
    assert.ok(f.model.parameters().every((p) => p.grad === null));
    f.model.dispose(); f.lora.dispose();
  });

  s(`${kind}: 3 AdamW steps from A given, B = 0 (lr schedule, clip, weight decay) match PyTorch; the base stays bit-identical`, async () => {
    const f = fixture(kind);
    const tr = f.json.train;
    const start = f.given('state.');
    for (const [k, t] of start) if (k.endsWith('.B.weight')) start.set(k, { ...t, data: new Float32Array(t.data.length) });
    loadAdapters(f.lora, start, 'fixture');
    const base = new Uint8Array(await readBuffer(f.model.store.data, 0, f.model.store.bytes));
    const opt = new AdamW(f.lora.store, { lr: tr.base_lr });
    for (const want of tr.log) {
      const lr = lrAt(want.step, tr.steps, tr.base_lr);
      const r = await f.loss();
      backward(r.total);
      const norm = gradNorm(f.lora.store.chunks(f.lora.store.grads));
      assertClose([(await r.total.readF32())[0]], [want.loss], `loss step ${want.step}`, 1e-5, 0);
      assertClose([(await norm.readF32())[0]], [want.grad_norm], `grad norm step ${want.step}`, 1e-4, 0);
      opt.step(lr, norm, tr.grad_clip);
      opt.zeroGrad();
    }
    // Every element moves by about Σ lr (Adam's normalised steps); ours must land within 0.2% of that from
    // PyTorch's (measured: 0.11% at worst, a float32 gradient's round-off through Adam's normalisation), and
    // 99% of the elements must have moved 10× farther than that, so the check tells trained from untrained.
    const tol = 2e-3 * tr.log.reduce((a: number, l: { lr: number }) => a + l.lr, 0);
    for (const [name, t] of f.lora.entries()) {
      const want = f.out.get(`after.${name}`)!.data, from = start.get(name)!.data;
      assertClose(await t.readF32(), want, `after ${name}`, 0, tol);
      const far = want.filter((v, i) => Math.abs(v - from[i]) > 10 * tol).length;
      assert.ok(far >= 0.99 * want.length, `${name}: only ${far} of ${want.length} elements moved 10× the tolerance`);
    }
    const after = new Uint8Array(await readBuffer(f.model.store.data, 0, f.model.store.bytes));
    assert.ok(Buffer.from(after).equals(Buffer.from(base)), 'base weights bit-identical');
    f.model.dispose(); f.lora.dispose();
  });
}

// ---- adapter files ----------------------------------------------------------------------------

s('MiniMind\'s own save_lora files (torch.save, HEAD float16 and MiniMind2 float32) load into our adapters', async () => {
  for (const kind of ['dense', 'moe']) {
    const f = fixture(kind);
    for (const gen of ['head', 'm2']) {
      const file = join(DIR, `lora_${kind}_adapter_${gen}.pth`);
      loadAdapters(f.lora, readAdapters(file), file);
      for (const [name, t] of f.lora.entries()) {
        const want = f.out.get(`state.${name}`)!.data;
        assertClose(await t.readF32(), gen === 'm2' ? want : want.map(roundF16), `${gen} ${name}`, 0, 0);
      }
    }
    f.model.dispose(); f.lora.dispose();
  }
});

s('our adapter file: only the adapter keys, MiniMind\'s order and dtype per generation; read back exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lora-'));
  for (const kind of ['dense', 'v3']) {
    const f = fixture(kind);
    loadAdapters(f.lora, f.given('state.'), 'fixture');
    const path = adapterFile(dir, 'lora_identity', f.cfg);
    await writeAdapters(path, f.lora);
    const torch = readPth(join(DIR, `lora_${kind}_adapter_${f.json.generation === 'minimind3' ? 'head' : 'm2'}.pth`));
    const ours = readPth(path);
    assert.equal([...ours.keys()], [...torch.keys()], 'keys and order');
    for (const [k, t] of torch) {
      assert.is(ours.get(k)!.dtype, t.dtype, `${k} dtype`);
      assert.ok(Buffer.from(ours.get(k)!.raw).equals(Buffer.from(t.raw)), `${k}: the bytes torch wrote`);
    }
    const back = new LoRA(f.cfg, { seed: 5 });
    loadAdapters(back, readAdapters(path), path);
    for (const [[k, a], [, b]] of f.lora.entries().map((e, i) => [e, back.entries()[i]])) {
      const want = await a.readF32();
      assertClose(await b.readF32(), f.json.generation === 'minimind3' ? want.map(roundF16) : want, k, 0, 0);
    }
    f.model.dispose(); f.lora.dispose(); back.dispose();
  }
});

s('file names: train_lora.py (minimind-3 adds _moe, MiniMind2 does not) and eval_llm.py (MiniMind2 reads lora/)', () => {
  const moe3 = preset('minimind3-moe'), moe2 = preset('minimind2-moe'), v2 = preset('minimind2-small');
  assert.is(adapterFile('../out', 'lora_medical', moe3), join('../out', 'lora_medical_768_moe.pth'));
  assert.is(adapterFile('../out/lora', 'lora_identity', moe2), join('../out/lora', 'lora_identity_640.pth'));
  assert.is(evalAdapterFile('out', 'lora_medical', moe3), join('out', 'lora_medical_768.pth'));
  assert.is(evalAdapterFile('out', 'lora_identity', v2), join('out', 'lora', 'lora_identity_512.pth'));
  assert.is(evalAdapterFile('out', 'x/my_adapter.pth', v2), 'x/my_adapter.pth');
});

s('a file of another rank, a missing or an unknown key: an error naming the file and the key', () => {
  const config = (kind: string): MiniMindConfig => ({ ...minimind2(), ...JSON.parse(readFileSync(join(DIR, `lora_${kind}.json`), 'utf8')).config });
  const v3 = new LoRA(config('v3')); // the dense fixture's shape, minimind-3: rank 16
  const file = join(DIR, 'lora_dense_adapter_m2.pth'); // MiniMind2's r8 adapters
  assert.throws(() => loadAdapters(v3, readAdapters(file), file),
    /lora_dense_adapter_m2\.pth: model\.layers\.0\.self_attn\.q_proj\.lora\.A\.weight is \[8,64\] in the file, \[16,64\] in the model: an adapter of rank 8, this model's LoRA has rank 16/);
  const dense = new LoRA(config('dense'));
  const sd = readAdapters(file);
  const missing = new Map(sd);
  missing.delete('model.layers.1.self_attn.o_proj.lora.B.weight');
  assert.throws(() => loadAdapters(dense, missing, 'a.pth'), /a\.pth: missing adapter keys model\.layers\.1\.self_attn\.o_proj\.lora\.B\.weight/);
  const extra = new Map(sd).set('model.layers.0.self_attn.k_proj.lora.A.weight', sd.get('model.layers.0.self_attn.q_proj.lora.A.weight')!);
  assert.throws(() => loadAdapters(dense, extra, 'b.pth'), /b\.pth: keys no adapter of this model takes: model\.layers\.0\.self_attn\.k_proj\.lora\.A\.weight/);
  v3.dispose(); dense.dispose();
});

s('merge: fp16(W) + fp16(B·A) into a plain state dict; its logits equal the adapted forward within float16 rounding', async () => {
  for (const kind of ['dense', 'moe']) {
    const f = fixture(kind);
    loadAdapters(f.lora, f.given('state.'), 'fixture');
    const merged = await mergedStateDict(f.model, f.lora);
    assert.equal(merged.map((t) => t.name), f.model.stateDict().map(([k]) => k), 'the base keys (both tied), no lora key');
    assert.ok(merged.every((t) => t.data.every((v) => v === roundF16(v))), 'float16 values');
    const plain = new MiniMind(f.cfg, 0, { frozen: true });
    plain.load(new Map(merged.map((t) => [t.name, t])), true);
    const ids = Tensor.fromArray(f.ids, [f.B, f.T], 'i32');
    const logitsOf = async (m: MiniMind) => (await noGradAsync(() => m.logits(ids, { hostIds: f.ids }))).logits.readF32();
    const adapted = await logitsOf(f.model), mergedLogits = await logitsOf(plain);
    f.model.lora = null;
    const base = await logitsOf(f.model);
    // Weights rounded to float16 (half an ulp: 2^-12 relative) move the logits by 0.2% of the largest at most
    // (measured: 0.08%); the adapters move them over 10× as far (measured: 100×), so the merge is not the base.
    const err = (x: Float32Array) => maxAbs(x.map((v, i) => v - adapted[i]));
    assert.ok(err(mergedLogits) < 2e-3 * maxAbs(adapted), `merged vs adapted: ${err(mergedLogits)}`);
    assert.ok(err(base) > 10 * err(mergedLogits), `base ${err(base)} vs merged ${err(mergedLogits)} from the adapted logits`);
    f.model.dispose(); f.lora.dispose(); plain.dispose();
  }
});

s.run();
