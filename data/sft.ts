// SFT dataset (spec §7): one `{"conversations": [...]}` per line; render the chat template without a
// generation prompt, tokenize, truncate to max_seq_len, right-pad with the pad id, and train only the
// assistant spans, each from right after `<|im_start|>assistant\n` through `<|im_end|>\n`.
import { mulberry32 } from '../runtime/random.js';
import { addRandomSystem, conversationProblem, stripEmptyThink, templateInput } from './conversation.js';
import { padTo, parseLine, validateLines, type BadLine, type DatasetOptions, type DatasetSource, type Sample } from './dataset.js';
import { LineIndex } from './jsonl.js';
import type { ChatMessage, ChatTokenizer } from './tokenizer.js';

export const IGNORE_INDEX = -100;

/** MiniMind's generate_labels on the padded ids: every `header` match opens a span that runs to the next
 *  `imEnd` match inclusive (or to the end), capped at maxSeqLen; everything else stays −100. */
export function assistantLabels(ids: ArrayLike<number>, header: number[], imEnd: number[], maxSeqLen: number): Int32Array {
  const n = ids.length;
  const labels = new Int32Array(n).fill(IGNORE_INDEX);
  const at = (i: number, pat: number[]) => {
    if (i + pat.length > n) return false;
    for (let k = 0; k < pat.length; k++) if (ids[i + k] !== pat[k]) return false;
    return true;
  };
  for (let i = 0; i < n;) {
    if (!at(i, header)) {
      i++;
      continue;
    }
    const start = i + header.length;
    let end = start;
    while (end < n && !at(end, imEnd)) end++;
    for (let j = start; j < Math.min(end + imEnd.length, maxSeqLen, n); j++) labels[j] = ids[j];
    i = end < n ? end + imEnd.length : n;
  }
  return labels;
}

/** Seed of sample i's augmentation draws: the same on every worker and every run. */
export function sampleSeed(seed: number, epoch: number, i: number): number {
  return (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(epoch + 1, 0xc2b2ae35) ^ Math.imul(i + 1, 0x27d4eb2f)) >>> 0;
}

export class SFTDataset {
  /** Bad lines skipped by the validation pass (0 unless skipBadLines). */
  readonly skipped: number;
  private readonly index: LineIndex;

  private constructor(
    readonly source: DatasetSource, readonly tok: ChatTokenizer, readonly maxSeqLen: number,
    readonly opts: DatasetOptions, readonly badLines: BadLine[] = [],
  ) {
    this.index = new LineIndex(source.path, source.offsets, source.stamp);
    this.skipped = badLines.length;
  }

  /** Index the file (cached), validate every line (cached), and stop on the first bad one unless
   *  opts.skipBadLines. */
  static async open(path: string, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions = {}): Promise<SFTDataset> {
    if (!(Number.isInteger(maxSeqLen) && maxSeqLen >= 2)) throw new Error(`SFTDataset: max_seq_len must be an integer ≥ 2, got ${maxSeqLen}`);
    const index = LineIndex.open(path, opts.cacheDir);
    const probe = new SFTDataset({ path, offsets: index.offsets, stamp: index.stamp, lines: new Uint32Array(0) }, tok, maxSeqLen, opts);
    const { source, bad } = validateLines(index, `sft|${tok.fingerprint}|${maxSeqLen}`, (t) => probe.problem(t), opts);
    index.close();
    return new SFTDataset(source, tok, maxSeqLen, opts, bad);
  }

  /** Rebuild a validated dataset from its source (loader workers). */
  static fromSource(source: DatasetSource, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions): SFTDataset {
    return new SFTDataset(source, tok, maxSeqLen, opts);
  }

  get length(): number {
    return this.source.lines.length;
  }

  /** 1-based line number of sample i in the file. */
  lineNumber(i: number): number {
    return this.source.lines[i] + 1;
  }

  /** Sample i. `epoch` only changes the augmentation draws. */
  get(i: number, epoch = 0): Sample {
    if (!(i >= 0 && i < this.length)) throw new Error(`SFTDataset: sample ${i} out of range [0, ${this.length})`);
    const line = this.source.lines[i];
    const value = JSON.parse(this.index.readLine(line)) as { conversations: ChatMessage[] };
    const rand = this.opts.augment ? mulberry32(sampleSeed(this.opts.seed ?? 42, epoch, i)) : undefined;
    const ids = this.tokenize(value.conversations, rand).slice(0, this.maxSeqLen);
    const inputIds = padTo(ids, this.maxSeqLen, this.tok.padId);
    return { inputIds, labels: assistantLabels(inputIds, this.tok.assistantHeaderIds, this.tok.imEndIds, this.maxSeqLen) };
  }

  /** Rendered and tokenized, before truncation. */
  tokenize(conversations: ChatMessage[], rand?: () => number): number[] {
    const conv = rand ? addRandomSystem(conversations, rand) : conversations;
    const { messages, tools } = templateInput(conv);
    const text = this.tok.applyChatTemplate(messages, { tools });
    return this.tok.encode(rand ? stripEmptyThink(text, rand) : text);
  }

  /** Why a line cannot be trained on, or undefined. */
  problem(text: string): string | undefined {
    const { value, problem } = parseLine(text);
    if (problem) return problem;
    const structural = conversationProblem(value);
    if (structural) return structural;
    let ids: number[];
    try {
      ids = this.tokenize((value as { conversations: ChatMessage[] }).conversations);
    } catch (e) {
      return `chat template failed (${(e as Error).message})`;
    }
    return untrainable(ids, this.tok, this.maxSeqLen);
  }

  close(): void {
    this.index.close();
  }
}

/** Why the tokenized sequence `ids` (before truncation) trains no token at maxSeqLen, or undefined
 *  when it trains some (SFT lines, and each side of a DPO row). */
export function untrainable(ids: number[], tok: ChatTokenizer, maxSeqLen: number): string | undefined {
  const labels = assistantLabels(ids.slice(0, maxSeqLen), tok.assistantHeaderIds, tok.imEndIds, maxSeqLen);
  if (labels.some((l) => l !== IGNORE_INDEX)) return undefined;
  const h = findSeq(ids, tok.assistantHeaderIds);
  return h < 0
    ? 'no trainable token (the assistant header never tokenizes to its own ids)'
    : `no trainable token (the first assistant reply starts at token ${h + tok.assistantHeaderIds.length}, max_seq_len is ${maxSeqLen})`;
}

function findSeq(ids: number[], pat: number[]): number {
  outer: for (let i = 0; i + pat.length <= ids.length; i++) {
    for (let k = 0; k < pat.length; k++) if (ids[i + k] !== pat[k]) continue outer;
    return i;
  }
  return -1;
}
