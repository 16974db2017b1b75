import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, copyInto } from '../runtime/tensor.js';
import { counters, hasGpuTimer, resetCounters, sync, timeGpu } from '../runtime/kernel.js';
import { gpu } from '../runtime/device.js';
import { add, scale } from '../kernels/index.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('gpu_timer');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

s('the device asks for timestamp queries exactly when the adapter has them', () => {
  assert.is(hasGpuTimer(), gpu().adapter.features.has('timestamp-query'));
});

async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (e) {
    assert.match((e as Error).message, re);
    return;
  }
  assert.unreachable(`expected an error matching ${re}`);
}

s('timeGpu: a span of passes, a copy and an async gap lies within the wall time, and the work is done', async () => {
  if (!hasGpuTimer()) {
    await rejects(() => timeGpu(() => undefined), /timestamp-query/);
    return;
  }
  const n = 1 << 16;
  const a = randn(n, 1), b = randn(n, 2);
  const ta = Tensor.fromArray(a, [n]), tb = Tensor.fromArray(b, [n]);
  let out: Tensor | undefined;
  const t0 = performance.now();
  const ns = await timeGpu(async () => {
    const y = add(ta, tb);
    out = Tensor.empty([n]);
    copyInto(out, y); // the recorder ends the pass here: the span covers several passes
    await Promise.resolve();
    out = scale(out, 2);
  }, { sleepMs: 2 });
  const wallNs = (performance.now() - t0) * 1e6;
  assert.ok(ns > 0 && ns <= wallNs, `GPU span ${ns} ns outside (0, wall ${wallNs.toFixed(0)} ns]`);
  assertClose(await out!.read(), a.map((x, i) => 2 * (x + b[i])), 'timed work');
});

s('timeGpu: the timed work goes in one submit, readback included (counters stay the work\'s own)', async () => {
  if (!hasGpuTimer()) return rejects(() => timeGpu(() => undefined), /timestamp-query/);
  const t = Tensor.fromArray(randn(1024, 3), [1024]);
  await sync();
  resetCounters();
  await timeGpu(() => { add(t, t); add(t, t); });
  assert.equal(counters(), { dispatches: 2, submits: 1 });
});

s('timeGpu: timings do not nest, and a failed one frees the timer', async () => {
  if (!hasGpuTimer()) return rejects(() => timeGpu(() => undefined), /timestamp-query/);
  await rejects(() => timeGpu(() => timeGpu(() => undefined).then(() => undefined)), /already running/);
  await rejects(() => timeGpu(() => { throw new Error('boom'); }), /boom/);
  assert.ok((await timeGpu(() => undefined)) >= 0);
});

s.run();
