// The tuner: it picks the faster of two variants of very different cost, persists the choice and
// reuses it, ignores (and rewrites) a corrupt or foreign cache file, drops a variant that fails to
// compile or gives a wrong answer, and honours its modes. Synthetic kernel families, own cache files.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { defineKernel, launch, plan, counters, resetCounters } from '../runtime/kernel.js';
import { Tuner, modeFromEnv, recordNow, type Tunable } from '../runtime/tuner.js';
import { MiniMind } from '../model/minimind.js';
import { preset } from '../model/config.js';
import { backward } from '../runtime/autograd.js';
import { setupGpu } from './util.js';

const s = suite('tuner');
s.before(setupGpu);
s.before.each(() => beginScope());
s.after.each(() => endScope());

/** reps × 64 multiply-adds per element (big × 64 where n > N/4: a problem larger than the tuning
 *  shape below), then y = 2·i (+1 when wrong); broken does not compile. */
interface Busy { reps: number; big?: number; wrong?: boolean; broken?: boolean }
const N = 1 << 16;
const busy = defineKernel<Busy>({
  name: 'tuner_busy', params: [['n', 'u32']], buffers: [['y', 'rw', 'f32']], workgroup: 64,
  wgsl: (v, entry) => `${entry} {
  let i = wid.x * 64u + lid.x;
  if (i >= p.n) { return; }
  var a = f32(i);
  let reps = select(${v.reps}u, ${v.big ?? v.reps}u, p.n > ${N / 4}u);
  for (var r = 0u; r < reps; r++) { for (var k = 0u; k < 64u; k++) { a = a * 0.999 + 1.0; } }
  y[i] = 2.0 * f32(i) + select(0.0, a, a == -1.0)${v.wrong ? ' + 1.0' : ''}${v.broken ? ' + undefined_name' : ''};
}`,
});

interface Family extends Tunable<{ n: number }, Busy> {
  /** Runs per variant label (checks' runs included), and the trials made. */
  runs: Map<string, number>;
  trialsMade: number;
}

/** A family whose variants are `list`, the first the fallback. `quarter`: the rounds time n/4 and
 *  the duel n (`pair`: on one set of inputs, Tunable.trials). */
function family(list: Busy[], name = 'tuner_busy', o: { quarter?: boolean; pair?: boolean } = {}): Family {
  const runs = new Map<string, number>();
  const trialOf = (sh: { n: number }, y = Tensor.empty([sh.n]).keep()) => {
    fam.trialsMade++;
    const run = (v: Busy) => {
      runs.set(JSON.stringify(v), (runs.get(JSON.stringify(v)) ?? 0) + 1);
      launch(busy, { params: { n: sh.n }, buffers: [y.buffer], workgroups: Math.ceil(sh.n / 64), variant: v });
    };
    return {
      run,
      async check(v: Busy, exec = recordNow) {
        await exec(() => run(v));
        const got = await y.readF32();
        for (const i of [0, 1, sh.n - 1]) if (got[i] !== 2 * i) return `y[${i}] = ${got[i]}`;
        return null;
      },
      dispose: () => y.dispose(),
    };
  };
  const fam: Family = {
    name, key: (sh) => `n${sh.n}`, variants: () => list, fallback: () => list[0], label: (v) => JSON.stringify(v),
    trial: (sh) => trialOf(sh), runs, trialsMade: 0,
    ...(o.quarter ? { tuningShape: (sh: { n: number }) => ({ n: sh.n / 4 }), cost: (sh: { n: number }) => sh.n } : {}),
    ...(o.pair ? {
      trials(tuning: { n: number }, duel: { n: number }) {
        const y = Tensor.empty([duel.n]).keep();
        const noop = () => {};
        return { round: { ...trialOf(tuning, y), dispose: noop }, duel: { ...trialOf(duel, y), dispose: noop }, dispose: () => y.dispose() };
      },
    } : {}),
  };
  return fam;
}

const dir = () => mkdtempSync(join(tmpdir(), 'tuner-'));
const quiet = (lines: string[]) => (l: string) => { lines.push(l); };

s('tuning picks the faster of two variants of very different cost (the slow one is the fallback)', async () => {
  const file = join(dir(), 'c.json');
  const t = new Tuner({ mode: 'on', file, warn: quiet([]) });
  const fam = family([{ reps: 256 }, { reps: 1 }]);
  assert.equal(t.pick(fam, { n: N }), { reps: 256 }, 'before tuning: the fallback');
  assert.is(t.pendingCount, 1);
  const [c] = await t.tunePending();
  assert.equal(c.variant, { reps: 1 });
  const [slow, fast] = c.timings.map((x) => x.ms!);
  assert.ok(slow > 4 * fast, `timings ${slow} vs ${fast} ms`);
  assert.equal(t.pick(fam, { n: N }), { reps: 1 }, 'after tuning');
  assert.is(t.pendingCount, 0);
});

