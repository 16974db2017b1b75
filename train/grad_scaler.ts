// Dynamic loss scaling for --dtype float16, as torch.cuda.amp.GradScaler with its defaults: the
// loss is multiplied by `scale` before backward so small gradients survive the float16 matmuls;
// the optimizer unscales (multiplies by 1/scale, exact for powers of two). A step whose gradients
// hold inf/NaN is skipped and the scale halved; after `growthInterval` good steps in a row it doubles.
// bfloat16 has float32's range and, as in torch, no scaler.
import type { Precision } from '../model/minimind.js';

export interface ScalerState { scale: number; growth_tracker: number }

export class GradScaler {
  scale: number;
  /** Good optimizer steps since the last change of scale. */
  growthTracker = 0;

  constructor(readonly initScale = 2 ** 16, readonly growthFactor = 2, readonly backoffFactor = 0.5, readonly growthInterval = 2000) {
    this.scale = initScale;
  }

  /** After each optimizer boundary (torch's scaler.update()); foundInf: the step was skipped. */
  update(foundInf: boolean): void {
    if (foundInf) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker === this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
  }

  state(): ScalerState {
    return { scale: this.scale, growth_tracker: this.growthTracker };
  }

  load(s: ScalerState, where: string): void {
    if (!(s.scale > 0) || !Number.isFinite(s.scale) || !Number.isInteger(s.growth_tracker) || s.growth_tracker < 0) {
      throw new Error(`${where}: bad loss-scaler state ${JSON.stringify(s)}`);
    }
    this.scale = s.scale;
    this.growthTracker = s.growth_tracker;
  }
}

/** What --dtype trains in: float32, or mixed precision with 16-bit Linears (model/minimind.ts linear()). */
export function precisionFor(dtype: string): Precision {
  if (dtype === 'float32') return 'f32';
  if (dtype === 'float16') return 'f16';
  if (dtype === 'bfloat16') return 'bf16';
  throw new Error(`--dtype ${dtype}: expected float32, float16 or bfloat16`);
}
