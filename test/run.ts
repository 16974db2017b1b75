// Test entry point (`npm test`): runs every test/**/*.test.ts (test/fixtures left out) with uvu in one process
// (one GPU device for all), prints `N passed, N failed, N skipped`, destroys the device so Node exits, and exits 1
// if anything failed: a test, a suite whose hook threw, or a test file that failed to import.
// `npm test -- NAME...` runs only files whose path from the repository root contains a NAME (`pth`, `test/pth`); `--dir DIR` runs DIR's test files
// instead of test/'s (test/runner.test.ts runs this runner on test/fixtures/runner that way).
import { readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { closeGpu } from '../runtime/device.js';

// Tests are deterministic: the hand-picked variants (no timing, no cache file) unless a test makes
// its own tuner; every variant is checked by test/variants.test.ts. Child processes inherit this.
process.env.MINIMIND_TUNE ??= 'off';
process.env.MINIMIND_TUNE_FILE ??= 'none';

const argv = process.argv.slice(2);
const at = argv.indexOf('--dir');
const root = at >= 0 ? resolve(argv[at + 1] ?? '') : import.meta.dirname;
const filters = argv.filter((_, i) => at < 0 || (i !== at && i !== at + 1));

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'fixtures' ? [] : walk(p);
    return p.endsWith('.test.ts') ? [p] : [];
  });
}

/** What uvu's runner of one suite returns: its errors (true: none), tests passed, skipped, and run. */
type SuiteResult = [errors: string | true, passed: number, skipped: number, total: number];
type SuiteRun = () => Promise<SuiteResult>;

const counts = { passed: 0, failed: 0, skipped: 0 };
/** Seconds per test file (its suites' runs; a fresh machine's are mostly shader compiles): the slowest are printed. */
const seconds = new Map<string, number>();
const describe = (e: unknown) => (e instanceof Error ? e.stack ?? e.message : String(e));

/** uvu's result of a suite, counted. uvu 0.5 drops the error of a `before` hook that throws (or an
 *  `after.each` after a failed test): the suite reports no error with fewer tests passed than it has, and
 *  uvu would exit 0. It rethrows one from an `after` hook, which would end the whole run. */
function counted(run: SuiteRun, file: string): SuiteRun {
  return async () => {
    let r: SuiteResult;
    const t0 = performance.now();
    try {
      r = await run();
    } catch (e) {
      counts.failed++;
      return [`  FAIL: the suite's after hook threw: ${describe(e)}\n`, 0, 0, 0];
    }
    finally {
      seconds.set(file, (seconds.get(file) ?? 0) + (performance.now() - t0) / 1000);
    }
    const [errors, passed, skipped, total] = r;
    counts.passed += passed;
    counts.skipped += skipped;
    counts.failed += total - passed;
    if (errors === true && passed < total) {
      return [`  FAIL: ${total - passed} of ${total} tests did not run: a before or after.each hook threw `
        + '(uvu does not report its error)\n', passed, skipped, total];
    }
    return r;
  };
}

const repo = join(import.meta.dirname, '..');
const files = walk(root).filter((f) => !filters.length || filters.some((n) => relative(repo, f).includes(n))).sort();
(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1;
const uvu = await import('uvu');
const g = globalThis as unknown as { UVU_QUEUE: (string | SuiteRun)[][]; UVU_INDEX: number };
for (const [i, f] of files.entries()) {
  g.UVU_INDEX = i;
  const group: (string | SuiteRun)[] = [relative(root, f)];
  g.UVU_QUEUE.push(group);
  let failed: unknown;
  try {
    await import(pathToFileURL(f).href);
  } catch (e) {
    failed = e;
  }
  for (let k = 1; k < group.length; k++) group[k] = counted(group[k] as SuiteRun, relative(root, f));
  if (failed !== undefined) {
    counts.failed++;
    group.push(async () => [`  FAIL: the file failed to import: ${describe(failed)}\n`, 0, 0, 0]);
  }
}

// Keep the event loop alive for the whole run: a test awaiting only unref'd handles (e.g. the data
// loader's idle workers) must not let Node exit mid-suite.
const keepAlive = setInterval(() => {}, 1 << 30);
await uvu.exec();
clearInterval(keepAlive);
closeGpu();
const slowest = [...seconds].sort((x, y) => y[1] - x[1]).slice(0, 8);
if (slowest.length > 1) console.log(`slowest files: ${slowest.map(([f, t]) => `${f} ${t.toFixed(0)} s`).join(', ')}`);
console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
process.exitCode = counts.failed > 0 ? 1 : 0;
