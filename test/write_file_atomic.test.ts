// writeFileAtomic: the folder is created, parts are written in order, an existing file is replaced whole,
// and a write that fails leaves the previous file as it was and no temp file behind. (A kill mid-write is
// pinned by train_loop.test.ts; what fsync adds, durability across a power loss, no test here can observe.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';

const s = suite('write_file_atomic');
const tmp = mkdtempSync(join(tmpdir(), 'write_file_atomic-'));

s('creates the folder; writes a string, bytes, or parts in order; replaces the previous file', () => {
  const sub = join(tmp, 'a', 'b'), p = join(sub, 'f.txt');
  writeFileAtomic(p, 'first version, longer than the next');
  assert.is(readFileSync(p, 'utf8'), 'first version, longer than the next');
  writeFileAtomic(p, [Buffer.from('ab'), new Uint8Array(0), Uint8Array.of(0x63, 0x64)]);
  assert.is(readFileSync(p, 'utf8'), 'abcd');
  writeFileAtomic(p, new TextEncoder().encode('é'));
  assert.is(readFileSync(p, 'utf8'), 'é');
  assert.equal(readdirSync(sub), ['f.txt'], 'no temp file left behind');
});

s('a write that fails keeps the previous file intact and removes its temp file', () => {
  const sub = join(tmp, 'fail'), p = join(sub, 'f.bin');
  writeFileAtomic(p, 'old');
  // A part that is not bytes makes the write throw after the first part reached the temp file.
  assert.throws(() => writeFileAtomic(p, [Buffer.from('new'), { length: 3 } as Uint8Array]));
  assert.is(readFileSync(p, 'utf8'), 'old');
  assert.equal(readdirSync(sub), ['f.bin']);
  // The final name is a folder: the rename fails, the folder is untouched.
  const dir = join(sub, 'taken');
  mkdirSync(dir);
  assert.throws(() => writeFileAtomic(dir, 'x'), /EISDIR|EEXIST|ENOTEMPTY|EPERM/);
  assert.equal(readdirSync(sub).sort(), ['f.bin', 'taken']);
});

s.run();
