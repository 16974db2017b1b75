// Prints the WebGPU adapter Dawn finds (one line) and exits 0, or exits 1 when there is none.
// Plain JS so set-up can run it before anything is compiled.
import { create, globals } from 'webgpu';
Object.assign(globalThis, globals);
const gpu = create([]);
const adapter = await gpu.requestAdapter();
if (!adapter) process.exit(1);
const i = adapter.info;
console.log(`${i.vendor || '?'} / ${i.architecture || '?'} / ${i.description || i.device || '?'}`);
process.exit(0);
