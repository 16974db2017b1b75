// Every matmul variant (kernels/matmul_variants.ts) against float64 on small awkward shapes: test/variant_sweep.ts.
import { OPS } from '../kernels/index.js';
import { sweepSuite } from './variant_sweep.js';

sweepSuite('variants_matmul', OPS.filter((op) => op.name === 'matmul'));
