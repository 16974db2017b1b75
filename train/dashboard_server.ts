// The dashboard's HTTP server (node:http; two routes and a stream need no framework): the page
// (train/dashboard.html), Chart.js from node_modules, and the logs it was given, streamed to the page as
// server-sent events. The routes are a fixed table, so no part of a URL reaches the file system. Bound to
// 127.0.0.1 unless told otherwise; there it also refuses a Host header naming another machine (a web page
// elsewhere reaching it by DNS rebinding).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { LogTail } from './log_tail.js';
import { isStep, parseLines } from './run_log.js';
import type { TrainArgs } from './args.js';

export interface DashboardOptions {
  /** Log files (need not exist yet), or folders whose logs (any *.jsonl whose first line is a run log's) all show. */
  logs: string[];
  host?: string;
  port?: number;
  /** How often the logs are read for new lines, ms. */
  pollMs?: number;
  /** What a port in use is blamed on, e.g. `--dashboard 6006`. */
  flag?: string;
}

export interface Dashboard {
  url: string;
  /** Reads the logs once more, sends what is new, and stops. */
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

interface Run { id: number; name: string; tail: LogTail }

export async function serveDashboard(o: DashboardOptions): Promise<Dashboard> {
  const host = o.host ?? '127.0.0.1', port = o.port ?? 6006;
  const page = readFileSync(join(import.meta.dirname, 'dashboard.html'));
  const chartJs = readFileSync(new URL('chart.umd.min.js', import.meta.resolve('chart.js')));
  const assets: Record<string, [string, Buffer]> = {
    '/': ['text/html; charset=utf-8', page],
    '/chart.js': ['text/javascript; charset=utf-8', chartJs],
  };
  const runs = new Map<string, Run>();
  const notLogs = new Set<string>(); // .jsonl files in a folder whose first line is not a run log's (training data)
  const clients = new Set<ServerResponse>();
  const files = o.logs.map((p) => resolve(p));

  const message = (r: Run, reset: boolean, records: Record<string, unknown>[]) =>
    `data: ${JSON.stringify({ id: r.id, name: r.name, path: r.tail.path, reset, skipped: r.tail.skipped, records })}\n\n`;

  function poll(): void {
    for (const f of files) {
      const folder = isDir(f);
      const found = folder ? logsUnder(f).filter((p) => !runs.has(p) && !notLogs.has(p) && isRunLog(p, notLogs)) : [f];
      for (const p of found) if (!runs.has(p)) runs.set(p, { id: runs.size, name: runName(p, folder ? f : process.cwd()), tail: new LogTail(p) });
    }
    for (const r of runs.values()) {
      let u;
      try { u = r.tail.poll(); } catch { continue; } // removed between looks: the next poll sees it gone
      if (!u) continue;
      const m = message(r, u.reset, u.records);
      for (const c of clients) c.write(m);
    }
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const hostname = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (LOOPBACK.has(host === '::1' ? '[::1]' : host) && !LOOPBACK.has(hostname)) return text(res, 403, `Host ${hostname} is not this machine`);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'only GET');
    const path = (req.url ?? '').split('?')[0];
    if (path === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
      for (const r of runs.values()) res.write(message(r, true, r.tail.records));
      clients.add(res);
      res.on('close', () => clients.delete(res));
      return;
    }
    const asset = assets[path];
    if (!asset) return text(res, 404, 'not found');
    res.writeHead(200, { 'content-type': asset[0], 'content-length': asset[1].length, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    res.end(req.method === 'HEAD' ? undefined : asset[1]);
  }

  poll();
  const timer = setInterval(poll, o.pollMs ?? 1000);
  timer.unref();
  const server = createServer(handle);
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((ok, bad) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      clearInterval(timer);
      bad(e.code === 'EADDRINUSE'
        ? new Error(`${o.flag ?? '--port'}: port ${port} on ${host} is in use (another dashboard or server?); pick another port, or 0 for any free one`)
        : e);
    });
    server.listen(port, host, () => ok());
  });
  const a = server.address() as AddressInfo;
  return {
    url: `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`,
    close: () => new Promise((ok) => {
      clearInterval(timer);
      poll();
      for (const c of clients) c.end();
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(body);
}

function isDir(p: string): boolean {
  try { return statSync(p).isDirectory(); } catch { return false; }
}

/** The .jsonl files under `dir`, leaving out node_modules and hidden folders. */
function logsUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name)).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name.startsWith('.') ? [] : logsUnder(p);
    return e.isFile() && e.name.endsWith('.jsonl') ? [p] : [];
  });
}

/** Whether the file's first line is a run log's (a run or step line); false ones go into `notLogs`, and a
 *  file whose first line is not complete yet is looked at again on the next poll. */
function isRunLog(path: string, notLogs: Set<string>): boolean {
  const buf = Buffer.alloc(1 << 16);
  let n: number;
  try {
    const fd = openSync(path, 'r');
    try { n = readSync(fd, buf, 0, buf.length, 0); } finally { closeSync(fd); }
  } catch { return false; }
  const end = buf.subarray(0, n).indexOf(0x0a);
  if (end < 0 && n < buf.length) return false;
  const first = parseLines(buf.subarray(0, Math.max(end, 0)).toString('utf8')).records[0];
  const yes = !!first && (first.kind === 'run' || isStep(first));
  if (!yes) notLogs.add(path);
  return yes;
}

/** out/lr3e-3/full_sft_log.jsonl → "lr3e-3/full_sft" relative to `from` (the folder given, or the working
 *  folder for a file given), the whole path when outside it. */
function runName(path: string, from: string): string {
  const rel = relative(from, path);
  return (rel.startsWith('..') ? path : rel).replace(/(_log)?\.jsonl$/, '');
}


/** A trainer's --dashboard: its own log served while it trains (undefined without the flag). */
export async function startDashboard(args: TrainArgs): Promise<Dashboard | undefined> {
  if (args.dashboard === '') return undefined;
  const d = await serveDashboard({ logs: [args.log_file], host: args.dashboard_host, port: Number(args.dashboard), flag: `--dashboard ${args.dashboard}` });
  console.log(`[dashboard] ${d.url} shows this run live (${resolve(args.log_file)}; it stops with the run, then: npx tsx train/dashboard.ts ${args.log_file})`);
  return d;
}
