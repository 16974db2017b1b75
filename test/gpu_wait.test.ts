// awaitGpu (runtime/gpu_wait.ts): during a long GPU wait, Dawn's poll (a native callback it schedules through the
// global setImmediate) runs about once a millisecond after the first, not in a spin; JS callbacks keep Node's
// own setImmediate.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { matmul } from '../kernels/matmul.js';
import { gpu } from '../runtime/device.js';
import { setupGpu, randn } from './util.js';

const s = suite('gpu_wait');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

s('a long wait polls about once a millisecond; a JS callback scheduled meanwhile is an Immediate', async () => {
  const M = 768, K = 768, N = 768; // tens of ms on lavapipe (1 ms of spin); on a GPU shorter than its 10 ms of spin
  const x = Tensor.fromArray(randn(M * K, 1), [M, K]), w = Tensor.fromArray(randn(N * K, 2), [N, K]);
  await matmul(x, w).read(); // compiled and warm
  const paced = globalThis.setImmediate;
  const polls: number[] = [];
  let jsHandle: unknown;
  globalThis.setImmediate = Object.assign((fn: (...a: unknown[]) => void, ...args: unknown[]) => {
    if (Function.prototype.toString.call(fn).endsWith('{ [native code] }')) polls.push(performance.now());
    return paced(fn, ...args);
  }, { __promisify__: paced.__promisify__ }) as typeof setImmediate;
  let ms: number, t0 = 0;
  try {
    const y = matmul(x, w);
    t0 = performance.now();
    const read = y.read();
    jsHandle = setImmediate(() => {});
    await read;
    ms = performance.now() - t0;
  } finally {
    globalThis.setImmediate = paced;
  }
  assert.is((jsHandle as object).constructor.name, 'Immediate');
  // The first millisecond spins on lavapipe (unpaced: 30-60 polls a millisecond, for the whole wait); after two,
  // at most a poll per timer tick (≥ 1 ms). A GPU spins for 10 ms, longer than this wait there.
  const spin = gpu().isSoftware ? 2 : 11;
  const late = polls.filter((t) => t > t0 + spin).length;
  assert.ok(late <= 1.2 * Math.max(0, ms - spin) + 5, `${late} polls in the ${(ms - spin).toFixed(1)} ms after the first ${spin} (${polls.length} in all)`);
});

s.run();
