// The trainer's progress line between MiniMind's log lines: position in the run, tokens/s, model
// FLOP/s as a share of the adapter's measured FMA peak (an MFU against what the adapter can do, not a
// datasheet), and the time left. Rates count from the end of the run's first step, which compiles
// every shader.
export class Progress {
  private t0 = NaN;
  private first = 0;
  private tokens = 0;
  private flops = 0;
  private printed = 0;

  /** Steps are micro-steps counted over the whole run: this process goes from `start` to `end`.
   *  Off a terminal a line comes every `everyMs`; `now` is the clock in ms. */
  constructor(private peakGflops: number | undefined, private start: number,
    private end: number, private everyMs = 30_000, private now = () => performance.now()) {}

  /** After micro-step `t` (1-based) of `tokens` tokens and `flops` model FLOPs: the line to show, or undefined when it is not due.
   *  On a terminal it is due every step but one that prints its log line (`logged`), off one every `everyMs`. */
  step(t: number, tokens: number, flops: number, loss: number, tty: boolean, logged = false): string | undefined {
    const now = this.now();
    if (Number.isNaN(this.t0)) {
      this.t0 = this.printed = now;
      this.first = t;
      return tty && !logged ? `step ${t}/${this.end}, loss ${loss.toFixed(4)} (compiling shaders)` : undefined;
    }
    this.tokens += tokens;
    this.flops += flops;
    if (tty ? logged : now - this.printed < this.everyMs) return undefined;
    this.printed = now;
    const s = (now - this.t0) / 1000;
    const eta = ((this.end - t) * s) / (t - this.first);
    const gflops = this.flops / s / 1e9;
    const util = this.peakGflops ? `, ${gflops.toFixed(1)} GFLOP/s = ${((100 * gflops) / this.peakGflops).toFixed(0)}% of the FMA peak (${this.peakGflops.toFixed(0)})` : '';
    const pct = ((100 * (t - this.start)) / (this.end - this.start)).toFixed(0);
    return `step ${t}/${this.end} (${pct}%), loss ${loss.toFixed(4)}, ${(this.tokens / s).toFixed(0)} tokens/s${util}, ETA ${duration(eta)}`;
  }
}

/** 75 → "1m 15s", 4000 → "1h 6m". */
export function duration(seconds: number): string {
  const x = Math.max(0, Math.round(seconds));
  if (x < 60) return `${x}s`;
  if (x < 3600) return `${Math.floor(x / 60)}m ${x % 60}s`;
  return `${Math.floor(x / 3600)}h ${Math.floor((x % 3600) / 60)}m`;
}
