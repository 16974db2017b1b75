import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { WaitPacer } from '../runtime/wait_pacer.js';
import { Tensor } from '../runtime/tensor.js';
import { readScalars } from '../runtime/scalars.js';
import { setupGpu } from './util.js';

const s = suite('wait_pacer');
s.before(setupGpu);

s('proposes nothing before a wait is known, then a fraction of the expected wait, scaled by the work', () => {
  const p = new WaitPacer(0.8);
  assert.is(p.sleepFor(1000), 0);
  p.record(1000, 500); // 0.5 ms per unit
  assert.is(p.sleepFor(1000), 400);
  assert.is(p.sleepFor(500), 200);
  assert.is(p.sleepFor(2), 0, 'sleeps under 2 ms are not taken');
});

s('an oversleep converges back below the true wait', () => {
  const p = new WaitPacer(0.85);
  const gpuMs = 100; // what the work really takes
  p.record(1, 1000); // a slow first step (compilation)
  let sleep = p.sleepFor(1);
  for (let i = 0; i < 30; i++) {
    p.record(1, Math.max(sleep, gpuMs) + 0.5); // the wait is the sleep when it overshoots
    sleep = p.sleepFor(1);
  }
  assert.ok(sleep < gpuMs && sleep > 0.8 * gpuMs, `settled at ${sleep} ms for ${gpuMs} ms of work`);
});

s('bad measurements are ignored; a bad fraction is an error', () => {
  const p = new WaitPacer();
  p.record(0, 10);
  p.record(10, NaN);
  assert.is(p.sleepFor(10), 0);
  assert.throws(() => new WaitPacer(1), /fraction must be in \(0, 1\)/);
});

s('readScalars with a sleep still returns the values, null as NaN', async () => {
  const a = Tensor.fromArray([1.5], [1]), b = Tensor.fromArray([-2], [1]);
  const got = await readScalars([a, null, b], 5);
  assert.equal([got[0], Number.isNaN(got[1]), got[2]], [1.5, true, -2]);
  a.dispose(); b.dispose();
});

s.run();
