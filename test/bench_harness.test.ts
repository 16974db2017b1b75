import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Row, formatTable, mergeRows } from '../bench/harness.js';

const s = suite('bench_harness');

const row = (name: string, shape: string, ms: number): Row => ({ name, shape, ms, spread: 1, samples: 3, clock: 'gpu', hostMs: 0.1 });

s('mergeRows: a --filter run replaces rows of the same name and shape, keeps the others in order, appends new ones', () => {
  const old = [row('a', 's1', 1), row('b', 's1', 2), row('b', 's2', 3), row('c', 's', 4)];
  const merged = mergeRows(old, [row('b', 's2', 30), row('d', 's', 5)]);
  assert.equal(merged.map((r) => [r.name, r.shape, r.ms]), [['a', 's1', 1], ['b', 's1', 2], ['b', 's2', 30], ['c', 's', 4], ['d', 's', 5]]);
  assert.equal(mergeRows(old, []), old);
});

s('formatTable: one line per row under the header, with the clock and the sample count', () => {
  const lines = formatTable([row('matmul', '2x2', 1.5), { ...row('train_step', 'B1', 9), clock: 'gpu+host', gflops: 2 }]).split('\n');
  assert.is(lines.length, 4);
  assert.match(lines[0], /kernel\s+shape\s+ms\/call\s+±%\s+n\s+clock/);
  assert.match(lines[2], /^matmul\s+2x2\s+1\.500\s+1\.0\s+3\s+gpu\s/);
  assert.match(lines[3], /gpu\+host\s+2\.00/);
});

s.run();
