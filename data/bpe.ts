// Byte-level BPE trainer, in the manner of MiniMind's train_tokenizer.py (HF BpeTrainer on a ByteLevel
// pre-tokenizer, all 256 byte symbols in the alphabet, special tokens <|endoftext|>, <|im_start|>,
// <|im_end|> at ids 0-2). Writes tokenizer.json + tokenizer_config.json in Hugging Face's format with
// the project's ChatML template. Usage: npx tsx data/bpe.ts OUT_DIR FILE... [--vocab 6400]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CHATML_TEMPLATE } from './chatml.js';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';

export const SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'];
/** GPT-2's pre-tokenizer split, the one HF's ByteLevel(use_regex=True) applies. */
const SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's byte → printable char map (bytes that print as themselves keep their code; the rest go to 256+). */
export const BYTE_CHARS: string[] = (() => {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let extra = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(keep(b) ? b : 256 + extra++));
})();

export interface BpeOptions {
  /** Final vocab size, special tokens and the 256 byte symbols included (default 6400). */
  vocabSize?: number;
  /** Pairs seen fewer times than this are never merged (default 2). */
  minFrequency?: number;
}

export interface BpeModel { vocab: string[]; merges: [string, string][] }

/** Count byte-level pre-tokens; special-token strings are cut out of the text, not learned. */
function countWords(texts: Iterable<string>): Map<string, number> {
  const counts = new Map<string, number>();
  const specials = new RegExp(SPECIAL_TOKENS.map((t) => t.replace(/[|]/g, '\\|')).join('|'), 'g');
  const enc = new TextEncoder();
  for (const text of texts) {
    for (const part of text.split(specials)) {
      for (const m of part.matchAll(SPLIT)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    }
  }
  const out = new Map<string, number>();
  for (const [w, c] of counts) {
    const chars = Array.from(enc.encode(w), (b) => BYTE_CHARS[b]).join('');
    out.set(chars, (out.get(chars) ?? 0) + c);
  }
  return out;
}

/** Max-heap of pair keys by (count desc, key asc) — HF's tie-break: the smaller pair of ids wins. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  get size() { return this.c.length; }
  private above(i: number, j: number) { return this.c[i] > this.c[j] || (this.c[i] === this.c[j] && this.k[i] < this.k[j]); }
  private swap(i: number, j: number) {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.k[i], this.k[j]] = [this.k[j], this.k[i]];
  }
  push(count: number, key: number) {
    this.c.push(count); this.k.push(key);
    for (let i = this.c.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p); i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.c[0], this.k[0]];
    const lc = this.c.pop()!, lk = this.k.pop()!;
    if (this.c.length > 0) {
      this.c[0] = lc; this.k[0] = lk;
      for (let i = 0; ;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.c.length && this.above(l, m)) m = l;
        if (r < this.c.length && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m); i = m;
      }
    }
    return top;
  }
}

/** Learn merges until the vocab holds vocabSize tokens (or no pair is frequent enough). */
export function trainBpe(texts: Iterable<string>, opts: BpeOptions = {}): BpeModel {
  const vocabSize = opts.vocabSize ?? 6400, minFrequency = opts.minFrequency ?? 2;
  const base = SPECIAL_TOKENS.length + 256;
  if (!(Number.isInteger(vocabSize) && vocabSize >= base && vocabSize <= 65536)) throw new Error(`bpe: vocab size must be an integer in [${base}, 65536], got ${vocabSize}`);
  const vocab = [...SPECIAL_TOKENS, ...[...BYTE_CHARS].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)];
  const idOf = new Map(vocab.map((t, i) => [t, i]));
  const words: Uint16Array[] = [], freq: number[] = [];
  for (const [w, c] of countWords(texts)) {
    words.push(Uint16Array.from(Array.from(w), (ch) => idOf.get(ch)!));
    freq.push(c);
  }
  const K = 65536, pairs = new Map<number, number>(), where = new Map<number, Set<number>>();
  const add = (w: number, sign: number, touched?: Set<number>) => {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) {
      const key = s[i] * K + s[i + 1];
      pairs.set(key, (pairs.get(key) ?? 0) + sign * freq[w]);
      if (sign > 0) {
        let set = where.get(key);
        if (!set) where.set(key, (set = new Set()));
        set.add(w);
        touched?.add(key);
      }
    }
  };
  for (let w = 0; w < words.length; w++) add(w, 1);
  const heap = new PairHeap();
  for (const [key, c] of pairs) heap.push(c, key);
  const merges: [string, string][] = [];
  while (vocab.length < vocabSize && heap.size > 0) {
    const [count, key] = heap.pop();
    const now = pairs.get(key) ?? 0;
    if (count !== now) { // stale entry: counts only fall for a pair that is not merged, so re-queue
      if (now > 0) heap.push(now, key);
      continue;
    }
    if (count < minFrequency) break;
    const a = Math.floor(key / K), b = key % K, merged = vocab[a] + vocab[b];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = vocab.length;
      vocab.push(merged);
      idOf.set(merged, id);
    }
    merges.push([vocab[a], vocab[b]]);
    const touched = new Set<number>();
    for (const w of where.get(key)!) {
      const s = words[w], out: number[] = [];
      for (let i = 0; i < s.length;) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(id); i += 2; } else out.push(s[i++]);
      }
      if (out.length === s.length) continue;
      add(w, -1);
      words[w] = Uint16Array.from(out);
      add(w, 1, touched);
    }
    where.delete(key);
    pairs.delete(key);
    for (const t of touched) heap.push(pairs.get(t)!, t);
  }
  return { vocab, merges };
}

