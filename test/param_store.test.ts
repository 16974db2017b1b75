import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { counters, readBuffer, resetCounters, writeBuffer } from '../runtime/kernel.js';
import { poolStats } from '../runtime/buffer.js';
import { ParamStore } from '../runtime/param_store.js';
import { backward } from '../runtime/autograd.js';
import { matmul, sum } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('param_store');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

// Awkward sizes: most are not multiples of the 64-float alignment, so padding sits between views.
const LAYOUT: [string, number[]][] = [['a', [33]], ['b', [65, 3]], ['c', [1]], ['d', [1025]], ['e', [7, 9]]];
const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

function filled(o: { bindingBytes?: number } = {}): { store: ParamStore; data: Float64Array[] } {
  const store = new ParamStore(LAYOUT, o);
  const data = LAYOUT.map(([, shape], i) => randn(size(shape), 20 + i));
  [...store.params.values()].forEach((p, i) => writeBuffer(p.buffer, p.offset, Float32Array.from(data[i])));
  return { store, data };
}

/** Gives every parameter `grads[i]` as its gradient, as backward would (hasGrad set). */
function setGrads(params: Tensor[], grads: Float64Array[], live = params.map(() => true)): void {
  params.forEach((p, i) => {
    writeBuffer(p.grad!.buffer, p.grad!.offset, Float32Array.from(live[i] ? grads[i] : new Float64Array(p.size)));
    p.hasGrad = live[i];
  });
}

s('views sit at 512-byte offsets in layout order; gradients are zeroed views at the same offsets', async () => {
  const { store, data } = filled();
  let expect = 0;
  for (const [i, [name, shape]] of LAYOUT.entries()) {
    const p = store.get(name);
    assert.is(p.offset, expect, `${name} offset`);
    assert.equal([...p.shape], shape);
    assert.is(p.grad!.offset, p.offset);
    assert.is(p.grad!.buffer, store.grads);
    assertClose(await p.read(), data[i], name, 0, 0);
    assertClose(await p.grad!.read(), new Float64Array(p.size), `${name} grad`, 0, 0);
    expect += Math.ceil((size(shape) * 4) / 512) * 512;
  }
  assert.is(store.bytes, expect);
  assert.throws(() => new ParamStore([['x', [2]], ['x', [3]]]), /given twice/);
  assert.throws(() => store.get('nope'), /no parameter nope/);
});

s('a matmul weight in the store gets its gradient accumulated into its view', async () => {
  const store = new ParamStore([['pad', [5]], ['w', [3, 4]], ['after', [2]]]);
  const w = store.get('w'), wData = randn(12, 1), xData = randn(8, 2);
  writeBuffer(w.buffer, w.offset, Float32Array.from(wData));
  const x = Tensor.fromArray(xData, [2, 4]);
  backward(sum(matmul(x, w)));
  // d/dW Σ(x·Wᵀ) = Σ_rows x, the same for every output row.
  const col = [0, 1, 2, 3].map((j) => xData[j] + xData[4 + j]);
  assertClose(await w.grad!.read(), [...col, ...col, ...col], 'dW', 1e-6, 1e-6);
  assert.ok(w.hasGrad);
  assertClose(await store.get('pad').grad!.read(), new Float64Array(5), 'neighbour before', 0, 0);
  assertClose(await store.get('after').grad!.read(), new Float64Array(2), 'neighbour after', 0, 0);
});

s('packed parameters form one spanned weight; its gradient lands in (and makes live) each member', async () => {
  const store = new ParamStore([['pad', [5]], ['q', [3, 4]], ['k', [2, 4], true], ['v', [1, 4], true], ['after', [2]]]);
  const [q, k, v] = ['q', 'k', 'v'].map((n) => store.get(n));
  assert.is(q.offset % 512, 0);
  assert.is(k.offset, q.offset + 48);
  assert.is(v.offset, k.offset + 32);
  const w = randn(24, 3);
  writeBuffer(store.data, q.offset, Float32Array.from(w));
  const span = store.span(['q', 'k', 'v']);
  assert.is(store.span(['q', 'k', 'v']), span, 'cached');
  assert.equal([...span.shape], [6, 4]);
  const xData = randn(4, 4);
  backward(sum(matmul(Tensor.fromArray(xData, [1, 4]), span)));
  assert.equal(store.liveRanges(), [[q.offset, store.get('after').offset]]);
  for (const [t, rows] of [[q, 3], [k, 2], [v, 1]] as const) {
    assertClose(await t.grad!.read(), Array.from({ length: rows * 4 }, (_, i) => xData[i % 4]), `d${t.shape}`, 1e-6, 0);
  }
  assert.throws(() => store.span(['q', 'v']), /not stored right after q/);
  assert.throws(() => store.span(['pad', 'q']), /not \[·, 5\]|is \[5\]/);
});

