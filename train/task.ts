// What a training objective gives the loop (train/loop.ts): SFT and pretraining (train/lm_task.ts),
// LoRA and DPO share one loop of lr schedule, accumulation, clipping, AdamW, bad-step skipping,
// progress, logging, saving and resume; a task says what is trained and what is optimised.
import type { Tensor } from '../runtime/tensor.js';
import type { ParamStore } from '../runtime/param_store.js';
import type { AdamW } from '../kernels/adamw.js';
import type { MiniMind } from '../model/minimind.js';
import type { GradScaler, ScalerState } from './grad_scaler.js';

/** One micro-batch's forward: the objective to backpropagate ([1]: MiniMind's loss before the division
 *  by accumulation_steps) and the [1] tensors to read back with the gradient norm (null reads as NaN). */
export interface Forward { objective: Tensor; reads: (Tensor | null)[] }

/** What is logged of a micro-step, from the values read back. */
export interface Terms {
  /** The objective's value; a non-finite one skips the step. */
  loss: number;
  /** Named parts for the step log (log file, tests): e.g. logits_loss and aux_loss. */
  parts: Record<string, number>;
}

/** Where training stands: `step` micro-steps of 0-based `epoch` done (per rank, of `world` data-parallel
 *  ranks: 1 when absent); the loss scaler for --dtype float16. */
export interface Position { epoch: number; step: number; scaler?: ScalerState; world?: number }

/** A resume checkpoint, read and checked against the task it continues. */
export interface Resume extends Position {
  /** Set when the file was saved by a run on another number of processes (its step counts per-process batches). */
  notice?: string;
  restore(opt: AdamW, scaler: GradScaler | null): Promise<void>;
}

export interface Task<B> {
  /** The models a step runs (the trainer sets their precision, --dtype, for the run). */
  readonly models: MiniMind[];
  /** What AdamW updates, clips and zeroes: the model's whole store, or only its adapters'. */
  readonly store: ParamStore;
  /** Tokens a batch counts for tokens/s and host pacing, and its step's model FLOPs (progress line). */
  measure(b: B): { tokens: number; flops: number };
  forward(b: B): Promise<Forward>;
  /** The logged terms from the values of `reads`, in their order. */
  terms(values: number[]): Terms;
  /** MiniMind's log line after "Epoch:[e/E](step/iters), ", given the lr and the epoch's minutes left. */
  logLine(t: Terms, lr: number, minutesLeft: number): string;
  /** A batch of B rows × T tokens of this task's kind (token 0 everywhere, every label counted): the
   *  tuner plans one step with it. */
  planBatch(B: number, T: number): B;
  /** Weights and resume checkpoint, between optimizer steps. */
  save(pos: Position, opt: AdamW): Promise<void>;
}
