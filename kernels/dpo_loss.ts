// dpo_loss: MiniMind's DPO loss (spec §12, dpo_loss in trainer/train_dpo.py) from the per-sequence
// log-probs s [2B] of the policy and of the reference model (kernels/logprob.ts), rows 0..B−1 chosen,
// B..2B−1 rejected:
//   z_b = (π[b] − π[B+b]) − (ref[b] − ref[B+b]),   loss = mean_b −log σ(β·z_b) = mean_b softplus(−β·z_b),
// and what DPO users watch (TRL's rewards/margins and rewards/accuracies): the reward margin
// mean_b β·z_b = mean_b [β(π_c − ref_c) − β(π_r − ref_r)], and the accuracy mean_b [z_b > 0] (the
// chosen reward above the rejected one; a tie, as at step 1 where policy = reference, counts 0).
// Backward: d loss / d π[b] = −β·σ(−β·z_b)/B = −d loss / d π[B+b]; the reference gets none.
// One workgroup of 64 lanes over the B pairs (4 by default), summed in a fixed order.
import { defineKernel, launch } from '../runtime/kernel.js';
import { treeSum } from '../runtime/wgsl.js';
import { Tensor, needsGrad, record } from '../runtime/tensor.js';
import { noTargets, type BackwardRule } from '../runtime/autograd.js';
import { compare, scoped, type Case } from './case.js';

const WG = 64;
/** z_b, and softplus(x) = max(x, 0) + log1p(e^−|x|) with an accurate log1p (WGSL has none). */
const COMMON = `fn z(b: u32) -> f32 { return (policy[b] - policy[p.B + b]) - (refer[b] - refer[p.B + b]); }
fn log1p(u: f32) -> f32 { let w = 1.0 + u; return select(log(w) * u / (w - 1.0), u, w == 1.0); }
fn softplus(x: f32) -> f32 { return max(x, 0.0) + log1p(exp(-abs(x))); }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`;

export const kernels = {
  /** loss[0] = mean softplus(−β z), margin[0] = mean β z, accuracy[0] = mean [z > 0]. */
  dpo_loss_forward: defineKernel({
    name: 'dpo_loss_forward', params: [['B', 'u32'], ['beta', 'f32']], workgroup: WG,
    buffers: [['policy', 'read', 'f32'], ['refer', 'read', 'f32'], ['loss', 'rw', 'f32'], ['margin', 'rw', 'f32'], ['accuracy', 'rw', 'f32']],
    wgsl: (_, entry) => `${COMMON}
var<workgroup> rl: array<f32, ${WG}>;
var<workgroup> rm: array<f32, ${WG}>;
var<workgroup> ra: array<f32, ${WG}>;
${entry} {
  var l = 0.0; var m = 0.0; var a = 0.0;
  for (var b = lid.x; b < p.B; b += ${WG}u) {
    let bz = p.beta * z(b);
    l += softplus(-bz);
    m += bz;
    a += select(0.0, 1.0, bz > 0.0);
  }
  rl[lid.x] = l; rm[lid.x] = m; ra[lid.x] = a;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (lid.x < s) { rl[lid.x] += rl[lid.x + s]; rm[lid.x] += rm[lid.x + s]; ra[lid.x] += ra[lid.x + s]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) {
    let n = f32(p.B);
    loss[0] = rl[0] / n;
    margin[0] = rm[0] / n;
    accuracy[0] = ra[0] / n;
  }
}
`,
  }),
  /** dpolicy[b] = −g·β·σ(−β z_b)/B, dpolicy[B+b] = −dpolicy[b]. */
  dpo_loss_backward: defineKernel({
    name: 'dpo_loss_backward', params: [['B', 'u32'], ['beta', 'f32']], workgroup: WG,
    buffers: [['policy', 'read', 'f32'], ['refer', 'read', 'f32'], ['g', 'read', 'f32'], ['dpolicy', 'rw', 'f32']],
    wgsl: (_, entry) => `${COMMON}
${entry} {
  for (var b = lid.x; b < p.B; b += ${WG}u) {
    let d = -g[0] * p.beta * sigmoid(-p.beta * z(b)) / f32(p.B);
    dpolicy[b] = d;
    dpolicy[p.B + b] = -d;
  }
}
`,
  }),
};

