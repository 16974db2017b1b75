// The test runner itself (test/run.ts) on the fixture files of test/fixtures/runner: a failing test, a suite
// whose before hook throws (uvu alone reports no error and exits 0), one whose after hook throws, and a file
// that fails to import each make `npm test` exit 1 and count in its summary line; the NAME filter still works;
// without MiniMind's files (../shared) the tests that need them are counted as skipped, not lost; in one process
// (`--jobs 1`) or in workers, the counts are the same; a worker that dies is a failure and the other files still run.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const s = suite('runner');
const root = join(import.meta.dirname, '..');
const runner = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, ['--import', 'tsx', 'test/run.ts', ...args],
  { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
const run = (...args: string[]) => runner(['--dir', 'test/fixtures/runner', ...args]);
const summary = (out: string) => out.trim().split('\n').at(-1);

s('failures of every kind exit 1 and are counted: failed tests, tests a throwing hook kept from running, broken files', () => {
  const r = run();
  assert.is(r.status, 1, r.stdout + r.stderr);
  // passed: 2 (passing) + 1 (failing); failed: 1 test + 2 never run after the before hook + 1 after hook + 1 import
  assert.is(summary(r.stdout), '3 passed, 5 failed, 1 skipped');
  assert.match(r.stdout, '2 of 2 tests did not run: a before or after.each hook threw');
  assert.match(r.stdout, "the suite's after hook threw: Error: cleanup failed (fixture)");
  assert.match(r.stdout, 'the file failed to import: Error: broken at import (fixture)');
  assert.match(r.stdout, 'fixture failure');
});

s('one process (--jobs 1) and three workers count the same', () => {
  for (const jobs of ['1', '3']) {
    const r = run('--jobs', jobs);
    assert.is(r.status, 1, r.stdout + r.stderr);
    assert.is(summary(r.stdout), '3 passed, 5 failed, 1 skipped', `--jobs ${jobs}`);
    assert.match(r.stdout, 'the file failed to import: Error: broken at import (fixture)');
  }
});

s('a worker that dies mid-file counts as a failure, with its output and the exit code; the other files still run', () => {
  const r = runner(['--dir', 'test/fixtures/runner_crash', '--jobs', '2']);
  assert.is(r.status, 1, r.stdout + r.stderr);
  assert.is(summary(r.stdout), '1 passed, 1 failed, 0 skipped');
  assert.match(r.stdout, 'output before the crash');
  assert.match(r.stdout, 'the worker running dies.test.ts died (exit code 3)');
});

s('the NAME filter runs only matching files; all passing exits 0', () => {
  const r = run('passing');
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.is(summary(r.stdout), '2 passed, 0 failed, 1 skipped');
  assert.not.match(r.stdout, 'failing.test.ts');
  const one = run('before_hook');
  assert.is(one.status, 1);
  assert.is(summary(one.stdout), '0 passed, 2 failed, 0 skipped');
});

s('without ../shared every test that needs it is counted as skipped, naming the missing file', () => {
  const r = runner(['data_sft'], { MINIMIND_SHARED: join(root, 'no-such-shared-folder') });
  assert.is(r.status, 0, r.stdout + r.stderr);
  assert.is(summary(r.stdout), '0 passed, 0 failed, 12 skipped', 'data_sft: 6 tests for each of 2 tokenizers');
  assert.match(r.stderr, /skipped "minimind3: special ids.*": .*no-such-shared-folder\/minimind\/.*tokenizer\.json not found/);
});

s.run();
