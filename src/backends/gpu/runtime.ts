/**
 * The gpu.js runtime behind the 'gpu' backend: picks a gpu.js mode, owns the `GPU` instance, the
 * memoised kernel factory and the storage (pipeline textures on the GL modes, Float32Arrays on
 * webasm/cpu). gpu.js itself is loaded and constructed only when a backend is first initialised,
 * never when the engine is imported.
 *
 * Every kernel writes a 1-D output of the tensor's size in row-major order, so `this.thread.x` IS
 * the row-major flat index and no kernel has to undo gpu.js's reversed [x, y, z] order; multi-
 * dimensional indices are recovered with `coord` below. (A 3-D output would come back from the
 * webasm and cpu modes as nested JS arrays, which is slow to read and to feed back.)
 */
import { createRequire } from 'node:module';
import type { DType, TypedArray } from '../backend.ts';
import { webgpuUnavailableReason } from '../webgpu/index.ts';

/**
 * The modes this backend can run in, best first: 'webgpu' is the engine's own WGSL kernels on a
 * WebGPU device (src/backends/webgpu), the others are gpu.js modes. (gpu.js's own 'webgpu' mode is
 * async-only — every kernel call returns a Promise — which the engine's synchronous kernels cannot use.)
 */
export const gpuModes = ['webgpu', 'webgl2', 'webgl', 'headlessgl', 'webasm', 'cpu'] as const;
export type GpuMode = (typeof gpuModes)[number];

/** What gpu.js hands back from a pipeline kernel on the GL modes. */
export interface GpuTexture {
  toArray(): Float32Array | unknown;
  delete(): void;
  readonly output: number[];
}
export type KernelFn = ((...args: unknown[]) => unknown) & { destroy?(): void };
interface GpuInstance {
  readonly mode: string;
  createKernel(fn: Function | string, settings: object): KernelFn;
  destroy(): void;
}
interface GpuModule {
  GPU: {
    new (settings: { mode: string }): GpuInstance;
    readonly isWebGL2Supported: boolean;
    readonly isWebGLSupported: boolean;
    readonly isHeadlessGLSupported: boolean;
    readonly isWebAssemblySupported: boolean;
  };
}

let gpuModule: GpuModule | undefined;
const loadGpuJs = (): GpuModule => (gpuModule ??= createRequire(import.meta.url)('gpu.js') as GpuModule);

/** Whether `mode` can run here (webgpu: whether an adapter and device come up; the GL modes: whether a GL context can be created). */
export function modeAvailable(mode: GpuMode): boolean {
  if (mode === 'webgpu') return webgpuUnavailableReason() === null;
  const { GPU } = loadGpuJs();
  switch (mode) {
    case 'webgl2':
      return GPU.isWebGL2Supported;
    case 'webgl':
      return GPU.isWebGLSupported;
    case 'headlessgl':
      return GPU.isHeadlessGLSupported;
    case 'webasm':
      return GPU.isWebAssemblySupported;
    case 'cpu':
      return true;
  }
}

/** Why a mode cannot run here, for skip messages; null when it can. */
export function modeUnavailableReason(mode: GpuMode): string | null {
  if (mode === 'webgpu') return webgpuUnavailableReason();
  if (modeAvailable(mode)) return null;
  if (mode === 'headlessgl') {
    return "gpu.js headless-gl: no GL context (the 'gl' module is missing or no X display: run under `xvfb-run -a`, see scripts/with-gl.sh)";
  }
  return `gpu.js mode '${mode}' is not supported on this platform`;
}

export function bestMode(): GpuMode {
  for (const m of gpuModes) if (modeAvailable(m)) return m;
  return 'cpu';
}

/** A tensor's storage on the gpu backend. Reshape shares it; float64 data stays a host array (its kernels run on the CPU). */
export class GpuBuffer {
  constructor(
    /** A pipeline texture (GL modes) or a host array (webasm/cpu modes, float64, empty tensors). */
    public value: GpuTexture | TypedArray,
    readonly size: number,
  ) {}
  get isTexture(): boolean {
    return !ArrayBuffer.isView(this.value);
  }
}

// Textures of buffers the program dropped without dispose() are deleted when the GC collects them.
const finalizer = new FinalizationRegistry<GpuTexture>((tex) => {
  try {
    tex.delete();
  } catch {
    // The GL context may already be gone (gpu.destroy()).
  }
});

export interface KernelSpec {
  /** The kernel: a named top-level function (or its source) reading its sizes from `this.constants`. */
  readonly fn: Function | string;
  readonly output: number;
  readonly constants: Record<string, number>;
  /** Helpers with explicit argument types (gpu.js cannot infer them across modes). */
  readonly functions?: readonly HelperSpec[];
}
export interface HelperSpec {
  readonly source: Function | string;
  readonly argumentTypes: Record<string, string>;
  readonly returnType: string;
}

/**
 * Integer helpers every kernel may call. Division goes through floats on the GL modes, so the
 * quotient is taken at i + 0.5 (exact for indices below 2²² whatever the driver's rounding).
 */
