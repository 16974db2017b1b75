// trainLoop as the trainers run it (train/run.ts, train/dpo.ts): the run log's GPU-memory lines while it
// trains and its done or error line after, and an out-of-memory error that says what to lower.
import { trainLoop, peakBytes, type LoopOptions, type LoopResult } from './loop.js';
import type { RunLog } from './run_log.js';

/** `unit`: how --batch_size counts in the message (DPO: ' pairs'). */
export async function loggedTrain<B>(o: LoopOptions<B>, runLog: RunLog | undefined, unit = ''): Promise<LoopResult> {
  const { args } = o;
  const stopGpuLog = runLog?.watchGpu(10_000);
  let result: LoopResult;
  try {
    result = await trainLoop(o);
  } catch (e) {
    const err = (e as { code?: string }).code !== 'GPU_OOM' ? e as Error
      : new Error(`out of GPU memory at batch_size ${args.batch_size}${unit}, max_seq_len ${args.max_seq_len}: the step held `
        + `${(peakBytes() / 2 ** 30).toFixed(2)} GiB when it failed. Lower --batch_size or --max_seq_len (and raise --accumulation_steps). ${(e as Error).message}`);
    stopGpuLog?.(); // its last line before the error's
    runLog?.error(err.message);
    throw err;
  } finally {
    stopGpuLog?.();
  }
  runLog?.done({ steps: result.steps, tokens: result.tokens, seconds: result.seconds, interrupted: result.interrupted });
  return result;
}
