/**
 * The 'gpu' backend: the primitives in float32 on a GPU API, float64 tensors may live here but
 * their ops run on the CPU kernels (see `supports`). Always registered; nothing is loaded and
 * no device is acquired before `setBackend('gpu')` or the backend's first use.
 *
 * Mode: `configureGpu({ mode })`, else env `STOCHCONV_GPU_MODE`, else the best available:
 * webgpu (WGSL on a WebGPU adapter through Dawn, src/backends/webgpu) > gpu.js webgl2 > webgl >
 * headlessgl > webasm > cpu. `gpuMode()` says which one runs, `gpuAdapter()` which WebGPU adapter.
 */
import type { Backend, DType, FusedGroup, FusedKernel, Kernel, TypedArray } from '../backend.ts';
import { type AdapterReport, type WebGpuStorage, downloadWebGpu, downloadWebGpuAsync, uploadWebGpu, webgpuDevice, webgpuKernels } from '../webgpu/index.ts';
import { fuseWebGpu } from '../webgpu/fused.ts';
import { convGpuKernels } from './conv.ts';
import { elementwiseGpuKernel, gpuExprs } from './elementwise.ts';
import { fuseGpuJs } from './fused.ts';
import { layoutKernels } from './layout.ts';
import { reduceKernels } from './reduce.ts';
import { type GpuBuffer, type GpuMode, GpuRuntime, bestMode, gpuModes, modeAvailable, modeUnavailableReason } from './runtime.ts';

export { type GpuMode, gpuModes, modeAvailable as gpuModeAvailable, modeUnavailableReason as gpuModeUnavailableReason } from './runtime.ts';

export interface GpuBackendOptions {
  /** Registry name (default 'gpu'). */
  readonly name?: string;
  /** A mode, or 'auto' (default: env STOCHCONV_GPU_MODE, else 'auto'). */
  readonly mode?: GpuMode | 'auto';
}

/** What runs the kernels in one mode: gpu.js (a `GpuRuntime`) or a WebGPU device. */
interface Engine<S> {
  readonly mode: GpuMode;
  readonly kernels: Map<string, Kernel<S>>;
  upload(data: TypedArray, dtype: DType): S;
  download(s: S, dtype: DType, size: number): TypedArray;
  downloadAsync?(s: S, dtype: DType, size: number): Promise<TypedArray>;
  dispose(s: S): void;
  describe(): string;
  destroy(): void;
  readonly adapter: AdapterReport | null;
  /** Kernels dispatched (webgpu) or launched (gpu.js) so far, for tests and the bench. */
  dispatches(): number;
  /** The jit fusion hook (Backend.fuse), where the mode has one. */
  fuse?(groups: readonly FusedGroup[]): (FusedKernel<S> | null)[];
}

export interface GpuBackend extends Backend<GpuBuffer | WebGpuStorage> {
  /** The mode in use (initialises the backend). */
  mode(): GpuMode;
  /** The WebGPU adapter in webgpu mode, else null (initialises the backend). */
  adapter(): AdapterReport | null;
  /** Kernels dispatched (webgpu) or launched (gpu.js; uploads excepted) so far. */
  dispatches(): number;
  /** The gpu.js runtime (initialises the backend; throws in webgpu mode). @internal */
  runtime(): GpuRuntime;
  /** Whether the backend has been started. */
  readonly started: boolean;
  /** Picks the mode before the first use; throws once started in another mode. */
  configure(opts: { mode?: GpuMode | 'auto' }): void;
  /** Frees the mode's kernels and buffers; the next use starts afresh. Tensors on it become invalid. */
  destroy(): void;
}

function resolveMode(requested: GpuMode | 'auto' | undefined): GpuMode {
  const want = requested ?? ((process.env.STOCHCONV_GPU_MODE || 'auto') as GpuMode | 'auto');
  if (want === 'auto') return bestMode();
  if (!(gpuModes as readonly string[]).includes(want)) {
    throw new Error(`gpu backend: unknown mode '${want}' (STOCHCONV_GPU_MODE or configureGpu); use one of auto, ${gpuModes.join(', ')}`);
  }
  return want;
}

