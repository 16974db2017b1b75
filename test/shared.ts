// Tests that need MiniMind's files beside the repository (`../shared`: the tokenizers, samples and the spec,
// which the repository must not copy). Such a test registers through sharedTest, so that without the files it
// is counted as skipped, with a warning naming what is missing, instead of disappearing.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Callback, Test } from 'uvu';

/** `../shared` from the repository root. MINIMIND_SHARED points the tests at another folder: one that does
 *  not exist shows that every test needing it is counted as skipped. */
export const SHARED = process.env.MINIMIND_SHARED ?? resolve(import.meta.dirname, '..', '..', 'shared');

/** MiniMind2's and minimind-3's tokenizer folders under SHARED, and their files. */
export const TOKENIZER_DIRS = { minimind2: 'minimind/minimind2_tokenizer', minimind3: 'minimind' } as const;
export const TOKENIZER_FILES = Object.values(TOKENIZER_DIRS).flatMap((d) => [`${d}/tokenizer.json`, `${d}/tokenizer_config.json`]);

/** The first of `paths` (relative to SHARED) that does not exist, as a full path; undefined when all do. */
export function missingShared(paths: string[]): string | undefined {
  return paths.map((p) => join(SHARED, p)).find((p) => !existsSync(p));
}

/** Register test `name` on `s`, or, when `missing` names a missing shared file, register it as skipped (so
 *  the run counts it) with a warning that names the file. */
export function sharedTest(s: Test, missing: string | undefined, name: string, fn: Callback): void {
  if (missing === undefined) return s(name, fn);
  console.warn(`skipped "${name}": ${missing} not found (MiniMind's files, see test/shared.ts)`);
  s.skip(name, fn);
}
