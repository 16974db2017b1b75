// attention rows for the bench: flash vs naive (materialised T×T), forward and forward+backward, at
// MiniMind2-small shapes (B 16, nh 8, nkv 2, hd 64) for T = 340 (training) and 1024. Each row's note
// gives the GPU memory the call added at peak (pool bytes in use), which is linear in T for flash.
// Napkin math: forward 4·B·nh·T²·hd/2 FLOPs = 3.8 GFLOP at T = 340; backward nominally 2.5× that.
import { Tensor, TapeNode, beginScope, endScope } from '../runtime/tensor.js';
import { poolStats, resetPeak } from '../runtime/buffer.js';
import { sync } from '../runtime/kernel.js';
import { attention, setAttentionImpl, backward as rules, bench, AttentionImpl } from '../kernels/attention.js';
import { mulberry32 as rng } from '../runtime/random.js';
import { Options, Roofline, Row, row, time } from './harness.js';

const [B, nh, nkv, hd] = [16, 8, 2, 64];

function random(shape: number[], seed: number): Tensor {
  const r = rng(seed), n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Float32Array.from({ length: n }, () => r() * 2 - 1), shape, 'f32', true).keep();
}

/** Peak bytes one call adds to the pool, measured on a call of its own. */
async function peakBytes(fn: () => void): Promise<number> {
  await sync();
  const before = poolStats().inUseBytes;
  resetPeak();
  fn();
  await sync();
  return poolStats().peakInUseBytes - before;
}

export async function benchAttention(o: Options = { quick: false }, roof?: Roofline, Ts: number[] = [340, 1024]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const T of Ts) {
    const q = random([B, T, nh, hd], 1), k = random([B, T, nkv, hd], 2), v = random([B, T, nkv, hd], 3);
    const gy = random([B, T, nh, hd], 4);
    const fw = bench.attention_forward(B, T, nh, nkv, hd), bw = bench.attention_backward(B, T, nh, nkv, hd);
    const shape = `B${B} T${T} nh${nh} nkv${nkv} hd${hd}`;
    for (const impl of ['flash', 'naive'] as AttentionImpl[]) {
      setAttentionImpl(impl);
      const suffix = impl === 'naive' ? '_naive' : '';
      const fwd = () => { beginScope(); attention(q, k, v); endScope(); };
      const both = () => {
        beginScope();
        const out = attention(q, k, v);
        rules.attention(out.node as TapeNode, [gy]);
        endScope();
      };
      for (const [name, fn, work] of [['attention_forward', fwd, { flops: fw.flops }], ['attention_forward_backward', both, { flops: fw.flops + bw.flops }]] as const) {
        const peak = await peakBytes(fn);
        const r = row(name + suffix, shape, await time(`${name}${suffix} T${T}`, fn, o), work, roof, 'compute');
        rows.push({ ...r, note: `${impl}: peak +${(peak / 2 ** 20).toFixed(1)} MiB` });
      }
    }
    setAttentionImpl('flash');
    for (const t of [q, k, v, gy]) t.dispose();
  }
  return rows;
}
