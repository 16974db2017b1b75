// The data-parallel all-reduce across worker-thread ranks, each on its own device (test/fixtures/ddp/
// allreduce_rank.ts): rank 0's parameters broadcast, gradients averaged bucket by bucket over a store
// with padding, gradient-less parameters counted as live where any rank had a gradient, the stop wish
// agreed; and the faults: a rank that throws stops every rank with its error, one that never arrives
// is named by the timeout.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startRanks } from '../runtime/ranks.js';
import { rankValues, LAYOUT, type AllReduceCase } from './fixtures/ddp/allreduce_case.js';

const s = suite('ddp_allreduce');
const ENTRY = new URL('./fixtures/ddp/allreduce_rank.ts', import.meta.url);

interface Out { data: number[]; grads: number[]; live: boolean[]; stop: boolean; buckets: [number, number][]; offsets: number[] }

function launch(world: number, c: AllReduceCase, timeoutMs = 60_000) {
  return startRanks<AllReduceCase, Out>({ world, entry: ENTRY, data: c, timeoutMs, graceMs: 500 });
}

for (const world of [2, 3]) {
  s(`${world} ranks: every rank holds rank 0's parameters and the mean of the gradients, in buckets of 1 KiB`, async () => {
    const outs = await launch(world, { bucketBytes: 1024 }).done;
    const want = outs[0].offsets.map((_, i) => {
      const n = LAYOUT[i][1].reduce((a, b) => a * b, 1);
      const per = Array.from({ length: world }, (_, r) => rankValues(r, i, n));
      return { data: per[0].data, grad: Float32Array.from({ length: n }, (_, k) => per.reduce((a, v) => a + v.grad[k], 0) / world) };
    });
    for (const [r, o] of outs.entries()) {
      o.offsets.forEach((off, i) => {
        const n = want[i].data.length;
        assert.equal(o.data.slice(off / 4, off / 4 + n), Array.from(want[i].data), `rank ${r} param ${i}: rank 0's values`);
        assert.equal(o.grads.slice(off / 4, off / 4 + n), Array.from(want[i].grad), `rank ${r} param ${i}: the mean gradient`);
      });
      assert.equal(o.live, LAYOUT.map(() => true), `rank ${r}: parameter 2 has a gradient (rank 0 gave one)`);
      assert.is(o.stop, false);
    }
    // Buckets: from the end of the store to its start, back to back, several of them.
    const b = outs[0].buckets;
    assert.ok(b.length >= 3, `${b.length} buckets`);
    assert.is(b[0][1], outs[0].grads.length * 4);
    assert.is(b.at(-1)![0], 0);
    for (let k = 1; k < b.length; k++) assert.is(b[k][1], b[k - 1][0]);
  });
}

s('a stop wished by one rank is the answer of every rank', async () => {
  const outs = await launch(2, { bucketBytes: 1 << 20, stopRank: 1 }).done;
  assert.equal(outs.map((o) => o.stop), [true, true]);
});

s('a rank that throws stops every rank, with its error, within seconds', async () => {
  const t0 = performance.now();
  const err = await launch(2, { bucketBytes: 1024, fault: 'throw' }).done.then(() => null, (e: Error) => e);
  assert.ok(err, 'the launch rejects');
  assert.match(err!.message, /^rank 1 failed: injected failure on rank 1$/);
  assert.ok(performance.now() - t0 < 15_000, `${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

s('a rank that never arrives is named by the timeout, and every rank stops', async () => {
  const t0 = performance.now();
  const err = await launch(2, { bucketBytes: 1024, fault: 'hang' }, 1500).done.then(() => null, (e: Error) => e);
  assert.ok(err, 'the launch rejects');
  assert.match(err!.message, /^rank 1 did not arrive at the broadcast of rank 0's parameters within 1.5 s \(rank 0 waited/);
  assert.ok(performance.now() - t0 < 15_000, `${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

s.run();
