// All ops in one table: each op's backward rules (registered here with the autograd engine), its
// kernel families with variants and the shapes the variant sweep forces each variant on
// (test/variant_sweep.ts), and its bench rows (bench/kernels.ts). Adding an op is its module, a
// test file for what the sweep cannot know, and a line here.
import { registerBackward } from '../runtime/autograd.js';
import * as elementwise from './elementwise.js';
import * as reduce from './reduce.js';
import * as cast from './cast.js';
import * as linear16 from './linear16.js';
import * as matmul from './matmul.js';
import * as matmulVariants from './matmul_variants.js';
import * as rmsnorm from './rmsnorm.js';
import * as rmsnormVariants from './rmsnorm_variants.js';
import * as addRmsnorm from './add_rmsnorm.js';
import * as rope from './rope.js';
import * as ropeVariants from './rope_variants.js';
import * as qkvRope from './qkv_rope.js';
import * as qkvRopeVariants from './qkv_rope_variants.js';
import * as swiglu from './swiglu.js';
import * as swigluVariants from './swiglu_variants.js';
import * as embedding from './embedding.js';
import * as embeddingVariants from './embedding_variants.js';
import * as optimizerVariants from './optimizer_variants.js';
import * as crossEntropy from './cross_entropy.js';
import * as crossEntropyVariants from './cross_entropy_variants.js';
import * as logprob from './logprob.js';
import * as logprobVariants from './logprob_variants.js';
import * as dpoLoss from './dpo_loss.js';
import * as moe from './moe.js';
import * as attention from './attention.js';
import * as attentionVariants from './attention_variants.js';
import * as addColumns from './add_columns.js';
import { sweep, type Op } from './op.js';

// Matmul shapes (M, N, K): 1 and odd sizes (no multiple of any tile or of the vec4 width: scalar
// paths), multiples of 4 with partial tiles (vec4 paths), and enough row tiles for grouped orders.
const GEMMS: [number, number, number][] = [[1, 1, 1], [33, 65, 7], [65, 68, 132], [130, 136, 64]];
// Attention [B, T, nh, nkv, hd]: T not a multiple of the row tiles or key blocks, GQA 2 and 4 and
// plain MHA, head dims 16 and 32; decode (T = 1 over a longer cache) for the forward.
const ATTENTION = [[2, 33, 4, 2, 16], [1, 65, 4, 1, 16], [1, 20, 2, 2, 32]].map(([B, T, nh, nkv, hd]) => ({ B, T, nh, nkv, hd, kvT: T }));

// Row ops [rows, H]: H 33, 65 (no vec4 path), 16 (per-head q/k norm), 512 and 640 (hidden sizes);
// rows 1, 7, 33, 1025: no multiple of a workgroup or of the backward's row chunks.
const ROWS = [[1, 33], [33, 65], [65, 512], [7, 640], [1025, 64], [3, 16]].map(([rows, h]) => ({ rows, h }));
// add_rmsnorm's forward over a 16-bit res: every layout once per form of res (H 65 by element, H 512 a vec4<u32>
// at a time), a format each; the other format and forms are test/add_rmsnorm.test.ts's (on the hand-picked
// layout: each layout × form × format is a pipeline).
const RES16 = [{ rows: 33, h: 65, res: 'f16' as const }, { rows: 65, h: 512, res: 'bf16' as const }];
// add_rmsnorm with a 16-bit s (option out): every layout, and for the backward every chunk count, once per form (H 65
// by element, x and res f16; H 512 eight values a unit, x float32 and res bf16); the other formats, x dtypes and the
// backward without ds are test/add_rmsnorm16.test.ts's.
const OUT16 = [{ rows: 33, h: 65, out: 'f16' as const, x16: true, res: 'f16' as const }, { rows: 65, h: 512, out: 'bf16' as const, res: 'bf16' as const }];

