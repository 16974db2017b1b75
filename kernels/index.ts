// All ops, and the one table that registers their backward rules with the autograd engine.
import { registerBackward } from '../runtime/autograd.js';
import * as elementwise from './elementwise.js';
import * as reduce from './reduce.js';
import * as matmul from './matmul.js';
import * as rmsnorm from './rmsnorm.js';
import * as addRmsnorm from './add_rmsnorm.js';
import * as rope from './rope.js';
import * as qkvRope from './qkv_rope.js';
import * as swiglu from './swiglu.js';
import * as embedding from './embedding.js';
import * as crossEntropy from './cross_entropy.js';
import * as moe from './moe.js';
import * as attention from './attention.js';

registerBackward({
  ...elementwise.backward,
  ...reduce.backward,
  ...matmul.backward,
  ...rmsnorm.backward,
  ...addRmsnorm.backward,
  ...rope.backward,
  ...qkvRope.backward,
  ...swiglu.backward,
  ...embedding.backward,
  ...crossEntropy.backward,
  ...moe.backward,
  ...attention.backward,
}, { addInto: elementwise.addInto, add: elementwise.add });

export { add, mul, scale, silu, addInto, fill } from './elementwise.js';
export { sum, mean } from './reduce.js';
export { matmul, gemm, setMatmulImpl } from './matmul.js';
export { attention, attentionDecode, writeKV, setAttentionImpl, setAttentionConfig } from './attention.js';
