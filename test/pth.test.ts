// .pth state_dicts against files written by real torch.save (test/fixtures/pth/make_pth_fixtures.py): every
// tensor's bytes and float32 values, tied keys, strided views, byte-exact round trips through our writer,
// refusal of malicious pickles, deflate bombs refused before they are inflated, clear errors on truncation, the
// float16/bfloat16 codecs, and key checking.
// (test/fixtures/pth/check_written.py checks, outside the tests, that torch.load opens what writePth writes.)
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { constants, crc32, deflateRawSync } from 'node:zlib';
import { readPth, tiedPairs, writePth } from '../model/pth.js';
import { readSafetensors } from '../model/safetensors.js';
import { PickleWriter, unpickle } from '../model/pickle.js';
import { checkStateDict } from '../model/weights.js';
import { bf16FromF32Bits, f16FromF32Bits, f16ToF32Table, type WeightTensor } from '../model/dtype.js';

const FIX = join(import.meta.dirname, 'fixtures', 'pth');
const PWNED = '/tmp/minimind-pth-pwned'; // what the malicious fixtures' command would create
const TORCH_FILES = ['tiny_fp32', 'tiny_fp16', 'tiny_fp16_tied', 'tiny_bf16', 'views'];
const s = suite('pth');
let dir = '';
s.before(() => { dir = mkdtempSync(join(tmpdir(), 'pth-test-')); });
s.after(() => rmSync(dir, { recursive: true, force: true }));

const expected = (name: string) => readSafetensors(join(FIX, `${name}.expected.safetensors`));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const f32bits = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];

/** Same values bit for bit, NaN matching any NaN. */
function assertSameValues(got: ArrayLike<number>, want: ArrayLike<number>, what: string) {
  assert.is(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    if (!(Object.is(got[i], want[i]) || (Number.isNaN(got[i]) && Number.isNaN(want[i])))) {
      assert.unreachable(`${what}[${i}]: got ${got[i]}, torch ${want[i]}`);
    }
  }
}

/** The pth tensors equal torch's dump: keys in order, dtype, shape, stored bytes, float32 values, tied groups. */
function assertMatchesTorch(sd: Map<string, WeightTensor>, name: string) {
  const exp = expected(name);
  const rawKeys = [...exp.tensors.keys()].filter((k) => k.startsWith('raw/')).map((k) => k.slice(4));
  assert.equal([...sd.keys()], rawKeys, `${name}: keys`);
  for (const [k, t] of sd) {
    const r = exp.tensors.get(`raw/${k}`)!;
    assert.is(t.dtype, r.dtype, `${name} ${k}: dtype`);
    assert.equal(t.shape, r.shape, `${name} ${k}: shape`);
    assert.is(hex(t.raw), hex(r.raw), `${name} ${k}: bytes`);
    const f = exp.tensors.get(`f32/${k}`);
    assertSameValues(t.data, f ? f.data : r.data, `${name} ${k}`);
  }
  assert.equal(tiedPairs(sd), JSON.parse(exp.metadata!.shared), `${name}: keys sharing a storage`);
}

for (const name of TORCH_FILES) {
  s(`reads torch.save's ${name}.pth: every tensor's bytes and values, tied keys`, () => {
    assertMatchesTorch(readPth(join(FIX, `${name}.pth`)), name);
  });
}

s('reads deflated zip entries (tiny_fp32 re-packed by Python zipfile)', () => {
  assertMatchesTorch(readPth(join(FIX, 'tiny_fp32_deflated.pth')), 'tiny_fp32');
});

