// DPO dataset (spec §12, MiniMind's DPODataset): one `{"chosen": [msgs], "rejected": [msgs]}` per line.
// Each side on its own: render the chat template (no generation prompt; MiniMind passes the messages
// alone, so no `tools`), post_processing_chat with augment (one draw per side, chosen first), tokenize,
// truncate to L = max_seq_len, right-pad with the pad id; mask m from the SFT assistant scan; then
// x = ids[0:L-1], y = ids[1:L], mask = m[1:L]. A batch stacks the chosen rows, then the rejected ones.
// In a batch row, y and mask travel as one labels array: y where mask is 1, −100 where it is 0 (the
// log-prob reduction reads only masked positions, and Σ mask is the number of labels ≠ −100).
import { mulberry32 } from '../runtime/random.js';
import { conversationProblem, stripEmptyThink } from './conversation.js';
import { padTo, parseLine, validateLines, type BadLine, type DatasetOptions, type DatasetSource } from './dataset.js';
import { LineIndex } from './jsonl.js';
import { assistantLabels, IGNORE_INDEX, sampleSeed, untrainable } from './sft.js';
import type { ChatMessage, ChatTokenizer } from './tokenizer.js';

export const SIDES = ['chosen', 'rejected'] as const;
export type SideName = (typeof SIDES)[number];

/** One side of a pair, each array of length L − 1. */
export interface DPOSide {
  /** ids[0 : L−1], the model's input. */
  x: Int32Array;
  /** ids[1 : L], the labels. */
  y: Int32Array;
  /** m[1 : L]: 1 on the assistant spans (through `<|im_end|>\n`), 0 elsewhere. */
  mask: Int32Array;
}

export type DPOSample = Record<SideName, DPOSide>;

export class DPODataset {
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
  static async open(path: string, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions = {}): Promise<DPODataset> {
    if (!(Number.isInteger(maxSeqLen) && maxSeqLen >= 2)) throw new Error(`DPODataset: max_seq_len must be an integer ≥ 2, got ${maxSeqLen}`);
    const index = LineIndex.open(path, opts.cacheDir);
    const probe = new DPODataset({ path, offsets: index.offsets, stamp: index.stamp, lines: new Uint32Array(0) }, tok, maxSeqLen, opts);
    const { source, bad } = validateLines(index, `dpo|${tok.fingerprint}|${maxSeqLen}`, (t) => probe.problem(t), opts);
    index.close();
    return new DPODataset(source, tok, maxSeqLen, opts, bad);
  }

  /** Rebuild a validated dataset from its source (loader workers). */
  static fromSource(source: DatasetSource, tok: ChatTokenizer, maxSeqLen: number, opts: DatasetOptions): DPODataset {
    return new DPODataset(source, tok, maxSeqLen, opts);
  }

  get length(): number {
    return this.source.lines.length;
  }

  /** Tokens per batch row: L − 1. */
  get rowLength(): number {
    return this.maxSeqLen - 1;
  }

  /** 1-based line number of sample i in the file. */
  lineNumber(i: number): number {
    return this.source.lines[i] + 1;
  }

  /** Pair i. `epoch` only changes the augmentation draws. */
  get(i: number, epoch = 0): DPOSample {
    if (!(i >= 0 && i < this.length)) throw new Error(`DPODataset: sample ${i} out of range [0, ${this.length})`);
    const value = JSON.parse(this.index.readLine(this.source.lines[i])) as Record<SideName, ChatMessage[]>;
    const rand = this.opts.augment ? mulberry32(sampleSeed(this.opts.seed ?? 42, epoch, i)) : undefined;
    return { chosen: this.side(value.chosen, rand), rejected: this.side(value.rejected, rand) };
  }

  /** One conversation rendered, tokenized, padded, masked and shifted. */
  side(conv: ChatMessage[], rand?: () => number): DPOSide {
    const L = this.maxSeqLen;
    const ids = padTo(this.tokenize(conv, rand).slice(0, L), L, this.tok.padId);
    const labels = assistantLabels(ids, this.tok.assistantHeaderIds, this.tok.imEndIds, L);
    const mask = new Int32Array(L - 1);
    for (let t = 1; t < L; t++) mask[t - 1] = labels[t] === IGNORE_INDEX ? 0 : 1;
    return { x: ids.slice(0, L - 1), y: ids.slice(1), mask };
  }

  /** Rendered and tokenized, before truncation; with `rand`, MiniMind's post_processing_chat first. */
  tokenize(conv: ChatMessage[], rand?: () => number): number[] {
    const text = this.tok.applyChatTemplate(conv);
    return this.tok.encode(rand ? stripEmptyThink(text, rand) : text);
  }

  /** Why a line cannot be trained on, or undefined; the reason names the side at fault. */
  problem(text: string): string | undefined {
    const { value, problem } = parseLine(text);
    if (problem) return problem;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
    for (const side of SIDES) {
      const conv = (value as Record<string, unknown>)[side];
      if (!Array.isArray(conv)) return `no "${side}" array`;
      const structural = conversationProblem({ conversations: conv });
      if (structural) return `"${side}": ${structural}`;
      let ids: number[];
      try {
        ids = this.tokenize(conv as ChatMessage[]);
      } catch (e) {
        return `"${side}": chat template failed (${(e as Error).message})`;
      }
      const why = untrainable(ids, this.tok, this.maxSeqLen);
      if (why) return `"${side}": ${why}`;
    }
    return undefined;
  }

  close(): void {
    this.index.close();
  }
}

/** Stack pairs into `[2B, L−1]` inputs and labels: rows 0..B−1 chosen, B..2B−1 rejected; a label is y
 *  where the mask is 1, else −100. */
export function collatePairs(pairs: DPOSample[], rowLength: number): { inputIds: Int32Array; labels: Int32Array } {
  const B = pairs.length, T = rowLength;
  const inputIds = new Int32Array(2 * B * T), labels = new Int32Array(2 * B * T);
  SIDES.forEach((side, k) => pairs.forEach((p, b) => {
    const { x, y, mask } = p[side], at = (k * B + b) * T;
    inputIds.set(x, at);
    for (let t = 0; t < T; t++) labels[at + t] = mask[t] ? y[t] : IGNORE_INDEX;
  }));
  return { inputIds, labels };
}
