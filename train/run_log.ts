// The run log (--log_file, JSON lines): train/loop.ts writes one line per logged step (epoch, step, iters,
// loss, the task's parts, lr, grad_norm, tokens_per_s, elapsed_s, loss_scale), which other tools read as
// they are; the trainer adds lines of its own kinds beside them ({"kind":"run"|"samples"|"gpu"|"done"|"error",...})
// so that the dashboard (train/dashboard.ts) can show a finished run whole. Reading skips any line that
// is not a JSON object (a truncated last line, a line being written).
import { appendFileSync } from 'node:fs';
import { poolStats } from '../runtime/buffer.js';

/** A step line: train/loop.ts's fields plus whatever numeric parts the task logs. */
export type StepLine = {
  epoch: number; step: number; iters: number; loss: number | null; lr: number; grad_norm: number | null; tokens_per_s: number; elapsed_s: number;
} & Record<string, unknown>;

/** One sample answer: the question, the model's answer, and for a quiz what was expected. */
export interface SampleAnswer { question: string; answer: string; expected?: string; correct?: boolean }

export interface RunInfo {
  mode: string; args: object; adapter: string;
  /** The model's config and its parameter count. */
  model: object; parameters: number;
  samples: number; steps_per_epoch: number;
  /** Micro-steps over the whole run (epochs × steps_per_epoch) this process starts after and stops at. */
  first_step: number; last_step: number;
}

/** Appends the trainer's own lines to the log at `file`, each a whole line in one write. */
export class RunLog {
  private t0 = performance.now();
  constructor(readonly file: string) {}

  run(info: RunInfo): void {
    this.t0 = performance.now();
    this.write({ kind: 'run', started_at: new Date().toISOString(), ...info });
  }

  samples(when: 'before' | 'after', answers: SampleAnswer[]): void {
    if (answers.length) this.write({ kind: 'samples', when, answers });
  }

  /** GPU memory the buffer pool holds and hands out, in bytes, `at_s` seconds after the run line. */
  gpu(): void {
    const p = poolStats();
    this.write({ kind: 'gpu', at_s: (performance.now() - this.t0) / 1000, in_use_bytes: p.inUseBytes,
      peak_in_use_bytes: p.peakInUseBytes, allocated_bytes: p.allocatedBytes });
  }

  /** A gpu line every `ms` until the returned function is first called (which writes a last one). */
  watchGpu(ms: number): () => void {
    this.gpu();
    const timer = setInterval(() => this.gpu(), ms);
    timer.unref();
    let on = true;
    return () => {
      if (on) { clearInterval(timer); this.gpu(); }
      on = false;
    };
  }

  done(result: { steps: number; tokens: number; seconds: number; interrupted: boolean }): void {
    this.write({ kind: 'done', ...result });
  }

  /** Training stopped with an error (the message the trainer exits with). */
  error(message: string): void {
    this.write({ kind: 'error', message });
  }

  private write(o: object): void {
    appendFileSync(this.file, JSON.stringify(o) + '\n');
  }
}

/** The JSON objects of a log's complete lines, and how many lines were skipped as not JSON objects. */
export function parseLines(text: string): { records: Record<string, unknown>[]; skipped: number } {
  const records: Record<string, unknown>[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const o: unknown = JSON.parse(line);
      if (o && typeof o === 'object' && !Array.isArray(o)) records.push(o as Record<string, unknown>);
      else skipped++;
    } catch { skipped++; }
  }
  return { records, skipped };
}

/** Whether a record is a step line: no kind, a numeric step, and a loss (null when it was not finite). */
export function isStep(r: Record<string, unknown>): r is StepLine {
  return r.kind === undefined && typeof r.step === 'number' && 'loss' in r;
}
