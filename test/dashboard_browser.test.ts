// The dashboard in a real headless browser, on real training runs: `sft.ts --dashboard` serves a page whose
// loss chart grows as steps are logged and which shows the run's arguments, model, adapter and GPU memory;
// the server stops with the run. Then `dashboard.ts` on the folder of that run and of a second one being
// trained overlays them live as two series, on an x axis of step, tokens or wall time; the screenshot of
// that page is left in test/artifacts/dashboard-two-runs.png. A log of another objective gets charts of its
// own fields.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Page } from 'puppeteer-core';
import { browserTest, artifact } from './browser.js';

const s = suite('dashboard_browser');
const root = join(import.meta.dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'dash-runs-'));
const MINUTES = 60_000;

/** A project command (tsx, its own process group) whose output is collected; `url` is the first dashboard URL it prints. */
function start(args: string[]): { child: ChildProcess; out: () => string; url: Promise<string>; exit: Promise<number | null> } {
  const child = spawn(join(root, 'node_modules', '.bin', 'tsx'), args, { cwd: root, detached: true, env: { ...process.env, MINIMIND_QUIET: '1' } });
  let out = '';
  const url = new Promise<string>((ok, bad) => {
    const seen = (d: Buffer) => {
      out += d.toString();
      const m = out.match(/\[dashboard\] (http:\/\/\S+\/)/);
      if (m) ok(m[1]);
    };
    child.stdout!.on('data', seen);
    child.stderr!.on('data', seen);
    child.on('close', () => bad(new Error(`exited without printing a dashboard URL:\n${out}`)));
  });
  url.catch(() => {}); // awaited by the test that needs it
  const exit = new Promise<number | null>((ok) => child.on('close', ok));
  return { child, out: () => out, url, exit };
}

function train(name: string, lr: string, steps: number, extra: string[] = []) {
  return start(['train/sft.ts', '--max_steps', String(steps), '--log_interval', '2', '--learning_rate', lr, '--samples', '0',
    '--save_dir', join(dir, name), '--checkpoint_dir', join(dir, 'ckpt', name), ...extra]);
}

/** A JavaScript expression's value in the page (this project's TypeScript has no DOM types). */
const inPage = <T>(page: Page, js: string) => page.evaluate(js) as Promise<T>;

/** Per dataset of the chart of `metric` (Chart.js's own data): its label, how many points, the last x. */
const series = (page: Page, metric: string) => inPage<{ label: string; n: number; lastX: number }[]>(page, `(() => {
  const canvas = document.querySelector('canvas[data-metric="${metric}"]'), chart = canvas && Chart.getChart(canvas);
  return chart ? chart.data.datasets.map((d) => ({ label: d.label, n: d.data.length, lastX: d.data.length ? d.data.at(-1).x : NaN })) : [];
})()`);

/** Waits until the smoothed loss series named `name` has more than `n` points; returns its count. */
async function growsPast(page: Page, name: string, n: number, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = (await series(page, 'loss')).find((d) => d.label.endsWith(name))?.n ?? 0;
    if (got > n) return got;
    if (Date.now() > deadline) assert.unreachable(`the loss series of ${name} stayed at ${got} points for ${ms / 1000} s`);
    await new Promise((ok) => setTimeout(ok, 250));
  }
}

const text = (page: Page) => inPage<string>(page, 'document.body.innerText');

