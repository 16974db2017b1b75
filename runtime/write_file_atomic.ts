// The one way this project writes a file that must never be seen half-written (weights, resume checkpoints,
// caches, the loss picture, bench results): a temp file in the same folder, fsync'd, renamed onto the final
// name, then the folder fsync'd. Without the first fsync a power loss soon after the rename can leave an empty
// or torn file under the final name (the rename reaches the disk before the data); without the second the
// rename itself may be lost, leaving the previous file.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Write `data` (or its parts, one after another) to `path` atomically and durably, creating the folder. */
export function writeFileAtomic(path: string, data: string | Uint8Array | Uint8Array[]): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const parts = typeof data === 'string' ? [Buffer.from(data)] : Array.isArray(data) ? data : [data];
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const fd = openSync(tmp, 'w');
  let open = true;
  try {
    for (const b of parts) for (let o = 0; o < b.length;) o += writeSync(fd, b, o);
    fsyncSync(fd);
    closeSync(fd);
    open = false;
    renameSync(tmp, path);
  } catch (err) {
    if (open) closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dir);
}

/** fsync a folder so a rename in it is on disk. Node cannot open a folder for fsync on Windows: skipped there. */
export function syncDir(dir: string): void {
  if (process.platform === 'win32') return;
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
