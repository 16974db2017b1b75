// `train/lora.ts` as a user runs it, on the built-in generated SFT data and a tiny model: train_lora.py's
// defaults per generation; the adapter file (only the adapter keys, MiniMind2's float32) and the resume
// checkpoint (base + adapter keys, the adapters' AdamW state); a run stopped and resumed equals the
// uninterrupted one bit for bit; --lora_init starts from given adapters, on one process or on 2 data-parallel ranks.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { ensureDefaultData } from '../data/defaults.js';
import { readPth } from '../model/pth.js';
import { readMiniMindResume } from '../model/resume_pth.js';
import { parseLoraArgs } from '../train/lora.js';

const s = suite('lora_cli');
const root = join(import.meta.dirname, '..');
const lora = (args: string[]) => spawnSync('npx', ['tsx', 'train/lora.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, MINIMIND_QUIET: '1' } });
const KEYS = [0, 1].flatMap((i) => ['q_proj', 'o_proj'].flatMap((m) => ['A', 'B'].map((w) => `model.layers.${i}.self_attn.${m}.lora.${w}.weight`)));

let common: string[] = [];
s.before(async () => {
  const d = await ensureDefaultData();
  common = ['--data_path', d.sftPath, '--tokenizer_path', d.tokenizerDir, '--preset', 'tiny', '--from_weight', 'none', '--epochs', '1',
    '--batch_size', '4', '--max_seq_len', '56', '--augment', '0', '--num_workers', '0', '--learning_rate', '1e-3', '--samples', '0', '--log_interval', '1'];
});

/** A run in `dir` (weights and checkpoints both there); the losses of its step lines in the run log. */
function run(dir: string, extra: string[]): { losses: number[]; stdout: string } {
  const log = join(dir, 'log.jsonl');
  const r = lora([...common, '--save_dir', dir, '--checkpoint_dir', dir, '--log_file', log, ...extra]);
  assert.is(r.status, 0, r.stderr + r.stdout);
  const steps = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.kind === undefined); // step lines
  return { losses: steps.map((l) => l.loss), stdout: r.stdout };
}

s('defaults follow the generation: MiniMind2\'s train_lora.py, or HEAD\'s for a minimind-3 model', () => {
  const m2 = parseLoraArgs([]), m3 = parseLoraArgs(['--preset', 'minimind3']), given = parseLoraArgs(['--preset', 'minimind3', '--epochs', '3']);
  assert.equal([m2.save_dir, m2.save_weight, m2.epochs, m2.data_path, m2.learning_rate, m2.batch_size, m2.log_interval, m2.from_weight],
    ['../out/lora', 'lora_identity', 50, '../dataset/lora_identity.jsonl', 1e-4, 32, 10, 'full_sft']);
  assert.equal([m3.save_dir, m3.save_weight, m3.epochs, m3.data_path, m3.hidden_size], ['../out', 'lora_medical', 10, '../dataset/lora_medical.jsonl', 768]);
  assert.is(given.epochs, 3, 'a flag given wins');
});

s('a run saves only the adapters (MiniMind2: float32) and a resume file with base + adapter keys and their AdamW state', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lora-'));
  const { losses, stdout } = run(dir, ['--max_steps', '4']);
  assert.is(losses.length, 4);
  assert.match(stdout, /\[train\] LoRA rank 8 on 4 modules: 0\.008M parameters, [\d.]+% of [\d.]+M; the base is frozen/);
  assert.match(stdout, /Epoch:\[1\/1\]\(4\/\d+\), loss: [\d.]+, logits_loss: [\d.]+, aux_loss: 0\.0000, lr: [\d.]+, epoch_time: [\d.]+min/);
  const adapters = readPth(join(dir, 'lora_identity_128.pth'));
  assert.equal([...adapters.keys()], KEYS);
  assert.ok([...adapters.values()].every((t) => t.dtype === 'float32'));
  const r = readMiniMindResume(join(dir, 'lora_identity_128_resume.pth'));
  assert.equal([r.epoch, r.step], [0, 4]);
  assert.ok(KEYS.every((k) => r.model.has(k)) && r.model.has('model.embed_tokens.weight') && r.model.has('lm_head.weight'));
  assert.is(r.optimizer.state.length, KEYS.length, 'AdamW state of the adapters only');
  assert.equal(r.optimizer.state[0]!.expAvg.shape, [8, 128]);
  assert.equal(r.optimizer.state.map((x) => x!.step), KEYS.map(() => 4));
});

s('stopped after 2 steps and resumed for 3: the same losses and the same adapter file, bit for bit', () => {
  const full = mkdtempSync(join(tmpdir(), 'lora-full-')), part = mkdtempSync(join(tmpdir(), 'lora-part-'));
  const a = run(full, ['--max_steps', '5']);
  const b1 = run(part, ['--max_steps', '2']);
  const b2 = run(part, ['--max_steps', '3', '--from_resume', '1']);
  assert.match(b2.stdout, /resumed from .*lora_identity_128_resume\.pth: epoch 1, step 2\//);
  assert.equal([...b1.losses, ...b2.losses.slice(-3)], a.losses);
  const [x, y] = [full, part].map((d) => readPth(join(d, 'lora_identity_128.pth')));
  for (const k of KEYS) assert.ok(Buffer.from(x.get(k)!.raw).equals(Buffer.from(y.get(k)!.raw)), k);
});

s('--lora_init FILE starts from its adapters (learning rate 0: saved back unchanged), on 1 rank or 2; a bad file is a clear error', () => {
  const src = mkdtempSync(join(tmpdir(), 'lora-src-')), dir = mkdtempSync(join(tmpdir(), 'lora-init-'));
  run(src, ['--max_steps', '2']);
  const init = join(src, 'lora_identity_128.pth');
  run(dir, ['--max_steps', '1', '--lora_init', init, '--learning_rate', '0']);
  const [want, got] = [init, join(dir, 'lora_identity_128.pth')].map((p) => readPth(p));
  for (const k of KEYS) assert.ok(Buffer.from(got.get(k)!.raw).equals(Buffer.from(want.get(k)!.raw)), k);
  const bad = lora([...common, '--save_dir', dir, '--checkpoint_dir', dir, '--lora_init', join(dir, 'nope.pth')]);
  assert.is(bad.status, 1);
  assert.match(bad.stderr, /^error: --lora_init .*nope\.pth: no such adapter file\n$/m);
  // On 2 ranks: both start from the file's adapters (rank 0's are broadcast), rank 0 alone saves.
  const two = mkdtempSync(join(tmpdir(), 'lora-ddp-'));
  const r = run(two, ['--max_steps', '2', '--lora_init', init, '--learning_rate', '0', '--nproc_per_node', '2']);
  assert.match(r.stdout, /per rank on 2 ranks/);
  assert.is(r.losses.length, 2, 'one log line per step');
  const saved = readPth(join(two, 'lora_identity_128.pth'));
  for (const k of KEYS) assert.ok(Buffer.from(saved.get(k)!.raw).equals(Buffer.from(want.get(k)!.raw)), `2 ranks: ${k}`);
  assert.is(readMiniMindResume(join(two, 'lora_identity_128_resume.pth')).worldSize, 2);
});

s.run();
