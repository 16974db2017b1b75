// Every variant of every kernel family in the op table (kernels/index.ts) but matmul's (test/variants_matmul.test.ts)
// against float64 on small awkward shapes: test/variant_sweep.ts.
import { OPS } from '../kernels/index.js';
import { sweepSuite } from './variant_sweep.js';

sweepSuite('variants', OPS.filter((op) => op.name !== 'matmul'));
