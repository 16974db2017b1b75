// The 16-bit working copy of a ParamStore's parameters for mixed precision (torch.autocast casts
// the float32 master weights to bf16/f16 at every use; here AdamW writes the cast once per step, in
// its own pass: kernels/adamw.ts WorkingCopy). One buffer laid out like the store's data buffer
// with 2 bytes per element: the element at byte o of data is at byte o/2 here, padding included.
// Its bindings start at multiples of 256 bytes on every adapter (the copy's parameters sit at
// multiples of 256 too: the store aligns its views to 512), a word offset into the binding locating
// each parameter for AdamW; a matmul binds a parameter's copy (cast()) from its first byte.
import { launch } from '../runtime/kernel.js';
import { acquireBuffer, releaseBuffer } from '../runtime/buffer.js';
import { gpu } from '../runtime/device.js';
import { Tensor, needsGrad, record, type DType16 } from '../runtime/tensor.js';
import type { ParamStore } from '../runtime/param_store.js';
import { kernels } from './packed16.js';
import type { WorkingCopy } from './adamw.js';

/** Binding offsets are rounded down to this (the strictest storage-binding offset alignment of
 *  common GPUs, as the ParamStore's), so a copy's binding is valid on every adapter. */
const ALIGN = 256;
const PACK_WG = 256; // kernels/packed16.ts: words per workgroup

export class ParamCopy16 implements WorkingCopy {
  readonly buffer: GPUBuffer;
  /** Bytes of the copy: half the store's. */
  readonly bytes: number;
  private readonly align: number;

  constructor(readonly store: ParamStore, readonly dtype: DType16) {
    this.bytes = store.bytes / 2;
    this.buffer = acquireBuffer(this.bytes);
    this.align = Math.max(ALIGN, gpu().limits.minStorageBufferOffsetAlignment);
  }

  /** The 16-bit view of parameter `name` (its offset in the store must be a multiple of 8 bytes,
   *  an even element: true of every parameter but a packed one after an odd-sized neighbour). */
  view(name: string): Tensor {
    const p = this.store.get(name);
    if (p.offset % 8) throw new Error(`ParamCopy16: ${name} starts at element ${p.offset / 4} of the store, odd: not on a 16-bit word`);
    return Tensor.view(this.buffer, p.offset / 2, p.shape, false, this.dtype);
  }

  /** The copy of p (a parameter, or a span of parameters, of the store) as torch.autocast's cast of a
   *  weight: its 16-bit view, on the tape as cast(p), so that its 16-bit gradient (a matmul's dW) is cast
   *  back and added into p's float32 gradient (kernels/cast.ts's backward). */
  cast(p: Tensor): Tensor {
    if (p.buffer !== this.store.data) throw new Error(`ParamCopy16: tensor [${p.shape}] is not a view of the store's data`);
    if ((p.offset / 2) % this.align) throw new Error(`ParamCopy16: a tensor [${p.shape}] at byte ${p.offset} of the store: its copy would not start on a binding offset (multiple of ${this.align} bytes)`);
    const v = Tensor.view(this.buffer, p.offset / 2, p.shape, false, this.dtype);
    if (needsGrad(p)) record('cast', [p], [v], {}, []);
    return v;
  }

  /** For AdamW: one binding of the copy over the copies of data views ps (bytes [o, o + 4·size)
   *  of the store's data go to [o/2, o/2 + 2·size)), from an aligned offset; null past a binding. */
  window(ps: Tensor[]): { binding: { buffer: GPUBuffer; offset: number; size: number }; words: number[] } | null {
    for (const p of ps) {
      if (p.buffer !== this.store.data) throw new Error(`ParamCopy16: tensor [${p.shape}] is not a view of the store's data`);
      // Words hold two elements: a run starting or ending on an odd element would share one with a neighbour.
      if (p.offset % 8 || p.size % 2) throw new Error(`ParamCopy16: a run of elements [${p.offset / 4}, ${p.offset / 4 + p.size}) of the store does not start and end on 16-bit words`);
    }
    const from = Math.floor(Math.min(...ps.map((p) => p.offset / 2)) / this.align) * this.align;
    const end = Math.max(...ps.map((p) => p.offset / 2 + 2 * p.size));
    if (end - from > gpu().limits.maxStorageBufferBindingSize) return null;
    return { binding: { buffer: this.buffer, offset: from, size: Math.ceil((end - from) / 4) * 4 }, words: ps.map((p) => (p.offset / 2 - from) / 4) };
  }

  /** copy = the store's data rounded to the copy's dtype, everywhere (at start, or after loading
   *  weights): pack16 over chunks of a storage binding at most, starting at aligned offsets. */
  refresh(): void {
    const step = Math.floor(gpu().limits.maxStorageBufferBindingSize / (2 * this.align)) * 2 * this.align;
    for (let o = 0; o < this.store.bytes; o += step) {
      const n = Math.min(step, this.store.bytes - o) / 4, words = Math.ceil(n / 2);
      launch(kernels.pack16, {
        params: { n }, variant: { format: this.dtype }, workgroups: Math.ceil(words / PACK_WG),
        buffers: [{ buffer: this.store.data, offset: o, size: 4 * n }, { buffer: this.buffer, offset: o / 2, size: 4 * words }],
      });
    }
  }

  dispose(): void {
    releaseBuffer(this.buffer);
  }
}
