// Encoder for byte-level BPE tokenizer.json files (MiniMind's kind), used instead of
// @huggingface/tokenizers' encode for two reasons:
// - ids: the Rust `tokenizers` (what Python's transformers calls) compiles the GPT-2 split with Oniguruma,
//   where `\s` is Unicode White_Space (U+0085 yes, U+FEFF no). JavaScript's `\s` is the other way round,
//   so the library splits such text differently; test/data_tokenizer.test.ts pins the Rust ids.
// - speed: a plain Map cache of pre-token → ids and no per-token string work (≈5-10× the library).
// Anything this encoder does not model (normalizers, other pre-tokenizers, stripped added tokens, byte
// fallback...) makes `fromTokenizerJson` return a reason, and the caller keeps the library's encoder.
import { BYTE_CHARS } from './bpe.js';

// Unicode White_Space, Oniguruma's `\s`, spelled out (JavaScript's `\s` adds U+FEFF and lacks U+0085).
const WS = '\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPLIT = new RegExp(`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|[${WS}]+(?![^${WS}])|[${WS}]+`, 'gu');
const CACHE_LIMIT = 1 << 18; // pre-tokens cached before the cache is dropped and refilled
const K = 1 << 20; // pair key = a·K + b; vocab ids stay below K

interface TokenizerJson {
  normalizer?: unknown;
  pre_tokenizer?: { type?: string; add_prefix_space?: boolean; use_regex?: boolean };
  added_tokens?: { id: number; content: string; single_word?: boolean; lstrip?: boolean; rstrip?: boolean }[];
  model?: {
    type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[]; dropout?: number | null;
    byte_fallback?: boolean; ignore_merges?: boolean; continuing_subword_prefix?: string | null; end_of_word_suffix?: string | null;
  };
}

export class ByteLevelBpe {
  private readonly cache = new Map<string, number[]>();

  private constructor(
    private readonly byteIds: Int32Array,
    /** pair key → rank·K + merged id */
    private readonly merges: Map<number, number>,
    private readonly added: Map<string, number>,
    private readonly addedSplit: RegExp | undefined,
  ) {}

  /** The encoder for this tokenizer.json, or a string saying why it cannot model it exactly. */
  static fromTokenizerJson(json: TokenizerJson): ByteLevelBpe | string {
    const m = json.model, pre = json.pre_tokenizer;
    if (json.normalizer) return 'has a normalizer';
    if (pre?.type !== 'ByteLevel' || pre.add_prefix_space || pre.use_regex === false) return 'pre-tokenizer is not ByteLevel(add_prefix_space=False, use_regex=True)';
    if (m?.type !== 'BPE' || !m.vocab || !m.merges) return 'model is not BPE';
    if (m.dropout || m.byte_fallback || m.ignore_merges || m.continuing_subword_prefix || m.end_of_word_suffix) return 'BPE options not modelled';
    const vocab = new Map(Object.entries(m.vocab));
    const byteIds = Int32Array.from(BYTE_CHARS, (c) => vocab.get(c) ?? -1);
    if (byteIds.some((id) => id < 0)) return 'vocab lacks some byte symbols';
    if ([...vocab.values()].some((id) => id < 0 || id >= K)) return 'vocab ids out of range';
    const merges = new Map<number, number>();
    for (const [rank, mg] of m.merges.entries()) {
      const [a, b] = typeof mg === 'string' ? mg.split(' ') : mg;
      const ia = vocab.get(a), ib = vocab.get(b), im = vocab.get(a + b);
      if (ia === undefined || ib === undefined || im === undefined) return `merge ${rank} uses a token not in the vocab`;
      const key = ia * K + ib;
      if (!merges.has(key)) merges.set(key, rank * K + im);
    }
    const added = new Map<string, number>();
    for (const t of json.added_tokens ?? []) {
      if (t.single_word || t.lstrip || t.rstrip) return `added token ${t.content} strips or matches single words`;
      added.set(t.content, t.id);
    }
    // Leftmost-longest match, as Hugging Face's added-vocabulary split: longer alternatives first.
    const alts = [...added.keys()].sort((x, y) => y.length - x.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    return new ByteLevelBpe(byteIds, merges, added, alts.length ? new RegExp(alts.join('|'), 'g') : undefined);
  }

  encode(text: string): number[] {
    const out: number[] = [];
    if (!this.addedSplit) {
      this.encodeSegment(text, out);
      return out;
    }
    let last = 0;
    for (const m of text.matchAll(this.addedSplit)) {
      this.encodeSegment(text.slice(last, m.index), out);
      out.push(this.added.get(m[0])!);
      last = m.index + m[0].length;
    }
    this.encodeSegment(text.slice(last), out);
    return out;
  }

  private encodeSegment(text: string, out: number[]): void {
    for (const word of text.match(SPLIT) ?? []) {
      let ids = this.cache.get(word);
      if (!ids) {
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        ids = this.bpe(word);
        this.cache.set(word, ids);
      }
      for (let k = 0; k < ids.length; k++) out.push(ids[k]);
    }
  }

  /** Apply merges lowest rank first, each to every occurrence left to right (what Rust's merge queue does). */
  private bpe(word: string): number[] {
    let syms = Array.from(Buffer.from(word, 'utf8'), (b) => this.byteIds[b]);
    while (syms.length > 1) {
      let best = Infinity, at = -1;
      for (let i = 0; i + 1 < syms.length; i++) {
        const v = this.merges.get(syms[i] * K + syms[i + 1]);
        if (v !== undefined && v < best) { best = v; at = i; }
      }
      if (at < 0) break;
      const a = syms[at], b = syms[at + 1], merged = best % K;
      const next: number[] = [];
      for (let i = 0; i < syms.length;) {
        if (i + 1 < syms.length && syms[i] === a && syms[i + 1] === b) { next.push(merged); i += 2; } else next.push(syms[i++]);
      }
      syms = next;
    }
    return syms;
  }
}
