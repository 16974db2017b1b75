// Tests that need a real browser: Debian's chromium (scripts/setup.sh installs it when run as root) driven by
// puppeteer-core. Without one such a test is counted as skipped, with a warning saying how to get it.
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { launch, type Browser } from 'puppeteer-core';
import type { Test } from 'uvu';

/** CHROMIUM_PATH, else Debian's or Ubuntu's chromium: the first that exists (a CHROMIUM_PATH that does not
 *  shows the tests counted as skipped). */
const LOOKED = process.env.CHROMIUM_PATH ? [process.env.CHROMIUM_PATH] : ['/usr/bin/chromium', '/usr/bin/chromium-browser'];
export const CHROMIUM = LOOKED.find((p) => existsSync(p));

/** Where tests leave screenshots for a person to look at (MINIMIND_ARTIFACTS, else test/artifacts). */
export function artifact(name: string): string {
  const dir = resolve(process.env.MINIMIND_ARTIFACTS ?? join(import.meta.dirname, 'artifacts'));
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

/** Register test `name` on `s`, given a headless chromium that closes after it; skipped without one. */
export function browserTest(s: Test, name: string, fn: (browser: Browser) => Promise<void>): void {
  const body = async () => {
    // No sandbox: the tests run as root in CI, where chromium refuses to start with one.
    const browser = await launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
    try {
      await fn(browser);
    } finally {
      await browser.close();
    }
  };
  if (CHROMIUM) return s(name, body);
  console.warn(`skipped "${name}": no chromium at ${LOOKED.join(' or ')} (apt-get install chromium, which scripts/setup.sh does as root; or set CHROMIUM_PATH)`);
  s.skip(name, body);
}
