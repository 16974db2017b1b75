// LoRA as MiniMind applies it (model/model_lora.py, spec §11): every nn.Linear whose in_features equals its
// out_features gets an adapter, y = W·x + B(A(x)), A [r, in] ~ N(0, 0.02), B [out, r] = 0, no alpha/r scaling,
// no dropout; rank 8 in MiniMind2, 16 in minimind-3 (apply_lora's default, no flag). For every shipped preset
// that is per layer q_proj and o_proj only; the rule, not that list, decides (nkv = nh adds k/v, an
// intermediate size equal to H the MLP). A and B live in a ParamStore of their own (trainable, in MiniMind's
// named_parameters order: per module A then B); the model's own store stays as it is (frozen for training).
// The model calls adapt() on each projection's output: a projection fused with others (q|k|v, gate|up) gets its
// adapter's output added into its own columns (kernels/add_columns.ts), so the base is still one matmul.
import { Tensor } from '../runtime/tensor.js';
import { ParamStore } from '../runtime/param_store.js';
import { writeBuffer } from '../runtime/kernel.js';
import { gaussian, mulberry32 } from '../runtime/random.js';
import { matmul } from '../kernels/index.js';
import type { MatmulOptions } from '../kernels/matmul.js';
import { addColumns } from '../kernels/add_columns.js';
import { parameterShapes, type MiniMindConfig } from './config.js';
import { optimizerOrder } from './resume_pth.js';

export type Generation = 'minimind2' | 'minimind3';

/** The MiniMind line a config follows: minimind-3's aux-loss form marks it (as in model/resume_pth.ts). */
export const generationOf = (c: MiniMindConfig): Generation => (c.aux_form === 'minimind3' ? 'minimind3' : 'minimind2');

/** apply_lora's default rank (H:model/model_lora.py:21 16; M2:model/model_lora.py:21 8). */
export const loraRank = (c: MiniMindConfig): number => (generationOf(c) === 'minimind3' ? 16 : 8);

/** An nn.Linear of MiniMind by module name (`model.layers.0.self_attn.q_proj`), weight [out, in]. */
export interface LinearModule { name: string; out: number; in: number }

/** MiniMind's nn.Linear modules in named_modules() order: every 2-D weight in module order (optimizerOrder:
 *  minimind-3 registers an MoE router before its experts) except the embedding (an nn.Embedding) and
 *  MiniMind2's router (an nn.Parameter of MoEGate, not a Linear), then lm_head (its own module, tied weight). */
export function linearModules(c: MiniMindConfig): LinearModule[] {
  const shapes = new Map(parameterShapes(c));
  const out: LinearModule[] = [];
  for (const key of optimizerOrder(c)) {
    const s = shapes.get(key)!;
    if (s.length !== 2 || key === 'model.embed_tokens.weight') continue;
    if (key.endsWith('.mlp.gate.weight') && generationOf(c) === 'minimind2') continue;
    out.push({ name: key.slice(0, -'.weight'.length), out: s[0], in: s[1] });
  }
  out.push({ name: 'lm_head', out: c.vocab_size, in: c.hidden_size });
  return out;
}

/** apply_lora's selection: the square Linear modules, in named_modules() order. */
export const loraTargets = (c: MiniMindConfig): LinearModule[] => linearModules(c).filter((m) => m.in === m.out);

/** The adapter file's keys of one module, as MiniMind names them (state-dict order: A, then B). */
export const adapterKeys = (module: string): [string, string] => [`${module}.lora.A.weight`, `${module}.lora.B.weight`];

interface Adapter { A: Tensor; B: Tensor }

export class LoRA {
  /** A and B of every target: trainable views, MiniMind's named_parameters order. */
  readonly store: ParamStore;
  readonly rank: number;
  readonly targets: LinearModule[];
  private readonly adapters = new Map<string, Adapter>();
  /** Output width of every projection (adapted or not), to place an adapter inside a fused output. */
  private readonly widths: Map<string, number>;

  /** o.seed: A's N(0, 0.02) draws (MiniMind draws from torch's RNG, which no port replays; load a file for
   *  its A). o.rank: default apply_lora's for the config's generation. */
  constructor(readonly cfg: MiniMindConfig, o: { seed?: number; rank?: number } = {}) {
    this.rank = o.rank ?? loraRank(cfg);
    this.targets = loraTargets(cfg);
    // Every 2-D weight's module (MiniMind2's router too, an nn.Parameter the model still calls adapt() with).
    this.widths = new Map([...parameterShapes(cfg).filter(([, s]) => s.length === 2).map(([k, s]): [string, number] => [k.slice(0, -'.weight'.length), s[0]]),
      ['lm_head', cfg.vocab_size]]);
    if (!this.targets.length) throw new Error(`LoRA: no square Linear module in this config (hidden_size ${cfg.hidden_size}), nothing to adapt`);
    // apply_lora would walk into the new A = Linear(in, r) and B = Linear(r, out) and adapt them too when square.
    const nested = this.targets.find((m) => m.in === this.rank);
    if (nested) throw new Error(`LoRA: rank ${this.rank} equals ${nested.name}'s width: MiniMind's apply_lora would nest adapters in A and B`);
    const r = this.rank;
    this.store = new ParamStore(this.targets.flatMap((m) => {
      const [a, b] = adapterKeys(m.name);
      return [[a, [r, m.in]], [b, [m.out, r]]] as [string, number[]][];
    }));
    const normal = gaussian(mulberry32(o.seed ?? 0));
    for (const m of this.targets) {
      const [a, b] = adapterKeys(m.name);
      const A = this.store.get(a);
      writeBuffer(A.buffer, A.offset, Float32Array.from({ length: A.size }, () => 0.02 * normal())); // B stays 0
      this.adapters.set(m.name, { A, B: this.store.get(b) });
    }
  }

  /** [key, tensor] of every adapter weight in MiniMind's save_lora order (per module A, B). */
  entries(): [string, Tensor][] {
    return [...this.store.params.entries()];
  }

  /** y [..., Σ out] = the outputs of the Linear modules `modules` (stored side by side) for input x, with
   *  each adapted module's B(A(x)) added into its columns, in place (y must be the base matmul's fresh output,
   *  read by nothing else); y itself when none of them is adapted. The two adapter matmuls take the base's
   *  options (MiniMind runs all three under one autocast). */
  adapt(x: Tensor, y: Tensor, modules: readonly string[], mo: MatmulOptions = {}): Tensor {
    const N = y.shape.at(-1)!;
    let out = y, c0 = 0;
    for (const m of modules) {
      const width = this.widths.get(m);
      if (width === undefined) throw new Error(`LoRA.adapt: ${m} is not a projection of this model`);
      const ad = this.adapters.get(m);
      if (ad) {
        const d = matmul(matmul(x, ad.A, mo), ad.B, mo); // [..., r] then [..., out]
        out = addColumns(out, d, c0); // in place: y is the base matmul's fresh output
        d.releaseData(); // no backward reads it: its memory back now rather than at the step's end
      }
      c0 += width;
    }
    if (c0 !== N) throw new Error(`LoRA.adapt: modules ${modules.join(', ')} give ${c0} columns, the output has ${N}`);
    return out;
  }

  dispose(): void {
    this.store.dispose();
  }
}
