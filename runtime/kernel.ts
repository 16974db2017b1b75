// Kernel definition and launch. A kernel declares its uniform params and storage buffers once;
// the WGSL header (struct Params + bindings) and the host-side packing are both generated from
// that declaration, so they cannot drift apart. Pipelines are compiled once per (kernel, variant).
// Dispatches are recorded into one command encoder and submitted by flush(): once per training
// step, or when a value must be read back.
import { gpu, checkGpuError, deferGpuError } from './device.js';
import { acquireBuffer, releaseBuffer, READBACK_USAGE } from './buffer.js';
import { awaitGpu } from './gpu_wait.js';

export type ParamType = 'u32' | 'i32' | 'f32';
/** A kernel's variant: a plain record of compile-time choices (tile sizes, vector width...). */
export type Variant = object;
/** Workgroup size: x, or [x, y]. */
export type WorkgroupSize = number | readonly [number, number];

export interface KernelSpec<V extends Variant> {
  /** WGSL entry point, bench row and test name. */
  name: string;
  /** Uniform params in struct order; one pipeline serves every shape. */
  params: readonly (readonly [string, ParamType])[];
  /** Storage buffers in binding order: [name, access, WGSL element type]. */
  buffers: readonly (readonly [string, 'read' | 'rw', string])[];
  /** Invocations per workgroup, fixed or per variant. */
  workgroup: WorkgroupSize | ((v: V) => WorkgroupSize);
  /** WGSL extensions a variant needs ('subgroups', 'f16'): enabled before the header, and the
   *  variant is refused on an adapter without the feature. With 'subgroups' the entry point also
   *  gets the builtins sgid (subgroup_invocation_id) and sgsize (subgroup_size). */
  enable?: (v: V) => readonly string[];
  /** WGSL after the generated header. `entry` is the signature of the compute entry point (named
   *  after the kernel, builtins wid, nwg, lid, li), to be followed by its body `{ ... }`. */
  wgsl: (v: V, entry: string) => string;
}

export interface Kernel<V extends Variant = Record<string, never>> extends KernelSpec<V> {
  /** The whole WGSL module of a variant. */
  source(v: V): string;
  /** [x, y] invocations per workgroup of a variant. */
  size(v: V): [number, number];
}

const FEATURE: Record<string, string> = { subgroups: 'subgroups', f16: 'shader-f16' };

export function defineKernel<V extends Variant = Record<string, never>>(spec: KernelSpec<V>): Kernel<V> {
  const size = (v: V): [number, number] => {
    const w = typeof spec.workgroup === 'function' ? spec.workgroup(v) : spec.workgroup;
    return typeof w === 'number' ? [w, 1] : [w[0], w[1]];
  };
  return {
    ...spec,
    size,
    source(v) {
      const enables = spec.enable?.(v) ?? [];
      const [x, y] = size(v);
      const builtins = ['@builtin(workgroup_id) wid: vec3<u32>', '@builtin(num_workgroups) nwg: vec3<u32>',
        '@builtin(local_invocation_id) lid: vec3<u32>', '@builtin(local_invocation_index) li: u32',
        ...(enables.includes('subgroups') ? ['@builtin(subgroup_invocation_id) sgid: u32', '@builtin(subgroup_size) sgsize: u32'] : [])];
      const entry = `@compute @workgroup_size(${x}${y > 1 ? `, ${y}` : ''}) fn ${spec.name}(${builtins.join(', ')})`;
      const fields = spec.params.length ? spec.params.map(([n, t]) => `  ${n}: ${t},`).join('\n') : '  _unused: u32,';
      const binds = spec.buffers.map(([n, access, type], i) =>
        `@group(0) @binding(${i + 1}) var<storage, ${access === 'rw' ? 'read_write' : 'read'}> ${n}: array<${type}>;`);
      return `${enables.map((e) => `enable ${e};\n`).join('')}struct Params {\n${fields}\n};\n`
        + `@group(0) @binding(0) var<uniform> p: Params;\n${binds.join('\n')}\n${PRELUDE}${spec.wgsl(v, entry)}`;
    },
  };
}

/** Why variant v of kernel k cannot run on this adapter (a missing feature, a workgroup past the
 *  limits), or null when it can. Compile errors are only found by compiling. */
export function unsupported<V extends Variant>(k: Kernel<V>, v: V): string | null {
  const { features, limits } = gpu();
  for (const e of k.enable?.(v) ?? []) {
    if (!features.has(FEATURE[e] ?? e)) return `needs the adapter feature '${FEATURE[e] ?? e}'`;
  }
  const [x, y] = k.size(v);
  if (x * y > limits.maxComputeInvocationsPerWorkgroup) return `${x * y} invocations per workgroup > maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`;
  if (x > limits.maxComputeWorkgroupSizeX || y > limits.maxComputeWorkgroupSizeY) return `workgroup ${x}×${y} exceeds maxComputeWorkgroupSize`;
  return null;
}

