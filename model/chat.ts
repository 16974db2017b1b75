// Chat with a trained model: MiniMind's eval_llm.py (its flags, MiniMind2's defaults) plus --weights FILE,
// --tokenizer_path, --config/--preset, --prompt and sampling extras. Prompts are stdin lines (eval_llm's
// manual mode; an empty line or end of input stops), a fixed list (--input_mode 0, eval_llm's auto test,
// which it asks for at start), or one --prompt. Tokens are streamed as they decode;
// with --show_speed 1 each answer ends with its decode speed. --historys N carries the last N messages
// (user and assistant: N even) into the next prompt, as eval_llm.py does.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { initGpu, closeGpu } from '../runtime/device.js';
import '../kernels/index.js';
import { generate } from './generate.js';
import { TextStream } from './text_stream.js';
import { flagHelp, parseFlags, type FlagTable } from './cli_flags.js';
import { loadModel, MODEL_FLAGS } from './load_model.js';
import type { ChatMessage } from '../data/tokenizer.js';

export const FLAGS = {
  ...MODEL_FLAGS,
  max_new_tokens: { kind: 'number', def: 8192, help: 'most new tokens per answer (capped by max_position_embeddings)' },
  temperature: { kind: 'number', def: 0.85, help: 'sampling temperature (0 = greedy)' },
  top_p: { kind: 'number', def: 0.85, help: 'nucleus sampling threshold' },
  top_k: { kind: 'number', def: 0, help: 'keep the k likeliest tokens (0 = all)' },
  repetition_penalty: { kind: 'number', def: 1, help: 'HF repetition penalty (eval_llm.py uses 1)' },
  open_thinking: { kind: 'number', def: 0, help: "1 = the chat template's open_thinking (minimind-3 templates)" },
  historys: { kind: 'number', def: 0, help: 'messages of history carried into each prompt (even: user + assistant; 0 = none)' },
  show_speed: { kind: 'number', def: 1, help: '1 = print decode tokens/s after each answer' },
  seed: { kind: 'number', def: 0, help: 'sampling seed of the first answer (answer n uses seed + n)' },
  input_mode: { kind: 'number', def: 1, help: "eval_llm.py's question: 0 = auto test (a fixed list of prompts), 1 = prompts from stdin lines" },
  prompt: { kind: 'string', def: '', help: 'one prompt, answered, then exit (default: prompts from stdin lines)' },
} satisfies FlagTable;

/** --input_mode 0's prompts: general questions of the kinds MiniMind's SFT data covers (self, science,
 *  code, advice, comparison, writing), in Chinese, its models' language. */
export const AUTO_PROMPTS = [
  '请介绍一下你自己', '地球为什么会有四季？', '用Python写一个判断素数的函数', '什么是光的折射？',
  '给我推荐三本适合入门的编程书', '如何保持良好的睡眠习惯？', '比较一下火车和飞机出行的优缺点', '写一首关于秋天的短诗',
];

const USAGE = 'npx tsx model/chat.ts [--weights FILE | --save_dir out --weight full_sft --hidden_size 512] [--tokenizer_path DIR] [flags]';

export async function main(argv: string[]): Promise<void> {
  const { values: o, given, help } = parseFlags(FLAGS, argv);
  if (help) { console.log(flagHelp(USAGE, FLAGS)); return; }
  for (const k of ['max_new_tokens', 'historys'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 0) throw new Error(`--${k} must be a non-negative integer, got ${o[k]}`);
  }
  if (o.input_mode !== 0 && o.input_mode !== 1) throw new Error(`--input_mode must be 0 (auto test) or 1 (stdin), got ${o.input_mode}`);
  await initGpu({ quiet: true });
  try {
    const { model, tok, weights, source, lora } = await loadModel(o, given);
    console.log(`[chat] ${weights}: hidden ${model.cfg.hidden_size}, ${model.cfg.num_hidden_layers} layers${model.cfg.use_moe ? ', MoE' : ''}`
      + `${model.cfg.inference_rope_scaling ? ', YaRN rope scaling' : ''}, config from ${source}`
      + (lora ? `; LoRA ${lora} (rank ${model.lora!.rank}, ${model.lora!.targets.length} modules)` : ''));
    let conversation: ChatMessage[] = [];
    let turn = 0;
    const ask = async (prompt: string) => {
      conversation = o.historys ? conversation.slice(-o.historys) : [];
      conversation.push({ role: 'user', content: prompt });
      const text = (o.weights || o.weight).includes('pretrain')
        ? tok.decode([tok.bosId]) + prompt
        : tok.applyChatTemplate(conversation, { addGenerationPrompt: true, extra: { open_thinking: o.open_thinking === 1 } });
      const ids = tok.encode(text);
      const room = model.cfg.max_position_embeddings - ids.length;
      if (room < 1) throw new Error(`the prompt is ${ids.length} tokens, at the model's max_position_embeddings ${model.cfg.max_position_embeddings}`);
      process.stdout.write('🧠: ');
      const out = new TextStream(tok);
      const t0 = performance.now();
      for await (const id of generate(model, ids, {
        maxNewTokens: Math.min(o.max_new_tokens, room), temperature: o.temperature, topP: o.top_p, topK: o.top_k,
        repetitionPenalty: o.repetition_penalty, seed: o.seed + turn++, eosId: tok.eosId,
      })) {
        if (id === tok.eosId) break;
        process.stdout.write(out.push(id));
      }
      const seconds = (performance.now() - t0) / 1000, { rest, text: answer } = out.finish(), n = out.ids.length;
      process.stdout.write(rest);
      conversation.push({ role: 'assistant', content: answer });
      console.log(o.show_speed ? `\n[Speed]: ${(n / seconds).toFixed(2)} tokens/s (${n} new tokens, prompt ${ids.length} tokens)\n` : '\n');
    };
    if (o.prompt) { await ask(o.prompt); return; }
    if (o.input_mode === 0) {
      for (const p of AUTO_PROMPTS) { console.log(`💬: ${p}`); await ask(p); }
      return;
    }
    const tty = process.stdin.isTTY;
    const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, prompt: '💬: ' });
    if (tty) rl.prompt();
    for await (const line of rl) {
      if (!line.trim()) break; // eval_llm.py: an empty input ends the chat
      if (!tty) console.log(`💬: ${line}`);
      await ask(line);
      if (tty) rl.prompt();
    }
    rl.close();
  } finally {
    closeGpu();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(`chat: ${(e as Error).message}`);
    process.exitCode = 1;
  });
}
