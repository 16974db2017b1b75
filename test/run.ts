// Test entry point (`npm test`): runs every test/**/*.test.ts (test/fixtures left out) with uvu, prints
// `N passed, N failed, N skipped`, and exits 1 if anything failed: a test, a suite whose hook threw, a test
// file that failed to import, or a worker process that died running one.
// Files run in `--jobs N` worker processes (default: one per core, at most 4), each with its own GPU device,
// taking the next file as they finish one; each file's output is printed whole when it ends. On lavapipe a
// cold shader compile runs on one thread, so a 2-core machine compiles two at a time this way (1.8× the
// throughput, measured); `--jobs 1` runs every file in this process. `npm test -- NAME...` runs only files
// whose path from the repository root contains a NAME (`pth`, `test/pth`); `--dir DIR` runs DIR's test files
// instead of test/'s (test/runner.test.ts runs this runner on test/fixtures/runner that way).
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism, tmpdir } from 'node:os';
import { closeGpu } from '../runtime/device.js';

// Tests are deterministic: the hand-picked variants (no timing, no cache file) unless a test makes
// its own tuner; every variant is checked by test/variant_sweep.ts. Child processes inherit this.
process.env.MINIMIND_TUNE ??= 'off';
process.env.MINIMIND_TUNE_FILE ??= 'none';

/** Files started first, so that no worker is left with one of them at the end: the slowest on a cold shader
 *  cache (an ordering hint only: a name here that matches no file changes nothing). */
const SLOW_FIRST = ['variants', 'matmul16', 'amp_loop', 'gpu_check', 'sft_cli', 'attention', 'chat', 'dashboard_browser'];

/** What uvu's runner of one suite returns: its errors (true: none), tests passed, skipped, and run. */
type SuiteResult = [errors: string | true, passed: number, skipped: number, total: number];
type SuiteRun = () => Promise<SuiteResult>;
interface Counts { passed: number; failed: number; skipped: number }
/** A worker's message when it has run a file. */
interface Done { file: string; counts: Counts; seconds: number }

const describe = (e: unknown) => (e instanceof Error ? e.stack ?? e.message : String(e));

/** Runs one suite and counts it. uvu 0.5 drops the error of a `before` hook that throws (or an `after.each`
 *  after a failed test): the suite reports no error with fewer tests passed than it has. It rethrows one
 *  from an `after` hook, which would end the whole run. */
async function runSuite(run: SuiteRun, counts: Counts): Promise<string | true> {
  let r: SuiteResult;
  try {
    r = await run();
  } catch (e) {
    counts.failed++;
    return `  FAIL: the suite's after hook threw: ${describe(e)}\n`;
  }
  const [errors, passed, skipped, total] = r;
  counts.passed += passed;
  counts.skipped += skipped;
  counts.failed += total - passed;
  if (errors === true && passed < total) {
    return `  FAIL: ${total - passed} of ${total} tests did not run: a before or after.each hook threw (uvu does not report its error)\n`;
  }
  return errors;
}

