// model/chat.ts as a user runs it, on a tiny model trained here with shape flags only: chatted with the same
// flags, with none (the config.json the trainer wrote), and with neither flags nor config (the tensor shapes);
// a mismatch is one line without a stack; --historys 2 carries the first turn into the second prompt.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { copyFileSync, existsSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { SHARED, TOKENIZER_DIRS, missingShared, sharedTest } from './shared.js';
import { loadTokenizer } from '../data/tokenizer.js';
import { FLAGS, AUTO_PROMPTS } from '../model/chat.js';
import { writePth } from '../model/pth.js';
import { minimind2 } from '../model/config.js';
import { adapterKeys, loraTargets } from '../model/lora.js';
import { rng } from './util.js';

const s = suite('chat');
const root = join(import.meta.dirname, '..');
const DATA = 'minimind/samples_pr802/tiny_sft.jsonl';
const tokDir = join(SHARED, TOKENIZER_DIRS.minimind2);
const missing = missingShared([DATA, `${TOKENIZER_DIRS.minimind2}/tokenizer.json`, `${TOKENIZER_DIRS.minimind2}/tokenizer_config.json`]);
const env = { ...process.env, MINIMIND_QUIET: '1' };
const tsx = (script: string, args: string[], input = '') =>
  spawnSync('npx', ['tsx', script, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000, env, input });
const dir = mkdtempSync(join(tmpdir(), 'chat-'));
const weights = join(dir, 'out', 'full_sft_128.pth');
const SHAPE = ['--hidden_size', '128', '--num_hidden_layers', '2'];
const greedy = ['--tokenizer_path', tokDir, '--temperature', '0', '--max_new_tokens', '6'];

/** The answers and prompt lengths of a chat's stdout, in order. */
function turns(stdout: string): { answer: string; prompt: number; fresh: number }[] {
  return [...stdout.matchAll(/🧠: ([^]*?)\n\[Speed\]: [\d.]+ tokens\/s \((\d+) new tokens, prompt (\d+) tokens\)/g)]
    .map((m) => ({ answer: m[1], fresh: Number(m[2]), prompt: Number(m[3]) }));
}

s.before(() => {
  if (missing) return;
  const r = tsx('train/sft.ts', ['--data_path', join(SHARED, DATA), '--tokenizer_path', tokDir, '--from_weight', 'none', ...SHAPE,
    '--save_dir', join(dir, 'out'), '--checkpoint_dir', join(dir, 'ck'), '--max_steps', '1', '--batch_size', '2', '--max_seq_len', '48',
    '--num_workers', '0', '--learning_rate', '1e-3']);
  if (r.status !== 0) throw new Error(`training failed: ${r.stderr}${r.stdout}`);
});

sharedTest(s, missing, 'the same flags, no shape flags (config.json) and no config (tensor shapes) give the same greedy answer', () => {
  assert.ok(existsSync(join(dir, 'out', 'full_sft_128.config.json')), 'the trainer wrote the config beside the weights');
  const bare = join(dir, 'bare_128.pth'); // the same weights with no config beside them
  copyFileSync(weights, bare);
  const runs = [
    tsx('model/chat.ts', ['--save_dir', join(dir, 'out'), ...SHAPE, ...greedy, '--prompt', 'hello']),
    tsx('model/chat.ts', ['--weights', weights, ...greedy, '--prompt', 'hello']),
    tsx('model/chat.ts', ['--weights', bare, ...greedy, '--prompt', 'hello']),
  ];
  for (const r of runs) assert.is(r.status, 0, r.stderr);
  assert.match(runs[0].stdout, /config from --hidden_size --num_hidden_layers/);
  assert.match(runs[1].stdout, /config from .*full_sft_128\.config\.json/);
  assert.match(runs[2].stdout, /config from the tensor shapes \(no config\.json\); assumed num_attention_heads 8/);
  const answers = runs.map((r) => turns(r.stdout));
  assert.is(answers[0].length, 1, runs[0].stdout);
  assert.is(answers[0][0].fresh, 6);
  assert.equal(answers[1], answers[0]);
  assert.equal(answers[2], answers[0]);
});

