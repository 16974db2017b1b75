// The peer for `npm run bench`: TensorFlow.js's WebGPU backend (4.22) on the same Dawn adapter, the runtime a
// TypeScript user would otherwise pick for WebGPU training. Run as `npx tsx bench/peer_tfjs.ts [--quick]`;
// bench/index.ts spawns it so that it gets a Dawn device of its own. It times
//   - matmul at the MiniMind2-small FFN shape, x (5440, 512) · Wᵀ with W (1408, 512): 2·M·N·K = 7.84 GFLOP;
//   - one forward + backward (no optimizer update) of the `tiny` and `minimind2-small` presets written in tfjs ops
//     (bench/peer_tfjs_model.ts), with the data of bench/step.ts (labels of each row's first quarter ignored);
//     minimind2-small at seq 340 and batch 1, 4 or 16, the largest that fits the run's time (lavapipe: 1), so
//     compare its tokens/s, not its ms. "kernels" are GPU dispatches, counted by wrapping the backend's recorder.
// Each timing is wall clock around a forced completion: reading one element back waits for every command
// submitted before it (a queue runs in order). As on our wall clock (bench/harness.ts), the host submits, then
// sleeps through half the fastest call so far before it waits: Dawn spins the JS thread while a GPU promise is
// pending, which halves a software adapter's speed on 2 cores (the first timed call, and the rest of each wait,
// still spin). Prints a summary, then one JSON object as the last stdout line:
// {"ok": true, "adapter", "matmul": {...}, "steps": [...], "skipped": [...]} or {"ok": false, "why"}.
import { create, globals } from 'webgpu';
import * as tf from '@tensorflow/tfjs';
import { preset } from '../model/config.js';
import { mulberry32 as rng } from '../runtime/random.js';
import { PeerMiniMind, peerBatch, disposeBatch } from './peer_tfjs_model.js';

const quick = process.argv.includes('--quick');
/** Seconds of timed steps to aim for per config after its warm-up; a full run stays under ~2 minutes on lavapipe. */
const STEP_BUDGET_S = quick ? 4 : 20;
/** Wall-clock target of a full run: minimind2-small grows its batch only while the estimate fits (lavapipe: batch 1). */
const FULL_BUDGET_S = 150;
const started = performance.now();

/** The parts of tfjs-backend-webgpu's WebGPUBackend this script uses (recordAndSubmit is one dispatch). */
interface WebGpuBackend {
  device: GPUDevice;
  recordAndSubmit: (...args: unknown[]) => void;
  submitQueue: () => void;
  ensureCommandEncoderReady: () => void;
  endComputePassEncoder: () => void;
}

interface StepResult {
  name: string; batch: number; seq: number;
  /** Median wall time of one forward + backward, milliseconds. */
  ms: number;
  tokens_per_s: number;
  /** GPU dispatches (compute passes' dispatchWorkgroups) and queue submits per step. */
  kernels: number; submits: number;
  /** Loss of the first step, at init. */
  loss: number;
  reps: number;
  note?: string;
}

const counts = { dispatches: 0, submits: 0 };
let backend: WebGpuBackend | undefined;
/** The backend's own submit, uncounted (settle's early submit is ours, not tfjs's). */
let submitRaw: (() => void) | undefined;

/** Dawn as navigator.gpu (tfjs registers its webgpu backend at import only if navigator.gpu exists), then tfjs on it. */
async function setup(): Promise<string> {
  process.env.XDG_RUNTIME_DIR ??= `/tmp/xdg-runtime-${process.getuid?.() ?? 0}`;
  const flags: string[] = []; // the same adapter choice as runtime/device.ts
  if (process.env.MINIMIND_ADAPTER) flags.push(`adapter=${process.env.MINIMIND_ADAPTER}`);
  if (process.env.MINIMIND_BACKEND) flags.push(`backend=${process.env.MINIMIND_BACKEND}`);
  Object.assign(globalThis, globals);
  const gpu = create(flags);
  // Node 20 has no navigator; Node 21+ has one without gpu.
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('Dawn found no WebGPU adapter (run `bash scripts/setup.sh`, or set MINIMIND_ADAPTER)');
  const info = adapter.info;
  const name = `${info.vendor || '?'} / ${info.architecture || '?'} / ${info.description || info.device || '?'}`;

  await import('@tensorflow/tfjs-backend-webgpu');
  // tfjs reports a failed backend init only through console.warn; keep those lines for the JSON's "why".
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (...a: unknown[]) => { warned.push(a.map(String).join(' ')); warn(...a); };
  let ok: boolean;
  try {
    ok = await tf.setBackend('webgpu');
  } finally {
    console.warn = warn;
  }
  if (!ok || tf.getBackend() !== 'webgpu') {
    throw new Error(`tf.setBackend('webgpu') failed on ${name}: ${warned.join(' | ').slice(0, 500) || 'no reason given'}`);
  }
  backend = tf.backend() as unknown as WebGpuBackend;
  const record = backend.recordAndSubmit.bind(backend);
  const submit = backend.submitQueue.bind(backend);
  submitRaw = submit;
  backend.recordAndSubmit = (...a: unknown[]) => { counts.dispatches++; record(...a); };
  backend.submitQueue = () => { counts.submits++; submit(); };
  return name;
}

