// Byte-offset index of a JSONL file's lines, so that files of several GB are read one line at a time and
// never whole. Built once by a streaming scan, cached in a cache dir (keyed by the absolute path, and
// invalidated when the file's size or mtime changes), and shared with loader workers without a copy.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';

/** `.cache/` under the project root (gitignored). */
export const PROJECT_CACHE = resolve(import.meta.dirname, '..', '.cache');

const MAGIC = 'MMJSONLIDX1';
const CHUNK = 8 << 20; // bytes read per scan step

export interface FileStamp { size: number; mtimeMs: number }

export function stampOf(path: string): FileStamp {
  const st = statSync(path);
  return { size: st.size, mtimeMs: st.mtimeMs };
}

/** Cache file for `path` with a suffix; the name carries a hash of the absolute path. */
export function cachePath(path: string, suffix: string, cacheDir = join(PROJECT_CACHE, 'jsonl-index')): string {
  const abs = resolve(path);
  const h = createHash('sha1').update(abs).digest('hex').slice(0, 12);
  return join(cacheDir, `${basename(abs)}-${h}${suffix}`);
}

export class LineIndex {
  private fd = -1;
  private buf = Buffer.alloc(1 << 16);

  /** `offsets[i]` is the byte where line i starts; `offsets[count]` is the file size. */
  constructor(readonly path: string, readonly offsets: Float64Array, readonly stamp: FileStamp) {}

  get count(): number {
    return this.offsets.length - 1;
  }

  /** Line i (0-based) as text, without its `\n` / `\r\n`, and line 0 without a UTF-8 byte-order mark (files
   *  saved by Windows editors start with one; Python's utf-8-sig and HF datasets' readers drop it too). */
  readLine(i: number): string {
    if (!(i >= 0 && i < this.count)) throw new Error(`${this.path}: line index ${i} out of range [0, ${this.count})`);
    const start = this.offsets[i];
    let len = this.offsets[i + 1] - start;
    if (len > this.buf.length) this.buf = Buffer.alloc(Math.max(len, this.buf.length * 2));
    if (this.fd < 0) this.fd = openSync(this.path, 'r');
    const got = readSync(this.fd, this.buf, 0, len, start);
    if (got !== len) throw new Error(`${this.path}: file changed while reading line ${i + 1}`);
    if (len > 0 && this.buf[len - 1] === 10) len--;
    if (len > 0 && this.buf[len - 1] === 13) len--;
    const from = start === 0 && len >= 3 && this.buf[0] === 0xef && this.buf[1] === 0xbb && this.buf[2] === 0xbf ? 3 : 0;
    return this.buf.toString('utf8', from, len);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  /** Load the cached index, or scan the file and cache it. `offsets` lives in a SharedArrayBuffer. */
  static open(path: string, cacheDir?: string): LineIndex {
    const stamp = stampOf(path);
    const file = cachePath(path, '.idx', cacheDir);
    const cached = existsSync(file) ? readCached(file, stamp) : undefined;
    if (cached) return new LineIndex(path, cached, stamp);
    const offsets = scanLines(path, stamp.size);
    const header = Buffer.from(`${MAGIC} ${JSON.stringify(stamp)}\n`.padEnd(256));
    writeFileAtomic(file, [header, new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength)]);
    return new LineIndex(path, offsets, stamp);
  }
}

function shared(n: number): Float64Array {
  return new Float64Array(new SharedArrayBuffer(8 * n));
}

function readCached(file: string, stamp: FileStamp): Float64Array | undefined {
  const raw = readFileSync(file);
  const head = raw.subarray(0, 256).toString('utf8');
  if (!head.startsWith(MAGIC)) return undefined;
  const saved = JSON.parse(head.slice(MAGIC.length, head.indexOf('\n'))) as FileStamp;
  if (saved.size !== stamp.size || saved.mtimeMs !== stamp.mtimeMs) return undefined;
  const n = (raw.length - 256) / 8;
  const out = shared(n);
  new Uint8Array(out.buffer).set(raw.subarray(256));
  return out;
}

/** Stream the file in CHUNK-byte reads, recording where each line starts. A final line without `\n`
 *  still counts; an empty file has no lines. */
function scanLines(path: string, size: number): Float64Array {
  let offsets = new Float64Array(1 << 16);
  let n = 0;
  const push = (v: number) => {
    if (n === offsets.length) {
      const grown = new Float64Array(offsets.length * 2);
      grown.set(offsets);
      offsets = grown;
    }
    offsets[n++] = v;
  };
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(CHUNK);
  try {
    if (size > 0) push(0);
    for (let pos = 0; pos < size;) {
      const got = readSync(fd, buf, 0, CHUNK, pos);
      if (got <= 0) throw new Error(`${path}: file shrank while indexing (read ${pos} of ${size} bytes)`);
      for (let j = buf.indexOf(10, 0); j >= 0 && j < got; j = buf.indexOf(10, j + 1)) {
        if (pos + j + 1 < size) push(pos + j + 1);
      }
      pos += got;
    }
  } finally {
    closeSync(fd);
  }
  push(size);
  const out = shared(n);
  out.set(offsets.subarray(0, n));
  return out;
}
