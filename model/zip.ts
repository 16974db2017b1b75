// The zip container of PyTorch checkpoints. Reading: the central directory is the truth (torch's writer puts
// zeros in local headers and the sizes in data descriptors), zip64 records are followed, entries are stored or
// deflated, and every entry's CRC32 is checked. Entries are read on demand, so the caller can check each one's
// declared size before anything is inflated, and inflating never produces more than the declared size (a
// 2 MB deflate bomb declares, or inflates to, gigabytes; torch itself never deflates). Writing: stored entries whose data start on a 64-byte boundary,
// padded through an extra field "FB" filled with 'Z' exactly as torch's PyTorchStreamWriter does (so readers
// may mmap tensors in place), written atomically (runtime/write_file_atomic.ts).
import { crc32, inflateRawSync } from 'node:zlib';
import { writeFileAtomic } from '../runtime/write_file_atomic.js';

const SIG_LOCAL = 0x04034b50, SIG_CENTRAL = 0x02014b50, SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50, SIG_ZIP64_EOCD = 0x06064b50;
const ALIGN = 64; // bytes; torch's kFieldAlignment

export interface ZipEntry {
  /** Uncompressed size in bytes, as the central directory declares it. */
  size: number;
  /** Whether reading inflates (allocates `size` bytes); a stored entry is a view into the archive's bytes. */
  deflated: boolean;
  /** The entry's bytes, CRC-checked; a deflated entry that would inflate past `size` is an error. */
  read(): Uint8Array;
}

/** Every entry of a zip archive, by name, unread. `where` (a path) prefixes every error. */
export function readZip(bytes: Uint8Array, where: string): Map<string, ZipEntry> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  function fail(msg: string): never {
    throw new Error(`${where}: ${msg}`);
  }
  const u16 = (o: number) => (o + 2 <= bytes.length ? dv.getUint16(o, true) : fail(`truncated at byte ${o}`));
  const u32 = (o: number) => (o + 4 <= bytes.length ? dv.getUint32(o, true) : fail(`truncated at byte ${o}`));
  const u64 = (o: number) => {
    const v = u32(o) + u32(o + 4) * 2 ** 32;
    return Number.isSafeInteger(v) ? v : fail(`zip64 field at byte ${o} too large`);
  };

  // End of central directory: the last 22+ bytes (a comment of up to 64 KiB may follow it).
  let eocd = -1;
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 22 - 0xffff); o--) {
    if (dv.getUint32(o, true) === SIG_EOCD) { eocd = o; break; }
  }
  if (eocd < 0) fail('not a zip archive, or truncated (no end-of-central-directory record)');
  let count = u16(eocd + 10), cdSize = u32(eocd + 12), cdOffset = u32(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== SIG_ZIP64_LOCATOR) fail('zip64 locator missing');
    const z = u64(loc + 8);
    if (u32(z) !== SIG_ZIP64_EOCD) fail(`zip64 end record missing at byte ${z}`);
    count = u64(z + 32); cdSize = u64(z + 40); cdOffset = u64(z + 48);
  }
  if (cdOffset + cdSize > bytes.length) fail(`central directory (bytes ${cdOffset}..${cdOffset + cdSize}) lies past the end: truncated`);

  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (u32(p) !== SIG_CENTRAL) fail(`central directory entry ${i} corrupt at byte ${p}`);
    const method = u16(p + 10), crc = u32(p + 16);
    let csize = u32(p + 20), usize = u32(p + 24), local = u32(p + 42);
    const nameLen = u16(p + 28), extraLen = u16(p + 30), commentLen = u16(p + 32);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra (id 1): the 64-bit values, in this order, of only the fields saturated above.
    for (let e = p + 46 + nameLen; e + 4 <= p + 46 + nameLen + extraLen; e += 4 + u16(e + 2)) {
      if (u16(e) !== 1) continue;
      let q = e + 4;
      if (usize === 0xffffffff) { usize = u64(q); q += 8; }
      if (csize === 0xffffffff) { csize = u64(q); q += 8; }
      if (local === 0xffffffff) local = u64(q);
    }
    p += 46 + nameLen + extraLen + commentLen;

    if (u32(local) !== SIG_LOCAL) fail(`entry ${name}: local header missing at byte ${local}`);
    const start = local + 30 + u16(local + 26) + u16(local + 28);
    if (start + csize > bytes.length) fail(`entry ${name} (bytes ${start}..${start + csize}) lies past the end: truncated`);
    const raw = bytes.subarray(start, start + csize);
    if (method !== 0 && method !== 8) fail(`entry ${name}: compression method ${method} unsupported (only stored and deflate)`);
    if (method === 0 && csize !== usize) fail(`entry ${name}: stored with ${csize} bytes, central directory says ${usize}`);
    const read = (): Uint8Array => {
      const data = method === 0 ? raw : inflate(raw, usize, name);
      if (data.length !== usize) fail(`entry ${name}: ${data.length} bytes, central directory says ${usize}`);
      if (crc32(data) !== crc) fail(`entry ${name}: CRC32 mismatch, the file is corrupt`);
      return data;
    };
    entries.set(name, { size: usize, deflated: method === 8, read });
  }
  return entries;

  function inflate(raw: Uint8Array, size: number, name: string): Uint8Array {
    try {
      // zlib stops (and throws) once the output would pass maxOutputLength, which must be ≥ 1.
      return inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
    } catch (err) {
      if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') fail(`entry ${name} inflates to more than the ${size} bytes the central directory declares: corrupt, or a deflate bomb`);
      return fail(`entry ${name}: bad deflate data (${(err as Error).message})`);
    }
  }
}