sharedTest(s, missing, 'a model that does not fit is one error line naming the file and the fix, without a stack', () => {
  const r = tsx('model/chat.ts', ['--weights', weights, '--preset', 'tiny', ...greedy, '--prompt', 'hello']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^chat: .*full_sft_128\.pth: does not fit the model from --preset tiny: model\.layers\.0\.self_attn\.k_proj\.weight: file \[32,128\] vs model \[64,128\].*leave out --preset tiny to use .*full_sft_128\.config\.json\n$/m);
  assert.not.match(r.stderr, /\n\s+at /, 'no stack trace');
  const flag = tsx('model/chat.ts', ['--weights', weights, '--hidden_siz', '128']);
  assert.is(flag.status, 1);
  assert.match(flag.stderr, /^chat: unknown argument '--hidden_siz' \(see --help\)\n$/m);
});

sharedTest(s, missing, '--historys 2 renders the first question and answer into the second prompt', async () => {
  const tok = await loadTokenizer(tokDir);
  const lines = 'hello\nwho are you\n';
  const alone = turns(tsx('model/chat.ts', ['--weights', weights, ...greedy], lines).stdout);
  const r = tsx('model/chat.ts', ['--weights', weights, ...greedy, '--historys', '2'], lines);
  assert.is(r.status, 0, r.stderr);
  const carried = turns(r.stdout);
  assert.is(carried.length, 2, r.stdout);
  assert.is(alone.length, 2);
  const render = (m: { role: string; content: string }[]) => tok.encode(tok.applyChatTemplate(m, { addGenerationPrompt: true })).length;
  assert.is(alone[1].prompt, render([{ role: 'user', content: 'who are you' }]));
  assert.is(carried[1].prompt, render([{ role: 'user', content: 'hello' }, { role: 'assistant', content: carried[0].answer },
    { role: 'user', content: 'who are you' }]));
  assert.ok(carried[1].prompt > alone[1].prompt);
});

sharedTest(s, missing, '--inference_rope_scaling answers with YaRN-scaled RoPE and says so', () => {
  const r = tsx('model/chat.ts', ['--weights', weights, ...greedy, '--inference_rope_scaling', '--prompt', 'hello']);
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /layers, YaRN rope scaling, config from/);
  assert.is(turns(r.stdout).length, 1, r.stdout);
});

sharedTest(s, missing, '--input_mode 0 answers the fixed prompts in order, as eval_llm.py\'s auto test', () => {
  const r = tsx('model/chat.ts', ['--weights', weights, ...greedy, '--max_new_tokens', '1', '--input_mode', '0']);
  assert.is(r.status, 0, r.stderr);
  assert.equal([...r.stdout.matchAll(/^💬: (.*)$/gm)].map((m) => m[1]), AUTO_PROMPTS);
  assert.is(turns(r.stdout).length, AUTO_PROMPTS.length);
  const bad = tsx('model/chat.ts', ['--weights', weights, '--input_mode', '2']);
  assert.match(bad.stderr, /^chat: --input_mode must be 0 \(auto test\) or 1 \(stdin\), got 2\n$/m);
});

/** A MiniMind2 adapter file for the trained model (hidden 128, 2 layers: q/o of each layer, rank `rank`): A seeded
 *  uniform, B `b` times uniform (0: the adapters add exactly nothing). */
