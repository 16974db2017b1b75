// add_columns: d added into columns [c0, c0 + n) of every row of y, in place; y [..., N], d [..., n], the same
// rows M. LoRA's adapter output B(A(x)) of one projection lands in its columns of a fused projection's output
// (q_proj's in q|k|v, gate_proj's or up_proj's in gate|up: model/lora.ts), so the base stays one matmul. In
// place because y is a matmul's fresh output that no backward reads: a copy would cost a q|k|v-sized buffer per
// layer for the whole step (activations live until the step's scope ends). The result is a view of y's buffer;
// y must not be read again by anyone else.
// Backward: dy reaches y unchanged; dd = dy[:, c0:c0+n] (slice_columns). Nothing is saved.
// Memory-bound, one invocation per element of d: forward reads d and reads/writes its columns of y, 12·M·n
// bytes; backward reads and writes M·n elements, 8·M·n bytes.
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { Tensor, needsGrad, record, is16 } from '../runtime/tensor.js';
import { noTargets, type BackwardRule } from '../runtime/autograd.js';
import { Case, N as ROWS, host, f64, verify, scoped } from './case.js';

const WG = 256;
const PARAMS = [['M', 'u32'], ['N', 'u32'], ['n', 'u32'], ['c0', 'u32']] as const;

export const kernels = {
  /** y[m, c0 + j] += d[m, j]. */
  add_columns: defineKernel({
    name: 'add_columns', params: PARAMS, workgroup: WG,
    buffers: [['d', 'read', 'f32'], ['y', 'rw', 'f32']],
    wgsl: (_, entry) => `${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // over M·n
  if (i >= p.M * p.n) { return; }
  let m = i / p.n;
  let k = m * p.N + p.c0 + i - m * p.n;
  y[k] = y[k] + d[i];
}
`,
  }),
  /** out [M, n] = g[:, c0:c0+n] for g [M, N]. */
  slice_columns: defineKernel({
    name: 'slice_columns', params: PARAMS, workgroup: WG,
    buffers: [['g', 'read', 'f32'], ['out', 'rw', 'f32']],
    wgsl: (_, entry) => `${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // over M·n
  if (i >= p.M * p.n) { return; }
  let m = i / p.n;
  out[i] = g[m * p.N + p.c0 + i - m * p.n];
}
`,
  }),
  /** The same for 16-bit g and out (bf16 or f16: the halves are copied, not converted), one packed word of out
   *  per invocation: out elements 2i and 2i+1 may come from different rows of g when n is odd. */
  slice_columns16: defineKernel({
    name: 'slice_columns16', params: PARAMS, workgroup: WG,
    buffers: [['g', 'read', 'u32'], ['out', 'rw', 'u32']],
    wgsl: (_, entry) => `fn at(e: u32) -> u32 {                   // element e of out, as 16 bits from g
  let m = e / p.n;
  let s = m * p.N + p.c0 + e - m * p.n;
  return (g[s >> 1u] >> ((s & 1u) * 16u)) & 0xffffu;
}
${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;   // over the ceil(M·n / 2) words of out
  let n = p.M * p.n;
  if (2u * i >= n) { return; }
  out[i] = at(2u * i) | select(0u, at(2u * i + 1u) << 16u, 2u * i + 1u < n);
}
`,
  }),
};

function run(k: Kernel, params: Record<string, number>, bufs: Tensor[], count: number): void {
  for (const t of bufs) t.assertLive();
  launch(k, { params, buffers: bufs.map((t) => t.binding()), workgroups: Math.ceil(count / WG) });
}

/** y [..., N] with d [..., n] added into columns [c0, c0 + n), in place: returns a view of y's buffer (y is
 *  not to be used again). */
export function addColumns(y: Tensor, d: Tensor, c0: number): Tensor {
  const N = y.shape.at(-1)!, n = d.shape.at(-1)!, M = y.size / N;
  if (d.size !== M * n || !Number.isInteger(c0) || c0 < 0 || c0 + n > N) {
    throw new Error(`add_columns: d [${d.shape}] into columns ${c0}..${c0 + n} of y [${y.shape}]`);
  }
  run(kernels.add_columns, { M, N, n, c0 }, [d, y], M * n);
  const out = y.detach().reshape(y.shape); // a new tensor over y's buffer, outside y's graph
  if (needsGrad(y, d)) record('add_columns', [y, d], [out], { c0 }, []);
  return out;
}

