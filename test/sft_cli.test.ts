// `train/sft.ts` as a user runs it: the built-in run (shortened by flags) learns, and a diverging
// run stops with a clear message after --max_bad_steps non-finite losses, leaving a checkpoint; Ctrl-C
// saves and stops; bad input is a clear error.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { writeTokenizer } from '../data/bpe.js';

const s = suite('sft_cli');
const root = join(import.meta.dirname, '..');
const sft = (args: string[]) => spawnSync('npx', ['tsx', 'train/sft.ts', ...args], { cwd: root, encoding: 'utf8', timeout: 300_000, env: { ...process.env, MINIMIND_QUIET: '1' } });

s('the built-in run, shortened to 55 steps, finishes and its loss falls well below the first', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sft-'));
  const log = join(dir, 'full_sft_log.jsonl'); // the built-in run logs next to its weights
  const r = sft(['--max_steps', '55', '--log_interval', '10', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', join(dir, 'ckpt')]);
  assert.is(r.status, 0, r.stderr + r.stdout);
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const rows = lines.filter((r) => r.kind === undefined);
  assert.equal(rows.map((r) => r.step), [10, 20, 30, 40, 50, 55], 'every 10th step, and the last');
  assert.equal([lines[0].kind, lines.at(-1).kind, lines[0].args.max_steps, lines[0].last_step], ['run', 'done', 55, 55], 'the run\'s own lines beside them');
  assert.ok(rows[5].loss < 0.7 * rows[0].loss, `loss ${rows[0].loss} → ${rows[5].loss}`);
  for (const k of ['epoch', 'step', 'iters', 'loss', 'logits_loss', 'aux_loss', 'lr', 'grad_norm', 'tokens_per_s', 'elapsed_s']) assert.ok(k in rows[0], k);
  assert.ok(existsSync(join(dir, 'full_sft_128.pth')) && existsSync(join(dir, 'full_sft_128_loss.svg')));
  assert.match(r.stdout, /Epoch:\[1\/1\]\(55\/1000\), loss: [\d.]+, logits_loss: [\d.]+, aux_loss: 0\.0000, lr: [\d.]+, epoch_time: [\d.]+min/);
  assert.match(r.stdout, /\(55\/1000\).*epoch_time: 0\.0min/, 'the time left counts to --max_steps, not the epoch end');
});

s('built-in pretrain, then SFT from its weights (--from_weight pretrain): sample answers before, the held-out quiz after', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pre-'));
  const short = ['--max_steps', '3', '--save_dir', dir, '--checkpoint_dir', dir];
  const pre = spawnSync('npx', ['tsx', 'train/pretrain.ts', ...short], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  assert.is(pre.status, 0, pre.stderr + pre.stdout);
  assert.ok(existsSync(join(dir, 'pretrain_128.pth')), pre.stdout);
  const r = sft([...short, '--from_weight', 'pretrain', '--samples', '2']);
  assert.is(r.status, 0, r.stderr + r.stdout);
  assert.ok(r.stdout.includes(`[train] loaded ${join(dir, 'pretrain_128.pth')}\n`), 'every key loaded, none missing or ignored');
  assert.match(r.stdout, /sample answers before training:\n  Q: [^\n]+\n  A: [^\n]*\n  Q: [^\n]+\n  A: [^\n]*\n(?!  Q)/);
  assert.match(r.stdout, /held-out questions after training \(5 per task family, none in the training data\):/);
  assert.is((r.stdout.match(/^  (right|wrong)  Q: /gm) ?? []).length, 20);
  assert.match(r.stdout, /\[train\] \d+ of 20 correct \(counting \d\/5, conversion \d\/5, words \d\/5, capital \d\/5\)/);
});

s('non-finite losses skip the step and stop the run after --max_bad_steps, with the last good state saved', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nan-'));
  const r = sft(['--learning_rate', '1e38', '--max_bad_steps', '2', '--max_steps', '50', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir]);
  assert.is(r.status, 1);
  assert.match(r.stdout, /non-finite .*step is skipped \(1 in a row\)/);
  assert.match(r.stderr, /stopped: 2 non-finite losses in a row .*saved in .*resume\.pth/);
  assert.ok(existsSync(join(dir, 'full_sft_128_resume.pth')));
  const last = JSON.parse(readFileSync(join(dir, 'full_sft_log.jsonl'), 'utf8').trim().split('\n').at(-1)!);
  assert.is(last.kind, 'error', 'the log ends saying why (the dashboard shows it)');
  assert.match(last.message, /^stopped: 2 non-finite losses in a row/);
});

s('bad flags are refused with the flag named', () => {
  const r = sft(['--batch_size', 'many']);
  assert.is(r.status, 1);
  assert.match(r.stderr, /--batch_size must be a number, got 'many'/);
});