/**
 * Kernels built from the others, staying on the device: affine with a fused SiLU (attrs.act),
 * conv2dAffine = conv2d then that affine, and moments = [mean, mean((x − mean)²)].
 */
function addComposites<S>(kernels: Map<string, Kernel<S>>, upload: (d: Float32Array) => S, dispose: (s: S) => void): void {
  const affine = kernels.get('affine')!;
  const silu = kernels.get('silu')!;
  kernels.set('affine', (inputs, attrs: { act?: 'silu' }, out) => {
    const z = affine(inputs, attrs, out);
    if (attrs.act !== 'silu') return z;
    const y = silu([{ storage: z, shape: out.shape, dtype: out.dtype }], {}, out);
    dispose(z);
    return y;
  });
  const conv = kernels.get('conv2d')!;
  const affineAct = kernels.get('affine')!;
  kernels.set('conv2dAffine', (inputs, attrs: { act?: 'silu' }, out) => {
    const y = conv(inputs.slice(0, 2), attrs, { shape: out.shape, dtype: out.dtype });
    const z = affineAct([{ storage: y, shape: out.shape, dtype: out.dtype }, inputs[2], inputs[3]], { act: attrs.act }, out);
    dispose(y);
    return z;
  });
  kernels.set('moments', (inputs, attrs: { axes: number[]; keepdims: boolean }, out) => {
    const [x] = inputs;
    const rest = out.shape.slice(1);
    const kept = x.shape.map((d, i) => (attrs.axes.includes(i) ? 1 : d));
    const n = attrs.axes.reduce((p, a) => p * x.shape[a], 1);
    const spec = (shape: readonly number[]) => ({ shape, dtype: x.dtype });
    const arg = (storage: S, shape: readonly number[]) => ({ storage, shape, dtype: x.dtype });
    const inv = upload(new Float32Array([1 / n]));
    const sum = kernels.get('sum')!;
    const mul = kernels.get('mul')!;
    const s1 = sum([x], { axes: attrs.axes, keepdims: true }, spec(kept));
    const mean = mul([arg(s1, kept), arg(inv, [])], {}, spec(kept));
    const xc = kernels.get('sub')!([x, arg(mean, kept)], {}, spec(x.shape));
    const sq = mul([arg(xc, x.shape), arg(xc, x.shape)], {}, spec(x.shape));
    const s2 = sum([arg(sq, x.shape)], { axes: attrs.axes, keepdims: true }, spec(kept));
    const v = mul([arg(s2, kept), arg(inv, [])], {}, spec(kept));
    const m = rest.reduce((p, d) => p * d, 1);
    const y = kernels.get('concat')!([arg(mean, [1, m]), arg(v, [1, m])], { axis: 0 }, spec([2, m]));
    for (const t of [inv, s1, mean, xc, sq, s2, v]) dispose(t);
    return y;
  });
}

function gpujsEngine(mode: GpuMode): Engine<GpuBuffer> & { rt: GpuRuntime } {
  const rt = new GpuRuntime(mode);
  const runtime = () => rt;
  const kernels = new Map<string, Kernel<GpuBuffer>>();
  for (const name of Object.keys(gpuExprs)) kernels.set(name, elementwiseGpuKernel(runtime, name));
  const layout = layoutKernels(runtime);
  const table: Record<string, Kernel<GpuBuffer, any>> = { ...layout, ...reduceKernels(runtime, layout.transpose), ...convGpuKernels(runtime) };
  for (const [name, k] of Object.entries(table)) kernels.set(name, k);
  addComposites(kernels, (d) => rt.upload(d, 'float32'), (s) => rt.dispose(s));
  return {
    mode,
    rt,
    kernels,
    upload: (data, dtype) => rt.upload(data, dtype),
    download: (s, dtype) => rt.download(s, dtype),
    dispose: (s) => rt.dispose(s),
    describe: () => `gpu (gpu.js ${mode} mode${rt.textures ? ', pipeline textures' : ''}, float32)`,
    destroy: () => rt.destroy(),
    adapter: null,
    dispatches: () => rt.launches,
    fuse: fuseGpuJs(runtime),
  };
}