s("a MiniMind state_dict: the spec's key names in order, both tied keys present and sharing one tensor", () => {
  const sd = readPth(readFileSync(join(FIX, 'tiny_fp32.pth')));
  const layer = (i: number) => [
    ...['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `model.layers.${i}.self_attn.${p}.weight`),
    `model.layers.${i}.input_layernorm.weight`, `model.layers.${i}.post_attention_layernorm.weight`,
    ...['gate_proj', 'down_proj', 'up_proj'].map((p) => `model.layers.${i}.mlp.${p}.weight`),
  ];
  assert.equal([...sd.keys()], ['model.embed_tokens.weight', ...layer(0), ...layer(1), 'model.norm.weight', 'lm_head.weight']);
  assert.ok(sd.get('lm_head.weight') === sd.get('model.embed_tokens.weight'));
  assert.equal(sd.get('model.layers.0.self_attn.k_proj.weight')!.shape, [8, 16]); // [nkv·hd, H]
});

s('strided views: storage offset, transposed (non-contiguous), 0-d, empty, Parameter', () => {
  const sd = readPth(join(FIX, 'views.pth'));
  const whole = sd.get('whole')!.data, offset = sd.get('offset')!;
  assert.equal([...offset.data], [...whole.slice(3, 9)]);
  assert.equal(offset.shape, [2, 3]);
  const tr = sd.get('transposed')!; // torch.randn(3,5).t(): element [i][j] is stored at j*5+i
  assert.equal(tr.shape, [5, 3]);
  const exp = expected('views').tensors.get('raw/transposed')!;
  assert.equal([...tr.data], [...exp.data]);
  assert.equal(sd.get('scalar')!.shape, []);
  assert.equal([...sd.get('scalar')!.data], [2.5]);
  assert.is(sd.get('empty')!.data.length, 0);
  assert.equal(sd.get('ids')!.data, Int32Array.of(1, 2, -100, 300, 6399, 0));
});

for (const name of [...TORCH_FILES, 'tiny_fp32_deflated']) {
  s(`round trip ${name}: read, write back, re-read: same keys, dtypes, shapes, bytes, tied keys`, () => {
    const sd = readPth(join(FIX, `${name}.pth`));
    const out = join(dir, `${name}.pth`);
    writePth(out, sd, { tied: tiedPairs(sd) });
    const back = readPth(out);
    assert.equal([...back.keys()], [...sd.keys()]);
    for (const [k, t] of sd) {
      const b = back.get(k)!;
      assert.is(b.dtype, t.dtype, k);
      assert.equal(b.shape, t.shape, k);
      assert.is(hex(b.raw), hex(t.raw), `${k}: bytes`);
    }
    assert.equal(tiedPairs(back), tiedPairs(sd));
  });
}

s("writing float32 weights as float16 / bfloat16 gives torch's .half() / .bfloat16() bytes", () => {
  const sd = readPth(join(FIX, 'tiny_fp32.pth'));
  for (const [dtype, ref] of [['float16', 'tiny_fp16'], ['bfloat16', 'tiny_bf16']] as const) {
    const out = join(dir, `as_${dtype}.pth`);
    writePth(out, sd, { dtype, tied: [['model.embed_tokens.weight', 'lm_head.weight']] });
    const exp = expected(ref).tensors;
    for (const [k, t] of readPth(out)) assert.is(hex(t.raw), hex(exp.get(`raw/${k}`)!.raw), `${dtype} ${k}`);
  }
});

s('written archive: torch layout, every entry 64-byte aligned, no temp file left behind', () => {
  const sub = join(dir, 'layout'), out = join(sub, 'w.pth');
  mkdirSync(sub);
  const tensors = [{ name: 'a', shape: [3], data: Float32Array.of(1, 2, 3) }, { name: 'b', shape: [1, 2], data: Float32Array.of(4, 5) }];
  writePth(out, tensors, { dtype: 'float16' });
  writePth(out, tensors, { dtype: 'float32' }); // replaces the first
  assert.equal(readdirSync(sub), ['w.pth']);
  const bytes = readFileSync(out), dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const names: string[] = [];
  for (let p = 0; dv.getUint32(p, true) === 0x04034b50;) { // walk the local headers
    const nameLen = dv.getUint16(p + 26, true), extraLen = dv.getUint16(p + 28, true), size = dv.getUint32(p + 22, true);
    names.push(bytes.subarray(p + 30, p + 30 + nameLen).toString());
    const start = p + 30 + nameLen + extraLen;
    assert.is(start % 64, 0, `${names.at(-1)} data offset ${start}`);
    p = start + size;
  }
  assert.equal(names, ['archive/data.pkl', 'archive/byteorder', 'archive/data/0', 'archive/data/1', 'archive/version']);
  assert.equal([...readPth(out).get('b')!.data], [4, 5]);
});

s('writePth refuses tied keys with different values, and data that does not fit its shape', () => {
  const a = { name: 'a', shape: [2], data: Float32Array.of(1, 2) }, b = { name: 'b', shape: [2], data: Float32Array.of(1, 3) };
  assert.throws(() => writePth(join(dir, 't.pth'), [a, b], { tied: [['a', 'b']] }), /tied keys a and b differ/);
  assert.throws(() => writePth(join(dir, 't.pth'), [a, b], { tied: [['a', 'c']] }), /tied key c/);
  assert.throws(() => writePth(join(dir, 't.pth'), [{ name: 'w', shape: [3], data: a.data }]), /w has 2 values, shape \[3\]/);
  assert.not.ok(existsSync(join(dir, 't.pth')));
});

for (const [name, global] of [['malicious_reduce', 'posix.system'], ['malicious_os_system', 'os.system']]) {
  s(`${name}.pth (GLOBAL ${global} + REDUCE) is refused by name and nothing runs`, () => {
    rmSync(PWNED, { force: true });
    assert.throws(() => readPth(join(FIX, `${name}.pth`)), (e: Error) =>
      e.message.includes(`refusing global '${global}'`) && e.message.includes('os.system') && e.message.includes(`${name}.pth`));
    assert.not.ok(existsSync(PWNED), 'the command ran');
  });
}

s('the pickle machine refuses other globals, calls of non-callables, and unknown opcodes', () => {
  const globals = new Map([['torch.FloatStorage', null]]);
  const run = (bytes: number[]) => unpickle(Uint8Array.from(bytes), { where: 'x', globals, persistentLoad: () => null, build: () => {} });
  const enc = (s: string) => [...new TextEncoder().encode(s)];
  // builtins.eval through STACK_GLOBAL (protocol 4): SHORT_BINUNICODE 'builtins', 'eval', STACK_GLOBAL
  assert.throws(() => run([0x80, 4, 0x8c, 8, ...enc('builtins'), 0x8c, 4, ...enc('eval'), 0x93, 0x2e]), /refusing global 'builtins.eval'/);
  assert.throws(() => run([0x80, 2, 0x63, ...enc('torch\nFloatStorage\n'), 0x29, 0x52, 0x2e]), /REDUCE of 'torch.FloatStorage', which is not callable/);
  assert.throws(() => run([0x80, 2, 0x69, 0x2e]), /opcode 0x69 \('i'\)/); // INST: runs a class by name
  assert.is(run([0x80, 2, 0x8a, 2, 0xff, 0x7f, 0x2e]), 0x7fff); // LONG1
  assert.is(run([0x80, 2, 0x8a, 1, 0xff, 0x2e]), -1);
});

s('a truncated or corrupt file gives an error naming the file', () => {
  const bytes = readFileSync(join(FIX, 'tiny_fp16.pth'));
  for (const n of [0, 21, 1000, bytes.length >> 1, bytes.length - 1]) {
    const p = join(dir, `cut_${n}.pth`);
    writeFileSync(p, bytes.subarray(0, n));
    assert.throws(() => readPth(p), (e: Error) => e.message.startsWith(p) && /truncated/.test(e.message), `cut at ${n}`);
  }
  const bad = Buffer.from(bytes);
  bad[bytes.indexOf('data/3') + 200] ^= 1; // a bit flip inside storage 3's data
  const p = join(dir, 'flipped.pth');
  writeFileSync(p, bad);
  assert.throws(() => readPth(p), (e: Error) => e.message.startsWith(p) && /CRC32 mismatch/.test(e.message));
});

// ---- deflate bombs and other requests for memory ----

/** A pickle as torch.save writes it: {'w': float32 storage '0' of `numel` elements, viewed as size/stride}. */
function onePickle(numel: number, size = [numel], stride = [1]): Uint8Array {
  return new PickleWriter().global('collections', 'OrderedDict').emptyTuple().reduce().mark()
    .str('w').global('torch._utils', '_rebuild_tensor_v2').mark()
    .mark().str('storage').global('torch', 'FloatStorage').str('0').str('cpu').int(numel).tuple().persid()
    .int(0).ints(size).ints(stride).bool(false).global('collections', 'OrderedDict').emptyTuple().reduce()
    .tuple().reduce().setitems().stop();
}

/** A zip whose entries hold `raw` as given, with `method` and the uncompressed `size` declared as told. */
function zipOf(entries: { name: string; raw: Uint8Array; method?: number; size?: number; crc?: number }[]): Buffer {
  const parts: Buffer[] = [], central: Buffer[] = [];
  let pos = 0;
  for (const { name, raw, method = 0, size = raw.length, crc = crc32(raw) } of entries) {
    const n = Buffer.from(name), local = Buffer.alloc(30), cd = Buffer.alloc(46);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(n.length, 26);
    cd.writeUInt32LE(0x02014b50, 0); cd.writeUInt16LE(method, 10); cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(raw.length, 20); cd.writeUInt32LE(size, 24); cd.writeUInt16LE(n.length, 28); cd.writeUInt32LE(pos, 42);
    parts.push(local, n, Buffer.from(raw));
    central.push(cd, n);
    pos += 30 + n.length + raw.length;
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(central.reduce((a, b) => a + b.length, 0), 12); end.writeUInt32LE(pos, 16);
  return Buffer.concat([...parts, ...central, end]);
}

s('deflate bombs and oversized views are refused before allocating, naming the file and entry', () => {
  // 1 MiB of zeros deflated without finishing the stream: a self-contained, byte-aligned 1 KB block, so
  // 2048 copies and an empty final block inflate to 2 GiB.
  const block = deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: constants.Z_FULL_FLUSH });
  const GiB2 = 2 ** 31, bomb = Buffer.concat([...Array<Buffer>(2048).fill(block), Uint8Array.of(0x03, 0x00)]);
  const four = Float32Array.of(1, -2, 3.5, 0), fourBytes = new Uint8Array(four.buffer);
  const pkl = (raw: Uint8Array) => ({ name: 'archive/data.pkl', raw });
  const deflated = (name: string, raw: Uint8Array, size: number, crc = 0) => ({ name, raw, method: 8, size, crc });
  const cases: [string, Buffer, RegExp | null][] = [
    ['honest', zipOf([pkl(onePickle(4)), deflated('archive/data/0', deflateRawSync(fourBytes), 16, crc32(fourBytes))]), null],
    ['declared', zipOf([pkl(onePickle(4)), deflated('archive/data/0', bomb, GiB2)]), /storage archive\/data\/0 holds 2147483648 bytes, 4 × float32 wanted/],
    ['needed', zipOf([pkl(onePickle(2 ** 29)), deflated('archive/data/0', bomb, GiB2)]), /entry archive\/data\/0 \(deflated\) needs 2147483648 bytes, past the \d+ bytes a \d+-byte \.pth may allocate/],
    ['lying', zipOf([pkl(onePickle(4)), deflated('archive/data/0', bomb, 16)]), /entry archive\/data\/0 inflates to more than the 16 bytes the central directory declares/],
    ['pickle', zipOf([deflated('archive/data.pkl', bomb, GiB2), { name: 'archive/data/0', raw: fourBytes }]), /entry archive\/data\.pkl \(deflated\) needs 2147483648 bytes/],
    ['stride 0', zipOf([pkl(onePickle(1, [2 ** 30], [0])), { name: 'archive/data/0', raw: fourBytes.subarray(0, 4) }]),
      /copying the tensor view \[1073741824\] stride \[0\] at 0 of storage data\/0 needs 4294967296 bytes/],
  ];
  const files = cases.map(([name, bytes]) => {
    const p = join(dir, `bomb-${name.replace(' ', '_')}.pth`);
    writeFileSync(p, bytes);
    return p;
  });
  assert.equal([...readPth(files[0]).get('w')!.data], [...four], 'the zip writer here makes readable files');
  // In a fresh process, so that its peak memory says whether 2 GiB was ever allocated.
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'read_pth.ts'), ...files], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { files: { file: string; error: string | null; ms: number }[]; peakRssMiB: number };
  for (const [i, [name, , want]] of cases.entries()) {
    const { file, error, ms } = out.files[i];
    if (want === null) assert.is(error, null, name);
    else {
      assert.ok(error?.startsWith(file) && want.test(error), `${name}: ${error}`);
      assert.ok(ms < 1000, `${name}: refused after ${ms.toFixed(0)} ms`);
    }
  }
  assert.ok(out.peakRssMiB < 1024, `peak RSS ${out.peakRssMiB.toFixed(0)} MiB: something inflated`);
});

