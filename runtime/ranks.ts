// Data-parallel ranks as worker threads of one process (why threads, not processes: README "Data
// parallel"): startRanks() is the launcher's side, rankMain() a rank's. Each rank opens its own WebGPU
// device in its thread (runtime/device.ts keeps one per thread) and meets the others in shared memory
// (runtime/host_group.ts). The launcher hands out the shared areas, and stops every rank when one fails:
// it throws, its thread dies, or it is terminated; the error it reports is that rank's.
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { HostGroup, abortGroup, controlBlock, requestStop, sharedArea, RankAborted, RankTimeout, type SharedArea } from './host_group.js';

/** What a rank's thread is started with. */
export interface RankInit<D> { rank: number; world: number; control: SharedArrayBuffer; timeoutMs: number; data: D }

type FromRank<R> =
  | { type: 'share'; floats: number; flags: number }
  | { type: 'done'; result: R }
  /** aborted: it stopped because another rank failed; timeout: its message names the ranks it waited for. */
  | { type: 'error'; message: string; aborted: boolean; timeout: boolean };

export interface RankLaunch<R> {
  /** Every rank's result in rank order; rejects with the first failed rank's error once all have stopped. */
  done: Promise<R[]>;
  /** The ranks' threads (a test terminates one to kill a rank). */
  workers: Worker[];
  /** Ctrl-C: the ranks stop together at their next gradient exchange (train/loop.ts). */
  stop(): void;
}

/** Worker threads do not inherit tsx's loader hooks: a rank registers them itself, then imports its body. */
function boot(entry: URL): string {
  const url = JSON.stringify(entry.href);
  return entry.pathname.endsWith('.ts')
    ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then(({ register }) => { register(); return import(${url}); });`
    : `import(${url});`;
}

/** Starts `world` ranks running `entry` (a module that calls rankMain). `timeoutMs` bounds every wait
 *  for a rank that does not arrive. After a failure the others stop by themselves at their next barrier; one
 *  still running `timeoutMs` later is hung and terminated. Why not sooner: terminating a thread while it is
 *  inside a Dawn call makes Dawn's Node-API binding abort the whole process (napi_throw fails on a terminating
 *  thread). A finished rank whose thread lingers is terminated after `graceMs` (it has closed its device). */
export function startRanks<D, R>(o: { world: number; entry: URL; data: D; timeoutMs: number; graceMs?: number }): RankLaunch<R> {
  const { world, timeoutMs } = o;
  if (!(Number.isInteger(world) && world >= 1)) throw new Error(`startRanks: world must be a positive integer, got ${world}`);
  const control = controlBlock(world);
  const results: (R | undefined)[] = Array(world);
  const exited: boolean[] = Array(world).fill(false);
  let failure: Error | undefined;
  let asks: ({ floats: number; flags: number } | undefined)[] = Array(world).fill(undefined);
  let askTimer: NodeJS.Timeout | undefined;
  let settle!: () => void;
  const allExited = new Promise<void>((res) => { settle = res; });

  const fail = (rank: number, message: string, timeout = false) => {
    if (failure) return;
    failure = new Error(timeout ? message : `rank ${rank} failed: ${message}`);
    abortGroup(control, rank);
    clearTimeout(askTimer);
    // Ranks waiting in a barrier wake and stop by themselves; one busy on its GPU meets the abort at its next.
    const t = setTimeout(() => { for (const w of workers) void w.terminate(); }, timeoutMs);
    t.unref();
  };

  const workers = Array.from({ length: world }, (_, rank) => {
    const init: RankInit<D> = { rank, world, control, timeoutMs, data: o.data };
    const w = new Worker(boot(o.entry), { eval: true, workerData: init });
    w.on('message', (m: FromRank<R>) => {
      if (m.type === 'done') {
        results[rank] = m.result;
        // A finished rank whose thread lingers (something still holds its event loop) is ended.
        setTimeout(() => void w.terminate(), o.graceMs ?? 2000).unref();
      } else if (m.type === 'error') { if (!m.aborted) fail(rank, m.message, m.timeout); } else onShare(rank, m);
    });
    w.on('error', (e) => fail(rank, e.message));
    w.on('exit', (code) => {
      exited[rank] = true;
      if (results[rank] === undefined) fail(rank, `its thread exited (code ${code}) before it finished`);
      if (exited.every(Boolean)) settle();
    });
    return w;
  });

  function onShare(rank: number, m: { floats: number; flags: number }): void {
    if (failure) return;
    asks[rank] = m;
    if (asks.filter(Boolean).length === 1) {
      askTimer = setTimeout(() => {
        const missing = asks.flatMap((a, r) => (a ? [] : [r]));
        fail(missing[0], `rank ${missing.join(', rank ')} did not arrive at the shared-memory set-up within ${+(timeoutMs / 1000).toFixed(1)} s`, true);
      }, timeoutMs);
    }
    if (asks.some((a) => !a)) return;
    clearTimeout(askTimer);
    const a0 = asks[0]!;
    const odd = asks.findIndex((a) => a!.floats !== a0.floats || a!.flags !== a0.flags);
    if (odd >= 0) {
      fail(odd, `it shares ${asks[odd]!.floats} floats and ${asks[odd]!.flags} flags, rank 0 ${a0.floats} and ${a0.flags} (a different model or trainable set)`);
      return;
    }
    asks = Array(world).fill(undefined);
    const area = sharedArea(world, a0.floats, a0.flags);
    for (const w of workers) w.postMessage(area);
  }

  const done = allExited.then(() => {
    if (failure) throw failure;
    return results as R[];
  });
  return {
    done, workers,
    stop: () => requestStop(control),
  };
}

/** A rank's body: builds its HostGroup, runs `fn`, and reports its result or its error to the launcher.
 *  `fn` must release what keeps its thread alive (the GPU device: closeGpu) before it returns. */
export function rankMain<D, R>(fn: (group: HostGroup, data: D) => Promise<R>): void {
  const init = workerData as RankInit<D>;
  const port = parentPort!;
  const waiting: ((a: SharedArea) => void)[] = [];
  port.on('message', (a: SharedArea) => {
    waiting.shift()?.(a);
    if (!waiting.length) port.unref();
  });
  const group = new HostGroup({
    rank: init.rank, world: init.world, control: init.control, timeoutMs: init.timeoutMs,
    share(floats, flags) {
      return new Promise((resolve) => {
        waiting.push(resolve);
        port.ref();
        port.postMessage({ type: 'share', floats, flags });
      });
    },
  });
  port.unref(); // the port alone does not keep a finished rank alive
  fn(group, init.data).then(
    (result) => port.postMessage({ type: 'done', result }),
    (e: Error) => {
      group.abort();
      port.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e), aborted: e instanceof RankAborted, timeout: e instanceof RankTimeout });
    },
  );
}
