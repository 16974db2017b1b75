// scripts/gpu-check.sh --short, as a user runs it: every stage runs and passes on this machine's
// adapter, and the training stage reports tokens/s and MFU. (The full check needs a GPU.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const s = suite('gpu_check');
const root = join(import.meta.dirname, '..');

s('the short check runs every stage, passes, and reports tokens/s and MFU', () => {
  const r = spawnSync('bash', ['scripts/gpu-check.sh', '--short'], { cwd: root, encoding: 'utf8', timeout: 480_000 });
  const out = r.stdout + r.stderr;
  assert.is(r.status, 0, `exit ${r.status ?? r.signal} (null: killed by the test's timeout)\n${out.slice(-6000)}`);
  for (const name of ['set-up', 'tests: rope', 'tune', 'bench', 'train', 'summary']) {
    assert.ok(out.includes(`==== ${name} ====`), `header of stage '${name}'`);
  }
  for (const name of ['set-up', 'tests: rope', 'tune', 'bench', 'train']) {
    assert.match(out, new RegExp(`\\n${name}\\s+[\\d.]+\\s+ok\\n`), `summary row of '${name}'`);
  }
  assert.match(out, /\[train-check\] tokens\/s: \d+/);
  assert.match(out, /\[train-check\] MFU vs measured FMA roofline: [\d.]+%/);
  assert.match(out, /\[train-check\] MFU vs nominal fp32 peak: (unknown|[\d.]+%)/);
  assert.match(out, /all stages ok/);
});

s.run();
