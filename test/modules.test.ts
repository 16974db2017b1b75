// Op modules import their variants modules and back (kernels/matmul.ts ↔ matmul_variants.ts, ...):
// legal ES-module cycles only while neither side uses the other's bindings while it loads. Whichever
// module a program imports first decides the order, so each module of a cycle is loaded first, on
// its own, in a fresh process (a trainer once died with "Cannot access 'FORWARD_PARAMS' before
// initialization" that no test process, importing in another order, could see).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, readdirSync, writeFileSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const s = suite('modules');
const root = join(import.meta.dirname, '..');
const dir = join(root, 'kernels');

/** module → the kernels/ modules it imports. */
const imports = new Map(readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => [f,
  [...readFileSync(join(dir, f), 'utf8').matchAll(/^import (?!type )[^;]*? from '\.\/([\w.]+)\.js';/gm)].map((m) => `${m[1]}.ts`)]));

/** Modules on an import cycle: those that can reach themselves. */
function onCycles(): string[] {
  const reaches = (from: string, to: string, seen = new Set<string>()): boolean =>
    (imports.get(from) ?? []).some((n) => n === to || (!seen.has(n) && (seen.add(n), reaches(n, to, seen))));
  return [...imports.keys()].filter((f) => reaches(f, f)).sort();
}

s('the op modules on import cycles are found', () => {
  assert.ok(onCycles().includes('matmul.ts') && onCycles().includes('matmul_variants.ts'), onCycles().join(', '));
});

s('every module on an import cycle loads when imported first, on its own', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'modules-'));
  const run = promisify(execFile);
  const failed: string[] = [];
  const files = onCycles();
  // Two at a time: each is a fresh Node process compiling TypeScript.
  for (let i = 0; i < files.length; i += 2) {
    await Promise.all(files.slice(i, i + 2).map(async (f) => {
      const entry = join(tmp, `${f}.entry.ts`);
      writeFileSync(entry, `import '${join(dir, f)}';\n`);
      try {
        await run(join(root, 'node_modules', '.bin', 'tsx'), [entry], { timeout: 60_000 });
      } catch (e) {
        failed.push(`${f}: ${String((e as { stderr?: string }).stderr ?? e).split('\n').find((l) => /Error/.test(l)) ?? e}`);
      }
    }));
  }
  assert.equal(failed, []);
});

s.run();
