// The matmul kernels over 16-bit storage (torch.autocast's matmul: bf16 or f16 operands, float32
// sums, the output float32 or 16-bit, rounded once at the end): the naive, register-tiled and
// workgroup-memory tiled GEMMs of kernels/matmul.ts compiled with kernels/matmul_io.ts's loads and
// stores, and matmul16_store, which rounds a float32 result into a packed 16-bit output. gemm()
// (kernels/matmul.ts) launches them when its tensors are 16-bit.
// A packed 16-bit C is written a word (two outputs) per invocation; the tiled kernels own column
// pairs of a row, so for an odd N (pairs straddling rows) they write a float32 scratch that
// matmul16_store then rounds (4 + 4 + 2 more bytes per output than direct).
import { defineKernel, launch, type Kernel } from '../runtime/kernel.js';
import { Tensor } from '../runtime/tensor.js';
import { PACKED16_WGSL } from '../runtime/packed16_wgsl.js';
import { registerTiled, type RegisterCompiled } from './matmul_register.js';
import { sharedTiled, type SharedCompiled } from './matmul_shared.js';
import { buffers, enables, ioWgsl, pairs, GEMM_PARAMS, type GemmIO } from './matmul_io.js';

/** The naive kernel's invocations per workgroup. */
export const WG = 64;
const STORE_WG = 256;
type IO = { io: GemmIO };

function make(io: GemmIO) {
  const common = { params: GEMM_PARAMS, buffers: buffers(io), enable: () => enables(io) };
  return {
    /** One output per invocation, or one packed word (two consecutive outputs of row-major C). */
    naive: defineKernel<IO>({
      ...common, name: 'matmul16_naive', workgroup: WG,
      wgsl: (_, entry) => `
fn dot(m: u32, n: u32) -> f32 {
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) { acc += loadA(m * p.am + k * p.ak) * loadB(k * p.bk + n * p.bn); }
  return acc;
}
${entry} {
  let i = wgIndex(wid, nwg) * ${WG}u + lid.x;
  let n = p.M * p.N;
  ${pairs(io) ? `if (2u * i >= n) { return; }
  let e = min(2u * i + 1u, n - 1u);
  put2(i, dot(2u * i / p.N, 2u * i % p.N), select(0.0, dot(e / p.N, e % p.N), 2u * i + 1u < n));` : `if (i >= n) { return; }
  put(i, dot(i / p.N, i % p.N));`}
}
${ioWgsl(io)}`,
    }),
    register: defineKernel<RegisterCompiled & IO>({
      ...common, name: 'matmul16_register', workgroup: (v) => v.wg,
      enable: (v) => [...enables(io), ...(v.a !== 's' ? ['subgroups'] : [])],
      wgsl: (v, entry) => registerTiled(v, entry, io) + ioWgsl(io),
    }),
    shared: defineKernel<SharedCompiled & IO>({
      ...common, name: 'matmul16_shared', workgroup: (v) => [v.bn / v.tn, v.bm / v.tm],
      wgsl: (v, entry) => sharedTiled(v, entry, io) + ioWgsl(io),
    }),
  };
}

const made = new Map<string, ReturnType<typeof make>>();
/** The three kernels for one storage (the buffers' WGSL types differ), made once. */
export function kernels16(io: GemmIO): ReturnType<typeof make> {
  const key = JSON.stringify(io);
  let k = made.get(key);
  if (!k) made.set(key, (k = make(io)));
  return k;
}

/** w (16-bit words) = round16(x) (beta = 0) or round16(round16(x) + beta·w), element by element;
 *  n in elements, the high half of a last odd word is round16(0) = 0 (plus beta times itself). */
const store16: Kernel<{ ab: GemmIO['ab'] }> = defineKernel({
  name: 'matmul16_store', params: [['n', 'u32'], ['beta', 'f32']], buffers: [['x', 'read', 'f32'], ['w', 'rw', 'u32']], workgroup: STORE_WG,
  wgsl: (v, entry) => {
    const [pk, un] = v.ab === 'f16' ? ['packF16', 'unpackF16'] : ['packBf16', 'unpackBf16'];
    return `${entry} {
  let i = wgIndex(wid, nwg) * ${STORE_WG}u + lid.x;
  if (2u * i >= p.n) { return; }
  let x1 = select(0.0, x[min(2u * i + 1u, p.n - 1u)], 2u * i + 1u < p.n);
  if (p.beta != 0.0) {
    let r = ${un}(${pk}(x[2u * i], x1));
    let old = ${un}(w[i]);
    w[i] = ${pk}(r.x + p.beta * old.x, r.y + p.beta * old.y);
  } else { w[i] = ${pk}(x[2u * i], x1); }
}
${PACKED16_WGSL}`;
  },
});

/** c[from, from + n) (16-bit, `from` even: a whole word) = the float32 result x, rounded as a
 *  16-bit GEMM output is (with beta), then x is released. */
export function storeRounded(x: Tensor, c: Tensor, from: number, n: number, beta: number, ab: GemmIO['ab']): void {
  const words = Math.ceil(n / 2);
  launch(store16, {
    params: { n, beta }, variant: { ab }, workgroups: Math.ceil(words / STORE_WG),
    buffers: [x.binding(), { buffer: c.buffer, offset: c.offset + 2 * from, size: 4 * words }],
  });
  x.dispose(); // recorded work keeps its buffer valid: the pool reuses it only for later commands
}