function idiv(a: number, b: number): number {
  return Math.floor((a + 0.5) / b);
}
/** Coordinate of flat index `i` along an axis of extent `d` whose row-major stride is `s`. */
function coord(i: number, s: number, d: number): number {
  const q = Math.floor((i + 0.5) / s);
  return q - Math.floor((q + 0.5) / d) * d;
}
export const indexHelpers: readonly HelperSpec[] = [
  { source: idiv, argumentTypes: { a: 'Number', b: 'Number' }, returnType: 'Number' },
  { source: coord, argumentTypes: { i: 'Number', s: 'Number', d: 'Number' }, returnType: 'Number' },
];

export class GpuRuntime {
  readonly gpu: GpuInstance;
  readonly textures: boolean;
  private readonly kernels = new Map<string, KernelFn>();
  private uploader: KernelFn | undefined;
  /** Kernels compiled so far (for tests and the bench). */
  compiled = 0;
  /** Kernel launches so far (uploads excepted; for tests and the bench). */
  launches = 0;

  constructor(readonly mode: GpuMode) {
    const { GPU } = loadGpuJs();
    if (!modeAvailable(mode)) throw new Error(`gpu backend: ${modeUnavailableReason(mode)}`);
    this.gpu = new GPU({ mode });
    this.textures = mode === 'webgl2' || mode === 'webgl' || mode === 'headlessgl';
  }

  /** The kernel for `key`, built once (gpu.js compiles on the first call). */
  kernel(key: string, build: () => KernelSpec): KernelFn {
    let k = this.kernels.get(key);
    if (!k) {
      const spec = build();
      k = this.gpu.createKernel(spec.fn, {
        output: [spec.output],
        constants: spec.constants,
        functions: [...indexHelpers, ...(spec.functions ?? [])].map(({ source, argumentTypes, returnType }) => ({ source, settings: { argumentTypes, returnType } })),
        // Results stay on the device and every call gets a fresh texture: saved activations must
        // not be overwritten by the next call of the same kernel.
        pipeline: true,
        immutable: true,
        precision: 'single',
        tactic: 'precision',
        loopMaxIterations: 1 << 20,
      });
      this.kernels.set(key, k);
      this.compiled++;
    }
    return k;
  }

  /** Runs a kernel and wraps its result. */
  run(key: string, build: () => KernelSpec, args: readonly GpuBuffer[], size: number): GpuBuffer {
    if (size === 0) return new GpuBuffer(new Float32Array(0), 0);
    const k = this.kernel(key, build);
    this.launches++;
    return this.wrap(k(...args.map((a) => a.value)), size);
  }

  wrap(result: unknown, size: number): GpuBuffer {
    if (ArrayBuffer.isView(result)) return new GpuBuffer(result as Float32Array, size);
    if (result && typeof (result as GpuTexture).delete === 'function') {
      const buf = new GpuBuffer(result as GpuTexture, size);
      finalizer.register(buf, result as GpuTexture, buf);
      return buf;
    }
    throw new Error(`gpu backend (${this.mode}): a kernel returned ${Object.prototype.toString.call(result)}, not a texture or Float32Array`);
  }

  upload(data: TypedArray, dtype: DType): GpuBuffer {
    if (dtype !== 'float32' || !this.textures || data.length === 0) {
      return new GpuBuffer(dtype === 'float32' && !(data instanceof Float32Array) ? Float32Array.from(data) : data, data.length);
    }
    // On the GL modes a copy kernel turns the array into a texture once, so kernels always take
    // textures (one compiled shader per argument type) and constants are not re-sent every call.
    this.uploader ??= this.gpu.createKernel(uploadKernel, {
      output: [1],
      dynamicOutput: true,
      dynamicArguments: true,
      pipeline: true,
      immutable: true,
      precision: 'single',
      tactic: 'precision',
    });
    (this.uploader as unknown as { setOutput(o: number[]): void }).setOutput([data.length]);
    return this.wrap(this.uploader(data), data.length);
  }

  download(buf: GpuBuffer, dtype: DType): TypedArray {
    const v = buf.value;
    if (ArrayBuffer.isView(v)) return v.slice(0, buf.size) as TypedArray;
    const arr = (v as GpuTexture).toArray() as Float32Array;
    const out = dtype === 'float64' ? new Float64Array(buf.size) : new Float32Array(buf.size);
    out.set(arr.length === buf.size ? arr : arr.subarray(0, buf.size));
    return out;
  }

  dispose(buf: GpuBuffer): void {
    if (buf.isTexture) {
      finalizer.unregister(buf);
      (buf.value as GpuTexture).delete();
      buf.value = new Float32Array(0);
    }
  }

  destroy(): void {
    this.gpu.destroy();
    this.kernels.clear();
    this.uploader = undefined;
  }
}

function uploadKernel(this: { thread: { x: number } }, a: Float32Array): number {
  return a[this.thread.x];
}