s('a missing or empty data file or a missing resume checkpoint is a clear error, and the process exits (no loader thread left behind)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'missing-'));
  const data = sft(['--data_path', join(dir, 'nope.jsonl')]);
  assert.is(data.status, 1);
  assert.match(data.stderr, /--data_path .*nope\.jsonl: no such file/);
  const file = join(dir, 'empty.jsonl');
  writeFileSync(file, '\r\n\r\n'); // only blank lines: once 0 steps, "final loss NaN" and exit 0
  writeTokenizer(join(dir, 'tok'), ['what is plus the answer'], { vocabSize: 300 });
  const empty = sft(['--data_path', file, '--tokenizer_path', join(dir, 'tok'), '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir]);
  assert.is(empty.status, 1, empty.stdout + empty.stderr);
  assert.match(empty.stderr, `error: ${file}: no samples: all 2 lines are blank`);
  assert.not.match(empty.stdout, 'final loss');
  const resume = sft(['--from_resume', '1', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir]);
  assert.is(resume.status, 1, `exit status ${resume.status} (null: killed by the timeout, the process hung)`);
  assert.match(resume.stderr, /--from_resume 1: no resume checkpoint at .*full_sft_128_resume\.pth/);
});

s('with --data_path the tokenizer comes from ../model as in MiniMind, else it is an error saying where it looked', () => {
  // A MiniMind-like layout: the trainer runs in trainer/, so ../model is the folder beside it.
  const dir = mkdtempSync(join(tmpdir(), 'layout-'));
  const trainer = join(dir, 'trainer'), data = join(dir, 'sft.jsonl');
  mkdirSync(trainer);
  const conv = [{ role: 'user', content: 'what is 1 plus 1?' }, { role: 'assistant', content: 'the answer is 2.' }];
  writeFileSync(data, Array(4).fill(JSON.stringify({ conversations: conv })).join('\n') + '\n');
  const flags = ['--data_path', data, '--preset', 'tiny', '--from_weight', 'none', '--max_steps', '1', '--batch_size', '2',
    '--max_seq_len', '128', '--samples', '0', '--save_dir', join(dir, 'out'), '--checkpoint_dir', join(dir, 'ckpt')];
  const trainIn = (cwd: string, extra: string[]) => spawnSync(join(root, 'node_modules', '.bin', 'tsx'), [join(root, 'train', 'sft.ts'), ...flags, ...extra],
    { cwd, encoding: 'utf8', timeout: 300_000, env: { ...process.env, MINIMIND_QUIET: '1' } });
  const missing = trainIn(trainer, []);
  assert.is(missing.status, 1, missing.stdout);
  assert.ok(missing.stderr.includes(`looked in ../model (${join(dir, 'model')})`), missing.stderr);
  assert.match(missing.stderr, /pass --tokenizer_path DIR/);
  writeTokenizer(join(dir, 'model'), Array(4).fill('what is plus the answer is 0123456789 ?.'), { vocabSize: 300 });
  const found = trainIn(trainer, ['--use_wandb', '--device', 'cuda:0']);
  assert.is(found.status, 0, found.stderr + found.stdout);
  assert.ok(found.stdout.includes(`[train] tokenizer: ${join(dir, 'model')} (`), found.stdout);
  const log = join(dir, 'out', 'full_sft_log.jsonl');
  assert.ok(found.stdout.includes(`[train] --use_wandb: no wandb/swanlab here; the run's metrics go to --log_file as JSON lines: ${log}`), found.stdout);
  assert.match(found.stdout, /\[train\] --device cuda:0: not used; the WebGPU adapter is chosen with MINIMIND_ADAPTER/);
  assert.ok(existsSync(log), 'the metrics are where the line says');
});

s('Ctrl-C saves at the next optimizer step and exits 130; --from_resume 1 continues from there', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sigint-'));
  const flags = ['--log_interval', '1', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir];
  // Its own process group, signalled as a terminal's Ctrl-C does. Node with tsx's loader, not the tsx
  // CLI: that wrapper SIGKILLs a child that has not acknowledged a signal within 30 ms, which a trainer
  // busy on a loaded 2-core machine sometimes has not (README: Ctrl-C). The signal comes twice, 5 ms
  // apart, as when a wrapper relays the terminal's: one key press all the same.
  const child = spawn(process.execPath, ['--import', 'tsx', 'train/sft.ts', ...flags], { cwd: root, detached: true, env: { ...process.env, MINIMIND_QUIET: '1' } });
  let out = '';
  const code = await new Promise<number | null>((done, fail) => {
    const timer = setTimeout(() => { process.kill(-child.pid!, 'SIGKILL'); fail(new Error(`no exit after Ctrl-C:\n${out}`)); }, 240_000);
    let sent = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!sent && /Epoch:\[1\/1\]\(2\//.test(out)) {
        sent = true;
        process.kill(-child.pid!, 'SIGINT');
        setTimeout(() => process.kill(-child.pid!, 'SIGINT'), 5);
      }
    });
    child.stderr.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('close', (c) => { clearTimeout(timer); done(c); }); // after stdout is drained, unlike 'exit'
  });
  assert.is(code, 130, out);
  assert.match(out, /interrupted: weights and resume checkpoint saved/);
  const saved = Number(out.match(/Epoch:\[1\/1\]\((\d+)\/1000\)[^\n]*\n\[train\] interrupted/)?.[1]);
  assert.ok(saved >= 2, `saved at step ${saved}`);
  const r = sft([...flags, '--from_resume', '1', '--max_steps', '1']);
  assert.is(r.status, 0, r.stderr + r.stdout);
  assert.match(r.stdout, new RegExp(`resumed from .*step ${saved}/1000`));
  assert.match(r.stdout, new RegExp(`Epoch:\\[1/1\\]\\(${saved + 1}/1000\\)`));
});

s.run();