s('the choice persists: a new tuner on the same file reuses it without timing', async () => {
  const file = join(dir(), 'c.json');
  const fam = family([{ reps: 256 }, { reps: 1 }]);
  await new Tuner({ mode: 'on', file, warn: quiet([]) }).tune(fam, { n: N });
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(saved.entries['tuner_busy|n65536'].variant, { reps: 1 });
  const again = new Tuner({ mode: 'on', file, warn: quiet([]) });
  assert.equal(again.pick(fam, { n: N }), { reps: 1 });
  assert.is(again.pendingCount, 0, 'nothing left to tune');
  assert.is((await again.choose(fam, { n: N })).source, 'cache');
  // Off: still the cached choice; force: the file is ignored and the shape tuned again.
  assert.equal(new Tuner({ mode: 'off', file, warn: quiet([]) }).pick(fam, { n: N }), { reps: 1 });
  const forced = new Tuner({ mode: 'force', file, warn: quiet([]) });
  assert.equal(forced.pick(fam, { n: N }), { reps: 256 });
  assert.is(forced.pendingCount, 1);
});

s('off: the fallback, nothing queued, nothing timed or written', async () => {
  const file = join(dir(), 'c.json');
  const t = new Tuner({ mode: 'off', file, warn: quiet([]) });
  const fam = family([{ reps: 256 }, { reps: 1 }]);
  assert.equal(t.pick(fam, { n: N }), { reps: 256 });
  assert.is(t.pendingCount, 0);
  assert.is((await t.choose(fam, { n: N })).source, 'fallback');
  assert.not.ok(existsSync(file));
});

s('a corrupt or foreign cache file is ignored with a warning and rewritten', async () => {
  const fam = family([{ reps: 256 }, { reps: 1 }]);
  for (const content of ['{ not json', JSON.stringify({ format: 'minimind-ts tuning cache', version: 1, adapter: 'some other GPU', entries: { 'tuner_busy|n65536': { variant: { reps: 256 }, label: 'x', timings: [] } } })]) {
    const file = join(dir(), 'c.json');
    writeFileSync(file, content);
    const warnings: string[] = [];
    const t = new Tuner({ mode: 'on', file, warn: quiet(warnings) });
    assert.is(warnings.length, 1, 'one warning');
    assert.match(warnings[0], /ignoring the tuning cache .*(not JSON|another adapter).*rewritten/);
    assert.equal(t.pick(fam, { n: N }), { reps: 256 }, 'the foreign entry is not used');
    await t.tunePending();
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.equal(saved.entries['tuner_busy|n65536'].variant, { reps: 1 });
  }
});

s('a cached variant that no longer exists is ignored', async () => {
  const file = join(dir(), 'c.json');
  await new Tuner({ mode: 'on', file, warn: quiet([]) }).tune(family([{ reps: 256 }, { reps: 1 }]), { n: N });
  const t = new Tuner({ mode: 'on', file, warn: quiet([]) });
  assert.equal(t.pick(family([{ reps: 256 }, { reps: 2 }]), { n: N }), { reps: 256 });
  assert.is(t.pendingCount, 1);
});

s('a variant that fails to compile or gives a wrong answer is dropped with a warning and never chosen', async () => {
  const warnings: string[] = [];
  const t = new Tuner({ mode: 'on', file: null, warn: quiet(warnings) });
  const c = await t.tune(family([{ reps: 64 }, { reps: 1, broken: true }, { reps: 1, wrong: true }], 'tuner_bad'), { n: N });
  assert.equal(c.variant, { reps: 64 });
  assert.is(warnings.length, 2, warnings.join('\n'));
  assert.match(warnings.join('\n'), /dropped: .*compile/);
  assert.match(warnings.join('\n'), /dropped: wrong result: y\[0\] = 1/);
  assert.equal(c.timings.filter((x) => x.dropped).length, 2);
});

/** Creates the pipelines of vs (a launch on one element each), so that a run of them creates none. */
async function precompile(vs: Busy[]): Promise<void> {
  const y = Tensor.empty([1]);
  for (const v of vs) launch(busy, { params: { n: 1 }, buffers: [y.buffer], workgroups: 1, variant: v });
  await y.readF32();
}

s('a variant 1.3× behind the best is timed once, by its check\'s run, and the fastest still wins', async () => {
  const fam = family([{ reps: 256 }, { reps: 1 }, { reps: 64 }, { reps: 128 }], 'tuner_early');
  await precompile([{ reps: 1 }, { reps: 64 }, { reps: 128 }]); // exact run counts: no run creates a pipeline
  const c = await new Tuner({ mode: 'on', file: null, warn: quiet([]) }).tune(fam, { n: N });
  assert.equal(c.variant, { reps: 1 });
  assert.is(fam.runs.get('{"reps":64}'), 1);
  assert.is(fam.runs.get('{"reps":128}'), 1);
  assert.ok(c.timings.find((x) => x.label === '{"reps":64}')?.ms, 'its one run is its timing');
  // Two runs in the rounds (the check's first), two in the duel with the fallback on the same trial.
  assert.is(fam.runs.get('{"reps":1}'), 4);
  assert.is(fam.trialsMade, 1);
});