/** Write a zip of stored, 64-byte-aligned entries to `path` atomically. */
export function writeZipFile(path: string, entries: { name: string; data: Uint8Array }[]): void {
  const parts: Uint8Array[] = [], central: Uint8Array[] = [];
  let pos = 0;
  const put = (...bs: Uint8Array[]) => { for (const b of bs) { parts.push(b); pos += b.length; } };
  for (const { name, data } of entries) {
    if (pos + data.length + 1024 >= 0xffffffff) throw new Error(`${path}: archive past 4 GiB at entry ${name}; zip64 writing is not implemented`);
    const nameBytes = new TextEncoder().encode(name), crc = crc32(data);
    // Padding extra field: "FB", its length, then 'Z's up to the next multiple of 64.
    const pad = (ALIGN - ((pos + 30 + nameBytes.length + 4) % ALIGN)) % ALIGN;
    const extra = new Uint8Array(4 + pad).fill(0x5a);
    extra.set([0x46, 0x42, pad & 0xff, pad >> 8]);
    const lh = new DataView(new ArrayBuffer(30));
    lh.setUint32(0, SIG_LOCAL, true); lh.setUint16(4, 20, true); lh.setUint16(6, 0x0800, true); // UTF-8 names
    lh.setUint32(14, crc, true); lh.setUint32(18, data.length, true); lh.setUint32(22, data.length, true);
    lh.setUint16(26, nameBytes.length, true); lh.setUint16(28, extra.length, true);
    const cd = new DataView(new ArrayBuffer(46));
    cd.setUint32(0, SIG_CENTRAL, true); cd.setUint16(4, 20, true); cd.setUint16(6, 20, true); cd.setUint16(8, 0x0800, true);
    cd.setUint32(16, crc, true); cd.setUint32(20, data.length, true); cd.setUint32(24, data.length, true);
    cd.setUint16(28, nameBytes.length, true); cd.setUint32(42, pos, true);
    central.push(new Uint8Array(cd.buffer), nameBytes);
    put(new Uint8Array(lh.buffer), nameBytes, extra, data);
  }
  const cdOffset = pos;
  put(...central);
  if (entries.length >= 0xffff) throw new Error(`${path}: ${entries.length} entries; zip64 writing is not implemented`);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, SIG_EOCD, true); end.setUint16(8, entries.length, true); end.setUint16(10, entries.length, true);
  end.setUint32(12, pos - cdOffset, true); end.setUint32(16, cdOffset, true);
  put(new Uint8Array(end.buffer));
  writeFileAtomic(path, parts);
}