/** Helpers every kernel may use. Dispatches over 65535 workgroups are folded into 2-D grids:
 *  wgIndex() turns (workgroup_id, num_workgroups) back into a linear workgroup index. */
const PRELUDE = `
fn wgIndex(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x + wid.z * nwg.x * nwg.y; }
`;

const SLOT = 256; // bytes per dispatch in the uniform arena (minUniformBufferOffsetAlignment)
const ARENA_SLOTS = 2048;

interface Compiled { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }
const pipelines = new Map<string, Compiled>();

/** Pipelines created so far (a counter: a failed one is created again). On lavapipe the shader is
 *  compiled at its first dispatch, inside that batch's GPU time (createComputePipeline takes ~30 ms;
 *  the first run of a matmul tile 4–13 s longer with a cold Mesa cache), so the tuner asks whether
 *  a timed run created one (runtime/tuner.ts). */
let created = 0;
export const pipelinesCreated = () => created;

function compile<V extends Variant>(k: Kernel<V>, v: V): Compiled {
  const key = `${k.name}|${JSON.stringify(v)}`;
  let c = pipelines.get(key);
  if (c) return c;
  const why = unsupported(k, v);
  if (why) throw new Error(`kernel ${key}: ${why}`);
  const { device } = gpu();
  const entries: GPUBindGroupLayoutEntry[] = [
    { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
    ...k.buffers.map(([, access], i) => ({
      binding: i + 1, visibility: GPUShaderStage.COMPUTE,
      buffer: { type: access === 'rw' ? 'storage' : 'read-only-storage' } as GPUBufferBindingLayout,
    })),
  ];
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: k.name, code: k.source(v) });
  const layout = device.createBindGroupLayout({ label: k.name, entries });
  const pipeline = device.createComputePipeline({
    label: key, layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: k.name },
  });
  rec.scopes.push(device.popErrorScope().then((e) => {
    if (!e) return;
    pipelines.delete(key); // a later launch recompiles and reports again
    deferGpuError(new Error(`kernel ${key} failed to compile: ${e.message}`));
  }));
  c = { pipeline, layout };
  pipelines.set(key, c);
  created++;
  return c;
}

