/**
 * The gpu backend's 'webgpu' mode: every primitive as a WGSL compute shader on a WebGPU device
 * (Dawn through the optional `webgpu` package: Vulkan, Metal or D3D12 — a real GPU on a server
 * with no display, or Mesa's lavapipe in software). gpu.js 2.24.1 has a webgpu mode too, but its
 * kernels build and return asynchronously (every call is a Promise) and index in f32, so this mode
 * is written on the WebGPU API directly; src/backends/gpu/index.ts selects it.
 *
 * One device per process, started on first use in a worker thread (see device.ts). float32 tensors
 * are GPU buffers; float64 tensors stay host arrays and their ops run on the CPU kernels.
 */
import type { DType, Kernel, TypedArray } from '../backend.ts';
import { convWebGpuKernels } from './conv.ts';
import { WebGpuBuffer, WebGpuDevice, webgpuPackageMissing } from './device.ts';
import { elementwiseWebGpuKernel, wgslExprs } from './elementwise.ts';
import { layoutWebGpuKernels } from './layout.ts';
import { reduceWebGpuKernels } from './reduce.ts';

export { type AdapterReport, WebGpuBuffer, WebGpuDevice } from './device.ts';

/** A tensor's storage in webgpu mode: a GPU buffer (float32) or a host array (float64). */
export type WebGpuStorage = WebGpuBuffer | TypedArray;

let shared: WebGpuDevice | Error | undefined;

/** The process's WebGPU device, started on the first call; throws why there is none. */
export function webgpuDevice(): WebGpuDevice {
  if (shared === undefined) {
    try {
      shared = new WebGpuDevice({ dawn: dawnOptions() });
    } catch (e) {
      shared = e as Error;
    }
  }
  if (shared instanceof Error) throw shared;
  return shared;
}

/** Dawn toggles from env STOCHCONV_WEBGPU_DAWN (comma-separated `key=value` options of `webgpu`'s create()). */
const dawnOptions = (): string[] => (process.env.STOCHCONV_WEBGPU_DAWN ?? '').split(/\s+/).filter(Boolean);

/** Why webgpu mode cannot run here (null when it can); starts the device to find out. */
export function webgpuUnavailableReason(): string | null {
  const missing = webgpuPackageMissing();
  if (missing) return `webgpu: ${missing}`;
  try {
    webgpuDevice();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The primitive kernels on `dev` (the composites — fused affine+SiLU, moments — are added by the gpu backend). */
export function webgpuKernels(dev: () => WebGpuDevice): Map<string, Kernel<WebGpuBuffer>> {
  const kernels = new Map<string, Kernel<WebGpuBuffer>>();
  for (const name of Object.keys(wgslExprs)) kernels.set(name, elementwiseWebGpuKernel(dev, name));
  const layout = layoutWebGpuKernels(dev);
  const table = { ...layout, ...reduceWebGpuKernels(dev, layout.transpose), ...convWebGpuKernels(dev) };
  for (const [name, k] of Object.entries(table)) kernels.set(name, k);
  return kernels;
}

export function uploadWebGpu(dev: WebGpuDevice, data: TypedArray, dtype: DType): WebGpuStorage {
  if (dtype !== 'float32') return data; // float64 and uint8 stay on the host: their ops run on the CPU kernels
  return dev.upload(data instanceof Float32Array ? data : Float32Array.from(data));
}

const toHost = (bytes: ArrayBuffer, dtype: DType): TypedArray => (dtype === 'float64' ? Float64Array.from(new Float32Array(bytes)) : new Float32Array(bytes));

export function downloadWebGpu(dev: WebGpuDevice, s: WebGpuStorage, dtype: DType, size: number): TypedArray {
  if (!(s instanceof WebGpuBuffer)) return s.slice(0, size);
  return toHost(size === 0 ? new ArrayBuffer(0) : dev.readSync(s, size), dtype);
}

export async function downloadWebGpuAsync(dev: WebGpuDevice, s: WebGpuStorage, dtype: DType, size: number): Promise<TypedArray> {
  if (!(s instanceof WebGpuBuffer)) return s.slice(0, size);
  return toHost(size === 0 ? new ArrayBuffer(0) : await dev.read(s, size), dtype);
}