/** g [..., N] → its columns [c0, c0 + n) as [..., n] of g's dtype (float32 or 16-bit; not recorded: the
 *  backward of add_columns, and of the fused q|k|v and gate|up projections in kernels/linear16.ts). */
export function sliceColumns(g: Tensor, c0: number, n: number): Tensor {
  const N = g.shape.at(-1)!, M = g.size / N;
  if (!Number.isInteger(c0) || c0 < 0 || c0 + n > N) throw new Error(`slice_columns: columns ${c0}..${c0 + n} of g [${g.shape}]`);
  const out = Tensor.empty([...g.shape.slice(0, -1), n], g.dtype);
  if (is16(g.dtype)) run(kernels.slice_columns16, { M, N, n, c0 }, [g, out], Math.ceil((M * n) / 2));
  else if (g.dtype === 'f32') run(kernels.slice_columns, { M, N, n, c0 }, [g, out], M * n);
  else throw new Error(`slice_columns: g [${g.shape}] is ${g.dtype}, not a float dtype`);
  return out;
}

export const backward: Record<string, BackwardRule> = {
  add_columns: (node, [g]) => {
    const [y, d] = node.inputs;
    return [y.requiresGrad ? g : null, d.requiresGrad ? sliceColumns(g!, node.saved.c0 as number, d.shape.at(-1)!) : null];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

export const reference = {
  /** y [M, N] plus d [M, n] in columns [c0, c0 + n). */
  forward: (y: Float64Array, d: Float64Array, N: number, c0: number) => {
    const n = d.length / (y.length / N), out = Float64Array.from(y);
    for (let i = 0; i < d.length; i++) out[Math.floor(i / n) * N + c0 + (i % n)] += d[i];
    return out;
  },
  /** dd [M, n] = g[:, c0:c0+n] for g [M, N]. */
  backward: (g: Float64Array, N: number, c0: number, n: number) =>
    Float64Array.from({ length: (g.length / N) * n }, (_, i) => g[Math.floor(i / n) * N + c0 + (i % n)]),
};

export const bench = {
  add_columns: (M: number, n: number) => ({ bytes: 12 * M * n }),
  slice_columns: (M: number, n: number) => ({ bytes: 8 * M * n }),
};

/** Bench rows at MiniMind2-small's LoRA on q_proj: q|k|v output 5440 × 768 (q 512, k and v 128 each),
 *  the adapter's 5440 × 512 into columns 0..512; checked on the first two rows. */
export function cases(): Case[] {
  const Nq = 512, W = 768, rows = 2;
  return [{
    name: 'add_columns', shape: `${ROWS}x${W} += ${ROWS}x${Nq}`, work: bench.add_columns(ROWS, Nq), bound: 'memory',
    setup: async () => {
      const yh = host([ROWS, W], 41), dh = host([ROWS, Nq], 42);
      const y = Tensor.fromArray(yh, [ROWS, W]), d = Tensor.fromArray(dh, [ROWS, Nq]);
      await verify('add_columns', () => addColumns(y, d, 0), reference.forward(f64(yh, rows * W), f64(dh, rows * Nq), W, 0));
      return scoped(() => addColumns(y, d, 0)); // y keeps growing by d: the timing does not depend on its values
    },
  }, {
    name: 'slice_columns', shape: `${ROWS}x${W} → ${ROWS}x${Nq}`, work: bench.slice_columns(ROWS, Nq), bound: 'memory',
    setup: async () => {
      const gh = host([ROWS, W], 43), g = Tensor.fromArray(gh, [ROWS, W]);
      const node = addColumns(Tensor.fromArray(host([ROWS, W], 41), [ROWS, W]), Tensor.fromArray(host([ROWS, Nq], 42), [ROWS, Nq], 'f32', true), 0).node!;
      await verify('slice_columns', () => backward.add_columns(node, [g], noTargets)[1]!, reference.backward(f64(gh, rows * W), W, 0, Nq));
      return scoped(() => backward.add_columns(node, [g], noTargets));
    },
  }];
}