/** A binding: a whole buffer, or a byte range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

class Recorder {
  encoder: GPUCommandEncoder | undefined;
  pass: GPUComputePassEncoder | undefined;
  arena = new ArrayBuffer(SLOT * ARENA_SLOTS);
  arenaU32 = new Uint32Array(this.arena);
  arenaF32 = new Float32Array(this.arena);
  arenaI32 = new Int32Array(this.arena);
  arenaGpu: GPUBuffer | undefined;
  slots = 0;
  staging: GPUBuffer[] = [];
  /** Error-scope results not yet seen; awaited before any value is handed back to the host. */
  scopes: Promise<void>[] = [];
  kernels = new Set<string>();
  /** Counters for the bench: dispatches and submits since the last resetCounters(). */
  dispatches = 0;
  submits = 0;
  /** Inside plan(): dispatches are not recorded (see plan). */
  planning = false;

  begin(): GPUCommandEncoder {
    if (!this.encoder) {
      const { device } = gpu();
      device.pushErrorScope('out-of-memory');
      device.pushErrorScope('validation');
      this.encoder = device.createCommandEncoder();
      this.arenaGpu ??= device.createBuffer({ size: this.arena.byteLength, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    }
    return this.encoder;
  }

  endPass(): void {
    this.pass?.end();
    this.pass = undefined;
  }

  flush(): void {
    if (!this.encoder) return;
    const { device } = gpu();
    this.endPass();
    if (this.slots) device.queue.writeBuffer(this.arenaGpu!, 0, this.arena, 0, this.slots * SLOT);
    device.queue.submit([this.encoder.finish()]);
    this.submits++;
    // Destroying after submit is valid: Dawn frees them once the submitted work is done.
    for (const b of this.staging.splice(0)) b.destroy();
    const names = [...this.kernels].join(', ');
    const scopes = [device.popErrorScope(), device.popErrorScope()];
    this.scopes.push(Promise.all(scopes).then(([val, oom]) => {
      if (oom) deferGpuError(Object.assign(new Error(`GPU out of memory in a batch running [${names}]: ${oom.message}`), { code: 'GPU_OOM' }));
      else if (val) deferGpuError(new Error(`GPU validation error in a batch running [${names}]: ${val.message}`));
    }));
    this.encoder = undefined;
    this.slots = 0;
    this.kernels.clear();
  }
}

const rec = new Recorder();

export interface LaunchArgs<V extends Variant> {
  params?: Record<string, number>;
  buffers: Binding[];
  /** Workgroup count: a number (folded into 2-D when too large) or an explicit [x, y, z]. */
  workgroups: number | [number, number, number];
  variant?: V;
}

export function launch<V extends Variant>(k: Kernel<V>, a: LaunchArgs<V>): void {
  checkGpuError();
  const { device, limits } = gpu();
  if (a.buffers.length !== k.buffers.length) {
    throw new Error(`kernel ${k.name}: ${k.buffers.length} buffers declared, ${a.buffers.length} given`);
  }
  for (const [n] of k.params) if (a.params?.[n] === undefined) throw new Error(`kernel ${k.name}: param '${n}' not given`);
  if (rec.planning) return;
  if (rec.slots === ARENA_SLOTS) rec.flush();
  const { pipeline, layout } = compile(k, a.variant ?? ({} as V));
  const enc = rec.begin();
  const base = (rec.slots * SLOT) / 4;
  k.params.forEach(([n, t], i) => {
    const v = a.params![n];
    if (t === 'f32') rec.arenaF32[base + i] = v;
    else if (t === 'i32') rec.arenaI32[base + i] = v;
    else rec.arenaU32[base + i] = v;
  });
  const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: rec.arenaGpu!, offset: rec.slots * SLOT, size: SLOT } }];
  a.buffers.forEach((b, i) => {
    entries.push({ binding: i + 1, resource: b instanceof GPUBuffer ? { buffer: b } : b });
  });
  rec.slots++;
  const bindGroup = device.createBindGroup({ label: k.name, layout, entries });
  let [x, y, z] = typeof a.workgroups === 'number' ? [a.workgroups, 1, 1] : a.workgroups;
  const max = limits.maxComputeWorkgroupsPerDimension;
  if (x > max) { y *= Math.ceil(x / max); x = max; }
  if (x === 0 || y === 0 || z === 0) return;
  rec.pass ??= enc.beginComputePass();
  rec.pass.setPipeline(pipeline);
  rec.pass.setBindGroup(0, bindGroup);
  rec.pass.dispatchWorkgroups(x, y, z);
  rec.kernels.add(k.name);
  rec.dispatches++;
}

/** Runs fn without recording its dispatches: ops do their host work (shapes, allocations, the
 *  tuner's picks) and launch nothing, so a whole training step can be planned in milliseconds to
 *  learn which kernel shapes it will use (runtime/tuner.ts). Copies, clears and uploads still run
 *  (caches built meanwhile stay valid); values read back are those of kernels that did not run. */
export async function plan<T>(fn: () => Promise<T>): Promise<T> {
  if (rec.planning) throw new Error('plan() does not nest');
  rec.planning = true;
  try {
    return await fn();
  } finally {
    rec.planning = false;
  }
}

/** True inside plan(): code that reads values back to size its work (MoE counts) assumes them. */
export function isPlanning(): boolean {
  return rec.planning;
}

/** Submit everything recorded so far. */
export function flush(): void {
  rec.flush();
  checkGpuError();
}

/** Copy between buffers, ordered with the recorded dispatches. */
export function copyBuffer(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
  const enc = rec.begin();
  rec.endPass();
  enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
}

/** Zero `bytes` bytes of a buffer, ordered with the recorded dispatches. */
export function clearBuffer(buf: GPUBuffer, bytes: number, offset = 0): void {
  const enc = rec.begin();
  rec.endPass();
  enc.clearBuffer(buf, offset, Math.ceil(bytes / 4) * 4);
}

/** Upload host data into a buffer, ordered after everything recorded so far. Data in shared memory
 *  (a SharedArrayBuffer) is staged too: Dawn's queue.writeBuffer crashes the process on it (webgpu 0.6.2). */
export function writeBuffer(dst: GPUBuffer, dstOffset: number, data: ArrayBufferView): void {
  const { device } = gpu();
  if (!rec.encoder && !(data.buffer instanceof SharedArrayBuffer)) {
    device.queue.writeBuffer(dst, dstOffset, data.buffer, data.byteOffset, data.byteLength);
    return;
  }
  // Pending commands may still use dst (or the data is shared): stage it and copy it in command order.
  const size = Math.ceil(data.byteLength / 4) * 4;
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
  new Uint8Array(staging.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  staging.unmap();
  copyBuffer(staging, 0, dst, dstOffset, size);
  rec.staging.push(staging);
}

/** Read bytes back: flushes, copies to a mappable buffer and waits for the GPU. With `sleepMs` the
 *  host first sleeps that long (no polling meanwhile: runtime/gpu_wait.ts, wait_pacer.ts). */
export async function readBuffer(src: GPUBuffer, offset: number, bytes: number, sleepMs = 0): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = acquireBuffer(size, READBACK_USAGE);
  copyBuffer(src, offset, staging, 0, size);
  flush();
  if (sleepMs > 0) await new Promise((r) => setTimeout(r, sleepMs)); // a timer keeps Node alive itself
  try {
    await awaitGpu(staging.mapAsync(GPUMapMode.READ, 0, size));
  } finally {
    await settleErrors();
  }
  const out = staging.getMappedRange(0, size).slice(0, bytes);
  staging.unmap();
  releaseBuffer(staging);
  return out;
}