/** Wait until the GPU has finished everything recorded so far, by reading one element of `t` back. */
async function sync(t: tf.Tensor): Promise<void> {
  const one = tf.tidy(() => tf.slice(tf.reshape(t, [-1]), [0], [1]));
  await one.data();
  one.dispose();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Submit what tfjs has recorded, sleep through half of a call expected to take `expectMs` (started at t0; 0: no
 *  sleep), then wait for `t` (see the header). */
async function settle(t: tf.Tensor, t0: number, expectMs: number): Promise<void> {
  backend!.ensureCommandEncoderReady();
  backend!.endComputePassEncoder();
  submitRaw!();
  const left = 0.5 * expectMs - (performance.now() - t0);
  if (left >= 2) await sleep(left);
  await sync(t);
}

async function benchMatmul(): Promise<{ shape: string; ms: number; gflops: number; reps: number }> {
  const [M, K, N] = [5440, 512, 1408];
  const r = rng(1);
  const xs = Float32Array.from({ length: M * K }, () => 2 * r() - 1);
  const ws = Float32Array.from({ length: N * K }, () => 2 * r() - 1);
  const x = tf.tensor2d(xs, [M, K]);
  const w = tf.tensor2d(ws, [N, K]);
  // Warm-up (upload, shader compile) doubling as the correctness check against float64 dot products.
  const y0 = tf.matMul(x, w, false, true);
  const y = await y0.data();
  y0.dispose();
  for (let s = 0; s < 256; s++) {
    const i = Math.floor(r() * M), j = Math.floor(r() * N);
    let ref = 0, mag = 0;
    for (let k = 0; k < K; k++) { ref += xs[i * K + k] * ws[j * K + k]; mag += Math.abs(xs[i * K + k] * ws[j * K + k]); }
    if (!(Math.abs(y[i * N + j] - ref) <= 1e-5 * mag + 1e-6)) {
      throw new Error(`tfjs matMul is wrong at [${i}, ${j}]: ${y[i * N + j]} vs float64 ${ref}`);
    }
  }
  const times: number[] = [];
  const reps = 3;
  for (let i = quick ? 0 : -1; i < reps; i++) { // i = -1: a second warm-up, timed but not kept
    const t0 = performance.now();
    const out = tf.matMul(x, w, false, true);
    await settle(out, t0, times.length ? Math.min(...times) : 0);
    out.dispose();
    if (i >= 0) times.push(performance.now() - t0);
  }
  tf.dispose([x, w]);
  const ms = median(times);
  return { shape: `${M}x${K}·${K}x${N}`, ms, gflops: (2 * M * N * K) / ms / 1e6, reps };
}

/** Forward + backward of a preset at (B, T): the first step is the warm-up and the init-loss check. */
async function benchStep(name: string, B: number, T: number, minReps: number, maxReps: number): Promise<StepResult> {
  const cfg = preset(name);
  const model = new PeerMiniMind(cfg, 1);
  const r = rng(7);
  const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * cfg.vocab_size));
  const labels = Int32Array.from(ids, (v, i) => (i % T < T / 4 ? -100 : v));
  const batch = peerBatch(cfg, ids, labels, B, T);
  const times: number[] = []; // of the timed steps: the fastest sets the sleep
  const step = async (): Promise<tf.Scalar> => {
    const t0 = performance.now();
    const { value, grads } = tf.variableGrads(() => model.loss(batch), model.params);
    await settle(grads[model.embed_tokens.name], t0, times.length ? Math.min(...times) : 0);
    tf.dispose(Object.values(grads));
    return value;
  };
  try {
    let t0 = performance.now();
    const first = await step();
    const warmS = (performance.now() - t0) / 1e3;
    const loss = (await first.data())[0];
    first.dispose();
    // Random init with U(±1/sqrt(H)) weights gives near-uniform logits: loss ≈ ln V (+ ~0.2 from their spread).
    const lnV = Math.log(cfg.vocab_size);
    if (!(Math.abs(loss - lnV) < 0.75)) throw new Error(`${name}: loss at init ${loss}, expected ≈ ln ${cfg.vocab_size} = ${lnV.toFixed(2)}`);
    const reps = Math.max(minReps, Math.min(maxReps, Math.floor(STEP_BUDGET_S / warmS)));
    counts.dispatches = counts.submits = 0;
    for (let i = 0; i < reps; i++) {
      t0 = performance.now();
      (await step()).dispose();
      times.push(performance.now() - t0);
    }
    const ms = median(times);
    return {
      name, batch: B, seq: T, ms, tokens_per_s: (B * T) / (ms / 1e3),
      kernels: Math.round(counts.dispatches / reps), submits: Math.round(counts.submits / reps), loss, reps,
    };
  } finally {
    model.dispose();
    disposeBatch(batch);
  }
}