// ---- float16 / bfloat16 codecs against torch's casts (fp16_cases.safetensors) ----

s("float32 → float16 and → bfloat16 round to nearest even exactly like torch (ties, subnormals, overflow, inf, nan)", () => {
  const c = readSafetensors(join(FIX, 'fp16_cases.safetensors')).tensors;
  const x = c.get('x')!.data, bits = new Uint32Array(new Float32Array(x).buffer);
  const h = new Uint16Array(new Uint8Array(c.get('f16')!.raw).buffer), b = new Uint16Array(new Uint8Array(c.get('bf16')!.raw).buffer);
  for (let i = 0; i < x.length; i++) {
    const ours = f16FromF32Bits(bits[i]), oursB = bf16FromF32Bits(bits[i]);
    if (Number.isNaN(x[i])) {
      assert.ok((ours & 0x7c00) === 0x7c00 && ours & 0x3ff, 'f16 NaN');
      assert.ok((oursB & 0x7f80) === 0x7f80 && oursB & 0x7f, 'bf16 NaN');
      continue;
    }
    if (ours !== h[i]) assert.unreachable(`f16 of ${x[i]}: ours 0x${ours.toString(16)}, torch 0x${h[i].toString(16)}`);
    if (oursB !== b[i]) assert.unreachable(`bf16 of ${x[i]}: ours 0x${oursB.toString(16)}, torch 0x${b[i].toString(16)}`);
  }
  // the named edge cases, spelled out
  assert.is(f16FromF32Bits(f32bits(2 ** -24)), 0x0001); // smallest subnormal
  assert.is(f16FromF32Bits(f32bits(2 ** -25)), 0x0000); // tie between 0 and 2^-24: to even
  assert.is(f16FromF32Bits(f32bits(3 * 2 ** -25)), 0x0002); // tie between 1 and 2 ulps: to even
  assert.is(f16FromF32Bits(f32bits(-0)), 0x8000);
  assert.is(f16FromF32Bits(f32bits(65519.99)), 0x7bff); // rounds down to the max, 65504
  assert.is(f16FromF32Bits(f32bits(65520)), 0x7c00); // rounds up past the max: inf
  assert.is(f16FromF32Bits(f32bits(1 + 2 ** -11)), 0x3c00); // tie between 1 and 1+2^-10: to even
  assert.is(f16FromF32Bits(f32bits(1 + 3 * 2 ** -11)), 0x3c02);
});

