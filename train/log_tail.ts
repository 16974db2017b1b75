// Follows one run log as it is written (train/run_log.ts's lines): each poll reads the bytes added since the
// last one and parses the complete lines; a line still being written waits for its newline, and a line that
// is not a JSON object is counted and skipped. A file removed, truncated or replaced (a new run with the same
// --log_file) starts over from its first byte.
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { parseLines } from './run_log.js';

/** Bytes of the file's start remembered to notice that it was replaced by another of at least the same size. */
const HEAD_BYTES = 64;

export interface TailUpdate {
  /** The records so far are void: `records` starts the file anew. */
  reset: boolean;
  records: Record<string, unknown>[];
}

export class LogTail {
  readonly records: Record<string, unknown>[] = [];
  skipped = 0;
  private offset = 0;
  private rest: Buffer = Buffer.alloc(0);
  private head: Buffer = Buffer.alloc(0);

  constructor(readonly path: string) {}

  /** What the file gained since the last poll; undefined when nothing changed. */
  poll(): TailUpdate | undefined {
    let size: number;
    try {
      size = statSync(this.path).size;
    } catch {
      if (this.offset === 0) return undefined; // not written yet
      this.clear();
      return { reset: true, records: [] };
    }
    const reset = size < this.offset || !this.sameHead();
    if (reset) this.clear();
    if (size === this.offset) return reset ? { reset, records: [] } : undefined;
    const chunk = this.read(this.offset, size - this.offset);
    this.offset += chunk.length;
    if (this.head.length < HEAD_BYTES) this.head = this.read(0, Math.min(HEAD_BYTES, this.offset));
    const buf = Buffer.concat([this.rest, chunk]);
    const cut = buf.lastIndexOf(0x0a) + 1;
    this.rest = buf.subarray(cut);
    const { records, skipped } = parseLines(buf.subarray(0, cut).toString('utf8'));
    this.records.push(...records);
    this.skipped += skipped;
    return records.length || reset ? { reset, records } : undefined;
  }

  private clear(): void {
    this.records.length = 0;
    this.skipped = this.offset = 0;
    this.rest = this.head = Buffer.alloc(0);
  }

  private sameHead(): boolean {
    return !this.head.length || this.read(0, this.head.length).equals(this.head);
  }

  private read(at: number, n: number): Buffer {
    const buf = Buffer.alloc(n);
    const fd = openSync(this.path, 'r');
    try {
      return buf.subarray(0, readSync(fd, buf, 0, n, at));
    } finally {
      closeSync(fd);
    }
  }
}
