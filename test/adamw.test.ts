import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, guardScope } from '../runtime/tensor.js';
import { counters, resetCounters, writeBuffer } from '../runtime/kernel.js';
import { AdamW, reference, AdamWHyper } from '../kernels/adamw.js';
import { gradNorm, reference as normRef, slotsPerDispatch } from '../kernels/grad_norm.js';
import { readSafetensors } from '../model/safetensors.js';
import { setupGpu, randn, assertClose } from './util.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const s = suite('adamw');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

// Awkward sizes (not multiples of 256 or of the 1024-element chunk); more parameters than one
// dispatch's slots, so several multi-tensor dispatches run.
const SIZES = [1, 33, 65, 1025, 7, 4097, 2];

interface Ref { p: Float64Array; m: Float64Array; v: Float64Array }

/** Run `steps` AdamW steps on GPU and in float64, new random gradients each step. */
async function run(steps: number, gradScale: number, maxNorm: number | undefined, lrs: number[]) {
  const p0 = SIZES.map((n, i) => randn(n, 10 + i));
  const params = p0.map((x) => Tensor.fromArray(x, [x.length], 'f32', true).keep());
  params.forEach((p) => { p.grad = Tensor.zeros(p.shape).keep(); p.hasGrad = true; });
  const opt = new AdamW(params, { lr: lrs[0] });
  const ref: Ref[] = p0.map((x) => ({ p: x.slice(), m: new Float64Array(x.length), v: new Float64Array(x.length) }));
  for (let t = 1; t <= steps; t++) {
    const gs = SIZES.map((n, i) => randn(n, 1000 * t + i, gradScale));
    params.forEach((p, i) => writeBuffer(p.grad!.buffer, 0, Float32Array.from(gs[i])));
    const norm = maxNorm === undefined ? undefined : gradNorm(params.map((p) => p.grad!));
    opt.step(lrs[t - 1], norm, maxNorm);
    const total = normRef(gs);
    const h: AdamWHyper = { lr: lrs[t - 1], b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, step: t,
      clipCoef: maxNorm === undefined ? 1 : Math.min(maxNorm / (total + 1e-6), 1) };
    ref.forEach((r, i) => reference(r.p, gs[i], r.m, r.v, h));
  }
  return { params, opt, ref };
}

async function check(params: Tensor[], opt: AdamW, ref: Ref[], what: string) {
  const st = opt.state();
  for (let i = 0; i < params.length; i++) {
    assertClose(await params[i].read(), ref[i].p, `${what}: p[${i}]`, 1e-5, 1e-6);
    assertClose(await st.m[i].read(), ref[i].m, `${what}: m[${i}]`, 1e-5, 1e-6);
    assertClose(await st.v[i].read(), ref[i].v, `${what}: v[${i}]`, 1e-5, 1e-7);
  }
}

s('five steps without clipping match the float64 reference (p, m, v), varying lr', async () => {
  const { params, opt, ref } = await run(5, 1, undefined, [1e-2, 8e-3, 5e-3, 3e-3, 1e-3]);
  await check(params, opt, ref, 'no clip');
  assert.is(opt.state().step, 5);
});

s('five steps with the clip factor read from the GPU norm (norm > max: scaled)', async () => {
  const { params, opt, ref } = await run(5, 2, 1.0, [1e-2, 1e-2, 1e-2, 1e-2, 1e-2]);
  await check(params, opt, ref, 'clip');
});

s('a norm below max_norm leaves the gradients as they are', async () => {
  const { params, opt, ref } = await run(3, 1e-3, 100, [1e-2, 1e-2, 1e-2]);
  await check(params, opt, ref, 'no-op clip');
});

s('clipping changes the result (the factor is really applied)', async () => {
  const a = await run(2, 2, 1.0, [1e-2, 1e-2]);
  const b = await run(2, 2, undefined, [1e-2, 1e-2]);
  const ma = await a.opt.state().m[3].read(), mb = await b.opt.state().m[3].read();
  assert.ok(Math.abs(ma[0] - mb[0]) > 1e-4 * Math.abs(mb[0]), `m with and without clip: ${ma[0]} ${mb[0]}`);
});

s('parameters without a gradient are skipped; one dispatch per S parameters', async () => {
  const x = randn(65, 3);
  const params = [Tensor.fromArray(x, [65], 'f32', true), ...SIZES.map((n, i) => Tensor.fromArray(randn(n, i), [n], 'f32', true))];
  params.slice(1).forEach((p) => { p.grad = Tensor.fromArray(randn(p.size, 9), p.shape); p.hasGrad = true; });
  const opt = new AdamW(params, { lr: 1e-2 });
  resetCounters();
  opt.step(1e-2);
  assert.is(counters().dispatches, Math.ceil(SIZES.length / slotsPerDispatch(1, 4)));
  assertClose(await params[0].read(), x, 'untouched parameter', 0, 0);
});

s('zeroGrad zeroes in place and skips the parameter until a gradient arrives; a zero one still decays', async () => {
  const x = randn(33, 4);
  const p = Tensor.fromArray(x, [33], 'f32', true);
  p.grad = Tensor.fromArray(randn(33, 5), [33]);
  p.hasGrad = true;
  const g = p.grad;
  const opt = new AdamW([p], { lr: 0.1, weightDecay: 0.5 });
  opt.zeroGrad();
  assert.is(p.grad, g);
  assert.is(p.hasGrad, false);
  assertClose(await g.read(), new Float64Array(33), 'grad', 0, 0);
  opt.step(0.1); // PyTorch's zero_grad(set_to_none=True): no .grad, no update
  assertClose(await p.read(), x, 'skipped', 0, 0);
  p.hasGrad = true; // what backward sets when it writes a (here zero) gradient
  opt.step(0.1);
  assertClose(await p.read(), x.map((v) => v * (1 - 0.1 * 0.5)), 'decayed', 1e-6, 1e-7);
});