export const OPS: Op[] = [
  { name: 'elementwise', backward: elementwise.backward },
  { name: 'reduce', backward: reduce.backward },
  { name: 'cast', backward: cast.backward, cases: cast.cases },
  { name: 'linear16', backward: linear16.backward },
  {
    name: 'matmul', backward: matmul.backward, cases: matmulVariants.cases,
    sweeps: () => [sweep(matmulVariants.matmulTunable, [...GEMMS.flatMap(([M, N, K]) => Object.values(matmulVariants.linearShapes(M, N, K))),
      // bfloat16 storage on the vec4 layouts MiniMind's shapes take, every variant; float16's loads and stores
      // differ only in the pack function, covered per variant kind with the odd shapes by test/matmul16.test.ts
      // (each variant × layout × dtype is a pipeline: lavapipe compiles one in seconds on a cold cache).
      ...(['bf16'] as const).flatMap((ab) => Object.values(matmulVariants.linearShapes(65, 68, 132)).map((sh) => ({ ...sh, io: { ab, c: ab } })))])],
  },
  {
    name: 'rmsnorm', backward: rmsnorm.backward, cases: rmsnormVariants.cases,
    sweeps: () => [...Object.values(rmsnormVariants.rmsnormTunables).map((t) => sweep(t, ROWS)), sweep(rmsnormVariants.rmsnormTunables.addForward, [...RES16, ...OUT16]),
      sweep(rmsnormVariants.rmsnormTunables.addBackward, OUT16)],
  },
  { name: 'add_rmsnorm', backward: addRmsnorm.backward },
  {
    name: 'rope', backward: rope.backward, cases: ropeVariants.cases,
    sweeps: () => [sweep(ropeVariants.ropeTunable, [[1, 1, 1, 2], [2, 33, 3, 16], [1, 65, 2, 64], [3, 5, 2, 10]].map(([B, T, nh, hd]) => ({ rows: B * T * nh, T, nh, hd })))],
  },
  {
    name: 'qkv_rope', backward: qkvRope.backward, cases: qkvRopeVariants.cases,
    // bfloat16 storage once per load/store width (hd 16: 4 elements a vector, hd 12: 2), every layout; float16
    // differs only in the pack functions (test/qkv_rope.test.ts).
    sweeps: () => Object.values(qkvRopeVariants.qkvRopeTunables).map((t) => sweep(t, [
      ...[[1, 1, 1, 1, 2], [2, 33, 4, 2, 16], [1, 65, 3, 1, 6], [2, 17, 8, 2, 64]].map(([B, T, nh, nkv, hd]) => ({ B, T, nh, nkv, hd })),
      ...[[2, 33, 4, 2, 16], [1, 65, 3, 1, 12]].map(([B, T, nh, nkv, hd]) => ({ B, T, nh, nkv, hd, dtype: 'bf16' as const }))])),
  },
  {
    name: 'swiglu', backward: swiglu.backward, cases: swiglu.cases,
    // float16's conversions, each layout (I 7: words straddling rows; I 16: vec4s).
    sweeps: () => [sweep(swigluVariants.swigluF16Tunable, [{ rows: 33, I: 7 }, { rows: 65, I: 16 }])],
  },
  {
    name: 'embedding', backward: embedding.backward, cases: embeddingVariants.cases,
    sweeps: () => [sweep(embeddingVariants.embeddingTunable, [[1, 7, 1], [65, 50, 33], [33, 50, 64], [1025, 7, 16]].map(([N, V, H]) => ({ N, V, H })))],
  },
  {
    name: 'cross_entropy', backward: crossEntropy.backward, cases: crossEntropyVariants.cases,
    // 16-bit logits: every layout once, on bf16 of the vec4 path (logprob's sweep takes f16 on an odd V);
    // the formats × paths of the fallback layout are test/cross_entropy.test.ts's (each a pipeline).
    sweeps: () => [...[false, true].map((grad) => sweep(crossEntropyVariants.crossEntropyTunable,
      [[1, 1, 7], [3, 33, 50], [2, 65, 64], [1, 7, 1025]].map(([B, T, V]) => ({ rows: B * T, T, V, grad })))),
    sweep(crossEntropyVariants.crossEntropyTunable, [{ rows: 99, T: 33, V: 64, grad: true, dtype: 'bf16' }])],
  },
  {
    // [N, T, V]: rows N·T = 1, 33, 65, 1025 (no multiple of a workgroup); V 33 and 65 (scalar path), 6400 (vec4).
    name: 'logprob', backward: logprob.backward, cases: logprobVariants.cases,
    // 16-bit logits: every layout once, on f16 of an odd V (rows start mid-word; cross_entropy's sweep takes bf16 on vec4).
    sweeps: () => [...[false, true].map((grad) => sweep(logprobVariants.logprobTunable,
      [[1, 1, 33], [3, 11, 65], [5, 13, 6400], [25, 41, 33]].map(([N, T, V]) => ({ rows: N * T, T, V, grad })))),
    sweep(logprobVariants.logprobTunable, [{ rows: 33, T: 11, V: 65, grad: true, dtype: 'f16' }])],
  },
  { name: 'dpo_loss', backward: dpoLoss.backward, cases: dpoLoss.cases },
  { name: 'moe', backward: moe.backward },
  { name: 'add_columns', backward: addColumns.backward, cases: addColumns.cases },
  {
    name: 'optimizer', cases: optimizerVariants.cases,
    sweeps: () => [optimizerVariants.gradNormTunable, optimizerVariants.adamwTunable].map((t) => sweep(t, [1, 33, 1025, 40961].map((n) => ({ n })))),
  },
  {
    name: 'attention', backward: attention.backward, cases: attentionVariants.cases,
    sweeps: () => {
      // bfloat16 storage on one GQA shape, every tiling; float16 differs only in the pack functions
      // (test/attention.test.ts).
      const t = attentionVariants.attentionTunables, bf16 = { ...ATTENTION[0], dtype: 'bf16' as const };
      return [sweep(t.forward, [...ATTENTION, { B: 2, T: 1, nh: 4, nkv: 2, hd: 16, kvT: 21 }, bf16]), sweep(t.dq, [...ATTENTION, bf16]), sweep(t.dkv, [...ATTENTION, bf16])];
    },
  },
];

registerBackward(Object.assign({}, ...OPS.map((o) => o.backward ?? {})), { addInto: elementwise.addInto, add: elementwise.add });

export { add, mul, scale, silu, addInto, fill } from './elementwise.js';
export { sum, mean } from './reduce.js';
export { cast } from './cast.js';
export { matmul, gemm } from './matmul.js';
export { attention, attentionDecode, writeKV } from './attention.js';
