// Sampling (model/generate.ts): greedy, temperature, top-k, top-p and repetition penalty on known logits
// (frequencies of seeded draws against the distribution each rule defines), and generation stopping at eos
// or at maxNewTokens.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { sample, generate } from '../model/generate.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { mulberry32 } from '../runtime/random.js';
import { setupGpu } from './util.js';

const s = suite('sampling');
s.before(setupGpu);

const logits = Float32Array.from([2, 1.5, 0.5, -1, 1]);
const softmax = (l: number[], t: number) => {
  const e = l.map((x) => Math.exp(x / t)), z = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / z);
};
/** Frequencies of N seeded draws. */
function freq(o: Parameters<typeof sample>[2], seen = new Set<number>(), N = 40_000): number[] {
  const r = mulberry32(5), n = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < N; i++) n[sample(logits, seen, o, r)]++;
  return n.map((c) => c / N);
}
// 40000 draws: a frequency's standard error is at most 0.0025; 0.012 is about 5 of them.
const near = (got: number[], want: number[], what: string) =>
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 0.012, `${what}: token ${i}: ${g} vs ${want[i]}`));

s('temperature 0 is the argmax, whatever the random draw', () => {
  for (const u of [0, 0.5, 0.999]) assert.is(sample(logits, new Set(), { maxNewTokens: 1, temperature: 0 }, () => u), 0);
});

s('temperature t draws from softmax(logits / t)', () => {
  for (const t of [0.7, 1, 2]) near(freq({ maxNewTokens: 1, temperature: t }), softmax([...logits], t), `t ${t}`);
});

s('top-k keeps the k largest logits, renormalised', () => {
  const p = softmax([2, 1.5, 1], 1);
  near(freq({ maxNewTokens: 1, temperature: 1, topK: 3 }), [p[0], p[1], 0, 0, p[2]], 'k 3');
  assert.equal(freq({ maxNewTokens: 1, temperature: 1, topK: 1 }), [1, 0, 0, 0, 0]);
});

s('top-p keeps the fewest most likely tokens whose probability reaches p, renormalised', () => {
  const p = softmax([...logits], 1); // sorted: 0 (0.445), 1 (0.270), 4 (0.164), 2 (0.099), 3 (0.022)
  const z2 = p[0] + p[1], z3 = z2 + p[4];
  near(freq({ maxNewTokens: 1, temperature: 1, topP: 0.6 }), [p[0] / z2, p[1] / z2, 0, 0, 0], 'p 0.6');
  near(freq({ maxNewTokens: 1, temperature: 1, topP: 0.8 }), [p[0] / z3, p[1] / z3, 0, 0, p[4] / z3], 'p 0.8');
  assert.equal(freq({ maxNewTokens: 1, temperature: 1, topP: 0.01 }), [1, 0, 0, 0, 0], 'always at least one');
});

s('repetition penalty divides a seen positive logit and multiplies a seen negative one', () => {
  const o = { maxNewTokens: 1, temperature: 0, repetitionPenalty: 1.5 };
  assert.is(sample(logits, new Set([0]), o, () => 0), 1, '2 / 1.5 < 1.5');
  assert.is(sample(Float32Array.from([-1, -1.2]), new Set([0]), o, () => 0), 1, '-1 · 1.5 < -1.2');
  near(freq({ maxNewTokens: 1, temperature: 1, repetitionPenalty: 2 }, new Set([1, 3])), softmax([2, 0.75, 0.5, -2, 1], 1), 'with t 1');
});

s('generation stops after the eos token, or at maxNewTokens', async () => {
  const model = new MiniMind(preset('tiny', { vocab_size: 64 }), 3);
  try {
    const run = async (eosId: number, maxNewTokens: number) => {
      const out: number[] = [];
      for await (const id of generate(model, [5, 6, 7], { maxNewTokens, temperature: 0, eosId })) out.push(id);
      return out;
    };
    const free = await run(-1, 6);
    assert.is(free.length, 6);
    const at = 2; // stop at the third token: eos is whatever greedy decoding gives there
    const stopped = await run(free[at], 6);
    assert.equal(stopped, free.slice(0, free.indexOf(free[at]) + 1), 'up to and including the first eos');
  } finally {
    model.dispose();
  }
});

s.run();
