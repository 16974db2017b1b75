// MiniMind2 (spec §2, dense) written with TensorFlow.js ops: the peer's side of the bench's training-step
// comparison. Same presets (model/config.ts), init (spec §8: Linear U(±1/sqrt(in)), the tied embedding takes
// lm_head's init, norms 1) and masked loss as model/minimind.ts; forward + backward via tf.variableGrads.
// Written around two WebGPU-backend limits (docs/LAVAPIPE-NOTES.md): no tf.addN (wrong past 7 inputs), and no
// rank-5 tensors (tf.reverse/tile and their gradients stop at rank 4), so GQA folds the query heads of one kv head
// into the query axis instead of repeating k and v.
import * as tf from '@tensorflow/tfjs';
import { MiniMindConfig, countParameters } from '../model/config.js';

interface Layer {
  input_layernorm: tf.Variable; q_proj: tf.Variable; k_proj: tf.Variable; v_proj: tf.Variable; o_proj: tf.Variable;
  post_attention_layernorm: tf.Variable; gate_proj: tf.Variable; up_proj: tf.Variable; down_proj: tf.Variable;
}

export class PeerMiniMind {
  readonly embed_tokens: tf.Variable; // [V, H], tied LM head
  readonly layers: Layer[];
  readonly norm: tf.Variable;
  readonly params: tf.Variable[];

  constructor(readonly cfg: MiniMindConfig, seed: number) {
    if (cfg.use_moe || cfg.qk_norm) throw new Error('bench/peer_tfjs_model.ts: only dense MiniMind2 presets (no MoE, no q/k norm)');
    const { hidden_size: H, head_dim: hd, num_attention_heads: nh, num_key_value_heads: nkv, intermediate_size: I } = cfg;
    let s = seed;
    // PyTorch's default Linear init: U(±1/sqrt(in_features)); weights stored [out, in].
    const linear = (out: number, inp: number) => tf.variable(tf.randomUniform([out, inp], -1 / Math.sqrt(inp), 1 / Math.sqrt(inp), 'float32', s++));
    const ones = () => tf.variable(tf.ones([H]));
    this.embed_tokens = linear(cfg.vocab_size, H);
    this.layers = Array.from({ length: cfg.num_hidden_layers }, () => ({
      input_layernorm: ones(), q_proj: linear(nh * hd, H), k_proj: linear(nkv * hd, H), v_proj: linear(nkv * hd, H),
      o_proj: linear(H, nh * hd), post_attention_layernorm: ones(), gate_proj: linear(I, H), up_proj: linear(I, H), down_proj: linear(H, I),
    }));
    this.norm = ones();
    this.params = [this.embed_tokens, ...this.layers.flatMap((l) => Object.values(l)), this.norm];
    const n = this.params.reduce((a, p) => a + p.size, 0);
    if (n !== countParameters(cfg).total) throw new Error(`bench/peer_tfjs_model.ts: ${n} parameters, model/config.ts counts ${countParameters(cfg).total}`);
  }

  /** Masked mean cross-entropy of next-token prediction (the scalar tf.variableGrads differentiates). */
  loss(b: PeerBatch): tf.Scalar {
    const { B, T } = b;
    const { hidden_size: H, rms_norm_eps: eps } = this.cfg;
    let x = tf.reshape(tf.gather(this.embed_tokens, b.ids), [B * T, H]); // (B·T, H)
    for (const l of this.layers) {
      x = tf.add(x, this.attention(rmsnorm(x, l.input_layernorm, eps), l, b));
      const h = rmsnorm(x, l.post_attention_layernorm, eps);
      const g = linear(h, l.gate_proj); // (B·T, I)
      x = tf.add(x, linear(tf.mul(tf.mul(g, tf.sigmoid(g)), linear(h, l.up_proj)), l.down_proj)); // SwiGLU: down(silu(gate)·up)
    }
    const logits = linear(rmsnorm(x, this.norm, eps), this.embed_tokens); // (B·T, V)
    // b.target is one-hot of the next token, all-zero rows where the label is ignored: Σ target·logp picks the kept ones.
    return tf.div(tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), b.target))), b.count) as tf.Scalar;
  }

  private attention(x: tf.Tensor, l: Layer, b: PeerBatch): tf.Tensor {
    const { B, T } = b;
    const { head_dim: hd, num_attention_heads: nh, num_key_value_heads: nkv, hidden_size: H } = this.cfg;
    const rep = nh / nkv;
    const heads = (W: tf.Variable, n: number) => tf.transpose(tf.reshape(linear(x, W), [B, T, n, hd]), [0, 2, 1, 3]); // (B, n, T, hd)
    const q = rope(heads(l.q_proj, nh), b.cos, b.sin);
    const k = rope(heads(l.k_proj, nkv), b.cos, b.sin);
    const v = heads(l.v_proj, nkv);
    // Query head h reads kv head floor(h / rep), so the rep query heads of one kv head are adjacent: stack them
    // along the query axis (B, nkv, rep·T, hd) and one batched matmul per kv head does all of them.
    const qg = tf.reshape(q, [B, nkv, rep * T, hd]);
    const scores = tf.add(tf.mul(tf.matMul(qg, k, false, true), 1 / Math.sqrt(hd)), b.causal); // (B, nkv, rep·T, T)
    const o = tf.matMul(tf.softmax(scores), v); // (B, nkv, rep·T, hd)
    const merged = tf.reshape(tf.transpose(tf.reshape(o, [B, nh, T, hd]), [0, 2, 1, 3]), [B * T, H]);
    return linear(merged, l.o_proj);
  }

  dispose(): void {
    for (const p of this.params) p.dispose();
  }
}