browserTest(s, 'sft.ts --dashboard: the loss chart grows as steps are logged, the page shows the run\'s arguments, model, adapter and GPU memory, and the server stops with the run', async (browser) => {
  const run = train('lr3e-3', '3e-3', 24, ['--dashboard', '0', '--samples', '1']);
  try {
    const url = await run.url;
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(url);
    const first = await growsPast(page, 'lr3e-3/full_sft', 0, 4 * MINUTES);
    await growsPast(page, 'lr3e-3/full_sft', first, 2 * MINUTES);
    const live = await text(page);
    assert.match(live, 'learning_rate 0.003', 'the arguments');
    assert.match(live, 'max_steps 24');
    assert.match(live, /sft: 0\.66M parameters \(hidden 128, 2 layers\)/);
    assert.match(live, /adapter: \S/);
    assert.match(live, /GPU memory: [\d.]+ MiB in use, peak [\d.]+ MiB/);
    assert.match(live, /epoch 1\/1, step \d+\/1000 \(\d+% of the epoch, ETA/);
    const metrics = await inPage<string[]>(page, "[...document.querySelectorAll('canvas')].map((c) => c.dataset.metric)");
    for (const m of ['loss', 'logits_loss', 'aux_loss', 'lr', 'grad_norm', 'tokens_per_s']) assert.ok(metrics.includes(m), `a chart of ${m}: ${metrics}`);
    assert.is(await run.exit, 0, run.out());
    await page.waitForFunction("document.body.innerText.includes('finished: 24 steps')", { timeout: 2 * MINUTES });
    const done = await text(page);
    assert.match(done, /sample answers before training\nQ: .+\nA: /, 'the sample answer before training, shown open');
    assert.match(done, /sample answers after training \(\d+ of 20 right\)/, 'the built-in run\'s held-out questions after it');
    assert.is((await series(page, 'loss')).find((d) => d.label.endsWith('lr3e-3/full_sft'))?.n, 12, 'every logged step: 2, 4, ..., 24');
    const gone = await fetch(url).then(() => 'answered', (e: Error) => (e.cause as { code?: string })?.code);
    assert.is(gone, 'ECONNREFUSED', 'the server stopped with the run');
    const kinds = readFileSync(join(dir, 'lr3e-3', 'full_sft_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).kind ?? 'step');
    assert.equal([kinds[0], kinds[1], kinds.filter((k) => k === 'step').length], ['run', 'samples', 12], kinds.join());
    assert.equal(kinds.slice(-3), ['gpu', 'done', 'samples'], 'the last GPU memory, the end of training, the answers after it');
  } finally {
    if (run.child.exitCode === null) process.kill(-run.child.pid!, 'SIGKILL');
  }
});

browserTest(s, 'dashboard.ts on a folder: the finished run and one being trained overlay as two series, live; the x axis can be tokens or wall time', async (browser) => {
  assert.ok(existsSync(join(dir, 'lr3e-3', 'full_sft_log.jsonl')), 'the first run\'s log (the test before this one)');
  const dash = start(['train/dashboard.ts', dir, '--port', '0']);
  const run = train('lr1e-3', '1e-3', 30);
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(await dash.url);
    const first = await growsPast(page, 'lr1e-3/full_sft', 2, 4 * MINUTES);
    await growsPast(page, 'lr1e-3/full_sft', first, 2 * MINUTES);
    const named = (await series(page, 'loss')).filter((d) => !d.label.endsWith(' (raw)')).map((d) => d.label).sort();
    assert.equal(named, ['lr1e-3/full_sft', 'lr3e-3/full_sft'], 'two runs, two series (and their raw twins)');
    const cards = await inPage<string[]>(page, "[...document.querySelectorAll('.run h2')].map((h) => h.textContent)");
    assert.equal(cards, ['■ lr3e-3/full_sft', '■ lr1e-3/full_sft'], 'a card per run, in the order they appeared');
    await page.screenshot({ path: artifact('dashboard-two-runs.png'), fullPage: true });
    const a = readFileSync(join(dir, 'lr3e-3', 'full_sft_log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => !r.kind);
    for (const [mode, want] of [['time', a.at(-1).elapsed_s], ['tokens', a.at(-1).tokens_per_s * a.at(-1).elapsed_s], ['step', 24]] as const) {
      await page.select('#x', mode);
      const got = (await series(page, 'loss')).find((d) => d.label === 'lr3e-3/full_sft')!.lastX;
      assert.ok(Math.abs(got - want) <= 1e-9 * want, `x = ${mode}: the first run ends at ${got}, its log says ${want}`);
    }
    assert.is(await run.exit, 0, run.out());
  } finally {
    for (const p of [run, dash]) if (p.child.exitCode === null) process.kill(-p.child.pid!, 'SIGKILL');
  }
});

browserTest(s, 'a log of another objective: a chart for every numeric field its steps carry (dpo_loss, reward_margin, loss_scale), the run line\'s own fields shown, a truncated last line skipped', async (browser) => {
  const logs = mkdtempSync(join(tmpdir(), 'dash-dpo-'));
  const line = (o: object) => JSON.stringify(o) + '\n';
  const steps = [1, 2, 3].map((n) => line({ epoch: 1, step: n, iters: 3, loss: 1 / n, lr: 1e-5, grad_norm: n === 2 ? null : 0.5, tokens_per_s: 50,
    elapsed_s: n, loss_scale: 65536, dpo_loss: 0.7 / n, reward_margin: 0.1 * n }));
  writeFileSync(join(logs, 'dpo_log.jsonl'), line({ kind: 'run', mode: 'dpo', args: { beta: 0.1 }, adapter: 'test adapter', model: { hidden_size: 64, num_hidden_layers: 1 },
    parameters: 1e5, samples: 6, steps_per_epoch: 3, first_step: 0, last_step: 3, reference: 'full_sft_64.pth' }) + steps.join('') + 'not json\n' + '{"epoch":1,"st');
  const dash = start(['train/dashboard.ts', join(logs, 'dpo_log.jsonl'), '--port', '0']);
  try {
    const page = await browser.newPage();
    await page.goto(await dash.url);
    await page.waitForFunction("document.querySelectorAll('canvas').length >= 7", { timeout: 30_000 });
    const metrics = await inPage<string[]>(page, "[...document.querySelectorAll('canvas')].map((c) => c.dataset.metric)");
    assert.equal(metrics, ['loss', 'dpo_loss', 'reward_margin', 'lr', 'grad_norm', 'tokens_per_s', 'loss_scale'], 'the loss, the task\'s parts, then the loop\'s own');
    assert.equal((await series(page, 'grad_norm')).map((d) => d.n), [2, 2], 'a null gradient norm (no optimizer step) is no point');
    const shown = await text(page);
    assert.match(shown, 'reference: "full_sft_64.pth"');
    assert.match(shown, 'beta 0.1');
    assert.match(shown, '1 log lines skipped (not JSON)', 'the bad line; the truncated last one is not a line yet');
    assert.match(shown, 'run 3/3 steps');
  } finally {
    if (dash.child.exitCode === null) process.kill(-dash.child.pid!, 'SIGKILL');
  }
});

s.run();
