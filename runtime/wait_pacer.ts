// While a GPU promise is pending, Dawn's Node binding polls from the JS thread: at 100% of a core for the
// whole wait unpaced, which on a 2-core machine running lavapipe (whose "GPU" is those same cores) took
// about a third of the throughput; awaitGpu (runtime/gpu_wait.ts) limits the spin to a wait's first
// millisecond and then polls each millisecond. Sleeping through a known wait saves even those. A caller that waits for work of a known size, step after step,
// sleeps through most of it first: WaitPacer learns the wait per unit of work (tokens, say) and
// proposes a sleep of `fraction` of the expected wait.
// The first wait is not learnt from (pipelines and buffers are set up on first use: a MiniMind2-small
// step's first wait is about twice a paced one; an unpaced wait, the core spinning, 1.5×). A wait
// that ends right after the sleep overslept by an unknown amount: the next proposal halves, so an
// overestimate shrinks geometrically, and the first wait that outlasts its sleep is learnt exactly.

/** setTimeout's granularity is about 1 ms: shorter sleeps (a real GPU's steps) are not worth taking. */
const MIN_SLEEP_MS = 2;

export class WaitPacer {
  private msPerUnit = 0;
  private waits = 0;

  constructor(private readonly fraction = 0.85) {
    if (!(fraction > 0 && fraction < 1)) throw new Error(`WaitPacer: fraction must be in (0, 1), got ${fraction}`);
  }

  /** Milliseconds to sleep before waiting for `units` of work: 0 until a wait has been learnt. */
  sleepFor(units: number): number {
    const ms = this.fraction * this.msPerUnit * units;
    return ms >= MIN_SLEEP_MS ? ms : 0;
  }

  /** `units` of work took `waitedMs` from submit to result, of which the host slept `sleptMs`. */
  record(units: number, sleptMs: number, waitedMs: number): void {
    if (!(units > 0 && Number.isFinite(waitedMs) && waitedMs >= 0) || this.waits++ === 0) return;
    const overslept = sleptMs > 0 && waitedMs - sleptMs < Math.max(1, 0.02 * sleptMs);
    this.msPerUnit = (overslept ? sleptMs / 2 / this.fraction : waitedMs) / units;
  }

  /** Runs `wait(sleepMs)` (which sleeps, then awaits the GPU) and learns from how long it took. */
  async pace<T>(units: number, wait: (sleepMs: number) => Promise<T>): Promise<T> {
    const sleep = this.sleepFor(units), t0 = performance.now();
    const out = await wait(sleep);
    this.record(units, sleep, performance.now() - t0);
    return out;
  }
}
