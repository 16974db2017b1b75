// Tensors on GPU buffers, with a tape for reverse-mode autograd.
// Memory: every tensor created inside a scope (beginScope/endScope, tidy) is released when the
// scope ends unless kept; parameters and their gradients are created outside scopes (persistent).
import { acquireBuffer, releaseBuffer } from './buffer.js';
import { clearBuffer, copyBuffer, readBuffer, writeBuffer, Binding } from './kernel.js';
import { gpu } from './device.js';
import { decode, encode } from '../model/dtype.js';

/** Element types. 'bf16' and 'f16' are stored two to a u32 word, element 2i in the low half
 *  (runtime/packed16_wgsl.ts): 2 bytes per element, an odd count rounded up to whole words. */
export type DType = 'f32' | 'i32' | 'u32' | 'bf16' | 'f16';
export type DType16 = 'bf16' | 'f16';

export const is16 = (d: DType): d is DType16 => d === 'bf16' || d === 'f16';
/** Bytes of n elements of dtype d (16-bit: whole u32 words). */
export const byteLength = (d: DType, n: number) => (is16(d) ? 4 * Math.ceil(n / 2) : 4 * n);
/** model/dtype.ts's name of a 16-bit dtype (its host codecs). */
const FILE_DTYPE = { bf16: 'bfloat16', f16: 'float16' } as const;
const encode16 = (x: Float32Array, d: DType16) => encode(x, FILE_DTYPE[d], 'Tensor.fromArray');

/** One recorded op: what backward needs to compute the gradients of its inputs. */
export interface TapeNode {
  op: string;
  inputs: Tensor[];
  outputs: Tensor[];
  /** What the forward saved for backward (tensors or numbers); see each op's module. */
  saved: Record<string, unknown>;
  /** The tensors whose data the op's backward reads (its saved tensors and those of `reads` in record). */
  reads: Tensor[];
}

let nextId = 0;
const SENTINEL = 0x7fc0dead; // a NaN payload no kernel produces
const SENTINEL_BYTES = 1024;

/** Tensors created since beginScope, released by endScope. With `guards` (tests), every tensor
 *  created in the scope or in scopes nested in it gets a guard region filled with a sentinel after
 *  its data, to catch out-of-bounds writes. */
interface Scope { tensors: Set<Tensor>; guards: boolean }
const scopes: Scope[] = [];
let gradEnabled = true;

