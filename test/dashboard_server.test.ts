// The dashboard's server without a browser: only the page, its script and the given logs are served (a URL
// path never reaches the file system), a log line that is not JSON is skipped and a line still being written
// waits for its newline, logs grow, are replaced and appear in folders live, a port in use is a clear error.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { spawnSync } from 'node:child_process';
import { serveDashboard, type Dashboard } from '../train/dashboard_server.js';

const s = suite('dashboard_server');
const root = join(import.meta.dirname, '..');
const line = (o: object) => JSON.stringify(o) + '\n';
const step = (n: number, loss: number) => line({ epoch: 1, step: n, iters: 10, loss, lr: 1e-3, grad_norm: 1, tokens_per_s: 100, elapsed_s: n, dpo_loss: loss / 2 });

/** GET `path` sent as written (no normalising of `..` or escapes, as a hand-made request would). */
function get(url: string, path: string, host?: string): Promise<{ status: number; body: string }> {
  const u = new URL(url);
  return new Promise((ok, bad) => {
    const req = request({ host: u.hostname, port: u.port, path, headers: host ? { host } : {} }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', bad);
    req.end();
  });
}

interface Message { id: number; name: string; reset: boolean; skipped: number; records: Record<string, unknown>[] }

/** The server-sent events of /events, one message per next() (fails after `ms`). */
async function events(url: string): Promise<{ next(ms?: number): Promise<Message>; close(): void }> {
  const ctl = new AbortController();
  const res = await fetch(new URL('/events', url), { signal: ctl.signal });
  const reader = res.body!.getReader();
  let buf = '';
  return {
    async next(ms = 5000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const cut = buf.indexOf('\n\n');
        if (cut >= 0) {
          const frame = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          return JSON.parse(frame.replace(/^data: /, '')) as Message;
        }
        const chunk = await Promise.race([reader.read(), new Promise<never>((_, bad) => setTimeout(() => bad(new Error(`no event in ${ms} ms`)), deadline - Date.now()))]);
        if (chunk.done) throw new Error('the event stream ended');
        buf += new TextDecoder().decode(chunk.value);
      }
    },
    close: () => ctl.abort(),
  };
}

let dash: Dashboard | undefined;
s.after.each(async () => { await dash?.close(); dash = undefined; });

s('only the page and Chart.js are served: traversal, encoded or not, the log\'s own path and source files get 404', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dash-'));
  const log = join(dir, 'run_log.jsonl');
  writeFileSync(log, step(1, 5));
  dash = await serveDashboard({ logs: [log], port: 0, pollMs: 50 });
  const page = await get(dash.url, '/');
  assert.is(page.status, 200);
  assert.match(page.body, '<script src="/chart.js">');
  const chart = await get(dash.url, '/chart.js');
  assert.is(chart.status, 200);
  assert.match(chart.body, /Chart\.js v4\.\d+\.\d+/, 'Chart.js from node_modules');
  for (const path of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2f..%2fetc%2fpasswd', '/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
    '/chart.js/../../../../etc/passwd', '//etc/passwd', '/events/../../../etc/passwd', '/..\\..\\etc\\passwd', log, `/${log}`,
    '/dashboard.html', '/train/dashboard_server.ts', '/node_modules/chart.js/package.json', '/package.json']) {
    const r = await get(dash.url, path);
    assert.is(r.status, 404, path);
    assert.not.match(r.body, 'root:', path);
  }
  assert.is((await get(dash.url, '/', 'evil.example:80')).status, 403, 'a Host that is not this machine (DNS rebinding)');
  assert.is((await get(dash.url, '/', `localhost:${new URL(dash.url).port}`)).status, 200);
});

s('a line that is not JSON is skipped, a truncated last line waits for its newline, and appended lines arrive live', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dash-'));
  const log = join(dir, 'full_sft_log.jsonl');
  writeFileSync(log, line({ kind: 'run', mode: 'sft', args: { learning_rate: 2e-3 } }) + step(1, 5) + 'not json {\n' + step(2, 4) + '[1,2]\n' + '{"epoch":1,"st');
  dash = await serveDashboard({ logs: [log], port: 0, pollMs: 50 });
  const ev = await events(dash.url);
  const first = await ev.next();
  assert.is(first.reset, true);
  assert.ok(first.name.endsWith('full_sft'), first.name);
  assert.equal(first.records.map((r) => r.kind ?? r.step), ['run', 1, 2]);
  assert.is(first.skipped, 2, 'the non-JSON line and the array');
  appendFileSync(log, 'ep":1,"step":3,"iters":10,"loss":3,"elapsed_s":3}\n');
  const more = await ev.next();
  assert.is(more.reset, false);
  assert.equal(more.records.map((r) => r.step), [3], 'the line, once whole');
  appendFileSync(log, '\u0000garbage\n' + step(4, 2));
  const after = await ev.next();
  assert.equal([after.records.map((r) => r.step), after.skipped], [[4], 3]);
  assert.is((await get(dash.url, '/')).status, 200, 'still serving');
  ev.close();
});

s('a replaced log starts over; a folder shows its run logs (also new ones), not its data files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dash-'));
  const a = join(dir, 'a_log.jsonl');
  writeFileSync(a, step(1, 5) + step(2, 4));
  writeFileSync(join(dir, 'sft_data.jsonl'), line({ conversations: [{ role: 'user', content: 'hi' }] }));
  dash = await serveDashboard({ logs: [dir], port: 0, pollMs: 50 });
  const ev = await events(dash.url);
  const m = await ev.next();
  assert.equal([m.name.endsWith('a'), m.records.length], [true, 2]);
  rmSync(a);
  writeFileSync(a, step(1, 9) + step(2, 8) + step(3, 7)); // a new run with the same log, longer than the old one
  let r = await ev.next();
  while (r.records.length === 0) r = await ev.next(); // the removal may be seen on its own
  assert.equal([r.reset, r.records.map((x) => x.loss)], [true, [9, 8, 7]]);
  writeFileSync(join(dir, 'b_log.jsonl'), step(1, 6));
  const b = await ev.next();
  assert.equal([b.id, b.name.endsWith('b'), b.records.length], [1, true, 1]);
  ev.close();
});

s('a port in use is a clear error from dashboard.ts and from sft.ts --dashboard (before it trains), which exit 1', async () => {
  const busy = createServer();
  await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
  const port = (busy.address() as { port: number }).port;
  try {
    const err = await serveDashboard({ logs: [], port, flag: `--dashboard ${port}` }).then(() => undefined, (e: Error) => e.message);
    assert.is(err, `--dashboard ${port}: port ${port} on 127.0.0.1 is in use (another dashboard or server?); pick another port, or 0 for any free one`);
    const dir = mkdtempSync(join(tmpdir(), 'dash-'));
    const cli = spawnSync('npx', ['tsx', 'train/dashboard.ts', dir, '--port', String(port)], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    assert.is(cli.status, 1, cli.stdout + cli.stderr);
    assert.match(cli.stderr, `error: --port ${port}: port ${port} on 127.0.0.1 is in use (another dashboard or server?); pick another port, or 0 for any free one`);
    const sft = spawnSync('npx', ['tsx', 'train/sft.ts', '--dashboard', String(port), '--save_dir', dir, '--checkpoint_dir', dir],
      { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, MINIMIND_QUIET: '1' } });
    assert.is(sft.status, 1, sft.stdout + sft.stderr);
    assert.match(sft.stderr, `error: --dashboard ${port}: port ${port} on 127.0.0.1 is in use`);
    assert.not.match(sft.stdout, 'Epoch:', 'it did not train');
  } finally {
    busy.close();
  }
});

s.run();
