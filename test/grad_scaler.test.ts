import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { GradScaler, precisionFor } from '../train/grad_scaler.js';

const s = suite('grad_scaler');

s('halves on overflow, doubles after growthInterval good steps in a row (torch GradScaler.update)', () => {
  const g = new GradScaler(1024, 2, 0.5, 3);
  const seen: number[] = [];
  for (const inf of [true, false, false, true, false, false, false, false]) { g.update(inf); seen.push(g.scale); }
  assert.equal(seen, [512, 512, 512, 256, 256, 256, 512, 512]);
  assert.equal(g.state(), { scale: 512, growth_tracker: 1 });
});

s('state round-trips; a bad state is an error naming the file', () => {
  const g = new GradScaler();
  g.load({ scale: 8, growth_tracker: 5 }, 'ckpt.safetensors');
  assert.equal(g.state(), { scale: 8, growth_tracker: 5 });
  assert.throws(() => g.load({ scale: -1, growth_tracker: 0 }, 'ckpt.safetensors'), /ckpt\.safetensors: bad loss-scaler state/);
  assert.throws(() => g.load({ scale: 1, growth_tracker: 0.5 }, 'x'), /bad loss-scaler state/);
});

s('--dtype: float16 and bfloat16 mixed, float32 plain, anything else an error', () => {
  assert.is(precisionFor('float16'), 'f16');
  assert.is(precisionFor('bfloat16'), 'bf16');
  assert.is(precisionFor('float32'), 'f32');
  assert.throws(() => precisionFor('fp8'), /--dtype fp8: expected float32, float16 or bfloat16/);
});

s.run();
