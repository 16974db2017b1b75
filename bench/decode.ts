// Generation speed as a user feels it, on MiniMind2-small (random weights: the speed does not depend on
// them): decode tokens/s with the KV cache (one token in, one token's logits read back, host sampling), and
// the time to first token of a 200-token prompt (the prefill plus the first sample). Wall clock: both include
// the host work and the read-back a chat waits for.
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { generate } from '../model/generate.js';
import { mulberry32 } from '../runtime/random.js';
import { time, type Options, type Row, row } from './harness.js';

const NAME = 'minimind2-small', DECODE = 32, PROMPT = 200;

export async function benchDecode(o: Options, want: (name: string) => boolean): Promise<Row[]> {
  if (!want('decode') && !want('ttft')) return [];
  const cfg = preset(NAME);
  const model = new MiniMind(cfg, 0);
  const r = mulberry32(1);
  const prompt = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(r() * (cfg.vocab_size - 3)));
  const rows: Row[] = [];
  const noEos = { temperature: 0, eosId: -1 };
  if (want('ttft')) {
    const ids = prompt(PROMPT);
    const t = await time('ttft', async () => { for await (const _ of generate(model, ids, { maxNewTokens: 1, ...noEos })) break; }, o, { clock: 'wall', minSamples: 3 });
    rows.push({ ...row(`ttft_${NAME}`, `${PROMPT}-token prompt, first token`, t, {}), note: 'prefill + logits read-back + sample' });
  }
  if (want('decode')) {
    const ids = prompt(8);
    const per: number[] = [];
    for (let k = 0; k < (o.quick ? 2 : 4); k++) { // the first run is the warm-up
      let first = 0, n = 0;
      for await (const _ of generate(model, ids, { maxNewTokens: DECODE + 1, ...noEos })) if (n++ === 0) first = performance.now();
      if (k) per.push((performance.now() - first) / DECODE);
    }
    per.sort((a, b) => a - b);
    const ms = per[per.length >> 1], mean = per.reduce((a, b) => a + b, 0) / per.length;
    const sd = Math.sqrt(per.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, per.length - 1));
    rows.push({
      name: `decode_${NAME}`, shape: `KV cache, ${DECODE} tokens after an 8-token prompt`, ms, samples: per.length, clock: 'wall',
      spread: (100 * 1.96 * sd) / Math.sqrt(per.length) / mean, // the harness's measure: 95% margin of the mean
      hostMs: 0, note: `${(1000 / ms).toFixed(1)} tokens/s (ms per token; median of ${per.length} runs of ${DECODE})`,
    });
  }
  model.dispose();
  return rows;
}
