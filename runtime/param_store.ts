// Parameters and their gradients in two flat buffers, each parameter a view at an aligned offset.
// Why: the optimizer, the gradient norm and zeroing then cover every parameter with one dispatch
// per binding-sized chunk instead of one per few tensors, and parameters stored next to each other
// (q/k/v, gate/up) form one larger weight [Σout, in] for a fused matmul without any copy.
// Padding between views stays zero in both buffers, so flat passes over it change nothing.
import { acquireBuffer, releaseBuffer } from './buffer.js';
import { clearBuffer } from './kernel.js';
import { gpu } from './device.js';
import { Tensor } from './tensor.js';

/** Byte alignment of every view: the strictest storage-binding offset alignment of common GPUs. */
const ALIGN = 256;
let chunkLimit: number | undefined;
/** Tests: pretend storage bindings hold at most `bytes` (undefined: the adapter's limit). */
export function setChunkLimit(bytes: number | undefined): void { chunkLimit = bytes; }

export class ParamStore {
  /** Views in layout order; each has requiresGrad and a .grad view at the same offset. */
  readonly params = new Map<string, Tensor>();
  readonly data: GPUBuffer;
  readonly grads: GPUBuffer;
  /** Bytes used by views and their padding (the buffers may be larger: pool size classes). */
  readonly bytes: number;

  constructor(layout: Iterable<readonly [string, readonly number[]]>) {
    const align = Math.max(ALIGN, gpu().limits.minStorageBufferOffsetAlignment);
    const offsets: [string, readonly number[], number][] = [];
    let bytes = 0;
    for (const [name, shape] of layout) {
      if (offsets.some(([n]) => n === name)) throw new Error(`ParamStore: parameter ${name} given twice`);
      offsets.push([name, shape, bytes]);
      bytes += Math.ceil((shape.reduce((a, b) => a * b, 1) * 4) / align) * align;
    }
    const max = gpu().limits.maxBufferSize;
    if (bytes > max) throw new Error(`ParamStore: ${bytes} bytes of parameters exceed the adapter's maxBufferSize (${max})`);
    this.bytes = Math.max(bytes, align);
    this.data = acquireBuffer(this.bytes);
    this.grads = acquireBuffer(this.bytes);
    clearBuffer(this.data, this.bytes);
    clearBuffer(this.grads, this.bytes);
    for (const [name, shape, off] of offsets) {
      const p = Tensor.view(this.data, off, shape, true);
      p.grad = Tensor.view(this.grads, off, shape);
      this.params.set(name, p);
    }
  }

  get(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`ParamStore: no parameter ${name}`);
    return t;
  }

  /** 1-D views covering bytes [from, to) of `buf` (data, grads, or a buffer laid out alike), each
   *  no larger than one storage binding, split at aligned offsets. */
  chunks(buf: GPUBuffer, from = 0, to = this.bytes): Tensor[] {
    const limit = Math.floor((chunkLimit ?? gpu().limits.maxStorageBufferBindingSize) / ALIGN) * ALIGN;
    const out: Tensor[] = [];
    for (let o = from; o < to; o += limit) out.push(Tensor.view(buf, o, [Math.min(limit, to - o) / 4]));
    return out;
  }

  /** Byte ranges [start, end) of runs of adjacent parameters that got a gradient since the last
   *  zeroGrad (PyTorch skips parameters whose .grad is None); one range when all did. */
  liveRanges(): [number, number][] {
    const ranges: [number, number][] = [];
    const list = [...this.params.values()];
    list.forEach((p, i) => {
      if (!p.hasGrad) return;
      const end = i + 1 < list.length ? list[i + 1].offset : this.bytes;
      const last = ranges.at(-1);
      if (last && last[1] === p.offset) last[1] = end;
      else ranges.push([p.offset, end]);
    });
    return ranges;
  }

  /** Zero every gradient with one clear; parameters count as gradient-less until backward. */
  zeroGrad(): void {
    clearBuffer(this.grads, this.bytes);
    for (const p of this.params.values()) p.hasGrad = false;
  }

  dispose(): void {
    releaseBuffer(this.data);
    releaseBuffer(this.grads);
  }
}