(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1; // uvu runs nothing by itself: runFile does
await import('uvu');
const uvuQueue = (globalThis as unknown as { UVU_QUEUE: SuiteRun[][] }).UVU_QUEUE;
let fileIndex = 0;

/** Imports one test file (its suites queue themselves) and runs its suites; output goes to stdout. */
async function runFile(file: string, name: string): Promise<{ counts: Counts; seconds: number }> {
  const counts = { passed: 0, failed: 0, skipped: 0 }, t0 = performance.now();
  const group: SuiteRun[] = [];
  uvuQueue[fileIndex] = group;
  (globalThis as { UVU_INDEX?: number }).UVU_INDEX = fileIndex++;
  process.stdout.write(`${name}\n`);
  let failed: unknown;
  try {
    await import(pathToFileURL(file).href);
  } catch (e) {
    failed = e;
  }
  for (const suite of group) {
    const errors = await runSuite(suite, counts);
    if (errors !== true && errors.length) process.stdout.write(`\n${errors}\n`);
  }
  if (failed !== undefined) {
    counts.failed++;
    process.stdout.write(`\n  FAIL: the file failed to import: ${describe(failed)}\n`);
  }
  process.stdout.write('\n');
  return { counts, seconds: (performance.now() - t0) / 1000 };
}

/** A worker process: runs the files the parent sends, one at a time, appends their output to `outFile` (written
 *  at once, so that what a test printed before its process died is there) and sends back their counts. */
function serveFiles(root: string, outFile: string): void {
  process.stdout.write = ((chunk: string | Uint8Array) => {
    appendFileSync(outFile, chunk);
    return true;
  }) as typeof process.stdout.write;
  process.on('message', async ({ file }: { file: string | null }) => {
    if (file === null) {
      closeGpu();
      process.exit(0);
    }
    const r = await runFile(file, relative(root, file));
    process.send!({ file, ...r } satisfies Done);
  });
}

/** Runs the files in `jobs` worker processes; returns the totals and each file's seconds. */
async function runInWorkers(files: string[], jobs: number, root: string): Promise<{ counts: Counts; seconds: Map<string, number> }> {
  const counts = { passed: 0, failed: 0, skipped: 0 }, seconds = new Map<string, number>();
  const queue = [...files];
  const self = fileURLToPath(import.meta.url);
  const outDir = mkdtempSync(join(tmpdir(), 'minimind-test-'));
  let workers = 0;
  const start = (finished: () => void) => {
    const outFile = join(outDir, `${workers++}.out`);
    writeFileSync(outFile, '');
    const w: ChildProcess = fork(self, ['--worker', outFile, '--dir', root], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let printed = 0, running: string | undefined;
    /** Prints what the worker wrote since the last call. */
    const flushOut = () => {
      const out = readFileSync(outFile);
      process.stdout.write(out.subarray(printed));
      printed = out.length;
    };
    const next = () => {
      running = queue.shift();
      w.send({ file: running ?? null });
    };
    w.on('message', (m: Done) => {
      flushOut();
      counts.passed += m.counts.passed;
      counts.failed += m.counts.failed;
      counts.skipped += m.counts.skipped;
      seconds.set(relative(root, m.file), m.seconds);
      next();
    });
    w.on('exit', (code, signal) => {
      flushOut();
      if (running !== undefined) {
        counts.failed++;
        process.stdout.write(`\n  FAIL: the worker running ${relative(root, running)} died (${signal ?? `exit code ${code}`})\n\n`);
        if (queue.length) { start(finished); return; } // a fresh worker takes the files left
      }
      finished();
    });
    next();
  };
  await Promise.all(Array.from({ length: Math.min(jobs, files.length) }, () => new Promise<void>((ok) => start(ok))));
  rmSync(outDir, { recursive: true, force: true });
  return { counts, seconds };
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    if (statSync(p).isDirectory()) return f === 'fixtures' ? [] : walk(p);
    return p.endsWith('.test.ts') ? [p] : [];
  });
}

function option(argv: string[], flag: string): string | undefined {
  const at = argv.indexOf(flag);
  if (at < 0) return undefined;
  const v = argv[at + 1];
  if (v === undefined) throw new Error(`${flag} needs a value`);
  argv.splice(at, 2);
  return v;
}

const argv = process.argv.slice(2);
const workerOut = argv[0] === '--worker' ? argv.splice(0, 2)[1] : undefined;
const root = resolve(option(argv, '--dir') ?? import.meta.dirname);
const jobsArg = option(argv, '--jobs');
const jobs = jobsArg === undefined ? Math.min(4, availableParallelism()) : Number(jobsArg);
if (!(Number.isInteger(jobs) && jobs >= 1)) throw new Error(`--jobs: a whole number ≥ 1, got ${jobsArg}`);

if (workerOut !== undefined) {
  serveFiles(root, workerOut);
} else {
  const repo = join(import.meta.dirname, '..');
  const rank = (f: string) => { const i = SLOW_FIRST.findIndex((n) => f.includes(n)); return i < 0 ? SLOW_FIRST.length : i; };
  const files = walk(root).filter((f) => !argv.length || argv.some((n) => relative(repo, f).includes(n))).sort()
    .sort((a, b) => rank(relative(root, a)) - rank(relative(root, b)));
  let counts: Counts, seconds: Map<string, number>;
  if (jobs === 1 || files.length === 1) {
    counts = { passed: 0, failed: 0, skipped: 0 };
    seconds = new Map();
    // Keep the event loop alive for the whole run: a test awaiting only unref'd handles (e.g. the data
    // loader's idle workers) must not let Node exit mid-suite.
    const keepAlive = setInterval(() => {}, 1 << 30);
    for (const f of files) {
      const r = await runFile(f, relative(root, f));
      for (const k of ['passed', 'failed', 'skipped'] as const) counts[k] += r.counts[k];
      seconds.set(relative(root, f), r.seconds);
    }
    clearInterval(keepAlive);
    closeGpu();
  } else {
    ({ counts, seconds } = await runInWorkers(files, jobs, root));
  }
  const slowest = [...seconds].sort((x, y) => y[1] - x[1]).slice(0, 8);
  if (slowest.length > 1) console.log(`slowest files: ${slowest.map(([f, t]) => `${f} ${t.toFixed(0)} s`).join(', ')}`);
  console.log(`${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  process.exitCode = counts.failed > 0 ? 1 : 0;
}
