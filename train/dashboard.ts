// The training dashboard for runs finished or still going: `npx tsx train/dashboard.ts LOG... [--port 6006]`,
// where each LOG is a run log (--log_file; the built-in run's is out/full_sft_log.jsonl) or a folder, every
// run log under which shows (also ones that appear later). The runs overlay on the same charts; logs still
// being written update live. A trainer's --dashboard serves the same page for its own run.
import { existsSync } from 'node:fs';
import { parseFlags, flagHelp, type FlagTable } from '../model/cli_flags.js';
import { serveDashboard } from './dashboard_server.js';

const FLAGS = {
  port: { kind: 'number', def: 6006, help: 'port to serve on (0 = any free one)' },
  host: { kind: 'string', def: '127.0.0.1', help: 'address to bind (0.0.0.0 shows the logs to the whole network)' },
} satisfies FlagTable;

try {
  const argv = process.argv.slice(2), flags: string[] = [], logs: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('-')) logs.push(argv[i]);
    else flags.push(...(/^--(port|host)$/.test(argv[i]) ? argv.slice(i, ++i + 1) : [argv[i]]));
  }
  const p = parseFlags(FLAGS, flags);
  const usage = 'usage: npx tsx train/dashboard.ts LOG... [flags]  (LOG: a run log, or a folder of them)';
  if (p.help) console.log(flagHelp(usage, FLAGS));
  else {
    if (!logs.length) throw new Error(`name at least one LOG\n${usage}`);
    const missing = logs.find((l) => !existsSync(l));
    if (missing) throw new Error(`${missing}: no such log file or folder`);
    const d = await serveDashboard({ logs, host: p.values.host, port: p.values.port, flag: `--port ${p.values.port}` });
    console.log(`[dashboard] ${d.url} (${logs.join(', ')}; Ctrl-C stops)`);
    process.once('SIGINT', () => void d.close());
    process.once('SIGTERM', () => void d.close());
  }
} catch (e) {
  console.error(`error: ${(e as Error).message}`);
  process.exitCode = 1;
}
