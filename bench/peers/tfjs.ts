/** Loads TensorFlow.js (one CommonJS instance) with its cpu, wasm or webgpu backend, for peer rows. */
import { createRequire } from 'node:module';
import path from 'node:path';

export type TF = typeof import('@tensorflow/tfjs');

/**
 * Selects tfjs backend 'cpu', 'wasm' (SIMD; 2 threads where Node allows) or 'webgpu' (on
 * `navigator.gpu` from the `webgpu` package, i.e. the adapter the engine's webgpu mode uses) and
 * says what it got.
 */
export async function loadTfjs(backend: 'cpu' | 'wasm' | 'webgpu'): Promise<{ tf: TF; note: string }> {
  const req = createRequire(import.meta.url);
  const tf: TF = req('@tensorflow/tfjs');
  let note = 'tfjs-cpu';
  if (backend === 'webgpu') {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    Object.defineProperty(globalThis, 'navigator', { value: { gpu: create([]) }, configurable: true });
    req('@tensorflow/tfjs-backend-webgpu');
    if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs-backend-webgpu did not initialise (no WebGPU adapter?)');
    const info = (tf.backend() as unknown as { adapterInfo?: { vendor?: string; architecture?: string } }).adapterInfo;
    note = `tfjs-webgpu on ${info?.vendor ?? '?'} ${info?.architecture ?? ''}`.trim();
  } else if (backend === 'wasm') {
    const wasm = req('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/');
    wasm.setThreadsCount(2);
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs-backend-wasm did not initialise');
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const mt = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    note = `tfjs-wasm SIMD ${simd ? 'on' : 'off'}, threads ${mt ? wasm.getThreadsCount() : 1}`;
  } else {
    await tf.setBackend('cpu');
  }
  await tf.ready();
  return { tf, note };
}
