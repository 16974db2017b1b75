// The three GEMM products of a Linear layer (forward y = x·Wᵀ, dX = dY·W, dW += dYᵀ·X), naive vs
// tiled, at the MiniMind2-small FFN shape (M = B·T = 5440, K = 512, N = 1408) and LM head (N = 6400).
// Timing: `reps` launches, then the host sleeps (setTimeout) for most of the expected time before
// awaiting, because Dawn spins the JS thread while a GPU promise is pending and that steals about a
// third of lavapipe's two cores (LAVAPIPE-NOTES.md). FLOPs per product: 2·M·N·K.
// Standalone: `npx tsx bench/matmul.ts [M K N] [--naive-too] [--only forward,dX,dW] [--rounds 2] [--reps 2]
//   [--tiles '[{"tm":8,"tn":4},{"tm":16,"tn":4}]']` (tile fields override the adapter's choice, to compare).
import { pathToFileURL } from 'node:url';
import { initGpu, closeGpu } from '../runtime/device.js';
import { flush, readBuffer, sync } from '../runtime/kernel.js';
import { Tensor } from '../runtime/tensor.js';
import { mulberry32 } from '../runtime/random.js';
import { gemm, setMatmulImpl, setTileVariant, tileVariant, bench, type Gemm, type MatmulImpl } from '../kernels/matmul.js';

export interface Row { name: string; shape: string; ms: number; gflops: number }

/** A GEMM operand: on the GPU, and the float32 values on the host (for the check). */
function rand(n: number, seed: number): { t: Tensor; h: Float32Array } {
  const r = mulberry32(seed);
  const h = Float32Array.from({ length: n }, () => r() * 2 - 1);
  return { t: Tensor.fromArray(h, [n]), h };
}

/** The three products of y[M,N] = x[M,K]·w[N,K]ᵀ as GEMM descriptors over shared buffers, with the
 *  host copies of A and B. */
function products(M: number, K: number, N: number): [string, Gemm, Float32Array, Float32Array][] {
  const x = rand(M * K, 1), w = rand(N * K, 2), gy = rand(M * N, 3);
  const y = Tensor.empty([M * N]), dx = Tensor.empty([M * K]), dw = Tensor.zeros([N * K]);
  return [
    ['forward', { a: x.t, b: w.t, c: y, M, N, K, am: K, ak: 1, bk: 1, bn: K, beta: 0 }, x.h, w.h],
    ['dX', { a: gy.t, b: w.t, c: dx, M, N: K, K: N, am: N, ak: 1, bk: K, bn: 1, beta: 0 }, gy.h, w.h],
    ['dW', { a: gy.t, b: x.t, c: dw, M: N, N: K, K: M, am: 1, ak: N, bk: K, bn: 1, beta: 1 }, gy.h, x.h],
  ];
}

/** Checks the first and last rows of C (partial tiles, the last workgroups of a folded grid)
 *  against float64, on a scratch output. */
