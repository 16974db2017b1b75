// The WebGPU device: one per process, acquired once with the adapter's full limits.
// Errors from the GPU (validation, out-of-memory, device loss) are captured and re-thrown
// on the next host call with the name of the kernel batch that caused them.
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);

export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** One line: vendor / architecture / description, with a note for software adapters. */
  adapterName: string;
  isSoftware: boolean;
  features: Set<string>;
  limits: GPUSupportedLimits;
}

let current: Gpu | undefined;
let pending: Promise<Gpu> | undefined;
let gpuFactory: GPU | undefined;
let deferredError: Error | undefined;

const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

/** Acquire the adapter and device (idempotent; one per thread: a data-parallel rank's worker thread has
 *  its own). `adapter`, else `MINIMIND_ADAPTER`, picks an adapter by name (Dawn lists the available ones
 *  when the name matches none); `MINIMIND_BACKEND` picks the backend. */
export function initGpu(opts: { quiet?: boolean; adapter?: string } = {}): Promise<Gpu> {
  if (current) return Promise.resolve(current);
  pending ??= acquire(opts.quiet ?? false, opts.adapter ?? process.env.MINIMIND_ADAPTER);
  return pending;
}

async function acquire(quiet: boolean, wanted: string | undefined): Promise<Gpu> {
  process.env.XDG_RUNTIME_DIR ??= `/tmp/xdg-runtime-${process.getuid?.() ?? 0}`;
  // Dawn rounds timestamp-query values to 65.536 µs by default (a browser's timing-attack guard);
  // the bench times kernels of ~1 ms with them, so ask for full resolution.
  const flags: string[] = ['disable-dawn-features=timestamp_quantization'];
  if (wanted) flags.push(`adapter=${wanted}`);
  if (process.env.MINIMIND_BACKEND) flags.push(`backend=${process.env.MINIMIND_BACKEND}`);
  gpuFactory = create(flags);
  const adapter = await gpuFactory.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new Error('No WebGPU adapter found. Run `bash scripts/setup.sh` (installs Mesa lavapipe on Debian/Ubuntu), '
      + 'or set MINIMIND_ADAPTER to one of the adapters Dawn lists.');
  }
  const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const key of Object.keys(Object.getPrototypeOf(adapter.limits))) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    // Dawn clamps the dynamic-offset limits itself and warns when asked for the adapter's value.
    if (typeof v === 'number' && !key.startsWith('maxDynamic')) requiredLimits[key] = v;
  }
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  const info = adapter.info;
  const isSoftware = /llvmpipe|lavapipe|swiftshader|software|cpu/i.test(
    `${info.vendor} ${info.architecture} ${info.description} ${info.device}`);
  const name = `${info.vendor || '?'} / ${info.architecture || '?'} / ${info.description || info.device || '?'}`
    + (isSoftware ? ' (software rasterizer on the CPU, not a GPU)' : '');
  device.addEventListener('uncapturederror', (ev) => {
    deferredError ??= new Error(`GPU error: ${(ev as GPUUncapturedErrorEvent).error.message}`);
  });
  void device.lost.then((l) => {
    if (l.reason !== 'destroyed') deferredError ??= new Error(`GPU device lost (${l.reason}): ${l.message}`);
  });
  current = { device, adapter, adapterName: name, isSoftware, features: new Set(features), limits: device.limits };
  if (!quiet && !process.env.MINIMIND_QUIET) console.log(`[gpu] adapter: ${name}; features: ${features.join(', ') || 'none'}`);
  return current;
}

/** The device acquired by initGpu(); throws if it was not called. */
export function gpu(): Gpu {
  if (!current) throw new Error('GPU not initialised: await initGpu() first');
  return current;
}

/** Record an error found asynchronously (error scopes, device loss); it is thrown at the next checkGpuError(). */
export function deferGpuError(e: Error): void {
  deferredError ??= e;
}

export function checkGpuError(): void {
  if (deferredError) {
    const e = deferredError;
    deferredError = undefined;
    throw e;
  }
}

/** Destroy the device so Node can exit (Dawn keeps the event loop alive while a device exists). */
export function closeGpu(): void {
  current?.device.destroy();
  current = undefined;
  pending = undefined;
  gpuFactory = undefined;
}
