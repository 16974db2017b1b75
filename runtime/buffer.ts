// GPU buffer pool. Buffers are bucketed by size class and usage so a training step reuses the
// memory of the previous one instead of allocating. Reuse is safe without waiting: WebGPU orders
// all work on one queue, so a buffer released now is only rewritten by later commands.
import { gpu } from './device.js';

export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
export const READBACK_USAGE = GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST;

/** Size class in bytes: multiples of 256 B below 4 KiB, then 8 steps per power of two (≤ 12.5% waste). */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

interface PoolStats { allocatedBytes: number; inUseBytes: number; peakAllocatedBytes: number; peakInUseBytes: number; buffers: number }

const free = new Map<string, GPUBuffer[]>();
const stats: PoolStats = { allocatedBytes: 0, inUseBytes: 0, peakAllocatedBytes: 0, peakInUseBytes: 0, buffers: 0 };

export function acquireBuffer(bytes: number, usage = STORAGE_USAGE): GPUBuffer {
  const size = sizeClass(bytes);
  const key = `${usage}:${size}`;
  let buf = free.get(key)?.pop();
  if (!buf) {
    buf = gpu().device.createBuffer({ size, usage });
    stats.allocatedBytes += size;
    stats.buffers++;
    stats.peakAllocatedBytes = Math.max(stats.peakAllocatedBytes, stats.allocatedBytes);
  }
  stats.inUseBytes += size;
  stats.peakInUseBytes = Math.max(stats.peakInUseBytes, stats.inUseBytes);
  return buf;
}

export function releaseBuffer(buf: GPUBuffer): void {
  const key = `${buf.usage}:${buf.size}`;
  stats.inUseBytes -= buf.size;
  let list = free.get(key);
  if (!list) free.set(key, (list = []));
  list.push(buf);
}

/** Bytes of GPU memory the pool holds (allocated) and hands out (inUse), now and at peak. */
export function poolStats(): PoolStats {
  return { ...stats };
}

/** Destroy every pooled free buffer (e.g. after an out-of-memory, or between benchmarks). */
export function trimPool(): void {
  for (const list of free.values()) for (const b of list) { stats.allocatedBytes -= b.size; stats.buffers--; b.destroy(); }
  free.clear();
}

export function resetPeak(): void {
  stats.peakAllocatedBytes = stats.allocatedBytes;
  stats.peakInUseBytes = stats.inUseBytes;
}
