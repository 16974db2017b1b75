// `train/sft.ts --nproc_per_node 2` as a user runs it (the built-in run): only rank 0 prints, Ctrl-C stops both
// ranks at one optimizer step with one save of a 2-process resume file and exit code 130, and a resume on one
// process rescales the step and goes on from there.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn, spawnSync } from 'node:child_process';
import { readMiniMindResume } from '../model/resume_pth.js';

const s = suite('ddp_cli');
const root = join(import.meta.dirname, '..');
const env = { ...process.env, MINIMIND_QUIET: '1' };

s('2 ranks: Ctrl-C saves once and exits 130; --from_resume 1 on 1 process rescales the step and continues', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ddp-cli-'));
  const flags = ['--log_interval', '1', '--samples', '0', '--save_dir', dir, '--checkpoint_dir', dir];
  // Its own process group, signalled as a terminal's Ctrl-C does, with node and tsx's loader, the signal twice 5 ms
  // apart (one key press relayed by a wrapper): as test/sft_cli.test.ts, which says why.
  const child = spawn(process.execPath, ['--import', 'tsx', 'train/sft.ts', '--nproc_per_node', '2', ...flags], { cwd: root, detached: true, env });
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
    child.on('close', (c) => { clearTimeout(timer); done(c); });
  });
  assert.is(code, 130, out);
  assert.match(out, /on 2 ranks/);
  assert.is(out.match(/every rank stops at the next optimizer step/g)?.length, 1, out);
  assert.is(out.match(/\[train\] interrupted: weights and resume checkpoint saved/g)?.length, 1, 'rank 0 alone says it saved');
  const steps = [...out.matchAll(/Epoch:\[1\/1\]\((\d+)\/500\)/g)].map((m) => Number(m[1]));
  assert.equal(steps, steps.map((_, i) => i + 1), 'one log line per step: rank 0\'s (500 steps of 16 per rank)');
  const saved = readMiniMindResume(join(dir, 'full_sft_128_resume.pth'));
  assert.equal([saved.epoch, saved.step, saved.worldSize], [0, steps.at(-1), 2]);

  const r = spawnSync(process.execPath, ['--import', 'tsx', 'train/sft.ts', ...flags, '--from_resume', '1', '--nproc_per_node', '1', '--max_steps', '2'],
    { cwd: root, encoding: 'utf8', timeout: 240_000, env });
  assert.is(r.status, 0, r.stderr + r.stdout);
  const s1 = 2 * saved.step;
  assert.match(r.stdout, new RegExp(`saved by 2 processes: step ${saved.step} of each is step ${s1} of this single-process run`));
  assert.match(r.stdout, new RegExp(`resumed from .*step ${s1}/1000`));
  assert.match(r.stdout, new RegExp(`Epoch:\\[1/1\\]\\(${s1 + 2}/1000\\)`));
});

s.run();
