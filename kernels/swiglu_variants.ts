// swiglu_packed's float16 variants (kernels/swiglu.ts): converting through WGSL's f16 types (adapters with
// shader-f16; on a GPU an instruction) or by integer and float32 rounding (any adapter; on lavapipe, whose f16
// conversions are slow, the faster: forward 16.1 vs 25.3 ms, backward 28.0 vs 39.9 ms at 5440×2·1408, one
// bench run, Xeon). One choice serves both passes; the trial times a forward and a backward.
import { Tensor } from '../runtime/tensor.js';
import { gpu } from '../runtime/device.js';
import type { Tunable } from '../runtime/tuner.js';
import { launchPacked16Pass, packedHalf, packedSides, reference16, type SwigluOptions } from './swiglu.js';
import { reference as round16 } from './cast.js';
import { host, fixedTrial } from './case.js';

/** gu [rows, 2I] (float16). */
export interface SwigluShape { rows: number; I: number }
type F16Variant = Required<SwigluOptions>;

const p2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const PACKED: F16Variant = { f16: 'packed' }, NATIVE: F16Variant = { f16: 'native' };
const ROWS = 4; // rows compared with the reference

export const swigluF16Tunable: Tunable<SwigluShape, F16Variant> = {
  name: 'swiglu_packed_f16', key: (s) => `${s.I % 8 ? 'word' : 'vec4'} n${p2(s.rows * s.I)}`,
  variants: () => (gpu().features.has('shader-f16') ? [PACKED, NATIVE] : [PACKED]),
  // Hand-picked: native on a GPU that has it; lavapipe's f16 conversions were slower than the integer rounding.
  fallback: () => (gpu().features.has('shader-f16') && !gpu().isSoftware ? NATIVE : PACKED),
  label: (v) => v.f16,
  trial(s) {
    const { rows, I } = s, n = Math.min(rows, ROWS);
    const guh = round16(host([rows, 2 * I], 41, 4), 'f16'), dyh = round16(host([rows, I], 42, 2), 'f16');
    const gu = Tensor.fromArray(guh, [rows, 2 * I], 'f16').keep(), dy = Tensor.fromArray(dyh, [rows, I], 'f16').keep();
    const y = Tensor.empty([rows, I], 'f16').keep(), dgu = Tensor.empty([rows, 2 * I], 'f16').keep();
    return fixedTrial<F16Variant>({
      run: (v) => { launchPacked16Pass(v, gu, y); launchPacked16Pass(v, gu, dgu, dy); },
      outputs: [y, dgu],
      want: () => {
        const g = packedHalf(guh, n, I, false), u = packedHalf(guh, n, I, true);
        return [reference16.forward(g, u, 'f16'), packedSides(reference16.backward(g, u, Float64Array.from(dyh.subarray(0, n * I)), 'f16'), n, I)];
      },
      // float16 storage: within an ulp (2^-10 relative; 2^-24 the subnormal spacing).
      rtol: 2 ** -10, atol: 2 ** -24, owned: [gu, dy, y, dgu],
    });
  },
};
