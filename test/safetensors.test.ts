// safetensors: files written by hand in Python (test/fixtures/pth/make_pth_fixtures.py) read back with every
// dtype we support (F32, F16, BF16, I32, I64) and metadata; our writer's header layout; round trips; errors
// that name the file and the key; loadWeights dispatching on the extension.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import { readPth } from '../model/pth.js';
import { loadWeights } from '../model/weights.js';

const FIX = join(import.meta.dirname, 'fixtures', 'pth');
const s = suite('safetensors');
let dir = '';
s.before(() => { dir = mkdtempSync(join(tmpdir(), 'safetensors-test-')); });
s.after(() => rmSync(dir, { recursive: true, force: true }));

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/** A safetensors file from a header object and a data blob, for the error cases. */
function craft(name: string, header: unknown, data = new Uint8Array(0), lengthField?: number): string {
  const json = new TextEncoder().encode(JSON.stringify(header)), len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(lengthField ?? json.length), true);
  const p = join(dir, name);
  writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

s('reads Python-written files: every dtype, 0-d and empty tensors, metadata', () => {
  const { tensors, metadata } = readSafetensors(join(FIX, 'views.expected.safetensors'));
  assert.equal(metadata, { shared: '[]' });
  const dtypes = Object.fromEntries([...tensors].map(([k, t]) => [k, t.dtype]));
  assert.is(dtypes['raw/half_specials'], 'float16');
  assert.is(dtypes['raw/bf16_specials'], 'bfloat16');
  assert.is(dtypes['raw/ids'], 'int64');
  assert.equal(tensors.get('raw/ids')!.data, Int32Array.of(1, 2, -100, 300, 6399, 0));
  assert.equal(tensors.get('raw/ids32')!.data, Int32Array.of(7, -8, 2 ** 31 - 1));
  assert.equal([...tensors.get('raw/whole')!.data], Array.from({ length: 12 }, (_, i) => i * 0.25));
  assert.equal(tensors.get('raw/scalar')!.shape, []);
  assert.equal(tensors.get('raw/empty')!.shape, [0, 4]);
  // torch's own float32 of the float16 values equals our decoding of the float16 bytes
  const h = tensors.get('raw/half_specials')!.data, f = tensors.get('f32/half_specials')!.data;
  for (let i = 0; i < f.length; i++) assert.ok(Object.is(h[i], f[i]) || (Number.isNaN(h[i]) && Number.isNaN(f[i])), `[${i}]`);
});

s('writer: 8-byte length, space-padded JSON header, consecutive data_offsets in the given order', () => {
  const p = join(dir, 'layout.safetensors');
  writeSafetensors(p, [
    { name: 'w', shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6.5) },
    { name: 'ids', shape: [3], data: Int32Array.of(-1, 0, 7), dtype: 'int64' },
    { name: 'h', shape: [1], data: Float32Array.of(0.5), dtype: 'float16' },
  ], { metadata: { format: 'pt' } });
  const bytes = readFileSync(p);
  const n = Number(bytes.readBigUInt64LE(0));
  assert.is((8 + n) % 8, 0);
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString());
  assert.equal(header, {
    w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
    ids: { dtype: 'I64', shape: [3], data_offsets: [24, 48] },
    h: { dtype: 'F16', shape: [1], data_offsets: [48, 50] },
    __metadata__: { format: 'pt' },
  });
  assert.is(bytes.length, 8 + n + 50);
  assert.is(bytes.readBigInt64LE(8 + n + 24), -1n);
  assert.is(bytes.readUInt16LE(8 + n + 48), 0x3800); // 0.5 in float16
});

for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
  s(`round trip of the tiny MiniMind weights stored as ${dtype}: same keys, shapes, bytes`, () => {
    const sd = readPth(join(FIX, 'tiny_fp32.pth'));
    const p = join(dir, `rt_${dtype}.safetensors`);
    writeSafetensors(p, sd, { dtype });
    const once = readSafetensors(p).tensors;
    writeSafetensors(p, once); // each tensor keeps its own dtype
    const twice = readSafetensors(p).tensors;
    assert.equal([...twice.keys()], [...sd.keys()]);
    for (const [k, t] of once) {
      assert.is(t.dtype, dtype, k);
      assert.equal(twice.get(k)!.shape, sd.get(k)!.shape, k);
      assert.is(hex(twice.get(k)!.raw), hex(t.raw), k);
    }
    if (dtype === 'float32') for (const [k, t] of sd) assert.is(hex(once.get(k)!.raw), hex(t.raw), k);
  });
}

s('errors name the file and the key: truncation, bad header, bad dtype, bad offsets, int64 overflow', () => {
  const good = readFileSync(join(FIX, 'tiny_fp32.expected.safetensors'));
  for (const n of [0, 5, 100, good.length - 1]) {
    const p = join(dir, `cut_${n}.safetensors`);
    writeFileSync(p, good.subarray(0, n));
    assert.throws(() => readSafetensors(p), (e: Error) => e.message.startsWith(p) && /truncated/.test(e.message), `cut at ${n}`);
  }
  const f8 = new Uint8Array(8);
  assert.throws(() => readSafetensors(craft('f64.safetensors', { x: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, f8)),
    /f64.safetensors: x: dtype F64 unsupported/);
  assert.throws(() => readSafetensors(craft('size.safetensors', { x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f8)),
    /size.safetensors: x: 8 bytes for \[3\] float32/);
  assert.throws(() => readSafetensors(craft('off.safetensors', { x: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f8)),
    /off.safetensors: x: bad data_offsets/);
  assert.throws(() => readSafetensors(craft('json.safetensors', { x: 1 }, f8, 3)), /json.safetensors: header is not JSON/);
  const big = Uint8Array.of(0, 0, 0, 0, 1, 0, 0, 0); // 2^32 as int64
  assert.throws(() => readSafetensors(craft('i64.safetensors', { ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, big)),
    /i64.safetensors: ids: int64 value at 0 does not fit in int32/);
});

s('writer errors: ints stored as floats, metadata that is not strings', () => {
  const p = join(dir, 'bad.safetensors');
  assert.throws(() => writeSafetensors(p, [{ name: 'ids', shape: [1], data: Int32Array.of(1), dtype: 'float16' }]), /ids: cannot store Int32Array as float16/);
  assert.throws(() => writeSafetensors(p, [], { metadata: { step: 3 as unknown as string } }), /metadata step is not a string/);
});

s('loadWeights dispatches on the extension and gives the same float weights from .pth and .safetensors', () => {
  const fromPth = loadWeights(join(FIX, 'tiny_bf16.pth'));
  const p = join(dir, 'tiny.safetensors');
  writeSafetensors(p, fromPth);
  const fromSt = loadWeights(p);
  assert.equal([...fromSt.keys()], [...fromPth.keys()]);
  for (const [k, t] of fromPth) {
    assert.is(fromSt.get(k)!.dtype, 'bfloat16');
    assert.equal(fromSt.get(k)!.data, t.data, k);
  }
  assert.throws(() => loadWeights(join(dir, 'w.gguf')), /w.gguf: unknown weights format/);
  const ids = join(dir, 'ids.safetensors');
  writeSafetensors(ids, [{ name: 'ids', shape: [1], data: Int32Array.of(3) }]);
  assert.throws(() => loadWeights(ids), /ids.safetensors: ids is int32, not a float weight/);
});

s.run();