s('AdamW over a store: one dispatch, bit-identical to AdamW over separate tensors', async () => {
  const { store, data } = filled();
  const list = data.map((d, i) => Tensor.fromArray(d, LAYOUT[i][1], 'f32', true));
  list.forEach((p) => { p.grad = Tensor.zeros(p.shape); });
  const flat = new AdamW(store, { lr: 1e-2 }), sep = new AdamW(list, { lr: 1e-2 });
  const params = [...store.params.values()];
  for (let t = 1; t <= 3; t++) {
    const grads = LAYOUT.map(([, shape], i) => randn(size(shape), 100 * t + i));
    setGrads(params, grads);
    setGrads(list, grads);
    const nFlat = gradNorm(store.chunks(store.grads)), nSep = gradNorm(list.map((p) => p.grad!));
    assertClose(await nFlat.read(), await nSep.read(), `norm step ${t}`, 1e-6, 0);
    resetCounters();
    flat.step(1e-2, nSep, 1);
    assert.is(counters().dispatches, 1, 'one AdamW dispatch');
    sep.step(1e-2, nSep, 1);
    for (const [i, p] of params.entries()) assertClose(await p.read(), await list[i].read(), `step ${t} ${LAYOUT[i][0]}`, 0, 0);
  }
  const m = flat.state().m;
  for (const [i, p] of params.entries()) assertClose(await m[i].read(), await sep.state().m[i].read(), `m ${p.offset}`, 0, 0);
  // Padding between views stays zero in the parameters.
  const raw = new Float32Array(await readBuffer(store.data, 0, store.bytes));
  for (const p of params) for (let k = p.offset / 4 + p.size; k < Math.ceil((p.offset / 4 + p.size) / 64) * 64; k++) assert.is(raw[k], 0);
});

s('parameters without a gradient are skipped; runs split at them and at the binding limit', async () => {
  const { store, data } = filled({ bindingBytes: 1024 }); // 'd' (4100 bytes) spans five chunks
  const params = [...store.params.values()];
  const live = [true, true, false, true, true];
  setGrads(params, LAYOUT.map(([, shape], i) => randn(size(shape), 7 + i)), live);
  assert.equal(store.liveRanges(), [[0, params[2].offset], [params[3].offset, store.bytes]]);
  const opt = new AdamW(store, { lr: 0.1 });
  resetCounters();
  opt.step(0.1);
  assert.ok(counters().dispatches > 2, `several dispatches (${counters().dispatches})`);
  assertClose(await params[2].read(), data[2], 'skipped parameter', 0, 0);
  for (const i of [0, 1, 3, 4]) assert.not.equal(Array.from(await params[i].read()), Array.from(Float32Array.from(data[i])), `${i} moved`);
  opt.zeroGrad();
  assert.equal(store.liveRanges(), []);
  assertClose(await params[0].grad!.read(), new Float64Array(params[0].size), 'zeroed', 0, 0);
});

s('a frozen store holds no gradient buffer; its views and spans need no gradient and get none', async () => {
  const before = poolStats().inUseBytes;
  const store = new ParamStore([['q', [3, 4]], ['k', [2, 4], true], ['x', [1025]]], { frozen: true });
  assert.is(poolStats().inUseBytes - before, store.data.size, 'only the data buffer');
  assert.ok(store.frozen);
  assert.throws(() => store.grads, /frozen store has no gradients/);
  assert.throws(() => new AdamW(store, { lr: 1e-3 }), /frozen/);
  const span = store.span(['q', 'k']);
  for (const t of [...store.params.values(), span]) { assert.is(t.requiresGrad, false); assert.is(t.grad, null); }
  writeBuffer(store.data, 0, Float32Array.from(randn(20, 9)));
  const x = Tensor.fromArray(randn(8, 10), [2, 4], 'f32', true);
  backward(sum(matmul(x, span)));
  assert.is(span.grad, null);
  assert.equal(store.liveRanges(), []);
  // dX = Σ over output rows of W: still computed for the input that asked.
  const w = await span.read(), col = [0, 1, 2, 3].map((j) => [0, 1, 2, 3, 4].reduce((a, r) => a + w[r * 4 + j], 0));
  assertClose(await x.grad!.read(), [...col, ...col], 'dX', 1e-6, 1e-6);
  store.zeroGrad();
  store.dispose();
});

s.run();
