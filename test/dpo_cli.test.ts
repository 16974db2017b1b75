// `train/dpo.ts` as a user runs it (a tokenizer trained here, a tiny model): MiniMind's DPO log line with
// the reward margin and accuracy, ln 2 at step 1 whether the start is random or --from_weight (policy =
// reference), MiniMind's files; a run stopped and continued with --from_resume 1 (the reference rebuilt
// from --from_weight) logs what the uninterrupted run logs; on 2 data-parallel ranks; minimind-3 brings its beta and reduction; a
// bad row is a clear error naming file, line and side.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, writeFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { writeTokenizer } from '../data/bpe.js';
import { readMiniMindResume } from '../model/resume_pth.js';

const s = suite('dpo_cli');
const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'dpo-cli-'));
const tokDir = join(dir, 'tok'), data = join(dir, 'dpo.jsonl');
const turn = (q: string, a: string) => [{ role: 'user', content: q }, { role: 'assistant', content: a }];
const pairs = Array.from({ length: 6 }, (_, i) => ({ chosen: turn(`what is ${i} plus ${i}?`, `${2 * i}.`), rejected: turn(`what is ${i} plus ${i}?`, `${2 * i + 1}, I think.`) }));
writeTokenizer(tokDir, Array(4).fill('You are a helpful assistant system user what is plus I think 0123456789 ?.,'), { vocabSize: 300 });
writeFileSync(data, pairs.map((p) => JSON.stringify(p)).join('\n') + '\n');

const BASE = ['--data_path', data, '--tokenizer_path', tokDir, '--preset', 'tiny', '--batch_size', '2', '--max_seq_len', '64',
  '--learning_rate', '1e-3', '--log_interval', '1', '--num_workers', '0', '--save_dir', dir, '--checkpoint_dir', join(dir, 'ckpt')];
const dpo = (args: string[]) => spawnSync('npx', ['tsx', 'train/dpo.ts', ...BASE, ...args], { cwd: root, encoding: 'utf8', timeout: 300_000 });
const LINE = /^Epoch:\[1\/1\]\((\d)\/3\), loss: ([\d.]+), dpo_loss: ([\d.]+), aux_loss: 0\.0000, learning_rate: [\d.]+, epoch_time: \d+\.000min, reward_margin: (-?[\d.]+), reward_accuracy: ([\d.]+)$/gm;
const lines = (out: string) => [...out.matchAll(LINE)];

s('from random init: MiniMind\'s log line plus margin and accuracy, ln 2 at step 1, dpo_128.pth and its resume file, the JSON-lines log', () => {
  const log = join(dir, 'dpo_log.jsonl');
  const r = dpo(['--from_weight', 'none', '--log_file', log]);
  assert.is(r.status, 0, r.stderr + r.stdout);
  const got = lines(r.stdout);
  assert.equal(got.map((m) => m[1]), ['1', '2', '3'], r.stdout);
  assert.equal(got[0].slice(2), ['0.6931', '0.6931', '0.0000', '0.000'], 'step 1: policy = reference');
  assert.match(r.stdout, /\[train\] dpo: .*policy \+ frozen reference; beta 0\.1, mean of the response log-probs; 6 pairs, 3 steps\/epoch/);
  for (const f of ['dpo_128.pth', 'ckpt/dpo_128_resume.pth']) assert.ok(existsSync(join(dir, f)), f);
  const records = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(records.find((x) => x.kind === 'run')?.mode, 'dpo');
  const steps = records.filter((x) => x.kind === undefined);
  assert.equal(steps.map((x) => x.step), [1, 2, 3]);
  for (const k of ['loss', 'dpo_loss', 'aux_loss', 'reward_margin', 'reward_accuracy', 'lr', 'grad_norm']) assert.ok(k in steps[0], k);
});

s('--from_weight starts policy and reference from the file (ln 2 again); stopped at step 1 and resumed, the log is the uninterrupted run\'s', () => {
  const from = ['--from_weight', join(dir, 'dpo_128.pth')];
  const full = dpo([...from, '--save_weight', 'full']);
  assert.is(full.status, 0, full.stderr + full.stdout);
  const want = lines(full.stdout).map((m) => m[0]);
  assert.match(want[0], /loss: 0\.6931, dpo_loss: 0\.6931/);
  const first = dpo([...from, '--save_weight', 'part', '--max_steps', '1']);
  const rest = dpo([...from, '--save_weight', 'part', '--from_resume', '1']);
  assert.is(rest.status, 0, rest.stderr + rest.stdout);
  assert.match(rest.stdout, /resumed from .*part_128_resume\.pth: epoch 1, step 1\/3/);
  assert.equal([...lines(first.stdout), ...lines(rest.stdout)].map((m) => m[0]), want);
});

s('--nproc_per_node 2: each rank its 3 pairs (2 steps), rank 0 alone prints, ln 2 at step 1, a 2-process resume file', () => {
  const r = dpo(['--from_weight', 'none', '--save_weight', 'ddp', '--nproc_per_node', '2']);
  assert.is(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, /per rank on 2 ranks/);
  const got = [...r.stdout.matchAll(/^Epoch:\[1\/1\]\((\d)\/2\), loss: ([\d.]+),/gm)];
  assert.equal(got.map((m) => m[1]), ['1', '2'], r.stdout);
  assert.is(got[0][2], '0.6931');
  assert.is(r.stdout.match(/\[train\] done:/g)?.length, 1);
  assert.is(readMiniMindResume(join(dir, 'ckpt', 'ddp_128_resume.pth')).worldSize, 2);
});

s("a minimind-3 model brings minimind-3's beta 0.15 and sum; a bad row stops with file:line and the side", () => {
  const v3 = dpo(['--from_weight', 'none', '--preset', 'minimind3', '--hidden_size', '64', '--num_hidden_layers', '1', '--max_steps', '1', '--save_weight', 'v3']);
  assert.is(v3.status, 0, v3.stderr + v3.stdout);
  assert.match(v3.stdout, /beta 0\.15, sum of the response log-probs/);
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, `${JSON.stringify(pairs[0])}\n${JSON.stringify({ chosen: pairs[1].chosen, rejected: [{ role: 'user', content: 'no answer' }] })}\n`);
  const r = dpo(['--from_weight', 'none', '--data_path', bad]);
  assert.is(r.status, 1);
  assert.match(r.stderr, `error: ${bad}:2: "rejected": no assistant turn; fix the data or skip bad lines (--skip_bad_lines)`);
});

s.run();