s('float16 → float32 is exact for all 65536 patterns, and float16 → float32 → float16 is the identity', () => {
  const torchF32 = readSafetensors(join(FIX, 'fp16_cases.safetensors')).tensors.get('all_f16_as_f32')!.data;
  const table = f16ToF32Table(), tableBits = new Uint32Array(table.buffer);
  assertSameValues(table, torchF32, 'f16 → f32');
  for (let hb = 0; hb < 65536; hb++) {
    if (f16FromF32Bits(tableBits[hb]) !== hb) assert.unreachable(`0x${hb.toString(16)} does not round-trip`);
  }
});

// ---- checking a loaded state_dict against the model ----

s('checkStateDict names missing, unexpected and mis-shaped keys; only strict refuses missing/unexpected', () => {
  const sd = readPth(join(FIX, 'tiny_fp32.pth'));
  const want = new Map([...sd].map(([k, t]) => [k, t.shape] as [string, number[]]));
  assert.is(checkStateDict(sd, want, { strict: true }).summary, '');
  const partial = new Map(sd);
  partial.delete('model.norm.weight');
  partial.set('model.layers.0.mlp.gate.weight', sd.get('model.norm.weight')!);
  const report = checkStateDict(partial, want, { strict: false });
  assert.equal(report.missing, ['model.norm.weight']);
  assert.equal(report.unexpected, ['model.layers.0.mlp.gate.weight']);
  assert.match(report.summary, /missing keys: model.norm.weight; unexpected keys: model.layers.0.mlp.gate.weight/);
  assert.throws(() => checkStateDict(partial, want, { strict: true, where: 'ck.pth' }), /^ck.pth: missing keys: model.norm.weight/);
  const wrong = new Map(want).set('lm_head.weight', [64, 32]);
  assert.throws(() => checkStateDict(sd, wrong, { strict: false }), /mis-shaped: lm_head.weight \[64,16\] in file, \[64,32\] in model/);
});

s.run();
