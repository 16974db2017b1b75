// Prints the WebGPU adapter Dawn finds (one line) and exits 0, or exits 1 when there is none.
// `--features`: a second line with the adapter's features, experimental ones included (Dawn lists those only
// with allow_unsafe_apis), and a third with its subgroup-matrix configurations (tensor-core shapes), for
// scripts/gpu-check.sh's record of a GPU. Plain JS so set-up can run it before anything is compiled.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const features = process.argv.includes('--features');
const gpu = create(features ? ['enable-dawn-features=allow_unsafe_apis'] : []);
const adapter = await gpu.requestAdapter();
if (!adapter) process.exit(1);
const i = adapter.info;
console.log(`${i.vendor || '?'} / ${i.architecture || '?'} / ${i.description || i.device || '?'}`);
if (features) {
  console.log(`features: ${[...adapter.features].sort().join(', ') || 'none'}`);
  const configs = [...(i.subgroupMatrixConfigs ?? [])].map((c) => `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`);
  console.log(`subgroup-matrix configs: ${configs.join(', ') || 'none'}`);
}
process.exit(0);
