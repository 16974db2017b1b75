import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { WaitPacer } from '../runtime/wait_pacer.js';
import { Tensor } from '../runtime/tensor.js';
import { readScalars } from '../runtime/scalars.js';
import { setupGpu } from './util.js';

const s = suite('wait_pacer');
s.before(setupGpu);

s('learns nothing from the first wait, then proposes a fraction of the expected wait, scaled by the work', () => {
  const p = new WaitPacer(0.8);
  p.record(1000, 0, 5000); // first use: compilation, buffer set-up
  assert.is(p.sleepFor(1000), 0);
  p.record(1000, 0, 500); // 0.5 ms per unit
  assert.is(p.sleepFor(1000), 400);
  assert.is(p.sleepFor(500), 200);
  assert.is(p.sleepFor(2), 0, 'sleeps under 2 ms are not taken');
});

s('a wait that outlasts its sleep is learnt exactly; an oversleep shrinks the next sleep until one does', () => {
  const p = new WaitPacer(0.85);
  const gpuMs = 100; // what the work really takes
  const run = () => { const sleep = p.sleepFor(1); p.record(1, sleep, Math.max(sleep + 0.3, gpuMs)); return sleep; };
  p.record(1, 0, 1); // warm-up
  p.record(1, 0, 1000); // a stall: ten times the real work
  const sleeps = Array.from({ length: 16 }, run);
  assert.ok(sleeps[0] === 850 && sleeps[1] < 850, `shrinks after an oversleep: ${sleeps.slice(0, 3)}`);
  const settled = sleeps.at(-1)!;
  assert.ok(Math.abs(settled - 0.85 * gpuMs) < 1e-9, `settled at ${settled} ms for ${gpuMs} ms of work: ${sleeps.map((x) => x.toFixed(0))}`);
});

s('bad measurements are ignored; a bad fraction is an error', () => {
  const p = new WaitPacer();
  p.record(1, 0, 1);
  p.record(0, 0, 10);
  p.record(10, 0, NaN);
  assert.is(p.sleepFor(10), 0);
  assert.throws(() => new WaitPacer(1), /fraction must be in \(0, 1\)/);
});

s('pace sleeps what it proposes and returns the wait\'s result', async () => {
  const p = new WaitPacer(0.5);
  p.record(1, 0, 1);
  p.record(10, 0, 40);
  let slept = -1;
  assert.is(await p.pace(10, async (ms) => { slept = ms; return 'done'; }), 'done');
  assert.is(slept, 20);
});

s('readScalars with a sleep still returns the values, null as NaN', async () => {
  const a = Tensor.fromArray([1.5], [1]), b = Tensor.fromArray([-2], [1]);
  const got = await readScalars([a, null, b], 5);
  assert.equal([got[0], Number.isNaN(got[1]), got[2]], [1.5, true, -2]);
  a.dispose(); b.dispose();
});

s.run();
