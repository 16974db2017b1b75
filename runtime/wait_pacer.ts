// While a GPU promise is pending, Dawn's Node binding spins the JS thread at 100%. On a 2-core machine
// running lavapipe (whose "GPU" is those same cores) that takes about a third of the throughput
// (../shared/docs/LAVAPIPE-NOTES.md). A caller that waits for work of a known size, step after step,
// sleeps through most of it first: WaitPacer learns the wait per unit of work (tokens, say) from the
// last wait and proposes a sleep of `fraction` of the expected wait. A sleep that overshoots makes the
// recorded wait the sleep itself, so the next proposal is `fraction` of it: it converges back below.

/** setTimeout's granularity is about 1 ms: shorter sleeps (a real GPU's steps) are not worth taking. */
const MIN_SLEEP_MS = 2;

export class WaitPacer {
  private msPerUnit = 0;

  constructor(private readonly fraction = 0.85) {
    if (!(fraction > 0 && fraction < 1)) throw new Error(`WaitPacer: fraction must be in (0, 1), got ${fraction}`);
  }

  /** Milliseconds to sleep before waiting for `units` of work: 0 until a wait has been recorded. */
  sleepFor(units: number): number {
    const ms = this.fraction * this.msPerUnit * units;
    return ms >= MIN_SLEEP_MS ? ms : 0;
  }

  /** `units` of work took `ms` from submit to result, sleep included. */
  record(units: number, ms: number): void {
    if (units > 0 && Number.isFinite(ms) && ms >= 0) this.msPerUnit = ms / units;
  }
}