export class Tensor {
  readonly id = nextId++;
  grad: Tensor | null = null;
  /** A gradient arrived since the optimizer last zeroed it (PyTorch: .grad is not None). */
  hasGrad = false;
  node: TapeNode | null = null;
  disposed = false;
  /** The tensor whose buffer this one shares (views from detach/reshape), else itself. */
  base: Tensor = this;
  /** Recorded nodes whose backward, not run yet, reads this buffer (counted on the base). */
  readers = 0;
  /** Free the buffer when `readers` falls to 0 (dropUnread gave it up while a backward still reads it). */
  private freeWhenRead = false;
  private ownsBuffer: boolean;
  /** A view into a flat store: binds only its own byte range (neighbours may be bound beside it). */
  private ranged = false;

  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly buffer: GPUBuffer,
    public requiresGrad = false,
    owns = true,
    /** Bytes into `buffer` where the data starts: non-zero only for views into a flat store. */
    readonly offset = 0,
  ) {
    this.ownsBuffer = owns;
    if (owns) scopes.at(-1)?.tensors.add(this);
  }

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** What a kernel binds: the whole buffer (writes past the data stay visible to sentinel checks),
   *  or, for a view into a flat store, its own byte range rounded up to 16 bytes (vec4 loads). */
  binding(): Binding {
    this.assertLive();
    return this.ranged ? { buffer: this.buffer, offset: this.offset, size: this.end() - this.offset } : this.buffer;
  }

  /** Bytes of the data (16-bit: whole words). */
  get bytes(): number {
    return byteLength(this.dtype, this.size);
  }

  /** The byte where what a kernel may bind of this tensor ends (see binding()). */
  end(): number {
    return this.ranged ? Math.min(this.buffer.size, this.offset + Math.ceil(this.bytes / 16) * 16) : this.buffer.size;
  }

  /** A tensor over bytes [offset, offset + bytes) of a buffer it does not own (flat stores); a
   *  16-bit view starts on a whole word (offset a multiple of 4). */
  static view(buffer: GPUBuffer, offset: number, shape: readonly number[], requiresGrad = false, dtype: DType = 'f32'): Tensor {
    if (offset % 4) throw new Error(`Tensor.view: offset ${offset} is not a multiple of 4 bytes`);
    const t = new Tensor([...shape], dtype, buffer, requiresGrad, false, offset);
    t.ranged = true;
    return t;
  }

  /** Uninitialised tensor from the pool. */
  static empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const bytes = byteLength(dtype, shape.reduce((a, b) => a * b, 1));
    if (!scopes.at(-1)?.guards) return new Tensor([...shape], dtype, acquireBuffer(Math.max(4, bytes)));
    // Debug mode: a guard region after the data, filled (with the data) with a sentinel pattern.
    const buf = acquireBuffer(bytes + SENTINEL_BYTES);
    writeBuffer(buf, 0, new Uint32Array(buf.size / 4).fill(SENTINEL));
    return new Tensor([...shape], dtype, buf);
  }

  /** Guarded tensors only: resolves to the indices of guard words past the data that were overwritten. */
  async overwrittenGuard(): Promise<number[]> {
    const words = new Uint32Array(await readBuffer(this.buffer, 0, this.buffer.size));
    const bad: number[] = [];
    for (let i = this.bytes / 4; i < words.length; i++) if (words[i] !== SENTINEL) bad.push(i);
    return bad;
  }

  static zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const t = Tensor.empty(shape, dtype);
    clearBuffer(t.buffer, t.bytes);
    return t;
  }

  /** A 16-bit dtype gets the values rounded to nearest even (model/dtype.ts encode), packed. */
  static fromArray(data: ArrayLike<number>, shape: readonly number[], dtype: DType = 'f32', requiresGrad = false): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`fromArray: ${data.length} values for shape [${shape}] (${n})`);
    const t = Tensor.empty(shape, dtype);
    if (is16(dtype)) {
      const words = new Uint8Array(t.bytes); // an odd count leaves the last high half 0, as pack16 does
      words.set(encode16(Float32Array.from(data), dtype));
      writeBuffer(t.buffer, 0, words);
    } else {
      writeBuffer(t.buffer, 0, dtype === 'f32' ? Float32Array.from(data) : dtype === 'i32' ? Int32Array.from(data) : Uint32Array.from(data));
    }
    t.requiresGrad = requiresGrad;
    return t;
  }

  /** The values: a 16-bit tensor's decoded to float32 (exact). */
  async read(): Promise<Float32Array | Int32Array | Uint32Array> {
    this.assertLive();
    const bytes = await readBuffer(this.buffer, this.offset, this.bytes);
    if (is16(this.dtype)) return decode(new Uint8Array(bytes, 0, 2 * this.size), FILE_DTYPE[this.dtype], `tensor ${this.id}`) as Float32Array;
    return this.dtype === 'f32' ? new Float32Array(bytes) : this.dtype === 'i32' ? new Int32Array(bytes) : new Uint32Array(bytes);
  }

  /** The values of a float tensor as float32 (16-bit ones decoded, exact). */
  async readF32(): Promise<Float32Array> {
    if (this.dtype === 'i32' || this.dtype === 'u32') throw new Error(`readF32 on a ${this.dtype} tensor`);
    return (await this.read()) as Float32Array;
  }

  /** A 16-bit tensor's stored bit patterns, one per element. */
  async read16(): Promise<Uint16Array> {
    this.assertLive();
    if (!is16(this.dtype)) throw new Error(`read16 on a ${this.dtype} tensor`);
    return new Uint16Array(await readBuffer(this.buffer, this.offset, this.bytes), 0, this.size);
  }

  /** A view of the same buffer, outside the graph. */
  detach(): Tensor {
    const t = new Tensor(this.shape, this.dtype, this.buffer, false, false, this.offset);
    t.base = this.base;
    t.ranged = this.ranged;
    return t;
  }

  /** Same buffer, new shape (same element count); gradients flow through unchanged. */
  reshape(shape: readonly number[]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.size) throw new Error(`reshape: [${this.shape}] to [${shape}]`);
    const t = new Tensor([...shape], this.dtype, this.buffer, false, false, this.offset);
    t.base = this.base;
    t.ranged = this.ranged;
    if (needsGrad(this)) record('reshape', [this], [t], {}, []);
    return t;
  }

  /** Remove from the current scope so it outlives it (parameters, optimizer state, outputs). */
  keep(): this {
    for (const s of scopes) s.tensors.delete(this);
    return this;
  }

  dispose(): void {
    this.releaseData();
    this.node = null;
  }

  /** Give the buffer back now but stay in the graph, for an op output that no backward reads (its gradient
   *  still flows through its node): memory a step would otherwise hold until its scope ends. Reading it
   *  afterwards is an error (assertLive). */
  releaseData(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownsBuffer) releaseBuffer(this.buffer);
  }

  assertLive(): void {
    if (this.disposed || this.base.disposed) throw new Error(`tensor ${this.id} [${this.shape}] used after dispose`);
  }

  /** Called by dropUnread: free now if no pending backward reads it, else once the last one has run. */
  giveUp(): void {
    if (this.readers > 0) this.freeWhenRead = true;
    else this.releaseData();
  }

  /** Called by backward after a rule that read this (base) tensor has run, or was skipped. */
  readDone(): void {
    if (--this.readers <= 0 && this.freeWhenRead) this.releaseData();
  }
}

// ---- scopes -------------------------------------------------------------------------------

