import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope, withGuards, type DType16 } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { writeBuffer, readBuffer, counters, resetCounters } from '../runtime/kernel.js';
import { cast, reference } from '../kernels/cast.js';
import { add } from '../kernels/elementwise.js';
import { rng, setupGpu } from './util.js';

// torch 1.13's .to(float16 / bfloat16) of float32 bit patterns (test/fixtures/ref/make_packed16.py):
// ties of both parities, overflow, infinities, NaNs, signed zeros, subnormals, then random cases.
const fix = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/ref/packed16.json'), 'utf8')) as
  { what: string[]; x: number[]; f16: number[]; bf16: number[] };
const X = Uint32Array.from(fix.x);
const FORMATS = ['bf16', 'f16'] as const;

const hex = (v: number) => `0x${v.toString(16)}`;
const isNaN32 = (u: number) => (u & 0x7f800000) === 0x7f800000 && (u & 0x7fffff) !== 0;
const isNaN16 = (f: DType16, h: number) => (f === 'f16' ? (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 : (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0);

/** A float32 tensor holding exactly these bits (a JS number may quiet a signalling NaN). */
function upload(bits: Uint32Array): Tensor {
  const t = Tensor.empty([bits.length]);
  writeBuffer(t.buffer, 0, bits);
  return t;
}

/** Equal to torch's bits, except that a NaN input needs only a NaN (torch's own NaN bits vary). */
function assertTorch(f: DType16, got: Uint16Array, who: string): void {
  const bad: string[] = [];
  for (let i = 0; i < X.length && bad.length < 5; i++) {
    if (isNaN32(X[i]) ? !isNaN16(f, got[i]) : got[i] !== fix[f][i]) bad.push(`${fix.what[i] ?? `random ${i}`}: got ${hex(got[i])}, torch ${hex(fix[f][i])}`);
  }
  if (bad.length) assert.unreachable(`${who} ${f}: ${bad.join('; ')}`);
}

/** Same values, NaN matching NaN. */
function assertSame(got: ArrayLike<number>, want: ArrayLike<number>, what: string): void {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!(Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i])))) assert.unreachable(`${what}: [${i}] got ${got[i]}, want ${want[i]}`);
  }
}

const s = suite('cast');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

for (const f of FORMATS) {
  s(`cast f32 → ${f} equals torch's .to() bit for bit; cast back to f32 is exact`, async () => {
    const y = cast(upload(X), f);
    assert.is(y.dtype, f);
    assert.is(y.bytes, 4 * Math.ceil(X.length / 2));
    const bits = await y.read16();
    assertTorch(f, bits, 'cast');
    // f32 of each 16-bit value: what the host decode of the same bits gives.
    assertSame(await cast(y, 'f32').readF32(), await y.readF32(), `${f} → f32`);
  });

  s(`Tensor.fromArray(…, '${f}') rounds as torch does, and read() decodes`, async () => {
    const finite = [...X.keys()].filter((i) => !isNaN32(X[i])); // a JS number may change a NaN's bits
    const vals = new Float32Array(Uint32Array.from(finite, (i) => X[i]).buffer);
    const t = Tensor.fromArray(vals, [vals.length], f);
    const got = await t.read16();
    finite.forEach((i, j) => { if (got[j] !== fix[f][i]) assert.unreachable(`${fix.what[i] ?? `random ${i}`}: ${hex(got[j])} vs torch ${hex(fix[f][i])}`); });
    assertSame(await t.read(), reference(vals, f), 'read');
  });
}

s('a tensor larger than a storage binding is cast in chunks (both ways, an odd count, nothing written past it)', async () => {
  // 4 KiB bindings: chunks of 1024 elements, so 5001 elements take 5 chunks and end on an odd one.
  const r = rng(5), n = 5001;
  const x = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 2 ** (r() * 20 - 10));
  for (const f of FORMATS) {
    await withGuards(async () => {
      const src = Tensor.fromArray(x, [n]);
      resetCounters();
      const y = cast(src, f, { bindingBytes: 4096 });
      assert.is(counters().dispatches, 5, 'one dispatch per chunk');
      assertSame(await y.read(), reference(x, f), `f32 → ${f} in chunks`);
      const back = cast(y, 'f32', { bindingBytes: 4096 });
      assertSame(await back.readF32(), reference(x, f), `${f} → f32 in chunks`);
      for (const t of [y, back]) assert.equal(await t.overwrittenGuard(), [], `${t.dtype}: words past the data`);
    });
  }
  assert.throws(() => cast(Tensor.fromArray(x, [n]), 'bf16', { bindingBytes: 1024 }), /smaller than one workgroup's/);
});