/** The DPO loss, reward margin and accuracy (each [1]) from the policy's and the reference's
 *  per-sequence log-probs, each [2B] (chosen rows first). Gradients flow to the policy only. */
export function dpoLoss(policy: Tensor, ref: Tensor, beta: number): { loss: Tensor; margin: Tensor; accuracy: Tensor } {
  policy.assertLive(); ref.assertLive();
  const n = policy.size;
  if (policy.shape.length !== 1 || n % 2 !== 0 || n === 0) throw new Error(`dpo_loss: policy log-probs must be [2B], got [${policy.shape}]`);
  if (ref.shape.length !== 1 || ref.size !== n) throw new Error(`dpo_loss: reference log-probs must be [${n}], got [${ref.shape}]`);
  const loss = Tensor.empty([1]), margin = Tensor.empty([1]), accuracy = Tensor.empty([1]);
  launch(kernels.dpo_loss_forward, {
    params: { B: n / 2, beta }, buffers: [policy.binding(), ref.binding(), loss.binding(), margin.binding(), accuracy.binding()], workgroups: 1,
  });
  if (needsGrad(policy)) record('dpo_loss', [policy, ref], [loss], { beta }, [policy, ref]);
  return { loss, margin, accuracy };
}

export const backward: Record<string, BackwardRule> = {
  dpo_loss: (node, [g]) => {
    const [policy, ref] = node.inputs;
    if (!g) return [null, null];
    const d = Tensor.empty(policy.shape);
    launch(kernels.dpo_loss_backward, {
      params: { B: policy.size / 2, beta: node.saved.beta as number },
      buffers: [policy.binding(), ref.binding(), g.binding(), d.binding()], workgroups: 1,
    });
    return [d, null];
  },
};

// ---- float64 CPU reference ------------------------------------------------------------------

/** loss, margin, accuracy and d loss / d policy (upstream 1) for log-probs [2B] each. */
export function reference(policy: ArrayLike<number>, ref: ArrayLike<number>, beta: number) {
  const B = policy.length / 2, dpolicy = new Float64Array(2 * B);
  let loss = 0, margin = 0, accuracy = 0;
  for (let b = 0; b < B; b++) {
    const bz = beta * (policy[b] - policy[B + b] - (ref[b] - ref[B + b]));
    loss += Math.max(-bz, 0) + Math.log1p(Math.exp(-Math.abs(bz)));
    margin += bz;
    accuracy += bz > 0 ? 1 : 0;
    dpolicy[b] = -beta / (1 + Math.exp(bz)) / B;
    dpolicy[B + b] = -dpolicy[b];
  }
  return { loss: loss / B, margin: margin / B, accuracy: accuracy / B, dpolicy };
}

/** One bench row: forward and backward at MiniMind's default of 4 pairs (the dispatch cost of the step's tail). */
export function cases(): Case[] {
  return [{
    name: 'dpo_loss', shape: 'B4 forward+backward', work: { bytes: 4 * (4 * 8 + 3 + 8) },
    note: 'two single-workgroup dispatches: launch cost, not bandwidth',
    setup: async () => {
      const pol = Float32Array.from({ length: 8 }, (_, i) => -30 - i), refv = Float32Array.from({ length: 8 }, (_, i) => -31 + i / 3);
      const policy = Tensor.fromArray(pol, [8]), refT = Tensor.fromArray(refv, [8]), g = Tensor.fromArray([1], [1]);
      const want = reference(pol, refv, 0.1);
      const { loss } = dpoLoss(policy, refT, 0.1);
      const grad = (l: Tensor) => backward.dpo_loss({ op: 'dpo_loss', inputs: [policy, refT], outputs: [l], saved: { beta: 0.1 }, reads: [] }, [g], noTargets)[0]!;
      compare('dpo_loss', [...(await loss.readF32()), ...(await grad(loss).readF32())], [want.loss, ...want.dpolicy]);
      return scoped(() => grad(dpoLoss(policy, refT, 0.1).loss));
    },
  }];
}