s('the duel runs on the inputs of Tunable.trials, and a winner 1.3× behind after its first pair keeps the fallback', async () => {
  // Fast on the rounds' quarter problem, 16× slower than the fallback on the whole one.
  const fam = family([{ reps: 16 }, { reps: 1, big: 256 }], 'tuner_duel_lost', { quarter: true, pair: true });
  await precompile([{ reps: 16 }, { reps: 1, big: 256 }]); // exact run counts: no run creates a pipeline
  const c = await new Tuner({ mode: 'on', file: null, warn: quiet([]) }).tune(fam, { n: N });
  assert.equal(c.variant, { reps: 16 });
  assert.is(fam.runs.get('{"reps":1,"big":256}'), 3, 'two in the rounds, one in the duel');
  assert.is(fam.runs.get('{"reps":16}'), 4);
  assert.is(fam.trialsMade, 2, 'the pair only');
  assert.match(c.timings.map((x) => x.label).join(', '), /at the real shape/);
});

s('without Tunable.trials, a duel on a larger problem makes a trial and warms it up with one run of the fallback', async () => {
  const fam = family([{ reps: 16 }, { reps: 1 }], 'tuner_duel_won', { quarter: true });
  await precompile([{ reps: 16 }, { reps: 1 }]);
  const c = await new Tuner({ mode: 'on', file: null, warn: quiet([]) }).tune(fam, { n: N });
  assert.equal(c.variant, { reps: 1 });
  assert.is(fam.trialsMade, 2);
  assert.is(fam.runs.get('{"reps":1}'), 4);
  assert.is(fam.runs.get('{"reps":16}'), 6, 'three in the rounds, the warm-up, two in the duel');
});

s('a slow first run that created a pipeline is timed again, as a compile at its first dispatch would be', async () => {
  // The check of {reps: 1} also runs a variant never compiled before ({reps: 255}) within its timing.
  const withSlowCheck = (fam: Family, slow: Busy, precompile: boolean) => {
    const inner = fam.trial;
    fam.trial = (sh) => {
      const t = inner(sh);
      if (precompile) t.run(slow);
      return { ...t, check: (v, exec) => t.check(v, exec && ((record) => exec(() => { record(); if (v.reps === 1) t.run(slow); }))) };
    };
    return fam;
  };
  const fresh = withSlowCheck(family([{ reps: 64 }, { reps: 1 }], 'tuner_fresh'), { reps: 255 }, false);
  await precompile([{ reps: 64 }, { reps: 1 }]);
  const c = await new Tuner({ mode: 'on', file: null, warn: quiet([]) }).tune(fresh, { n: N });
  assert.equal(c.variant, { reps: 1 });
  assert.is(fresh.runs.get('{"reps":1}'), 5, 'the check, two timed runs, two in the duel');
  // The same slow check with that pipeline made before: a slow variant, timed once and dropped.
  const old = withSlowCheck(family([{ reps: 64 }, { reps: 1 }], 'tuner_not_fresh'), { reps: 254 }, true);
  const d = await new Tuner({ mode: 'on', file: null, warn: quiet([]) }).tune(old, { n: N });
  assert.equal(d.variant, { reps: 64 });
  assert.is(old.runs.get('{"reps":1}'), 1);
});

s('a trial whose check does not run through exec has its variant dropped', async () => {
  const fam = family([{ reps: 4 }], 'tuner_untimed');
  const inner = fam.trial;
  fam.trial = (sh) => { const t = inner(sh); return { ...t, check: (v) => t.check(v) }; };
  const warnings: string[] = [];
  const c = await new Tuner({ mode: 'on', file: null, warn: quiet(warnings) }).tune(fam, { n: N });
  assert.is(c.source, 'fallback');
  assert.match(warnings.join('\n'), /without running it through exec/);
});

s('MINIMIND_TUNE accepts on, off, force and names anything else', () => {
  assert.is(modeFromEnv(''), 'on');
  assert.is(modeFromEnv('on'), 'on');
  assert.is(modeFromEnv('off'), 'off');
  assert.is(modeFromEnv('force'), 'force');
  assert.throws(() => modeFromEnv('fast'), /MINIMIND_TUNE=fast: expected on \(default\), off or force/);
});

s('planning a training step launches nothing', async () => {
  const model = new MiniMind(preset('tiny'), 0);
  try {
    const [B, T] = [2, 16];
    const ids = Int32Array.from({ length: B * T }, (_, i) => i % 100);
    resetCounters();
    await plan(async () => {
      const { loss } = await model.loss(Tensor.fromArray(ids, [B, T], 'i32'), Tensor.fromArray(ids, [B, T], 'i32'), ids);
      backward(loss);
    });
    assert.is(counters().dispatches, 0);
    model.store.zeroGrad();
  } finally {
    model.dispose();
  }
});

s.run();
