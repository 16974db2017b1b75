// All ops, and the one table that registers their backward rules with the autograd engine.
import { registerBackward } from '../runtime/autograd.js';
import * as elementwise from './elementwise.js';
import * as reduce from './reduce.js';
import * as matmul from './matmul.js';

registerBackward({
  ...elementwise.backward,
  ...reduce.backward,
  ...matmul.backward,
}, { addInto: elementwise.addInto, add: elementwise.add });

export { add, mul, scale, silu, addInto, fill } from './elementwise.js';
export { sum, mean } from './reduce.js';
export { matmul, gemm, setMatmulImpl } from './matmul.js';
