/**
 * The 'gpu' backend: the primitives as gpu.js kernels, float32 only (float64 tensors may live here
 * but their ops run on the CPU kernels, see `supports`). Registered at import; gpu.js is loaded
 * and a mode chosen only on `setBackend('gpu')` or the backend's first use.
 *
 * Mode: `configureGpu({ mode })`, else env `STOCHCONV_GPU_MODE`, else the best gpu.js finds
 * (webgl2 > webgl > headlessgl > webasm > cpu). `gpuMode()` says which one runs.
 */
import { type Backend, type DType, type Kernel, registerBackend } from '../backend.ts';
import { convGpuKernels } from './conv.ts';
import { elementwiseGpuKernel, gpuExprs } from './elementwise.ts';
import { layoutKernels } from './layout.ts';
import { reduceKernels } from './reduce.ts';
import { type GpuBuffer, type GpuMode, GpuRuntime, bestMode, gpuModes, modeAvailable, modeUnavailableReason } from './runtime.ts';

export { type GpuMode, gpuModes, modeAvailable as gpuModeAvailable, modeUnavailableReason as gpuModeUnavailableReason } from './runtime.ts';

export interface GpuBackendOptions {
  /** Registry name (default 'gpu'). */
  readonly name?: string;
  /** A gpu.js mode, or 'auto' (default: env STOCHCONV_GPU_MODE, else 'auto'). */
  readonly mode?: GpuMode | 'auto';
}

export interface GpuBackend extends Backend<GpuBuffer> {
  /** The gpu.js mode in use (initialises the backend). */
  mode(): GpuMode;
  /** The runtime (initialises the backend). @internal */
  runtime(): GpuRuntime;
  /** Whether gpu.js has been started. */
  readonly started: boolean;
  /** Picks the mode before the first use; throws once started in another mode. */
  configure(opts: { mode?: GpuMode | 'auto' }): void;
  /** Frees gpu.js (its kernels and textures); the next use starts afresh. Tensors on it become invalid. */
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

/** A gpu.js backend (not registered: pass it to registerBackend). One `GPU` instance each. */
export function createGpuBackend(opts: GpuBackendOptions = {}): GpuBackend {
  let requested = opts.mode;
  let rt: GpuRuntime | undefined;
  const runtime = (): GpuRuntime => (rt ??= new GpuRuntime(resolveMode(requested)));
  const kernels = new Map<string, Kernel<GpuBuffer>>();
  for (const name of Object.keys(gpuExprs)) kernels.set(name, elementwiseGpuKernel(runtime, name));
  const layout = layoutKernels(runtime);
  const table: Record<string, Kernel<GpuBuffer, any>> = { ...layout, ...reduceKernels(runtime, layout.transpose), ...convGpuKernels(runtime) };
  for (const [name, k] of Object.entries(table)) kernels.set(name, k);
  // affine with a fused SiLU (attrs.act): the affine kernel, then the silu kernel, on the device.
  const affine = kernels.get('affine')!;
  const silu = kernels.get('silu')!;
  kernels.set('affine', (inputs, attrs: { act?: 'silu' }, out) => {
    const z = affine(inputs, attrs, out);
    if (attrs.act !== 'silu') return z;
    const y = silu([{ storage: z, shape: out.shape, dtype: out.dtype }], {}, out);
    runtime().dispose(z);
    return y;
  });
  // moments = [mean, mean((x − mean)²)] from the kernels above, staying on the device.
  kernels.set('moments', (inputs, attrs: { axes: number[]; keepdims: boolean }, out) => {
    const [x] = inputs;
    const rest = out.shape.slice(1);
    const kept = x.shape.map((d, i) => (attrs.axes.includes(i) ? 1 : d));
    const n = attrs.axes.reduce((p, a) => p * x.shape[a], 1);
    const spec = (shape: readonly number[]) => ({ shape, dtype: x.dtype });
    const arg = (storage: GpuBuffer, shape: readonly number[]) => ({ storage, shape, dtype: x.dtype });
    const inv = runtime().upload(new Float32Array([1 / n]), 'float32');
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
    for (const t of [inv, s1, mean, xc, sq, s2, v]) runtime().dispose(t);
    return y;
  });
  const backend: GpuBackend = {
    name: opts.name ?? 'gpu',
    kernels,
    upload: (data, dtype) => runtime().upload(data, dtype),
    download: (s, dtype) => runtime().download(s, dtype),
    dispose: (s) => rt?.dispose(s),
    // float32 in, float32 out; everything else (float64, casts) runs on the CPU kernels.
    supports: (_prim, inputs: readonly DType[], out: DType) => out === 'float32' && inputs.every((d) => d === 'float32'),
    init: () => void runtime(),
    describe: () => `gpu (gpu.js ${runtime().mode} mode${runtime().textures ? ', pipeline textures' : ''}, float32)`,
    mode: () => runtime().mode,
    runtime,
    get started() {
      return rt !== undefined;
    },
    configure({ mode }) {
      if (rt && mode && resolveMode(mode) !== rt.mode) {
        throw new Error(`configureGpu: the gpu backend already runs in mode '${rt.mode}'; call it before the first use (or destroy it)`);
      }
      requested = mode;
    },
    destroy() {
      rt?.destroy();
      rt = undefined;
    },
  };
  return backend;
}

/** The backend registered as 'gpu'. */
export const gpuBackend = createGpuBackend();
registerBackend(gpuBackend);

/**
 * The gpu.js mode the 'gpu' backend runs in ('webgl2', 'webgl', 'headlessgl', 'webasm' or 'cpu').
 * @example setBackend('gpu'); console.log(gpuMode()) // 'headlessgl' under Xvfb, else 'webasm'
 */
export const gpuMode = (): GpuMode => gpuBackend.mode();

/** Chooses the 'gpu' backend's gpu.js mode (before its first use); 'auto' picks the best available. */
export const configureGpu = (opts: { mode?: GpuMode | 'auto' }): void => gpuBackend.configure(opts);
