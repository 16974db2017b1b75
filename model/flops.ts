// Model FLOPs of a training step (forward + backward), the numerator of MFU: 6·(non-embedding params +
// tied head) per token for the matmuls (forward 2, backward 4) plus causal attention 6·L·T·H per token
// (QKᵀ and PV at half the T×T each). Padded positions count: the kernels compute them.
import { countParameters, type MiniMindConfig } from './config.js';

/** FLOPs of one B×T training step. */
export function stepFlops(c: MiniMindConfig, B: number, T: number): number {
  // The tied table is counted once: as the LM head matmul (the embedding gather costs no FLOPs).
  const matmulParams = countParameters(c).active;
  const attn = 6 * c.num_hidden_layers * T * c.num_attention_heads * c.head_dim;
  return B * T * (6 * matmulParams + attn);
}

/** FLOPs of one B×T LoRA step: the frozen base's matmuls forward and dX only (4 per parameter and token: no
 *  weight gradient), the adapters' all three (6 per adapter parameter), attention as in stepFlops. */
export function loraStepFlops(c: MiniMindConfig, adapterParams: number, B: number, T: number): number {
  const attn = 6 * c.num_hidden_layers * T * c.num_attention_heads * c.head_dim;
  return B * T * (4 * countParameters(c).active + 6 * adapterParams + attn);
}