/** Submits everything recorded (copies into or out of `buf` included) and maps `buf` (GPUMapMode.READ or
 *  WRITE): resolves once the GPU has got there, while later work may still run. GPU errors surface at the
 *  next readBuffer or sync. */
export function submitAndMap(buf: GPUBuffer, mode: number, bytes: number): Promise<void> {
  flush();
  return awaitGpu(buf.mapAsync(mode, 0, Math.ceil(bytes / 4) * 4));
}

/** Wait until the GPU has finished all submitted work (for timing). */
export async function sync(): Promise<void> {
  flush();
  await awaitGpu(gpu().device.queue.onSubmittedWorkDone());
  await settleErrors();
}

/** Wait for the error scopes of everything submitted, then throw the first GPU error, if any. */
async function settleErrors(): Promise<void> {
  await Promise.all(rec.scopes.splice(0));
  checkGpuError();
}

export function counters(): { dispatches: number; submits: number } {
  return { dispatches: rec.dispatches, submits: rec.submits };
}

export function resetCounters(): void {
  rec.dispatches = 0;
  rec.submits = 0;
}

// GPU timing with timestamp queries ('timestamp-query', requested by device.ts when the adapter has it).
let timer: { set: GPUQuerySet; resolved: GPUBuffer; busy: boolean } | undefined;

/** Whether the device can time work on the GPU (timeGpu). */
export function hasGpuTimer(): boolean {
  return gpu().features.has('timestamp-query');
}

/** An empty compute pass that only writes a timestamp, ordered with the recorded commands. */
function timestampPass(writes: GPUComputePassTimestampWrites): void {
  const enc = rec.begin();
  rec.endPass();
  enc.beginComputePass({ timestampWrites: writes }).end();
}

/** GPU nanoseconds taken by the work `fn` records: an empty pass writes a timestamp before fn's first
 *  command and another after its last, so the span covers every pass, copy and clear in between (the
 *  recorder ends a pass at each copy/clear), plus idle time between submits if fn flushes midway.
 *  Flushes and waits for the GPU; with `sleepMs` the host first sleeps that long (Dawn polls from the
 *  JS thread while a GPU promise is pending: runtime/gpu_wait.ts; a software adapter shares those cores).
 *  One timing at a time; throws where the device has no timestamp queries. */
export async function timeGpu(fn: () => void | Promise<void>, opts: { sleepMs?: number } = {}): Promise<number> {
  if (!hasGpuTimer()) throw new Error(`timeGpu: the adapter (${gpu().adapterName}) has no 'timestamp-query' feature`);
  const { device } = gpu();
  timer ??= {
    set: device.createQuerySet({ type: 'timestamp', count: 2 }),
    resolved: device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
    busy: false,
  };
  if (timer.busy) throw new Error('timeGpu: a timing is already running (they do not nest)');
  const t = timer;
  t.busy = true;
  try {
    timestampPass({ querySet: t.set, beginningOfPassWriteIndex: 0 });
    await fn();
    timestampPass({ querySet: t.set, endOfPassWriteIndex: 1 });
    rec.begin().resolveQuerySet(t.set, 0, 2, t.resolved, 0);
    // Read back in the same submit as fn's work (readBuffer would add a second), so counters() stay fn's own.
    const staging = acquireBuffer(16, READBACK_USAGE);
    copyBuffer(t.resolved, 0, staging, 0, 16);
    flush();
    if (opts.sleepMs) await new Promise((r) => setTimeout(r, opts.sleepMs));
    try {
      await awaitGpu(staging.mapAsync(GPUMapMode.READ, 0, 16));
    } finally {
      await settleErrors();
    }
    const [begin, end] = new BigUint64Array(staging.getMappedRange(0, 16).slice(0));
    staging.unmap();
    releaseBuffer(staging);
    if (end < begin) throw new Error(`timeGpu: end timestamp ${end} precedes begin ${begin}`);
    return Number(end - begin);
  } finally {
    t.busy = false;
  }
}