async function check(g: Gemm, a: Float32Array, b: Float32Array, what: string): Promise<void> {
  const c = Tensor.empty([g.M * g.N]);
  gemm({ ...g, c, beta: 0 });
  for (const m of [0, g.M - 1]) {
    const got = new Float32Array(await readBuffer(c.buffer, m * g.N * 4, g.N * 4));
    for (let n = 0; n < g.N; n++) {
      let want = 0;
      for (let k = 0; k < g.K; k++) want += a[m * g.am + k * g.ak] * b[k * g.bk + n * g.bn];
      if (!(Math.abs(got[n] - want) <= 1e-3 * Math.sqrt(g.K))) throw new Error(`${what}: C[${m},${n}] = ${got[n]}, float64 says ${want}`);
    }
  }
  c.dispose();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `reps` calls, sleeping for most of `expectMs` before awaiting; returns ms per call. */
async function batch(g: Gemm, reps: number, expectMs: number): Promise<number> {
  const t0 = performance.now();
  for (let r = 0; r < reps; r++) gemm(g);
  flush();
  await sleep(0.8 * expectMs);
  await sync();
  return (performance.now() - t0) / reps;
}

export interface MatmulBenchOptions {
  /** [M, K, N] of y[M,N] = x[M,K]·w[N,K]ᵀ. */
  shapes?: [number, number, number][];
  impls?: MatmulImpl[];
  products?: string[];
  /** Calls per timed batch, and batches per configuration (interleaved; the fastest counts). */
  reps?: number; rounds?: number;
  /** Probing: tile-choice overrides to compare (fields replace the adapter's choice); undefined = the choice. */
  tiles?: (Record<string, unknown> | undefined)[];
}

/** Rows for every (shape, product, implementation[, tile]). Configurations of one product are timed
 *  in interleaved rounds and the fastest batch counts, so that load from other processes on the
 *  shared cores hits them alike. */
export async function benchMatmul(opts: MatmulBenchOptions = {}): Promise<Row[]> {
  const rows: Row[] = [];
  const tiles = opts.tiles ?? [undefined];
  for (const [M, K, N] of opts.shapes ?? [[5440, 512, 1408], [5440, 512, 6400]]) {
    const prods = products(M, K, N);
    for (const [prod, g, ha, hb] of prods) {
      if (opts.products && !opts.products.includes(prod)) continue;
      const configs = (opts.impls ?? ['naive', 'tiled']).flatMap((impl) => (impl === 'naive' ? [undefined] : tiles).map((tile) => {
        setTileVariant(undefined);
        const v = tile && impl === 'tiled' ? { ...tileVariant(g), ...tile } as Parameters<typeof setTileVariant>[0] : undefined;
        return { impl, tile, v, best: Infinity, last: 0 };
      }));
      for (let round = -1; round < (opts.rounds ?? 2); round++) {
        for (const c of configs) {
          setMatmulImpl(c.impl);
          setTileVariant(c.v);
          if (round < 0) await check(g, ha, hb, `${prod} ${c.impl} ${JSON.stringify(c.v ?? {})}`); // also compiles
          const ms = await batch(g, round < 0 ? 1 : opts.reps ?? 2, c.last);
          c.last = ms * (opts.reps ?? 2);
          if (round >= 0) c.best = Math.min(c.best, ms);
        }
      }
      for (const c of configs) {
        const name = `matmul${c.impl === 'naive' ? '_naive' : ''}_${prod}${c.tile ? ' ' + JSON.stringify(c.tile) : ''}`;
        rows.push({ name, shape: `${M}x${K}·${N}x${K}ᵀ`, ms: c.best, gflops: bench.matmul(M, N, K).flops / c.best / 1e6 });
      }
    }
    for (const t of new Set(prods.flatMap(([, g]) => [g.a, g.b, g.c]))) t.dispose();
  }
  setMatmulImpl('tiled');
  setTileVariant(undefined);
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const opt = (name: string) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
  const tiles = opt('--tiles') ? JSON.parse(opt('--tiles')!) as Record<string, unknown>[] : undefined;
  const dims = args.filter((a, i) => /^\d+$/.test(a) && !args[i - 1]?.startsWith('--')).map(Number);
  await initGpu();
  const shapes = dims.length === 3 ? [dims as [number, number, number]] : undefined;
  const impls: MatmulImpl[] = args.includes('--naive-too') ? ['naive', 'tiled'] : ['tiled'];
  const rows = await benchMatmul({ shapes, impls, tiles, products: opt('--only')?.split(','), rounds: Number(opt('--rounds') ?? 2), reps: Number(opt('--reps') ?? 2) });
  for (const r of rows) console.log(`${r.name.padEnd(40)} ${r.shape.padEnd(20)} ${r.ms.toFixed(1).padStart(8)} ms ${r.gflops.toFixed(2).padStart(7)} GFLOP/s`);
  closeGpu();
}
