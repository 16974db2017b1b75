// Pretrain dataset (spec §7): one `{"text": ...}` per line; ids = [bos] + tokens(text)[:max_len−2] + [eos],
// right-padded with the pad id; labels = ids with every position holding the pad id set to −100
// (MiniMind's `labels[input_ids == pad_token_id] = -100`, so a literal pad token inside a text is not trained either).
import { padTo, parseLine, validateLines, type BadLine, type DatasetOptions, type DatasetSource, type Sample } from './dataset.js';
import { LineIndex } from './jsonl.js';
import { IGNORE_INDEX } from './sft.js';
import type { ChatTokenizer } from './tokenizer.js';

export class PretrainDataset {
  readonly skipped: number;
  private readonly index: LineIndex;

  private constructor(
    readonly source: DatasetSource, readonly tok: ChatTokenizer, readonly maxSeqLen: number,
    readonly opts: DatasetOptions, readonly badLines: BadLine[] = [],
  ) {
    this.index = new LineIndex(source.path, source.offsets, source.stamp);
    this.skipped = badLines.length;
  }

  static async open(path: string, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions = {}): Promise<PretrainDataset> {
    if (!(Number.isInteger(maxSeqLen) && maxSeqLen >= 2)) throw new Error(`PretrainDataset: max_seq_len must be an integer ≥ 2, got ${maxSeqLen}`);
    const index = LineIndex.open(path, opts.cacheDir);
    // Tokenization cannot fail and bos/eos are always trained, so only the JSON shape is checked.
    const { source, bad } = validateLines(index, 'pretrain', problem, opts);
    index.close();
    return new PretrainDataset(source, tok, maxSeqLen, opts, bad);
  }

  static fromSource(source: DatasetSource, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions): PretrainDataset {
    return new PretrainDataset(source, tok, maxSeqLen, opts);
  }

  get length(): number {
    return this.source.lines.length;
  }

  lineNumber(i: number): number {
    return this.source.lines[i] + 1;
  }

  get(i: number): Sample {
    if (!(i >= 0 && i < this.length)) throw new Error(`PretrainDataset: sample ${i} out of range [0, ${this.length})`);
    const { text } = JSON.parse(this.index.readLine(this.source.lines[i])) as { text: string };
    const body = this.tok.encode(text).slice(0, this.maxSeqLen - 2);
    const inputIds = padTo([this.tok.bosId, ...body, this.tok.eosId], this.maxSeqLen, this.tok.padId);
    const labels = Int32Array.from(inputIds, (id) => (id === this.tok.padId ? IGNORE_INDEX : id));
    return { inputIds, labels };
  }

  close(): void {
    this.index.close();
  }
}

function problem(text: string): string | undefined {
  const { value, problem } = parseLine(text);
  if (problem) return problem;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  return typeof (value as { text?: unknown }).text === 'string' ? undefined : 'no "text" string';
}
