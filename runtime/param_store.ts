// Parameters and their gradients in two flat buffers, each parameter a view at an aligned offset.
// Why: the optimizer, the gradient norm and zeroing then cover every parameter with one dispatch
// per binding-sized chunk instead of one per few tensors, and parameters stored next to each other
// (q/k/v, gate/up) form one larger weight [Σout, in] for a fused matmul without any copy.
// Padding between views stays zero in both buffers, so flat passes over it change nothing.
// A frozen store (o.frozen) has no gradient buffer at all: its views have requiresGrad false, so no
// op records a backward for them and no kernel computes their gradient (LoRA's base weights, DPO's
// reference model); gradients still flow through them to inputs that need one.
import { acquireBuffer, releaseBuffer } from './buffer.js';
import { clearBuffer } from './kernel.js';
import { gpu } from './device.js';
import { Tensor } from './tensor.js';

/** Byte alignment of every view: twice the strictest storage-binding offset alignment of common GPUs
 *  (256), so that a 16-bit working copy's views (at half the offsets: kernels/param_copy16.ts) bind too. */
const ALIGN = 512;

export class ParamStore {
  /** Views in layout order; unless frozen, each has requiresGrad and a .grad view at the same offset. */
  readonly params = new Map<string, Tensor>();
  readonly data: GPUBuffer;
  /** No gradient buffer: views are constants to autograd. */
  readonly frozen: boolean;
  private readonly gradBuffer: GPUBuffer | null;
  /** Bytes used by views and their padding (the buffers may be larger: pool size classes). */
  readonly bytes: number;
  /** Views spanning several parameters (span()), with the parameters each covers. */
  private readonly spans = new Map<string, { view: Tensor; members: Tensor[] }>();

  /** Largest chunk chunks() hands out: the adapter's storage-binding limit, or less (tests). */
  private readonly chunkBytes: number;

  /** layout: [name, shape, packed]; a packed parameter follows the previous one with no padding,
   *  so that the two can be spanned by one view (the first of a run starts aligned).
   *  o.bindingBytes: pretend storage bindings hold at most that many bytes (tests of the chunking).
   *  o.frozen: no gradient buffer; views do not require gradients. */
  constructor(layout: Iterable<readonly [string, readonly number[], boolean?]>, o: { bindingBytes?: number; frozen?: boolean } = {}) {
    this.frozen = o.frozen ?? false;
    this.chunkBytes = Math.floor((o.bindingBytes ?? gpu().limits.maxStorageBufferBindingSize) / ALIGN) * ALIGN;
    const align = Math.max(ALIGN, 2 * gpu().limits.minStorageBufferOffsetAlignment);
    const offsets: [string, readonly number[], number][] = [];
    let bytes = 0;
    for (const [name, shape, packed] of layout) {
      if (offsets.some(([n]) => n === name)) throw new Error(`ParamStore: parameter ${name} given twice`);
      if (!packed) bytes = Math.ceil(bytes / align) * align;
      offsets.push([name, shape, bytes]);
      bytes += shape.reduce((a, b) => a * b, 1) * 4;
    }
    bytes = Math.ceil(bytes / align) * align;
    const max = gpu().limits.maxBufferSize;
    if (bytes > max) throw new Error(`ParamStore: ${bytes} bytes of parameters exceed the adapter's maxBufferSize (${max})`);
    this.bytes = Math.max(bytes, align);
    this.data = acquireBuffer(this.bytes);
    clearBuffer(this.data, this.bytes);
    this.gradBuffer = this.frozen ? null : acquireBuffer(this.bytes);
    if (this.gradBuffer) clearBuffer(this.gradBuffer, this.bytes);
    for (const [name, shape, off] of offsets) this.params.set(name, this.view(off, shape));
  }

  /** The flat gradient buffer, laid out like `data`; a frozen store has none. */
  get grads(): GPUBuffer {
    if (!this.gradBuffer) throw new Error('ParamStore: a frozen store has no gradients (it is not trainable)');
    return this.gradBuffer;
  }

  /** A parameter-like view at byte `off`: with a gradient view at the same offset unless frozen. */
  private view(off: number, shape: readonly number[]): Tensor {
    const p = Tensor.view(this.data, off, shape, !this.frozen);
    if (this.gradBuffer) p.grad = Tensor.view(this.gradBuffer, off, shape);
    return p;
  }

  get(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`ParamStore: no parameter ${name}`);
    return t;
  }

  /** One [Σ rows, cols] view (and gradient view) over parameters stored back to back, each
   *  [rows_i, cols]: e.g. q/k/v projections as one weight for one matmul. Cached per name list. */
  span(names: string[]): Tensor {
    const key = names.join('|');
    const hit = this.spans.get(key);
    if (hit) return hit.view;
    const members = names.map((n) => this.get(n));
    const cols = members[0].shape.at(-1)!;
    members.forEach((m, i) => {
      if (m.shape.length !== 2 || m.shape[1] !== cols) throw new Error(`ParamStore.span: ${names[i]} is [${m.shape}], not [·, ${cols}]`);
      if (i && m.offset !== members[i - 1].offset + members[i - 1].size * 4) throw new Error(`ParamStore.span: ${names[i]} is not stored right after ${names[i - 1]} (pack it in the layout)`);
    });
    const shape = [members.reduce((a, m) => a + m.shape[0], 0), cols];
    const view = this.view(members[0].offset, shape);
    this.spans.set(key, { view, members });
    return view;
  }

  /** 1-D views covering bytes [from, to) of `buf` (data, grads, or a buffer laid out alike), each
   *  no larger than one storage binding, split at aligned offsets. */
  chunks(buf: GPUBuffer, from = 0, to = this.bytes): Tensor[] {
    const limit = this.chunkBytes;
    const out: Tensor[] = [];
    for (let o = from; o < to; o += limit) out.push(Tensor.view(buf, o, [Math.min(limit, to - o) / 4]));
    return out;
  }

  /** Byte ranges [start, end) of runs of adjacent parameters that got a gradient since the last
   *  zeroGrad (PyTorch skips parameters whose .grad is None); one range when all did. */
  liveRanges(): [number, number][] {
    const ranges: [number, number][] = [];
    const list = [...this.params.values()];
    const viaSpan = new Set([...this.spans.values()].filter((s) => s.view.hasGrad).flatMap((s) => s.members));
    list.forEach((p, i) => {
      if (!p.hasGrad && !viaSpan.has(p)) return;
      const end = i + 1 < list.length ? list[i + 1].offset : this.bytes;
      const last = ranges.at(-1);
      if (last && last[1] === p.offset) last[1] = end;
      else ranges.push([p.offset, end]);
    });
    return ranges;
  }

  /** Zero every gradient with one clear; parameters count as gradient-less until backward. */
  zeroGrad(): void {
    if (this.gradBuffer) clearBuffer(this.gradBuffer, this.bytes);
    for (const p of this.params.values()) p.hasGrad = false;
    for (const s of this.spans.values()) s.view.hasGrad = false;
  }

  dispose(): void {
    releaseBuffer(this.data);
    if (this.gradBuffer) releaseBuffer(this.gradBuffer);
  }
}
