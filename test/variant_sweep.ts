// The variant sweep of test/variants.test.ts and test/variants_matmul.test.ts (two files, so that two workers share
// the sweep's shader compiles): every variant of every kernel family of the ops given (kernels/index.ts), forced one
// by one on the family's small awkward shapes and compared with the float64 reference (each family's trial check:
// every output element at these sizes), not only the variant the tuner would pick.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { beginScope, endScope } from '../runtime/tensor.js';
import type { Op } from '../kernels/op.js';
import { setupGpu } from './util.js';

export function sweepSuite(name: string, ops: Op[]): void {
  const s = suite(name);
  s.before(setupGpu);
  s.before.each(() => beginScope());
  s.after.each(() => endScope());
  for (const op of ops) {
    for (const { tunable, shapes } of op.sweeps?.() ?? []) {
      for (const shape of shapes) {
        s(`every ${tunable.name} variant matches float64 at ${JSON.stringify(shape)}`, async () => {
          const variants = tunable.variants(shape);
          assert.ok(variants.length > 0, 'no variant runs on this adapter');
          assert.ok(variants.some((v) => JSON.stringify(v) === JSON.stringify(tunable.fallback(shape))), 'the fallback is one of the variants');
          const trial = tunable.trial(shape);
          const bad: string[] = [];
          try {
            for (const v of variants) {
              const why = await trial.check(v).catch((e: Error) => `threw: ${e.message.split('\n')[0]}`);
              if (why) bad.push(`${tunable.label(v)}: ${why}`);
            }
          } finally {
            trial.dispose();
          }
          assert.equal(bad, [], `${bad.length} of ${variants.length} variants wrong`);
        });
      }
    }
  }
  s.run();
}
