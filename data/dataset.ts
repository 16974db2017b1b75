// What SFT and pretrain datasets share: the line index, the validation pass over every line (cached
// beside the index, keyed by the file stamp, the tokenizer and max_seq_len), bad-line reporting, and the
// sample → line map that loader workers receive without re-validating.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import { cachePath, LineIndex, type FileStamp } from './jsonl.js';

export interface DatasetOptions {
  /** Count and skip bad lines instead of stopping on the first (`--skip_bad_lines`). */
  skipBadLines?: boolean;
  /** MiniMind's SFT augmentation (random system prompt, empty-think stripping); off by default. */
  augment?: boolean;
  /** Seed of the augmentation draws (default 42). */
  seed?: number;
  /** Where the line index and validation results are cached (default `.cache/jsonl-index/`). */
  cacheDir?: string;
  /** Called every few thousand lines of a validation pass that is not cached yet. */
  onProgress?: (linesDone: number, linesTotal: number) => void;
}

export interface Sample {
  /** `[maxSeqLen]` token ids, right-padded with the pad id. */
  inputIds: Int32Array;
  /** `[maxSeqLen]` targets at the same positions (the model shifts), −100 where not trained. */
  labels: Int32Array;
}

export interface BadLine { line: number; reason: string }

/** Everything a worker needs to rebuild a validated dataset without another pass. */
export interface DatasetSource {
  path: string;
  offsets: Float64Array;
  stamp: FileStamp;
  /** Sample i is 0-based line `lines[i]`. */
  lines: Uint32Array;
}

const VALIDATION_VERSION = 2; // 2: a UTF-8 BOM on line 1 is dropped, no longer 'not valid JSON'

interface ValidationResult { stamp: FileStamp; bad: [number, string][]; blank: number[] }

/** Run `problem` over every line (or reuse the cached result) and build the sample → line map.
 *  Blank lines are not samples and not errors. Throws on the first bad line unless skipBadLines, and when
 *  no line is left to train on (an empty file, only blank lines, every line bad). */
export function validateLines(
  index: LineIndex, key: string, problem: (text: string) => string | undefined, opts: DatasetOptions,
): { source: DatasetSource; bad: BadLine[] } {
  const keyHash = createHash('sha1').update(`${VALIDATION_VERSION}|${key}`).digest('hex').slice(0, 12);
  const file = cachePath(index.path, `.${keyHash}.val`, opts.cacheDir);
  let res: ValidationResult | undefined;
  if (existsSync(file)) {
    const saved = JSON.parse(readFileSync(file, 'utf8')) as ValidationResult;
    if (saved.stamp.size === index.stamp.size && saved.stamp.mtimeMs === index.stamp.mtimeMs) res = saved;
  }
  if (!res) {
    res = { stamp: index.stamp, bad: [], blank: [] };
    for (let i = 0; i < index.count; i++) {
      const text = index.readLine(i);
      if (text.trim() === '') res.blank.push(i);
      else {
        const why = problem(text);
        if (why !== undefined) res.bad.push([i, why]);
      }
      if (opts.onProgress && (i + 1) % 4096 === 0) opts.onProgress(i + 1, index.count);
    }
    writeFileAtomic(file, JSON.stringify(res));
  }
  const bad = res.bad.map(([line, reason]) => ({ line: line + 1, reason }));
  if (bad.length > 0 && !opts.skipBadLines) {
    const more = bad.length > 1 ? ` (${bad.length} bad lines in all, next at line ${bad[1].line})` : '';
    throw new Error(`${index.path}:${bad[0].line}: ${bad[0].reason}${more}; fix the data or skip bad lines (--skip_bad_lines)`);
  }
  if (res.blank.length + bad.length === index.count) throw new Error(`${index.path}: ${noSampleReason(index.count, bad)}`);
  const skip = new Set<number>([...res.blank, ...res.bad.map(([l]) => l)]);
  const lines = new Uint32Array(new SharedArrayBuffer(4 * (index.count - skip.size)));
  for (let i = 0, k = 0; i < index.count; i++) if (!skip.has(i)) lines[k++] = i;
  return { source: { path: index.path, offsets: index.offsets, stamp: index.stamp, lines }, bad };
}

/** Why a file without a single sample has none (training on it would run 0 steps). */
function noSampleReason(lines: number, bad: BadLine[]): string {
  if (lines === 0) return 'no samples: the file is empty';
  if (bad.length === 0) return `no samples: all ${lines} lines are blank`;
  return `no usable sample: all ${bad.length} non-blank lines are bad and were skipped (the first, line ${bad[0].line}: ${bad[0].reason})`;
}

/** Parse one line, turning a syntax error into a reason. */
export function parseLine(text: string): { value?: unknown; problem?: string } {
  try {
    return { value: JSON.parse(text) };
  } catch (e) {
    return { problem: `not valid JSON (${(e as Error).message})` };
  }
}

/** Right-pad `ids` (already ≤ maxSeqLen) with `padId` into a fresh Int32Array. */
export function padTo(ids: ArrayLike<number>, maxSeqLen: number, padId: number): Int32Array {
  const out = new Int32Array(maxSeqLen).fill(padId);
  for (let i = 0; i < Math.min(ids.length, maxSeqLen); i++) out[i] = ids[i];
  return out;
}
