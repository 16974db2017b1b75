// Test entry point (`npm test`): runs every test/**/*.test.ts with uvu in one process (one GPU
// device for all), then prints `N passed, N failed, N skipped` and destroys the device so Node exits.
// `npm test -- NAME` runs only files whose path contains NAME.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { closeGpu } from '../runtime/device.js';

// Tests are deterministic: the hand-picked variants (no timing, no cache file) unless a test makes
// its own tuner; every variant is checked by test/variants.test.ts. Child processes inherit this.
process.env.MINIMIND_TUNE ??= 'off';
process.env.MINIMIND_TUNE_FILE ??= 'none';

const root = join(import.meta.dirname, '..', 'test');
const filter = process.argv[2] ?? '';

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.test.ts') ? [p] : [];
  });
}

const files = walk(root).filter((f) => f.includes(filter)).sort();
(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1;
const uvu = await import('uvu');
const g = globalThis as unknown as { UVU_QUEUE: unknown[][]; UVU_INDEX: number };
for (const [i, f] of files.entries()) {
  g.UVU_INDEX = i;
  g.UVU_QUEUE.push([relative(root, f)]);
  await import(pathToFileURL(f).href);
}

// uvu prints its own totals; capture them to print the one-line summary CI reads.
let out = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stdout.write;
// Keep the event loop alive for the whole run: a test awaiting only unref'd handles (e.g. the data
// loader's idle workers) must not let Node exit mid-suite.
const keepAlive = setInterval(() => {}, 1 << 30);
await uvu.exec();
clearInterval(keepAlive);
process.stdout.write = write;
closeGpu();
// eslint-disable-next-line no-control-regex
const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
const num = (label: string) => Number(plain.match(new RegExp(`${label}:\\s+(\\d+)`))?.[1] ?? 0);
const total = num('Total'), passed = num('Passed'), skipped = num('Skipped');
console.log(`${passed} passed, ${total - passed} failed, ${skipped} skipped`); // uvu's Total leaves the skipped out
