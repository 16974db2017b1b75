// The training loop of every objective (MiniMind's scripts share one skeleton; train/task.ts says
// what a task supplies): per micro-step lr → forward → objective / accumulation → backward; every
// accumulation_steps (and at the end of an epoch, flushing a partial accumulation): global-norm clip
// → AdamW → zero, over the task's trainable store. Logging, saving and resume follow spec §8. A
// non-finite loss or gradient norm skips the step. Under data parallelism (spec §13; LoopOptions.ddp)
// each rank runs this loop on its shard: gradients are averaged over ranks at every optimizer boundary,
// before the norm, so every rank clips and steps alike; only rank 0 prints, logs and saves.
import { appendFileSync } from 'node:fs';
import { Tensor, beginScope, endScope } from '../runtime/tensor.js';
import { backward } from '../runtime/autograd.js';
import { fill } from '../kernels/index.js';
import { AdamW } from '../kernels/adamw.js';
import { gradNorm } from '../kernels/grad_norm.js';
import { readScalars } from '../runtime/scalars.js';
import { WaitPacer } from '../runtime/wait_pacer.js';
import { poolStats } from '../runtime/buffer.js';
import { lrAt } from './schedule.js';
import type { TrainArgs } from './args.js';
import type { Task, Resume } from './task.js';
import type { ParamStore } from '../runtime/param_store.js';
import type { GradAllReduce } from '../runtime/grad_allreduce.js';
import { GradScaler, precisionFor } from './grad_scaler.js';
import { tuneStep } from './tune_step.js';
import { tuner } from '../runtime/tuner.js';
import { Progress } from './progress.js';

export interface BatchSource<B> {
  /** Batches per epoch. */
  iters: number;
  /** The batches of an epoch in order, skipping the first `skip` (resume). */
  batches(epoch: number, skip: number): AsyncIterable<B>;
}

export interface StepLog {
  epoch: number; step: number; iters: number; loss: number;
  /** The task's named terms (SFT: logits_loss, aux_loss); the log file has them beside the others. */
  parts: Record<string, number>;
  lr: number; grad_norm: number | null; tokens_per_s: number; elapsed_s: number;
  /** --dtype float16 only: the loss scale this step's backward used. */
  loss_scale?: number;
}

export interface LoopResult {
  steps: number; tokens: number; seconds: number; lastLoss: number; skipped: number; logs: StepLog[];
  /** Stopped by Ctrl-C (SIGINT) at an optimizer boundary, after saving. */
  interrupted: boolean;
}

/** A data-parallel rank's link to the others (train/ddp_rank.ts builds it). */
export interface DataParallel {
  rank: number;
  world: number;
  /** The all-reduce of the trainable store, once every rank holds rank 0's parameters (DDP's start). */
  attach(store: ParamStore): Promise<GradAllReduce>;
  /** Runs fn on rank 0, then on the others (they find what it cached). */
  rank0First<T>(where: string, fn: () => Promise<T>): Promise<T>;
}

export interface LoopOptions<B> {
  args: TrainArgs;
  task: Task<B>;
  data: BatchSource<B>;
  /** Where the task saves its resume checkpoint (named in messages). */
  resumePath: string;
  resume?: Resume;
  /** Called for every micro-step's log entry (tests read them; the log file gets logged ones). */
  onStep?: (log: StepLog) => void;
  print?: (line: string) => void;
  /** --dtype float16: the loss scale to start from (GradScaler's init_scale; tests pin overflows with it). */
  initScale?: number;
  /** The adapter's measured FMA peak (runtime/fma_peak.ts), GFLOP/s: the progress line then gives the
   *  model FLOPs' share of it. */
  fmaPeakGflops?: number;
  /** This rank of a data-parallel run (its `data` is its shard); absent: one process. */
  ddp?: DataParallel;
}

