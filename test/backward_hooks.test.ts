// backward's hooks (runtime/autograd.ts), on which the data-parallel all-reduce starts a bucket's copy:
// final(leaf) comes once per leaf, after the last rule that adds to its gradient (a snapshot taken then
// equals the finished gradient), and the leaves of the last layer come before those of the first.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope, copyInto } from '../runtime/tensor.js';
import { ParamStore } from '../runtime/param_store.js';
import { backward, type BackwardHooks } from '../runtime/autograd.js';
import { writeBuffer } from '../runtime/kernel.js';
import { add, matmul, sum } from '../kernels/index.js';
import { setupGpu, randn, assertClose } from './util.js';

const s = suite('backward_hooks');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

s('final(leaf) once per leaf, last layer first, each after its gradient is complete', async () => {
  const store = new ParamStore([['w1', [6, 5]], ['w2', [4, 6]], ['unused', [3]]]);
  for (const [i, p] of [...store.params.values()].entries()) writeBuffer(p.buffer, p.offset, Float32Array.from(randn(p.size, 40 + i)));
  const w1 = store.get('w1'), w2 = store.get('w2');
  const x = Tensor.fromArray(randn(15, 3), [3, 5]);
  // w1 is used twice (two uses add into one gradient), both before w2.
  const h = add(matmul(x, w1), matmul(x, w1));
  const loss = sum(matmul(h, w2));
  const seen: string[] = [];
  const snaps = new Map<Tensor, Tensor>();
  let begun: Tensor[] = [];
  const hooks: BackwardHooks = {
    begin: (leaves) => { begun = leaves; },
    final: (leaf) => {
      seen.push(leaf === w1 ? 'w1' : leaf === w2 ? 'w2' : 'other');
      const snap = Tensor.empty(leaf.shape);
      copyInto(snap, leaf.grad!); // recorded now: what the gradient holds at this point of the backward
      snaps.set(leaf, snap);
    },
  };
  backward(loss, undefined, hooks);
  assert.equal(new Set(begun), new Set([w1, w2]), 'the graph\'s leaves, not the unused parameter');
  assert.equal(seen, ['w2', 'w1']);
  for (const p of [w1, w2]) assertClose(await snaps.get(p)!.read(), await p.grad!.read(), 'snapshot = final gradient', 0, 0);
  assert.ok((await w1.grad!.read()).some((v) => v !== 0));
});

s.run();
