import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, withGuards } from '../runtime/tensor.js';
import { writeBuffer } from '../runtime/kernel.js';
import { pack16, unpack16, type Format16 } from '../kernels/packed16.js';
import { bf16FromF32Bits, decode, encode, f16FromF32Bits } from '../model/dtype.js';
import { rng, setupGpu } from './util.js';

// torch 1.13's casts of float32 bit patterns (test/fixtures/ref/make_packed16.py): named edge cases, then random ones.
const fix = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/ref/packed16.json'), 'utf8')) as
  { what: string[]; x: number[]; f16: number[]; bf16: number[] };
const X = Uint32Array.from(fix.x);
const FORMATS = ['f16', 'bf16'] as const;
const DTYPE = { f16: 'float16', bf16: 'bfloat16' } as const;
const HOST = { f16: f16FromF32Bits, bf16: bf16FromF32Bits };

const hex = (v: number, digits: number) => `0x${v.toString(16).padStart(digits, '0')}`;
const isNaN32 = (u: number) => (u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0;
const isNaN16 = (f: Format16, h: number) => (f === 'f16' ? (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 : (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0);
const caseName = (i: number) => fix.what[i] ?? `random case ${i - fix.what.length}`;

/** 16-bit results got[i] of inputs x[i] against torch's: equal bits, except that a NaN input
 *  needs only a NaN (torch's own NaN bits differ between its scalar and vector paths). */
function assertTorchBits(f: Format16, x: Uint32Array, got: ArrayLike<number>, who: string): void {
  const want = fix[f], bad: string[] = [];
  for (let i = 0; i < x.length; i++) {
    const ok = isNaN32(x[i]) ? isNaN16(f, got[i]) : got[i] === want[i];
    if (!ok && bad.length < 5) bad.push(`${caseName(i)} (${hex(x[i], 8)}): got ${hex(got[i], 4)}, torch ${hex(want[i], 4)}`);
  }
  if (bad.length) assert.unreachable(`${who} ${f}: ${bad.join('; ')}`);
}

/** Equal bit patterns, first mismatches reported. */
function assertSameBits(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.is(got.length, want.length, `${what}: length`);
  const bad: string[] = [];
  for (let i = 0; i < want.length && bad.length < 5; i++) if (got[i] !== want[i]) bad.push(`[${i}] got ${hex(got[i], 8)} want ${hex(want[i], 8)}`);
  if (bad.length) assert.unreachable(`${what}: ${bad.join(', ')}`);
}

/** 16-bit values (one per entry) as the packed words pack16 writes: low half first, a zero high half at an odd end. */
function words(halves: ArrayLike<number>): Uint32Array {
  const w = new Uint32Array(Math.ceil(halves.length / 2));
  for (let i = 0; i < halves.length; i++) w[i >> 1] |= halves[i] << (16 * (i & 1));
  return w;
}

/** A float32 tensor holding exactly these bits (Float32Array.from would pass them through JS numbers,
 *  which may quiet a signalling NaN). */
function upload(bits: Uint32Array): Tensor {
  const t = Tensor.empty([bits.length]);
  writeBuffer(t.buffer, 0, bits);
  return t;
}

/** float32 bits as unpack16 may give them: unpack2x16float converts a signalling float16 NaN to a quiet
 *  float32 one on lavapipe (as an IEEE conversion does; other adapters may keep it), so for float16 a
 *  NaN is compared with its quiet bit set. */
const unpacked = (f: Format16, bits: Uint32Array) => (f === 'f16' ? bits.map((u) => (isNaN32(u) ? u | 0x400000 : u)) : bits);

const bitsOf = async (t: Tensor) => new Uint32Array((await t.read()).buffer);

// ---- host conversions (model/dtype.ts), no GPU ----

const h = suite('packed16 host');

for (const f of FORMATS) {
  h(`${f}FromF32Bits equals torch's .to(${DTYPE[f]}) bit for bit (NaN stays NaN)`, () => {
    assertTorchBits(f, X, Array.from(X, HOST[f]), 'host');
  });

  h(`encode(…, '${DTYPE[f]}') writes the words pack16 writes: the host twin (decode, of unpack16, is checked in test/pth)`, () => {
    const odd = X.subarray(0, 33), bytes = encode(new Float32Array(odd.buffer, odd.byteOffset, odd.length), DTYPE[f], 'test');
    const padded = new Uint8Array(4 * Math.ceil(bytes.length / 4));
    padded.set(bytes);
    assertSameBits(new Uint32Array(padded.buffer), words(Array.from(odd, HOST[f])), 'encode');
  });
}

h.run();

// ---- the kernels ----

const s = suite('packed16');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

for (const f of FORMATS) {
  s(`pack16 ${f} equals torch's .to(${DTYPE[f]}) bit for bit, and its host twin exactly (NaN payloads too)`, async () => {
    const got = await bitsOf(pack16(upload(X), f));
    const halves = Array.from({ length: X.length }, (_, i) => (got[i >> 1] >>> (16 * (i & 1))) & 0xffff);
    assertTorchBits(f, X, halves, 'pack16');
    assertSameBits(got, words(Array.from(X, HOST[f])), `pack16 ${f} vs ${f}FromF32Bits`);
  });

  s(`unpack16 ${f} is exact for all 65536 patterns${f === 'f16' ? ' (a signalling NaN may come back quiet)' : ''}, and pack16 of them gives them back`, async () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const want = new Uint32Array(decode(new Uint8Array(all.buffer), DTYPE[f], 'test').buffer);
    const y = await bitsOf(unpack16(Tensor.fromArray(words(all), [32768], 'u32'), [65536], f));
    assertSameBits(unpacked(f, y), unpacked(f, want), `unpack16 ${f}`);
    // Every value comes back; a NaN as the host packs the NaN that unpack16 gave (bf16: made quiet).
    const back = Array.from(all, (hb, i) => (isNaN16(f, hb) ? HOST[f](y[i]) : hb));
    assertSameBits(await bitsOf(pack16(upload(y), f)), words(back), `pack16 ${f} of unpack16`);
  });
}

for (const n of [1, 2, 33, 1025]) {
  s(`pack16 then unpack16 at n=${n}: the host's words${n % 2 ? ' (the last word half-filled, high half 0)' : ''}, exact values back, nothing written past the end`, async () => {
    await withGuards(async () => {
      const r = rng(16 + n);
      // half random bit patterns (every exponent; at n = 1025 a few are NaN), half values where float16 is dense
      const x = Uint32Array.from({ length: n }, (_, i) => (i % 2 ? Math.floor(r() * 2 ** 32) : new Uint32Array(Float32Array.of((r() * 2 - 1) * 2 ** (r() * 40 - 26)).buffer)[0]));
      const tx = upload(x);
      for (const f of FORMATS) {
        const w = pack16(tx, f);
        const got = await bitsOf(w);
        assertSameBits(got, words(Array.from(x, HOST[f])), `pack16 ${f}`);
        if (n % 2) assert.is(got[got.length - 1] >>> 16, 0, `${f}: high half of the last word`);
        const y = unpack16(w, [n], f);
        const want = new Uint32Array(decode(encode(new Float32Array(x.buffer), DTYPE[f], 'test'), DTYPE[f], 'test').buffer);
        assertSameBits(unpacked(f, await bitsOf(y)), unpacked(f, want), `unpack16 ${f}`);
        assert.equal(await w.overwrittenGuard(), [], `pack16 ${f}: words past ceil(n/2)`);
        assert.equal(await y.overwrittenGuard(), [], `unpack16 ${f}: values past n`);
      }
    });
  });
}

s('pack16 takes only float32, unpack16 only the word count its shape needs', () => {
  assert.throws(() => pack16(Tensor.zeros([3], 'i32'), 'f16'), /pack16: input \[3\] is i32/);
  assert.throws(() => unpack16(Tensor.zeros([2], 'u32'), [5], 'bf16'), /unpack16: shape \[5\] needs 3 u32 words, got u32 \[2\]/);
  assert.throws(() => unpack16(Tensor.zeros([3]), [5], 'f16'), /needs 3 u32 words, got f32 \[3\]/);
});

s.run();