function webgpuEngine(): Engine<WebGpuStorage> {
  const dev = webgpuDevice();
  const kernels = webgpuKernels(() => dev) as Map<string, Kernel<WebGpuStorage>>;
  const dispose = (s: WebGpuStorage) => {
    if (!ArrayBuffer.isView(s)) dev.dispose(s);
  };
  addComposites(kernels, (d) => dev.upload(d), dispose);
  return {
    mode: 'webgpu',
    kernels,
    upload: (data, dtype) => uploadWebGpu(dev, data, dtype),
    download: (s, dtype, size) => downloadWebGpu(dev, s, dtype, size),
    downloadAsync: (s, dtype, size) => downloadWebGpuAsync(dev, s, dtype, size),
    dispose,
    describe: () => `gpu (webgpu mode on ${dev.describe()}, float32)`,
    // The device is shared by every webgpu-mode backend of the process and lives as long as it.
    destroy: () => {},
    adapter: dev.adapter,
    dispatches: () => dev.dispatches,
    fuse: fuseWebGpu(() => dev) as Engine<WebGpuStorage>['fuse'],
  };
}

/** A gpu backend (not registered: pass it to registerBackend). */
export function createGpuBackend(opts: GpuBackendOptions = {}): GpuBackend {
  let requested = opts.mode;
  let engine: Engine<any> | undefined;
  const start = (): Engine<any> => {
    if (engine) return engine;
    const mode = resolveMode(requested);
    engine = mode === 'webgpu' ? webgpuEngine() : gpujsEngine(mode);
    return engine;
  };
  const backend: GpuBackend = {
    name: opts.name ?? 'gpu',
    // The table of the mode in use: read only for tensors that live here, i.e. once started.
    get kernels() {
      return start().kernels;
    },
    upload: (data, dtype) => start().upload(data, dtype),
    download: (s, dtype, size) => start().download(s, dtype, size),
    downloadAsync: (s, dtype, size) => {
      const e = start();
      return e.downloadAsync ? e.downloadAsync(s, dtype, size) : Promise.resolve(e.download(s, dtype, size));
    },
    dispose: (s) => engine?.dispose(s),
    // float32 in, float32 out; everything else (float64, casts) runs on the CPU kernels.
    supports: (_prim, inputs: readonly DType[], out: DType) => out === 'float32' && inputs.every((d) => d === 'float32'),
    init: () => void start(),
    describe: () => start().describe(),
    mode: () => start().mode,
    adapter: () => start().adapter,
    dispatches: () => start().dispatches(),
    fuse: (groups) => start().fuse?.(groups) ?? groups.map(() => null),
    runtime: () => {
      const e = start();
      if (!('rt' in e)) throw new Error(`gpu backend: no gpu.js runtime in mode '${e.mode}'`);
      return (e as ReturnType<typeof gpujsEngine>).rt;
    },
    get started() {
      return engine !== undefined;
    },
    configure({ mode }) {
      if (engine && mode && resolveMode(mode) !== engine.mode) {
        throw new Error(`configureGpu: the gpu backend already runs in mode '${engine.mode}'; call it before the first use (or destroy it)`);
      }
      requested = mode;
    },
    destroy() {
      engine?.destroy();
      engine = undefined;
    },
  };
  return backend;
}

/** The backend registered as 'gpu' (src/backends/backend.ts registers it). */
export const gpuBackend = createGpuBackend();

/**
 * The mode the 'gpu' backend runs in ('webgpu', 'webgl2', 'webgl', 'headlessgl', 'webasm' or 'cpu').
 * @example setBackend('gpu'); console.log(gpuMode()) // 'webgpu' where a WebGPU adapter exists
 */
export const gpuMode = (): GpuMode => gpuBackend.mode();

/** The WebGPU adapter the 'gpu' backend runs on (name, vendor, limits), or null outside webgpu mode. */
export const gpuAdapter = (): AdapterReport | null => gpuBackend.adapter();

/** Chooses the 'gpu' backend's mode (before its first use); 'auto' picks the best available. */
export const configureGpu = (opts: { mode?: GpuMode | 'auto' }): void => gpuBackend.configure(opts);
