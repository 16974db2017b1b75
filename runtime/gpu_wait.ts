// Waiting for the GPU without spinning a core. Dawn's Node binding learns that GPU work has finished
// by polling: while a GPU promise (mapAsync, onSubmittedWorkDone) is pending, it reschedules its
// event poll through the global setImmediate, so the JS thread runs at 100% for the whole wait. On
// lavapipe that core is one the "GPU" runs on: a 2-core machine lost about a third of a matmul's
// throughput to it, and while lavapipe compiles a shader (on one thread) the other core only spun.
// awaitGpu() lets the binding's poll spin for the first milliseconds of a wait and then run once a
// millisecond (setTimeout's granularity): a long wait ends at most a millisecond later, and the core is
// free meanwhile. How long it spins: 1 ms on a software adapter (the spin takes the "GPU"'s own core);
// 10 ms on a GPU, whose spinning thread only takes a spare CPU core, so that the short waits of a step
// (MoE's expert counts, read back once per layer) return at once and only a wait as long as a whole step
// is paced (data-parallel ranks wait in threads of one process: one core each otherwise).
import { gpu } from './device.js';

const SPIN_MS = { software: 1, gpu: 10 };

let waits = 0;
let since = 0;
let installed = false;
let spinMs = SPIN_MS.software;

/** Function.prototype.toString of a native function (the binding's poll is one) ends so; JS callbacks do not. */
const isNative = (fn: unknown) => typeof fn === 'function' && Function.prototype.toString.call(fn).endsWith('{ [native code] }');

/** Replaces the global setImmediate once: native callbacks scheduled while one of our waits has run longer than
 *  spinMs go through setTimeout(fn, 1); every other call is Node's own setImmediate. */
function install(): void {
  if (installed) return;
  installed = true;
  spinMs = gpu().isSoftware ? SPIN_MS.software : SPIN_MS.gpu;
  const immediate = globalThis.setImmediate;
  const paced = (fn: (...args: unknown[]) => void, ...args: unknown[]) => {
    if (waits > 0 && performance.now() - since > spinMs && isNative(fn)) {
      setTimeout(fn, 1, ...args);
      return undefined as unknown as NodeJS.Immediate; // the binding drops the handle
    }
    return immediate(fn, ...args);
  };
  globalThis.setImmediate = Object.assign(paced, { __promisify__: immediate.__promisify__ }) as typeof setImmediate;
}

/** Awaits a GPU promise with the binding's poll paced (see above) and a ref'd timer held, so that Node cannot
 *  decide it has nothing left to wait for (an idle data-loader worker is unref'd): the trainer once exited with
 *  code 13 (unsettled await) right at its first step on a loaded machine; nothing here relies on Dawn's own handles. */
export async function awaitGpu<T>(p: Promise<T>): Promise<T> {
  install();
  if (waits++ === 0) since = performance.now();
  const keep = setInterval(() => {}, 1 << 30);
  try {
    return await p;
  } finally {
    clearInterval(keep);
    waits--;
  }
}