export async function trainLoop<B>(o: LoopOptions<B>): Promise<LoopResult> {
  const { args, task, data, ddp } = o;
  const main = !ddp || ddp.rank === 0;
  const print = !main ? () => {} : o.print ?? ((l: string) => console.log(l));
  const iters = data.iters;
  const total = args.epochs * iters;
  const accum = args.accumulation_steps;
  const store = task.store;
  const precision = precisionFor(args.dtype);
  const scaler = precision === 'f16' ? new GradScaler(o.initScale) : null;
  const modelPrecisions = task.models.map((m) => m.precision);
  for (const m of task.models) m.setPrecision(precision);
  // Mixed precision: the step rewrites the working copy of the model whose store it trains.
  const copy = task.models.find((m) => m.store === store)?.workingCopy ?? undefined;
  const opt = new AdamW(store, { lr: args.learning_rate, copy });
  // Ctrl-C: finish the accumulation, save, and return; a second Ctrl-C quits at once.
  let interrupt = false, interruptedAt = 0;
  const onSigint = () => {
    // A wrapper (npm, tsx) relays the terminal's Ctrl-C, which this process got as well: a second
    // signal within a second is the same key press, not the "again" that quits.
    if (interrupt) { if (performance.now() - interruptedAt > 1000) process.exit(130); return; }
    interrupt = true;
    interruptedAt = performance.now();
    print('\ninterrupted: saving at the next optimizer step (Ctrl-C again to quit without saving)');
  };
  process.on('SIGINT', onSigint);
  let reducer: GradAllReduce | undefined; // data parallelism: this rank's side of the gradient all-reduce
  try {
    return await loop();
  } finally {
    reducer?.dispose();
    process.off('SIGINT', onSigint);
    task.models.forEach((m, i) => m.setPrecision(modelPrecisions[i]));
    opt.dispose();
  }

  async function loop(): Promise<LoopResult> {
    let startEpoch = 0, startStep = 0;
    if (o.resume) {
      ({ epoch: startEpoch, step: startStep } = o.resume);
      await o.resume.restore(opt, scaler);
      print(`resumed from ${o.resumePath}: epoch ${startEpoch + 1}, step ${startStep}/${iters}`);
    }
    reducer = await ddp?.attach(store);
    if (reducer) copy?.refresh(); // the weights are rank 0's now
    // Kernel variants for this batch shape, tuned once per adapter and cached: before step 1, so that
    // every step of the run uses the same ones.
    const tt = performance.now();
    const tune = () => tuneStep(task, opt, args.batch_size, args.max_seq_len);
    const tuned = ddp ? await ddp.rank0First('kernel tuning', tune) : await tune();
    if (tuned.length) {
      print(`[tune] ${tuned.length} kernel shapes tuned in ${((performance.now() - tt) / 1000).toFixed(1)} s, `
        + `cached in ${tuner().file ?? '(no file)'} for the next run (npm run tune lists them; MINIMIND_TUNE=off skips tuning)`);
    }
    const logs: StepLog[] = [];
    const t0 = performance.now();
    let tokens = 0, steps = 0, skipped = 0, badInARow = 0, lastLoss = NaN;
    const pacer = new WaitPacer(); // the host sleeps through most of each step's GPU work
    let pendingMicro = 0; // micro-steps accumulated since the last optimizer step
    let poisoned = false; // a non-finite value entered the gradients being accumulated
    let saveDue = false;
    const tty = process.stdout.isTTY && !o.onStep;
    const progress = new Progress(o.fmaPeakGflops, startEpoch * iters + startStep,
      args.max_steps > 0 ? Math.min(total, startEpoch * iters + startStep + args.max_steps) : total);

    for (let epoch = startEpoch; epoch < args.epochs; epoch++) {
      const skip = epoch === startEpoch ? startStep : 0;
      const epochStart = performance.now();
      let step = skip;
      for await (const b of data.batches(epoch, skip)) {
        step++;
        const lr = lrAt(epoch * iters + step, total, args.learning_rate);
        const size = task.measure(b);
        beginScope();
        const { objective, reads } = await task.forward(b);
        // d(scale·objective/accum)/d(objective) = scale/accum: seed backward with it instead of scaling the loss.
        const scale = scaler?.scale ?? 1;
        const boundary = step % accum === 0 || step === iters;
        // The all-reduce's buckets start as backward completes them.
        backward(objective, fill(Tensor.fromArray([1], [1]), [1], scale / accum), boundary ? reducer?.hooks() : undefined);
        pendingMicro++;
        // Averaged once per optimizer step, not per micro-step as DDP without no_sync: the mean of sums
        // is the sum of means, and it costs one exchange. Every rank learns whether any wants to stop.
        if (boundary && reducer) interrupt = await reducer.reduce(interrupt, `epoch ${epoch + 1} step ${step}`);
        const norm = boundary ? gradNorm(store.chunks(store.grads)) : null;
        const values = await pacer.pace(size.tokens, (sleepMs) => readScalars([...reads, norm], sleepMs));
        const gn = values.pop()!;
        const terms = task.terms(values);
        const objectiveValue = terms.loss;
        // float16: inf/NaN gradients with a finite loss are a loss-scale overflow (GradScaler skips
        // the step and halves the scale); in float32 they count as a bad step.
        const overflow = !!scaler && boundary && Number.isFinite(objectiveValue) && !Number.isFinite(gn);
        const finite = Number.isFinite(objectiveValue) && (!boundary || Number.isFinite(gn) || overflow);
        if (!finite) poisoned = true;
        let gradNormValue: number | null = null;
        if (boundary) {
          gradNormValue = gn / scale;
          if (!poisoned && !overflow) opt.step(lr, norm!, args.grad_clip, 1 / scale);
          if (overflow) print(`step ${step}: gradient overflow at loss scale ${scale}; the optimizer step is skipped and the scale halved`);
          scaler?.update(overflow || poisoned);
          opt.zeroGrad();
          pendingMicro = 0;
        }
        endScope();
        if (!finite) {
          skipped++;
          badInARow++;
          print(`step ${step}: non-finite ${Number.isFinite(objectiveValue) ? 'gradient norm' : 'loss'}; the optimizer step is skipped (${badInARow} in a row)`);
          if (badInARow >= args.max_bad_steps) {
            await save(epoch, step);
            throw new Error(`stopped: ${badInARow} non-finite losses in a row (limit --max_bad_steps ${args.max_bad_steps}). `
              + `The last good weights are saved in ${o.resumePath}. Try a lower --learning_rate or check the data.`);
          }
        } else if (boundary && !poisoned) badInARow = 0;
        if (boundary) poisoned = false;
        tokens += size.tokens;
        steps++;
        lastLoss = objectiveValue;
        const elapsed = (performance.now() - t0) / 1000;
        const log: StepLog = {
          epoch: epoch + 1, step, iters, loss: objectiveValue, parts: terms.parts, lr,
          grad_norm: gradNormValue, tokens_per_s: tokens / elapsed, elapsed_s: elapsed, ...(scaler ? { loss_scale: scale } : {}),
        };
        o.onStep?.(log);
        // A short run stops at the first optimizer boundary at or after max_steps (nothing half-accumulated).
        const stopEarly = args.max_steps > 0 && steps >= args.max_steps && pendingMicro === 0;
        const stopping = stopEarly || (interrupt && pendingMicro === 0);
        // The last step of a run is always logged (the loss curve and log end where training did).
        const logged = step % args.log_interval === 0 || step === iters || stopping;
        const line = progress.step(epoch * iters + step, size.tokens, size.flops, objectiveValue, tty, logged);
        if (line !== undefined) {
          if (tty) process.stdout.write(`\r\x1b[K${line}`);
          else print(line);
        }
        if (logged) {
          logs.push(log);
          const spent = (performance.now() - epochStart) / 60000;
          // Time left in the epoch, or to --max_steps when that comes first.
          const end = args.max_steps > 0 ? Math.min(iters, step + args.max_steps - steps) : iters;
          const eta = (spent / (step - skip)) * (end - step);
          if (tty) process.stdout.write('\r\x1b[K');
          print(`Epoch:[${epoch + 1}/${args.epochs}](${step}/${iters}), ${task.logLine(terms, lr, eta)}`);
          if (main && args.log_file) {
            const { parts, ...rest } = log;
            appendFileSync(args.log_file, JSON.stringify({ ...rest, ...parts }) + '\n');
          }
        }
        if (step % args.save_interval === 0) saveDue = true;
        // Saved only between optimizer steps, so a resume never needs half-accumulated gradients; and at
        // the end of every epoch, as MiniMind saves at step == iters (always a boundary: the flush).
        if (pendingMicro === 0 && (saveDue || step === iters || stopping)) { await save(epoch, step); saveDue = false; }
        if (stopping) return { steps, tokens, seconds: elapsed, lastLoss, skipped, logs, interrupted: !stopEarly };
      }
    }
    return { steps, tokens, seconds: (performance.now() - t0) / 1000, lastLoss, skipped, logs, interrupted: false };
  }

  async function save(epoch: number, step: number): Promise<void> {
    if (main) await task.save({ epoch, step, scaler: scaler?.state(), world: ddp?.world ?? 1 }, opt);
  }
}

/** Bytes the step held on the GPU at its peak (for the out-of-memory message). */
export function peakBytes(): number {
  return poolStats().peakInUseBytes;
}