s('cast bf16 → f16 and f16 → bf16 round once from the exact f32 value', async () => {
  const r = rng(7);
  const x = Float32Array.from({ length: 65 }, () => (r() * 2 - 1) * 2 ** (r() * 30 - 15));
  const b = Tensor.fromArray(x, [65], 'bf16'), h = Tensor.fromArray(x, [65], 'f16');
  assertSame(await cast(b, 'f16').read(), reference(Float32Array.from(await b.read()), 'f16'), 'bf16 → f16');
  assertSame(await cast(h, 'bf16').read(), reference(Float32Array.from(await h.read()), 'bf16'), 'f16 → bf16');
});

for (const n of [1, 2, 33, 65, 1025]) {
  s(`cast at n=${n}: exact values both ways, ${n % 2 ? 'the last word\'s high half 0, ' : ''}nothing written past the end`, async () => {
    await withGuards(async () => {
      const r = rng(30 + n);
      const x = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 2 ** (r() * 40 - 26));
      const tx = Tensor.fromArray(x, [n]);
      for (const f of FORMATS) {
        const y = cast(tx, f), back = cast(y, 'f32');
        assertSame(await back.readF32(), reference(x, f), `${f} round trip`);
        const words = new Uint32Array(await readBuffer(y.buffer, 0, y.bytes));
        if (n % 2) assert.is(words[words.length - 1] >>> 16, 0, `${f}: high half of the last word`);
        assert.equal(await y.overwrittenGuard(), [], `${f}: words past ceil(n/2)`);
        assert.equal(await back.overwrittenGuard(), [], `${f} → f32: values past n`);
      }
    });
  });
}

for (const f of FORMATS) {
  s(`the gradient of cast is the cast back: f32 → ${f} → f32 gives round(dz); a ${f} leaf gets a ${f} gradient`, async () => {
    const n = 33, r = rng(50);
    const gz = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 3);
    const x = Tensor.fromArray(new Float32Array(n).fill(1), [n], 'f32', true);
    const z = cast(cast(x, f), 'f32');
    backward(z, Tensor.fromArray(gz, [n]));
    assert.is(x.grad!.dtype, 'f32');
    assertSame(await x.grad!.readF32(), reference(gz, f), 'f32 leaf');
    x.grad!.dispose();
    const leaf = Tensor.fromArray(new Float32Array(n), [n], f, true);
    backward(cast(leaf, 'f32'), Tensor.fromArray(gz, [n]));
    assert.is(leaf.grad!.dtype, f);
    assertSame(await leaf.grad!.readF32(), reference(gz, f), `${f} leaf`);
    leaf.grad!.dispose();
  });
}

s('cast to its own dtype is the tensor itself; ints and float32 kernels refuse 16-bit tensors', () => {
  const x = Tensor.zeros([3], 'bf16');
  assert.is(cast(x, 'bf16'), x);
  assert.throws(() => cast(Tensor.zeros([3], 'i32'), 'bf16'), /cast: input \[3\] is i32/);
  assert.throws(() => add(x, x), /add: a bf16 tensor \[3\]/);
});

s('a 16-bit view spans 2 bytes per element (rounded up to 16 for binding) and starts on a word', () => {
  const buf = Tensor.empty([64]).buffer;
  const v = Tensor.view(buf, 16, [5, 3], false, 'f16');
  assert.is(v.bytes, 32);
  assert.is(v.end(), 48);
  assert.throws(() => Tensor.view(buf, 2, [3], false, 'bf16'), /offset 2 is not a multiple of 4/);
});

s.run();