async function run(): Promise<Record<string, unknown>> {
  const adapter = await setup();
  console.log(`[peer] TensorFlow.js ${tf.version.tfjs} webgpu backend on ${adapter}`);
  const matmul = await benchMatmul();
  console.log(`[peer] matmul ${matmul.shape}: ${matmul.ms.toFixed(1)} ms, ${matmul.gflops.toFixed(2)} GFLOP/s (median of ${matmul.reps})`);
  const steps: StepResult[] = [];
  const skipped: { name: string; why: string }[] = [];
  const report = (s: StepResult) => {
    steps.push(s);
    console.log(`[peer] forward+backward ${s.name} B${s.batch}×T${s.seq}: ${s.ms.toFixed(0)} ms, ${s.tokens_per_s.toFixed(0)} tokens/s, `
      + `${s.kernels} dispatches, ${s.submits} submits, loss at init ${s.loss.toFixed(3)} (median of ${s.reps})${s.note ? `; ${s.note}` : ''}`);
  };
  report(await benchStep('tiny', 4, 128, 2, quick ? 3 : 7));
  if (quick) {
    skipped.push({ name: 'minimind2-small', why: '--quick' });
  } else {
    try {
      report(await benchSmall());
    } catch (e) {
      skipped.push({ name: 'minimind2-small', why: (e as Error).message });
    }
  }
  return { ok: true, adapter, matmul, steps, skipped, forward_backward_only: true };
}

/** minimind2-small at seq 340 and the largest batch of 1, 4, 16 (the training shape) whose warm-up plus one timed
 *  step fits FULL_BUDGET_S, estimated from the batch before it: on lavapipe one batch-4 step takes about a minute. */
async function benchSmall(): Promise<StepResult> {
  let small = await benchStep('minimind2-small', 1, 340, 2, 3);
  for (const B of [4, 16]) {
    const estS = (2 * (B / small.batch) * small.ms) / 1e3;
    const leftS = FULL_BUDGET_S - (performance.now() - started) / 1e3;
    if (estS > leftS) {
      small.note = `batch ${B} not run: ~${estS.toFixed(0)} s for warm-up + 1 step estimated from batch ${small.batch}, `
        + `${Math.max(0, leftS).toFixed(0)} s left of this bench's budget; compare tokens/s`;
      return small;
    }
    try {
      small = await benchStep('minimind2-small', B, 340, 1, 3);
    } catch (e) {
      small.note = `batch ${B} failed (${(e as Error).message.slice(0, 200)}); compare tokens/s`;
      return small;
    }
  }
  return small;
}

let result: Record<string, unknown>;
try {
  result = await run();
} catch (e) {
  result = { ok: false, why: (e as Error).message };
}
// Dawn keeps Node alive while a device exists: free tfjs's buffers, then destroy the device.
const device = backend?.device;
tf.disposeVariables();
tf.engine().reset();
device?.destroy();
console.log(JSON.stringify(result));