function adapterFileFor(path: string, b: number, rank = 8): void {
  const r = rng(3), u = (n: number, scale: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
  const list = loraTargets(minimind2({ hidden_size: 128, num_hidden_layers: 2 })).flatMap((m) => {
    const [a, bk] = adapterKeys(m.name);
    return [{ name: a, shape: [rank, m.in], data: u(rank * m.in, 0.1) }, { name: bk, shape: [m.out, rank], data: u(m.out * rank, b) }];
  });
  writePth(path, list, { dtype: 'float32' });
}

sharedTest(s, missing, '--lora_weight NAME reads {save_dir}/lora/NAME_128.pth (MiniMind2): zero B answers as the base, a large B otherwise', () => {
  const out = join(dir, 'out');
  adapterFileFor(join(out, 'lora', 'lora_zero_128.pth'), 0);
  adapterFileFor(join(out, 'lora', 'lora_big_128.pth'), 2);
  const chat = (extra: string[]) => tsx('model/chat.ts', ['--save_dir', out, ...SHAPE, ...greedy, '--prompt', 'hello', ...extra]);
  const [base, zero, big] = [chat([]), chat(['--lora_weight', 'lora_zero']), chat(['--lora_weight', 'lora_big'])];
  for (const r of [base, zero, big]) assert.is(r.status, 0, r.stderr);
  assert.match(zero.stdout, /; LoRA .*lora[/\\]lora_zero_128\.pth \(rank 8, 4 modules\)/);
  assert.equal(turns(zero.stdout), turns(base.stdout));
  assert.not.equal(turns(big.stdout)[0].answer, turns(base.stdout)[0].answer);
  adapterFileFor(join(out, 'lora', 'lora_r16_128.pth'), 1, 16);
  const bad = chat(['--lora_weight', 'lora_r16']);
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^chat: .*lora_r16_128\.pth: model\.layers\.0\.self_attn\.q_proj\.lora\.A\.weight is \[16,128\] in the file, \[8,128\] in the model: an adapter of rank 16, this model's LoRA has rank 8 \(minimind2\)\n$/m);
  const none = chat(['--lora_weight', 'nope']);
  assert.match(none.stderr, /^chat: .*lora[/\\]nope_128\.pth: no such adapter file \(--lora_weight nope, --save_dir and --hidden_size name it\)\n$/m);
});

sharedTest(s, missing, 'model/merge_lora.ts folds the adapters in: the merged .pth (no adapter) answers as base + adapters', () => {
  const out = join(dir, 'out');
  adapterFileFor(join(out, 'lora', 'lora_big_128.pth'), 2);
  const m = tsx('model/merge_lora.ts', ['--save_dir', out, ...SHAPE, '--lora_weight', 'lora_big']);
  assert.is(m.status, 0, m.stderr);
  const merged = join(out, 'merge_big_128.pth');
  assert.match(m.stdout, /\[merge\] .*full_sft_128\.pth \+ .*lora_big_128\.pth → .*merge_big_128\.pth/);
  assert.ok(existsSync(join(out, 'merge_big_128.config.json')));
  const adapted = tsx('model/chat.ts', ['--save_dir', out, ...SHAPE, ...greedy, '--prompt', 'hello', '--lora_weight', 'lora_big']);
  const plain = tsx('model/chat.ts', ['--weights', merged, ...greedy, '--prompt', 'hello']);
  assert.is(plain.status, 0, plain.stderr);
  assert.equal(turns(plain.stdout), turns(adapted.stdout));
});

s('--help lists every flag, eval_llm.py\'s among them', () => {
  const r = tsx('model/chat.ts', ['--help']);
  assert.is(r.status, 0, r.stderr);
  for (const k of Object.keys(FLAGS)) assert.match(r.stdout, new RegExp(`^  --${k} `, 'm'), k);
  for (const k of ['load_from', 'save_dir', 'weight', 'lora_weight', 'hidden_size', 'num_hidden_layers', 'use_moe', 'inference_rope_scaling',
    'max_new_tokens', 'temperature', 'top_p', 'historys', 'show_speed', 'weights', 'tokenizer_path']) assert.ok(k in FLAGS, k);
});

s.run();
