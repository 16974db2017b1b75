// dropUnread (runtime/tensor.ts): a stretch of a forward frees what no backward reads when it ends, what a
// backward reads once that backward has run; gradients are those of the same graph without it; a freed
// tensor cannot be bound; a failed stretch frees all it made. The model frees its layers' intermediates.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, dropUnread, noGrad, noGradAsync } from '../runtime/tensor.js';
import { launch } from '../runtime/kernel.js';
import { poolStats, sizeClass } from '../runtime/buffer.js';
import { backward } from '../runtime/autograd.js';
import { kernels as elementwiseKernels } from '../kernels/elementwise.js';
import { add, mean, scale, silu } from '../kernels/index.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { setupGpu, randn } from './util.js';

const s = suite('drop_unread');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

const N = 1025;
const inUse = () => poolStats().inUseBytes;

/** y = silu(2x) + x: scale's output is read by silu's backward, silu's output by no backward (add's reads nothing). */
function chain(x: Tensor): { a: Tensor; b: Tensor; y: Tensor } {
  const a = scale(x, 2), b = silu(a);
  return { a, b, y: add(b, x) };
}

s('what no backward reads is freed at the stretch\'s end, what one reads after it ran; gradients unchanged', async () => {
  const data = randn(N, 1);
  const plain = Tensor.fromArray(data, [N], 'f32', true);
  backward(mean(chain(plain).y));
  const want = await plain.grad!.readF32();

  const x = Tensor.fromArray(data, [N], 'f32', true);
  let kept!: { a: Tensor; b: Tensor; y: Tensor };
  const before = inUse();
  const y = await dropUnread(async () => { kept = chain(x); return kept.y; });
  assert.is(y, kept.y);
  assert.ok(kept.b.disposed, 'silu\'s output, which no backward reads, is freed');
  assert.not.ok(kept.a.disposed, 'scale\'s output stays for silu\'s backward');
  assert.not.ok(y.disposed, 'the result stays');
  assert.is(inUse() - before, 2 * kept.a.buffer.size, 'a and y are held, b is not');
  backward(mean(y));
  assert.ok(kept.a.disposed, 'freed once silu\'s backward has run');
  assert.equal(await x.grad!.readF32(), want, 'the same gradient, bit for bit');
});

s('a freed tensor cannot be bound by any kernel', async () => {
  const x = Tensor.fromArray(randn(N, 2), [N], 'f32', true);
  let b!: Tensor;
  await dropUnread(async () => { const c = chain(x); b = c.b; return c.y; });
  const out = Tensor.empty([N]);
  assert.throws(() => launch(elementwiseKernels.silu, { params: { n: N }, buffers: [b.binding(), out.binding()], workgroups: 17 }), /used after dispose/);
});

s('without a recorded graph everything but the result is freed; a failed stretch frees all it made', async () => {
  const x = Tensor.fromArray(randn(N, 3), [N], 'f32', true);
  const before = inUse();
  const y = await noGradAsync(() => dropUnread(async () => chain(x).y));
  assert.is(inUse() - before, y.buffer.size);
  const mid = inUse();
  const err = await dropUnread(async () => { chain(x); throw new Error('boom'); }).catch((e: Error) => e);
  assert.match(String(err), /boom/);
  assert.is(inUse(), mid);
});

s('what a backward that never runs would read is freed by the enclosing scope', async () => {
  const x = Tensor.fromArray(randn(N, 4), [N], 'f32', true);
  const before = inUse();
  beginScope();
  let a!: Tensor;
  await dropUnread(async () => { const c = chain(x); a = c.a; return c.y; });
  assert.not.ok(a.disposed);
  endScope();
  assert.ok(a.disposed);
  assert.is(inUse(), before);
});

s('the model holds, after a forward, what its backward reads: no grad, the logits alone', async () => {
  const cfg = preset('tiny');
  const model = new MiniMind(cfg, 1);
  const B = 2, T = 33;
  const ids = Tensor.fromArray(Int32Array.from({ length: B * T }, (_, i) => (i * 37) % cfg.vocab_size), [B, T], 'i32');
  (await noGradAsync(() => model.logits(ids))).logits.dispose(); // caches (RoPE's table) made once
  const before = inUse();
  const { logits } = await noGradAsync(() => model.logits(ids));
  const noGradHeld = inUse() - before;
  assert.is(noGradHeld, logits.buffer.size, `a no-grad forward holds ${noGradHeld} bytes, its logits ${logits.buffer.size}`);
  logits.dispose();
  const start = inUse();
  const f = await model.logits(ids);
  const held = inUse() - start;
  // Per layer its backward reads q and the attention output, k and v, the residual after attention, the
  // MLP's normed input, the residual after the MLP and the next normed input, two 1/rms, attention's
  // log-sum-exp, gate|up and their product; then the embedding's output, the first normed input and its
  // 1/rms, and the logits. Not qkv before the split, attention's projection or the MLP's output.
  const { hidden_size: H, intermediate_size: I, num_hidden_layers: L, num_attention_heads: nh, head_dim: hd } = cfg;
  const rows = B * T, kv = cfg.num_key_value_heads * hd;
  const layer = [rows * nh * hd, rows * nh * hd, rows * kv, rows * kv, ...Array(4).fill(rows * H), rows, rows, B * nh * T, rows * 2 * I, rows * I];
  const floats = [...Array(L).fill(layer).flat(), rows * H, rows * H, rows, rows * cfg.vocab_size];
  assert.is(held, floats.reduce((acc, n) => acc + sizeClass(4 * n), 0), 'bytes held after the forward');
  backward(mean(f.logits));
  noGrad(() => model.dispose());
});

s.run();