/** Open a scope; `guards` as the enclosing scope's unless given (see Scope). */
export function beginScope(o: { guards?: boolean } = {}): void {
  scopes.push({ tensors: new Set(), guards: o.guards ?? scopes.at(-1)?.guards ?? false });
}

/** Release every tensor created since the matching beginScope, except those in `keep`. */
export function endScope(keep: Tensor[] = []): void {
  const s = scopes.pop();
  if (!s) throw new Error('endScope without beginScope');
  for (const t of keep) s.tensors.delete(t);
  for (const t of s.tensors) t.dispose();
  // Kept tensors belong to the enclosing scope, if any.
  for (const t of keep) if (!t.disposed) scopes.at(-1)?.tensors.add(t);
}

/** Runs fn, a stretch of a forward (a layer), in a scope that frees, when fn settles, every tensor created
 *  in it except fn's result (a tensor or an array of tensors and nulls): at once if no recorded backward
 *  reads it, else when the last such backward has run. Tensors still waiting for a backward belong to the
 *  enclosing scope, which frees them if backward never runs. The memory a forward holds is then what its
 *  backward needs (as PyTorch's saved tensors), not every intermediate. fn must not keep other tensors it
 *  made for later use: reading a freed one throws (assertLive). */
export async function dropUnread<T extends Tensor | (Tensor | null)[]>(fn: () => Promise<T>): Promise<T> {
  beginScope();
  let out: T | undefined;
  try {
    out = await fn();
    return out;
  } finally {
    const s = scopes.pop()!;
    const keep = new Set<Tensor>(out === undefined ? [] : out instanceof Tensor ? [out.base] : out.flatMap((t) => (t ? [t.base] : [])));
    const parent = scopes.at(-1);
    for (const t of s.tensors) {
      // A failed fn (no result) frees everything: its graph will not be backpropagated.
      if (out === undefined) t.dispose();
      else if (!keep.has(t)) t.giveUp();
      if (!t.disposed) parent?.tensors.add(t);
    }
  }
}

/** From now on, tensors created in the current scope (and in scopes opened inside it) get guard
 *  regions (tests of out-of-bounds writes); it ends with the scope. */
export function guardScope(): void {
  const s = scopes.at(-1);
  if (!s) throw new Error('guardScope outside any scope');
  s.guards = true;
}

/** Runs fn in a scope whose tensors have guard regions (tests), ending it when fn settles. */
export async function withGuards<T>(fn: () => Promise<T>): Promise<T> {
  beginScope({ guards: true });
  try {
    return await fn();
  } finally {
    endScope();
  }
}

export function tidy<T>(fn: () => T): T {
  beginScope();
  let out: T | undefined;
  try {
    out = fn();
  } finally {
    endScope(out instanceof Tensor ? [out] : Array.isArray(out) ? out.filter((x) => x instanceof Tensor) : []);
  }
  return out;
}

// ---- tape -----------------------------------------------------------------------------------

export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** noGrad for async work (e.g. a forward that reads MoE counts back): off until fn settles.
 *  Not for concurrent forwards; the trainer and generation run one at a time. */
export async function noGradAsync<T>(fn: () => Promise<T>): Promise<T> {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return await fn();
  } finally {
    gradEnabled = prev;
  }
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** True when an op on these inputs must be recorded. */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  return gradEnabled && inputs.some((t) => t?.requiresGrad);
}

/** Records an op for backward. `reads`: the inputs and outputs whose data its backward rule reads (default
 *  all of them); tensors in `saved` are read too. What no rule reads can be freed early (dropUnread), so a
 *  rule must read no other tensor's data; binding a freed one throws. */
export function record(op: string, inputs: Tensor[], outputs: Tensor[], saved: Record<string, unknown>, reads: Tensor[] = [...inputs, ...outputs]): void {
  const fromSaved = Object.values(saved).flatMap((v) => (v instanceof Tensor ? [v] : Array.isArray(v) ? v.filter((x): x is Tensor => x instanceof Tensor) : []));
  const node: TapeNode = { op, inputs, outputs, saved, reads: [...new Set([...reads, ...fromSaved].map((t) => t.base))] };
  for (const t of node.reads) t.readers++;
  for (const o of outputs) {
    o.requiresGrad = true;
    o.node = node;
  }
}

/** Persistent zero-filled gradient of a leaf, for kernels that accumulate into it directly. */
export function gradSlot(t: Tensor): Tensor {
  if (!t.grad) {
    const g = Tensor.zeros(t.shape);
    g.keep();
    t.grad = g;
  }
  t.hasGrad = true;
  return t.grad;
}

export function copyInto(dst: Tensor, src: Tensor): void {
  dst.assertLive(); src.assertLive();
  if (dst.dtype !== src.dtype || dst.size !== src.size) throw new Error(`copyInto: ${src.dtype} [${src.shape}] into ${dst.dtype} [${dst.shape}]`);
  copyBuffer(src.buffer, src.offset, dst.buffer, dst.offset, src.bytes);
}

export function deviceName(): string {
  return gpu().adapterName;
}