/** tokenizer.json and tokenizer_config.json (the fields MiniMind's train_tokenizer.py writes). */
export function tokenizerFiles(model: BpeModel): { tokenizer: object; config: object } {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const added = SPECIAL_TOKENS.map((content, id) =>
    ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const tokenizer = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: byteLevel, post_processor: null, decoder: { ...byteLevel, add_prefix_space: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: Object.fromEntries(model.vocab.map((t, i) => [t, i])),
      // "a b" strings: byte-level symbols never contain a space, and every tokenizers version reads this form.
      merges: model.merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const config = {
    add_bos_token: false, add_eos_token: false, add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...t }) => [String(id), t])),
    additional_special_tokens: [], bos_token: '<|im_start|>', clean_up_tokenization_spaces: false,
    eos_token: '<|im_end|>', legacy: true, model_max_length: 32768, pad_token: '<|endoftext|>',
    sp_model_kwargs: {}, spaces_between_special_tokens: false, tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: '<|endoftext|>', chat_template: CHATML_TEMPLATE,
  };
  return { tokenizer, config };
}

/** Train on `texts` and write both files into `dir` (atomically). Returns the model and seconds taken. */
export function writeTokenizer(dir: string, texts: Iterable<string>, opts: BpeOptions = {}): { model: BpeModel; seconds: number } {
  const t0 = performance.now();
  const model = trainBpe(texts, opts);
  const seconds = (performance.now() - t0) / 1000;
  const { tokenizer, config } = tokenizerFiles(model);
  writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(tokenizer));
  writeFileAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2));
  return { model, seconds };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const v = args.indexOf('--vocab');
  const vocabSize = v >= 0 ? Number(args.splice(v, 2)[1]) : 6400;
  const [out, ...files] = args;
  if (!out || files.length === 0) throw new Error('usage: npx tsx data/bpe.ts OUT_DIR FILE... [--vocab 6400]');
  const texts = files.map((f) => readFileSync(f, 'utf8'));
  const mb = texts.reduce((n, t) => n + Buffer.byteLength(t), 0) / 1e6;
  const { model, seconds } = writeTokenizer(out, texts.flatMap((t) => t.split('\n')), { vocabSize });
  console.log(`bpe: ${model.vocab.length} tokens, ${model.merges.length} merges from ${mb.toFixed(2)} MB in ${seconds.toFixed(2)} s (${(mb / seconds).toFixed(2)} MB/s) → ${out}`);
}