s('invScale unscales the gradients and their norm first (loss scaling): same step as unscaled, bit for bit', async () => {
  const make = () => SIZES.map((n, i) => Tensor.fromArray(randn(n, 40 + i), [n], 'f32', true));
  const [plain, scaled] = [make(), make()];
  const gs = SIZES.map((n, i) => randn(n, 50 + i));
  plain.forEach((p, i) => { p.grad = Tensor.fromArray(gs[i], p.shape); p.hasGrad = true; });
  scaled.forEach((p, i) => { p.grad = Tensor.fromArray(gs[i].map((v) => Math.fround(v) * 1024), p.shape); p.hasGrad = true; });
  new AdamW(plain, { lr: 1e-2 }).step(1e-2, gradNorm(plain.map((p) => p.grad!)), 0.5);
  new AdamW(scaled, { lr: 1e-2 }).step(1e-2, gradNorm(scaled.map((p) => p.grad!)), 0.5, 1 / 1024);
  for (let i = 0; i < SIZES.length; i++) assertClose(await scaled[i].read(), await plain[i].read(), `p[${i}]`, 0, 0);
});

s('state and loadState: a restored optimizer continues exactly like the original', async () => {
  const a = await run(2, 1, undefined, [1e-2, 1e-2]);
  const copies = await Promise.all(a.params.map(async (p) => Tensor.fromArray(await p.read(), p.shape, 'f32', true)));
  copies.forEach((c, i) => { c.grad = a.params[i].grad; c.hasGrad = true; });
  const b = new AdamW(copies, { lr: 1e-2 });
  const st = a.opt.state();
  b.loadState({ step: st.step, m: st.m, v: st.v });
  a.opt.step(1e-2);
  b.step(1e-2);
  for (let i = 0; i < copies.length; i++) assertClose(await copies[i].read(), await a.params[i].read(), `p[${i}]`, 0, 0);
  assert.throws(() => b.loadState({ step: 1.5 }), /integer/);
  assert.throws(() => b.loadState({ step: 1, m: st.m.slice(1) }), /tensors for/);
});

s('writes nothing past any parameter or moment', async () => {
  guardScope();
  const params = SIZES.map((n, i) => Tensor.fromArray(randn(n, i), [n], 'f32', true));
  params.forEach((p) => { p.grad = Tensor.fromArray(randn(p.size, 7), p.shape); p.hasGrad = true; });
  const opt = new AdamW(params, { lr: 1e-2 });
  opt.step(1e-2, gradNorm(params.map((p) => p.grad!)), 1);
  for (const t of [...params, ...opt.state().m, ...opt.state().v]) assert.equal(await t.overwrittenGuard(), [], `guard [${t.shape}]`);
});

s('matches PyTorch 1.13 (clip_grad_norm_ + AdamW) over five steps: kernel_adamw fixture', async () => {
  const dir = join(import.meta.dirname, 'fixtures', 'ref'), file = join(dir, 'kernel_adamw.safetensors');
  assert.ok(existsSync(file), `${file} missing: run /usr/bin/python3 test/fixtures/ref/make_fixtures.py`);
  const fx = readSafetensors(file).tensors;
  const meta = JSON.parse(readFileSync(join(dir, 'kernel_adamw.json'), 'utf8'));
  const get = (name: string) => { const t = fx.get(name); if (!t) throw new Error(`${file}: no tensor ${name}`); return t; };
  const params = [0, 1, 2].map((i) => { const t = get(`param.init.p${i}`); return Tensor.fromArray(t.data, t.shape, 'f32', true); });
  params.forEach((p) => { p.grad = Tensor.zeros(p.shape); p.hasGrad = true; });
  const opt = new AdamW(params, { lr: meta.lr, betas: meta.betas, eps: meta.eps, weightDecay: meta.weight_decay });
  const tol = (want: ArrayLike<number>) => 1e-6 * Math.max(...Array.from(want, Math.abs));
  for (let t = 1; t <= meta.steps; t++) {
    params.forEach((p, i) => writeBuffer(p.grad!.buffer, 0, get(`grad.step${t}.p${i}`).data as Float32Array));
    const norm = gradNorm(params.map((p) => p.grad!));
    assertClose(await norm.read(), [meta.total_norm[t - 1]], `total_norm step ${t}`, 1e-6, 0);
    opt.step(meta.lr, norm, meta.max_norm);
    for (const [i, p] of params.entries()) {
      const want = get(`param.step${t}.p${i}`).data;
      assertClose(await p.read(), want, `step ${t} p${i}`, 1e-6, tol(want));
    }
  }
  const st = opt.state();
  for (let i = 0; i < 3; i++) {
    const m = get(`exp_avg.p${i}`).data, v = get(`exp_avg_sq.p${i}`).data;
    assertClose(await st.m[i].read(), m, `exp_avg p${i}`, 1e-5, tol(m));
    assertClose(await st.v[i].read(), v, `exp_avg_sq p${i}`, 1e-5, tol(v));
  }
});

s.run();
