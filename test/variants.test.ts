// Every variant of every kernel family in the op table (kernels/index.ts), forced one by one on the
// family's small awkward shapes and compared with the float64 reference (each family's trial
// check: every output element at these sizes), not only the variant the tuner would pick.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { beginScope, endScope } from '../runtime/tensor.js';
import { OPS } from '../kernels/index.js';
import { setupGpu } from './util.js';

const s = suite('variants');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

for (const op of OPS) {
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
