// dpo_loss (kernels/dpo_loss.ts): ln 2 when the policy is the reference, the margin's sign flips when
// chosen and rejected swap, loss / margin / accuracy / gradient against float64 at awkward pair counts,
// the gradient against central finite differences, no overflow at large |β·z|, and logprob → dpo_loss
// → logits end to end.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, noGrad } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { scale } from '../kernels/index.js';
import { dpoLoss, reference } from '../kernels/dpo_loss.js';
import { logprob, reference as logprobRef } from '../kernels/logprob.js';
import { setupGpu, randn, rng, assertClose, numericGrad } from './util.js';

const s = suite('dpo_loss');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

/** Log-probs [2B] like a sum over ~20 tokens: about −40 ± 10. */
const logps = (B: number, seed: number) => randn(2 * B, seed, 10).map((x) => x - 40);
/** Swap the chosen half and the rejected half. */
const swap = (a: Float64Array) => Float64Array.from([...a.subarray(a.length / 2), ...a.subarray(0, a.length / 2)]);

async function run(policy: Float64Array, ref: Float64Array, beta: number, g = 1) {
  const tp = Tensor.fromArray(policy, [policy.length], 'f32', true);
  const { loss, margin: m, accuracy: a } = dpoLoss(tp, Tensor.fromArray(ref, [ref.length]), beta);
  const [l, margin, accuracy] = [(await loss.read())[0], (await m.read())[0], (await a.read())[0]];
  backward(scale(loss, g));
  return { loss: l, margin, accuracy, dpolicy: await tp.grad!.read() };
}

s('policy = reference: loss ln 2, margin 0, accuracy 0 (MiniMind\'s step-1 check value), for both betas', async () => {
  for (const beta of [0.1, 0.15]) {
    const p = logps(4, 3);
    const got = await run(p, p, beta);
    assertClose([got.loss], [Math.LN2], `beta ${beta}: loss`, 1e-7, 0);
    assert.equal([got.margin, got.accuracy], [0, 0]);
    assertClose(got.dpolicy, reference(p, p, beta).dpolicy, 'dpolicy = ∓β/(2B)', 1e-6, 0);
  }
});

s('swapping chosen and rejected flips the margin\'s sign and the accuracy to 1 − accuracy', async () => {
  const p = logps(5, 4), r = logps(5, 5);
  const a = await run(p, r, 0.1), b = await run(swap(p), swap(r), 0.1);
  assert.ok(Math.abs(a.margin) > 1e-3, `margin ${a.margin} is not ~0`);
  assertClose([b.margin], [-a.margin], 'margin', 1e-6, 1e-7);
  assertClose([b.accuracy], [1 - a.accuracy], 'accuracy', 0, 1e-7);
  assert.ok(a.accuracy > 0 && a.accuracy < 1, `accuracy ${a.accuracy}: both signs among the pairs`);
});

for (const B of [1, 4, 33, 65]) {
  s(`loss, margin, accuracy and the policy gradient match float64 at B = ${B} pairs, upstream 0.37`, async () => {
    const p = logps(B, B), r = logps(B, B + 100);
    const want = reference(p, r, 0.15), got = await run(p, r, 0.15, 0.37);
    assertClose([got.loss, got.margin, got.accuracy], [want.loss, want.margin, want.accuracy], 'loss, margin, accuracy', 2e-5, 1e-6);
    assertClose(got.dpolicy, want.dpolicy.map((d) => 0.37 * d), 'dpolicy', 1e-5, 1e-9);
  });
}

s('the reference gradient equals central finite differences of the float64 loss', () => {
  const p = logps(6, 8), r = logps(6, 9);
  for (const beta of [0.1, 0.15]) {
    const fd = numericGrad((x) => reference(x, r, beta).loss, Float64Array.from(p));
    assertClose(reference(p, r, beta).dpolicy, fd, `beta ${beta}`, 1e-6, 1e-10);
  }
});

s('large |β·z| neither overflows nor loses the small side: softplus and sigmoid stay finite and accurate', async () => {
  // β·z = 300, −45 and 0.45: e^{β·z} past 88 overflows float32 if computed naively.
  const p = Float64Array.from([1000, -150, 3, -1000, 150, 0]), r = new Float64Array(6);
  const want = reference(p, r, 0.15), got = await run(p, r, 0.15);
  assertClose([got.loss], [want.loss], 'loss', 1e-6, 0);
  assertClose(got.dpolicy, want.dpolicy, 'dpolicy', 1e-5, 1e-12);
  assert.ok(got.dpolicy.every(Number.isFinite));
});

s('no gradient is recorded when the policy needs none (evaluation), and the reference never gets one', async () => {
  const p = logps(2, 10);
  const tp = Tensor.fromArray(p, [4], 'f32', true), tr = Tensor.fromArray(p, [4], 'f32', true);
  assert.is(noGrad(() => dpoLoss(tp, tr, 0.1)).loss.node, null);
  backward(dpoLoss(tp, tr, 0.1).loss);
  assert.ok(tp.grad !== null && tr.grad === null);
});

s('end to end: logits → logprob (policy, and reference without grad) → dpo_loss → dlogits match float64', async () => {
  const [B, T, V] = [2, 6, 33], N = 2 * B, beta = 0.1;
  const r = rng(11);
  const labels = Int32Array.from({ length: N * T }, (_, i) => (i % T < 2 ? -100 : Math.floor(r() * V)));
  const pol = randn(N * T * V, 12, 3), refl = randn(N * T * V, 13, 3);
  for (const reduce of ['sum', 'mean'] as const) {
    const tl = Tensor.fromArray(pol, [B * 2, T, V], 'f32', true), lab = Tensor.fromArray(labels, [N, T], 'i32');
    const sRef = noGrad(() => logprob(Tensor.fromArray(refl, [N, T, V]), lab, reduce));
    const { loss } = dpoLoss(logprob(tl, lab, reduce), sRef, beta);
    const f = (x: Float64Array) => reference(logprobRef(x, labels, N, T, V, reduce).s, logprobRef(refl, labels, N, T, V, reduce).s, beta);
    const want = f(pol);
    assertClose([(await loss.read())[0]], [want.loss], `${reduce}: loss`, 1e-5, 1e-6);
    backward(loss);
    assertClose(await tl.grad!.read(), logprobRef(pol, labels, N, T, V, reduce, want.dpolicy).dlogits, `${reduce}: dlogits`, 1e-4, 1e-8);
  }
});

s.run();
