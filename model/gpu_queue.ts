// One model on one GPU generates for one request at a time; the others wait in arrival order. The bound
// counts every admitted request (the one generating and those waiting): past it a request is refused at
// once (the server answers 429) rather than queued without limit.
export class GpuQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private admitted = 0;
  constructor(readonly bound: number) {
    if (!Number.isInteger(bound) || bound < 1) throw new Error(`queue bound must be a positive integer, got ${bound}`);
  }

  /** Requests generating or waiting. */
  get size(): number { return this.admitted; }

  /** Run `job` after every job admitted before it; undefined (not run) when the queue is full. */
  tryRun<T>(job: () => Promise<T>): Promise<T> | undefined {
    if (this.admitted >= this.bound) return undefined;
    this.admitted++;
    const run = this.tail.then(job).finally(() => { this.admitted--; });
    this.tail = run.catch(() => undefined); // a failed job does not stop the ones after it
    return run;
  }
}
