// Chat with a checkpoint: `npx tsx model/chat.ts --weights out/full_sft_128.pth [--preset tiny]
// [--tokenizer_path DIR] [--prompt TEXT]`. Renders the tokenizer's chat template with the generation
// prompt, streams tokens as they come and prints tokens/s. Without --prompt it reads lines from stdin.
import { createInterface } from 'node:readline';
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { MiniMind } from './minimind.js';
import { preset } from './config.js';
import { readConfig } from './config_json.js';
import { loadWeights } from './weights.js';
import { generate } from './generate.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { ensureDefaultData } from '../data/defaults.js';

const opt: Record<string, string> = { weights: 'out/full_sft_128.pth', preset: 'tiny', config: '', tokenizer_path: '', prompt: '',
  max_new_tokens: '128', temperature: '0.85', top_p: '0.85', top_k: '0', repetition_penalty: '1.0', seed: '0' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const k = argv[i].replace(/^--/, '');
  if (!(k in opt)) { console.error(`unknown flag ${argv[i]}; flags: ${Object.keys(opt).map((f) => `--${f}`).join(' ')}`); process.exit(1); }
  opt[k] = argv[++i] ?? '';
}

await initGpu();
try {
  const model = new MiniMind(opt.config ? readConfig(opt.config) : preset(opt.preset), Number(opt.seed));
  if (opt.weights !== 'none') model.load(loadWeights(opt.weights), false);
  const tok = await loadTokenizer(opt.tokenizer_path || (await ensureDefaultData()).tokenizerDir);
  const ask = async (text: string) => {
    const ids = tok.encode(tok.applyChatTemplate([{ role: 'user', content: text }], { addGenerationPrompt: true }));
    const out: number[] = [];
    let printed = '';
    const t0 = performance.now();
    for await (const id of generate(model, ids, {
      maxNewTokens: Number(opt.max_new_tokens), temperature: Number(opt.temperature), topP: Number(opt.top_p),
      topK: Number(opt.top_k), repetitionPenalty: Number(opt.repetition_penalty), seed: Number(opt.seed), eosId: tok.eosId,
    })) {
      if (id === tok.eosId) break;
      out.push(id);
      const text = tok.decode(out);
      if (!text.endsWith('\uFFFD')) { process.stdout.write(text.slice(printed.length)); printed = text; }
    }
    const s = (performance.now() - t0) / 1000;
    console.log(`\n[${out.length} tokens, ${(out.length / s).toFixed(1)} tokens/s]`);
  };
  if (opt.prompt) await ask(opt.prompt);
  else for await (const line of createInterface({ input: process.stdin })) if (line.trim()) await ask(line);
} finally {
  closeGpu();
}
