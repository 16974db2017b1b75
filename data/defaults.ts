// The project's own default data, used by train/sft.ts when given no data or tokenizer: a templated SFT
// set, a pretrain text set and a byte-level BPE tokenizer trained on both, generated deterministically
// (seeded) into `.cache/default-data/` once and reused after. Nothing is downloaded.
// CLI: `npx tsx data/defaults.ts` regenerates and prints what it wrote.
//
// Vocab 2048 (not MiniMind's 6400): the data's alphabet is small (≈300 distinct Chinese characters and a
// few hundred English words), so 2048 tokens already hold every character and most whole words, while the
// embedding and the B·T·V logits of a tiny model cost a third of what 6400 would on lavapipe.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { mulberry32 } from '../runtime/random.js';
import { writeTokenizer } from './bpe.js';
import { CHATML_TEMPLATE } from './chatml.js';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';
import { PROJECT_CACHE } from './jsonl.js';
import { randomConversation, randomStatements } from './synth.js';
import { Template } from '@huggingface/jinja';

export const DEFAULT_DATA_DIR = join(PROJECT_CACHE, 'default-data');

export interface DefaultDataOptions {
  seed?: number;
  /** SFT conversations (default 16000: the built-in run's one epoch of 1000 steps of 16). */
  sftCount?: number;
  /** Pretrain lines (default 20000). */
  pretrainCount?: number;
  vocabSize?: number;
}

export interface DefaultData {
  sftPath: string;
  pretrainPath: string;
  tokenizerDir: string;
}

// Bump when the generator changes, so a stale cache is regenerated.
const GENERATOR_VERSION = 4;

function resolved(o: DefaultDataOptions): Required<DefaultDataOptions> {
  return { seed: o.seed ?? 42, sftCount: o.sftCount ?? 16000, pretrainCount: o.pretrainCount ?? 20000, vocabSize: o.vocabSize ?? 2048 };
}

function paths(dir: string): DefaultData & { manifest: string } {
  return {
    sftPath: join(dir, 'sft.jsonl'), pretrainPath: join(dir, 'pretrain.jsonl'),
    tokenizerDir: join(dir, 'tokenizer'), manifest: join(dir, 'manifest.json'),
  };
}

/** Generate everything into `dir` (overwriting). Returns the paths and a summary. */
export function generateDefaultData(dir = DEFAULT_DATA_DIR, opts: DefaultDataOptions = {}): DefaultData & { summary: string } {
  const o = resolved(opts), p = paths(dir);
  const t0 = performance.now();
  rmSync(p.manifest, { force: true }); // written last: a run cut short leaves no manifest, so it is redone
  const rs = mulberry32(o.seed), rp = mulberry32(o.seed + 1);
  const convs = Array.from({ length: o.sftCount }, () => randomConversation(rs));
  const texts = Array.from({ length: o.pretrainCount }, () => randomStatements(rp, rp() < 0.5 ? 'en' : 'zh'));
  const sft = convs.map((c) => JSON.stringify({ conversations: c })).join('\n') + '\n';
  const pre = texts.map((t) => JSON.stringify({ text: t })).join('\n') + '\n';
  writeFileAtomic(p.sftPath, sft);
  writeFileAtomic(p.pretrainPath, pre);
  // The tokenizer learns from the pretrain text and the rendered conversations (special tokens cut out).
  const chat = new Template(CHATML_TEMPLATE);
  const rendered = convs.map((c) => chat.render({ messages: c, add_generation_prompt: false }));
  const { model, seconds } = writeTokenizer(p.tokenizerDir, [...texts, ...rendered], { vocabSize: o.vocabSize });
  const manifest = { version: GENERATOR_VERSION, ...o };
  writeFileAtomic(p.manifest, JSON.stringify(manifest, null, 2) + '\n');
  const mb = (Buffer.byteLength(sft) + Buffer.byteLength(pre)) / 1e6;
  const summary = [
    `default data in ${dir} (seed ${o.seed}, ${((performance.now() - t0) / 1000).toFixed(1)} s):`,
    `  ${p.sftPath}: ${o.sftCount} conversations, ${(Buffer.byteLength(sft) / 1e6).toFixed(2)} MB`,
    `  ${p.pretrainPath}: ${o.pretrainCount} texts, ${(Buffer.byteLength(pre) / 1e6).toFixed(2)} MB`,
    `  ${p.tokenizerDir}: byte-level BPE, ${model.vocab.length} tokens, trained in ${seconds.toFixed(2)} s ` +
      `(${(mb / seconds).toFixed(1)} MB/s of JSONL-equivalent text)`,
  ].join('\n');
  return { sftPath: p.sftPath, pretrainPath: p.pretrainPath, tokenizerDir: p.tokenizerDir, summary };
}

/** The default data, generated on first use and reused while the manifest matches. */
export async function ensureDefaultData(dir = DEFAULT_DATA_DIR, opts: DefaultDataOptions = {}): Promise<DefaultData> {
  const o = resolved(opts), p = paths(dir);
  const want = JSON.stringify({ version: GENERATOR_VERSION, ...o });
  const have = existsSync(p.manifest) ? JSON.stringify(JSON.parse(readFileSync(p.manifest, 'utf8'))) : '';
  const complete = [p.sftPath, p.pretrainPath, join(p.tokenizerDir, 'tokenizer.json'), join(p.tokenizerDir, 'tokenizer_config.json')].every(existsSync);
  if (have !== want || !complete) generateDefaultData(dir, opts);
  return { sftPath: p.sftPath, pretrainPath: p.pretrainPath, tokenizerDir: p.tokenizerDir };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(generateDefaultData().summary);
}
