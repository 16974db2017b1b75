// KV-cache decoding with temperature, top-k, top-p and repetition penalty, stopping at eos.
// Sampling runs on the host over the last position's logits (V floats read back per token).
import { Tensor, noGradAsync, beginScope, endScope } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import type { MiniMind } from './minimind.js';

export interface SampleOptions {
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** HF-style: logits of tokens already present are divided (if > 0) or multiplied by it. */
  repetitionPenalty?: number;
  seed?: number;
  eosId?: number;
}

/** Yields new token ids one at a time (streaming), for a single prompt. */
export async function* generate(model: MiniMind, prompt: number[], o: SampleOptions): AsyncGenerator<number> {
  if (!prompt.length) throw new Error('generate: empty prompt');
  const V = model.cfg.vocab_size;
  const cache = model.newCache(1, prompt.length + o.maxNewTokens);
  const rand = mulberry32(o.seed ?? 0);
  const seen = new Set(prompt);
  try {
    let logits = await step(model, cache, prompt, 0, V);
    for (let n = 0; n < o.maxNewTokens; n++) {
      const id = sample(logits, seen, o, rand);
      yield id;
      if (id === (o.eosId ?? model.cfg.eos_token_id)) return;
      seen.add(id);
      logits = await step(model, cache, [id], prompt.length + n, V);
    }
  } finally {
    for (const t of [...cache.k, ...cache.v]) t.dispose();
  }
}

async function step(model: MiniMind, cache: ReturnType<MiniMind['newCache']>, ids: number[], pos: number, V: number): Promise<Float32Array> {
  beginScope();
  try {
    const ids32 = Int32Array.from(ids);
    const { logits } = await noGradAsync(() => model.logits(Tensor.fromArray(ids32, [1, ids.length], 'i32'), { hostIds: ids32, cache, pos }));
    const all = await logits.readF32();
    return all.slice((ids.length - 1) * V, ids.length * V);
  } finally {
    endScope();
  }
}

export function sample(logits: Float32Array, seen: Set<number>, o: SampleOptions, rand: () => number): number {
  const l = Float64Array.from(logits);
  const rp = o.repetitionPenalty ?? 1;
  if (rp !== 1) for (const id of seen) l[id] = l[id] > 0 ? l[id] / rp : l[id] * rp;
  const temp = o.temperature ?? 0;
  if (temp <= 0) return argmax(l);
  let idx = Array.from(l.keys()).sort((a, b) => l[b] - l[a]);
  if (o.topK && o.topK > 0) idx = idx.slice(0, o.topK);
  const mx = l[idx[0]];
  let probs = idx.map((i) => Math.exp((l[i] - mx) / temp));
  let z = probs.reduce((a, b) => a + b, 0);
  probs = probs.map((p) => p / z);
  if (o.topP !== undefined && o.topP < 1) {
    let c = 0, keep = 0;
    while (keep < probs.length && c < o.topP) c += probs[keep++];
    idx = idx.slice(0, Math.max(1, keep));
    probs = probs.slice(0, idx.length);
    z = probs.reduce((a, b) => a + b, 0);
    probs = probs.map((p) => p / z);
  }
  let r = rand();
  for (let i = 0; i < idx.length; i++) { r -= probs[i]; if (r <= 0) return idx[i]; }
  return idx[idx.length - 1];
}

function argmax(l: Float64Array): number {
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i] > l[best]) best = i;
  return best;
}