/** y = x·Wᵀ for W stored [out, in], as torch.nn.Linear. */
function linear(x: tf.Tensor, W: tf.Tensor): tf.Tensor {
  return tf.matMul(x, W, false, true);
}

/** y = w ⊙ x / sqrt(mean(x²) + eps) over the last axis. */
function rmsnorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w);
}

/** Rotate-half RoPE on (B, n, T, hd) with cos/sin tables (T, hd). */
function rope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  const [x1, x2] = tf.split(x, 2, -1);
  return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin));
}

/** One batch's constant inputs on the device: token ids, shifted one-hot targets, and the tables the model needs. */
export interface PeerBatch {
  B: number; T: number;
  ids: tf.Tensor2D; // (B, T) int32
  target: tf.Tensor2D; // (B·T, V): row b·T+t is one-hot of labels[b, t+1], zero when it is -100 or t = T-1
  count: tf.Scalar; // number of kept labels
  cos: tf.Tensor2D; sin: tf.Tensor2D; // (T, hd)
  causal: tf.Tensor2D; // (rep·T, T): 0 where key ≤ query position, -1e9 above the diagonal
}

/** `labels` as the SFT loader gives them: aligned with `ids`, -100 where ignored; shifted here. */
export function peerBatch(cfg: MiniMindConfig, ids: Int32Array, labels: Int32Array, B: number, T: number): PeerBatch {
  const V = cfg.vocab_size;
  const hd = cfg.head_dim;
  const rep = cfg.num_attention_heads / cfg.num_key_value_heads;
  const target = new Float32Array(B * T * V);
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = labels[b * T + t + 1];
      if (y === -100) continue;
      if (y < 0 || y >= V) throw new Error(`peerBatch: label ${y} at [${b}, ${t + 1}] outside the vocabulary 0..${V - 1}`);
      target[(b * T + t) * V + y] = 1;
      count++;
    }
  }
  if (count === 0) throw new Error('peerBatch: every label is -100; the mean loss is undefined');
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < hd / 2; i++) {
      const a = t * cfg.rope_theta ** (-(2 * i) / hd);
      cos[t * hd + i] = cos[t * hd + i + hd / 2] = Math.cos(a);
      sin[t * hd + i] = sin[t * hd + i + hd / 2] = Math.sin(a);
    }
  }
  const causal = new Float32Array(rep * T * T);
  for (let r = 0; r < rep * T; r++) for (let s = (r % T) + 1; s < T; s++) causal[r * T + s] = -1e9;
  return {
    B, T, ids: tf.tensor2d(ids, [B, T], 'int32'), target: tf.tensor2d(target, [B * T, V]), count: tf.scalar(count),
    cos: tf.tensor2d(cos, [T, hd]), sin: tf.tensor2d(sin, [T, hd]), causal: tf.tensor2d(causal, [rep * T, T]),
  };
}

export function disposeBatch(b: PeerBatch): void {
  tf.dispose([b.ids, b.target, b.count, b.cos, b.sin, b.causal]);
}
