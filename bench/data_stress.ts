// Data pipeline stress run (a script, not a test): writes a ~1 GB SFT JSONL of templated conversations,
// then measures the cold line index, the validation pass, the cached reopen, and iteration through the
// DataLoader with 0 and 1 workers, reporting time, throughput and RSS (current and peak) after each phase.
// RSS should stay flat: the file is never held in memory, only 8 bytes of offset per line.
//   npx tsx bench/data_stress.ts [--gb 1] [--dir /tmp/minimind-data-stress] [--batches 400] [--keep]
import { closeSync, mkdirSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mulberry32 } from '../runtime/random.js';
import { ensureDefaultData } from '../data/defaults.js';
import { LineIndex } from '../data/jsonl.js';
import { DataLoader } from '../data/loader.js';
import { SFTDataset } from '../data/sft.js';
import { randomConversation } from '../data/synth.js';
import { loadTokenizer } from '../data/tokenizer.js';

const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const GB = Number(arg('gb', '1')), DIR = arg('dir', join(tmpdir(), 'minimind-data-stress'));
const BATCHES = Number(arg('batches', '400')), MAX_SEQ_LEN = 512, BATCH = 16;
const mb = (b: number) => (b / 2 ** 20).toFixed(0);
const mem = () => `rss ${mb(process.memoryUsage().rss)} MiB, peak ${mb(process.resourceUsage().maxRSS * 1024)} MiB`;

// 1. Write the file in 4 MiB chunks: 1-8 conversations' worth of turns per line (≈1 KB, like sft_mini_512).
function writeJsonl(path: string, bytes: number): number {
  const r = mulberry32(7), fd = openSync(path, 'w');
  let written = 0, lines = 0, chunk: string[] = [], size = 0;
  while (written + size < bytes) {
    const turns = Array.from({ length: 1 + Math.floor(r() * 8) }, () => randomConversation(r)).flat();
    const conv = turns.filter((m, i) => m.role !== 'system' || i === 0);
    const line = JSON.stringify({ conversations: conv }) + '\n';
    chunk.push(line);
    size += Buffer.byteLength(line);
    lines++;
    if (size >= 4 << 20) {
      written += writeSync(fd, chunk.join(''));
      chunk = []; size = 0;
    }
  }
  written += writeSync(fd, chunk.join(''));
  closeSync(fd);
  return lines;
}

mkdirSync(DIR, { recursive: true });
const path = join(DIR, 'sft_stress.jsonl'), cacheDir = join(DIR, 'cache');
rmSync(cacheDir, { recursive: true, force: true });
const shared = resolve(import.meta.dirname, '../../shared/minimind/minimind2_tokenizer');
const tokDir = statSync(shared, { throwIfNoEntry: false }) ? shared : (await ensureDefaultData()).tokenizerDir;
const tok = await loadTokenizer(tokDir);
console.log(`tokenizer ${tokDir}; start: ${mem()}`);

let t0 = performance.now();
const lines = writeJsonl(path, GB * 2 ** 30);
const size = statSync(path).size;
console.log(`write: ${lines} lines, ${mb(size)} MiB in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${mem()}`);

// 2. Cold index (a streaming scan).
t0 = performance.now();
const index = LineIndex.open(path, cacheDir);
let dt = (performance.now() - t0) / 1000;
console.log(`index (cold): ${index.count} lines in ${dt.toFixed(2)} s, ${(size / 2 ** 20 / dt).toFixed(0)} MiB/s; ${mem()}`);

// 3. Validation pass (render + tokenize + labels for every line), RSS sampled along the way.
const samples: string[] = [];
t0 = performance.now();
const ds = await SFTDataset.open(path, tok, MAX_SEQ_LEN, {
  cacheDir, skipBadLines: true,
  onProgress: (done, total) => {
    if (done % (1 << 17) === 0) samples.push(`${((100 * done) / total).toFixed(0)}%: ${mb(process.memoryUsage().rss)} MiB`);
  },
});
dt = (performance.now() - t0) / 1000;
console.log(`validate: ${ds.length} samples (${ds.skipped} skipped) in ${dt.toFixed(1)} s, ` +
  `${(index.count / dt).toFixed(0)} lines/s, ${(size / 2 ** 20 / dt).toFixed(1)} MiB/s; ${mem()}`);
console.log(`  rss during validation: ${samples.join(', ')}`);

// 4. Reopen: index and validation come from the cache.
t0 = performance.now();
const again = await SFTDataset.open(path, tok, MAX_SEQ_LEN, { cacheDir, skipBadLines: true });
console.log(`reopen (cached): ${again.length} samples in ${((performance.now() - t0) / 1000).toFixed(2)} s; ${mem()}`);

// 5. Iterate BATCHES batches of the shuffled epoch 0 (random reads all over the file).
for (const numWorkers of [0, 1]) {
  const dl = new DataLoader(ds, { batchSize: BATCH, numWorkers });
  t0 = performance.now();
  let n = 0, tokens = 0;
  for await (const b of dl.epoch(0)) {
    n += b.batch;
    for (const l of b.labels) if (l !== -100) tokens++;
    if (b.step + 1 >= BATCHES) break;
  }
  dt = (performance.now() - t0) / 1000;
  await dl.close();
  console.log(`iterate (num_workers ${numWorkers}): ${n} samples in ${dt.toFixed(1)} s, ${(n / dt).toFixed(0)} samples/s, ` +
    `${(tokens / dt).toFixed(0)} trained tokens/s; ${mem()}`);
}
if (!process.argv.includes('--keep')) rmSync(DIR, { recursive: true, force: true });
