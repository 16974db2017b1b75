// The 16-bit working copy that AdamW writes in its step (kernels/param_copy16.ts, kernels/adamw.ts):
// after every step it must hold the float32 master weights rounded to nearest even, bit for bit
// (the host conversions are torch's bit for bit: test/packed16.test.ts), and the master weights
// must be exactly those of a step without a copy.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { readBuffer, writeBuffer } from '../runtime/kernel.js';
import { ParamStore } from '../runtime/param_store.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { ParamCopy16 } from '../kernels/param_copy16.js';
import { bf16FromF32Bits, f16FromF32Bits } from '../model/dtype.js';
import { setupGpu, randn } from './util.js';

const s = suite('param_copy16');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

// Awkward sizes, odd ones included (each parameter starts 512-aligned, so words never straddle two).
const LAYOUT: [string, number[]][] = [['a', [1]], ['b', [33]], ['c', [65, 3]], ['d', [1025]], ['e', [7]], ['f', [4097]], ['g', [2]]];
const FORMATS = ['bf16', 'f16'] as const;
const HOST = { bf16: bf16FromF32Bits, f16: f16FromF32Bits };
// A small binding limit: the store's flat passes run in chunks of 1 KiB, several dispatches of 3 slots.
const BINDING = 1024;

const hex = (v: number) => `0x${v.toString(16)}`;

/** The copy's bits against the host rounding of the store's data, every element (padding too). */
async function assertCopy(store: ParamStore, copy: ParamCopy16, what: string): Promise<void> {
  const data = new Uint32Array(await readBuffer(store.data, 0, store.bytes));
  const got = new Uint16Array(await readBuffer(copy.buffer, 0, copy.bytes));
  for (let i = 0; i < data.length; i++) {
    const want = HOST[copy.dtype](data[i]);
    if (got[i] !== want) assert.unreachable(`${what}: element ${i} of the store: ${hex(got[i])}, the rounding of ${hex(data[i])} is ${hex(want)}`);
  }
}

/** Two stores with the same parameters (seeded, scale 1) and gradients (scale 3: the clip bites). */
function twins(): ParamStore[] {
  return [0, 1].map(() => {
    const store = new ParamStore(LAYOUT, { bindingBytes: BINDING });
    LAYOUT.forEach(([name, shape], i) => writeBuffer(store.data, store.get(name).offset, Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), 40 + i))));
    return store;
  });
}

function setGrads(store: ParamStore, step: number, only?: string[]): void {
  store.zeroGrad();
  LAYOUT.forEach(([name, shape], i) => {
    if (only && !only.includes(name)) return;
    const p = store.get(name);
    writeBuffer(store.grads, p.offset, Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), 100 * step + i, 3)));
    p.hasGrad = true;
  });
}

for (const f of FORMATS) {
  s(`AdamW with a ${f} working copy: after each of 3 steps the copy is the master weights rounded (nearest even), the masters those of a step without it`, async () => {
    const [withCopy, plain] = twins();
    const copy = new ParamCopy16(withCopy, f);
    copy.refresh();
    await assertCopy(withCopy, copy, 'after refresh');
    const opts = [new AdamW(withCopy, { lr: 1e-2, copy }), new AdamW(plain, { lr: 1e-2 })];
    for (let t = 1; t <= 3; t++) {
      // Step 2 updates only some parameters: runs then start past the first (a nonzero word in the copy's binding).
      const only = t === 2 ? ['b', 'c', 'f'] : undefined;
      [withCopy, plain].forEach((st, k) => {
        setGrads(st, t, only);
        opts[k].step(1e-2, gradNorm(st.chunks(st.grads)), 1.0);
      });
      await assertCopy(withCopy, copy, `step ${t}`);
      const [a, b] = await Promise.all([withCopy, plain].map(async (st) => new Uint32Array(await readBuffer(st.data, 0, st.bytes))));
      assert.ok(a.every((x, i) => x === b[i]), `step ${t}: the master weights differ from a step without the copy`);
    }
    opts.forEach((o) => o.dispose());
    copy.dispose();
    withCopy.dispose();
    plain.dispose();
  });
}

// torch 1.13's .to(bfloat16 / float16) of float32 bit patterns (test/fixtures/ref/make_packed16.py).
const fix = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures/ref/packed16.json'), 'utf8')) as { x: number[]; f16: number[]; bf16: number[] };

for (const f of FORMATS) {
  s(`refresh rounds the store's data as torch's .to() does (ties, overflow, subnormals; NaN stays NaN), and view() reads a parameter's ${f} values`, async () => {
    const x = Uint32Array.from(fix.x), store = new ParamStore([['w', [x.length]]]);
    writeBuffer(store.data, 0, x);
    const copy = new ParamCopy16(store, f);
    copy.refresh();
    const got = await copy.view('w').read16();
    const nan = (h: number) => (f === 'f16' ? (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0 : (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0);
    for (let i = 0; i < x.length; i++) {
      const isNaN32 = (x[i] & 0x7f800000) === 0x7f800000 && (x[i] & 0x7fffff) !== 0;
      if (isNaN32 ? !nan(got[i]) : got[i] !== fix[f][i]) assert.unreachable(`element ${i} (${hex(x[i])}): ${hex(got[i])}, torch ${hex(fix[f][i])}`);
    }
    copy.dispose();
    store.dispose();
  });
}

s('a parameter packed after an odd-sized one has no 16-bit view, nor a run that starts there', () => {
  const store = new ParamStore([['a', [3]], ['b', [2]]].map(([n, sh], i) => [n as string, sh as number[], i === 1]));
  const copy = new ParamCopy16(store, 'bf16');
  assert.throws(() => copy.view('b'), /b starts at element 3 of the store, odd/);
  assert.throws(() => copy.window([Tensor.view(store.data, 12, [2])]), /\[3, 5\) of the store does not start and end on 16-bit words/);
  assert.throws(() => copy.window([Tensor.zeros([2])]), /not a view of the store's data/);
  copy.dispose();
  store.dispose();
});

s.run();
