// Read several one-element tensors with a single GPU round trip (loss, aux loss, grad norm...).
import { acquireBuffer, releaseBuffer } from './buffer.js';
import { copyBuffer, readBuffer } from './kernel.js';
import type { Tensor } from './tensor.js';

/** Values of the given [1]-shaped f32 tensors; NaN for null entries. `sleepMs`: see readBuffer. */
export async function readScalars(ts: (Tensor | null)[], sleepMs = 0): Promise<number[]> {
  const buf = acquireBuffer(4 * ts.length);
  ts.forEach((t, i) => { if (t) copyBuffer(t.buffer, t.offset, buf, 4 * i, 4); });
  const out = new Float32Array(await readBuffer(buf, 0, 4 * ts.length, sleepMs));
  releaseBuffer(buf);
  return ts.map((t, i) => (t ? out[i] : NaN));
}
