/**
 * The backend interface the primitives dispatch to (TensorFlow.js's kernel registry, in small):
 * a backend owns storage (typed arrays, GPU textures, ...) and a table of kernels keyed by
 * primitive name. Adding an op = one primitive-table entry + one kernel per backend.
 *
 * Wiring: the built-in backends ('cpu', the default, and 'gpu') are imported here and put in the
 * registry on its first use, so any module that makes a tensor has them, whatever else was
 * imported. Their modules import this one back (types, `writesInto`), so nothing here reads them
 * at import time; `writesInto` is a function declaration so a kernel module may call it while this
 * module is still loading. `registerBackend` adds others. The primitive table is wired the same way
 * (src/autograd/registry.ts).
 */
import type { Shape } from '../tensor/shape.ts';
import { cpuBackend } from './cpu/index.ts';
import { gpuBackend } from './gpu/index.ts';

export type DType = 'float32' | 'float64';
export type TypedArray = Float32Array | Float64Array;

/** What a kernel sees of each input. */
export interface KernelArg<S = unknown> {
  readonly storage: S;
  readonly shape: Shape;
  readonly dtype: DType;
}

export interface OutSpec {
  readonly shape: Shape;
  readonly dtype: DType;
  /**
   * Storage to write the result into (the jit executor's arena slot). A kernel that honours it
   * writes there and returns it; one that returns other storage is copied in by the caller.
   * Never aliases an input unless the caller has checked the op is safe in place.
   */
  readonly into?: unknown;
}

export type Kernel<S = unknown, A = any> = ((inputs: readonly KernelArg<S>[], attrs: A, out: OutSpec) => S) & {
  /** The kernel honours `OutSpec.into` (set with `writesInto`); jit plans arena slots only for such kernels. */
  readonly writesInto?: boolean;
};

/** Marks a kernel as writing into `OutSpec.into` when given. */
export function writesInto<K extends (...a: any[]) => unknown>(k: K): K & { readonly writesInto: true } {
  return Object.assign(k, { writesInto: true as const });
}

export interface Backend<S = unknown> {
  readonly name: string;
  /** Moves host data onto the backend (may keep a reference to `data`: callers pass a fresh copy). */
  upload(data: TypedArray, dtype: DType): S;
  /** A host copy of the storage. */
  download(storage: S, dtype: DType, size: number): TypedArray;
  /** Asynchronous read-back for devices that prefer it. */
  downloadAsync?(storage: S, dtype: DType, size: number): Promise<TypedArray>;
  /** Frees device memory early (the GC does it otherwise). */
  dispose?(storage: S): void;
  readonly kernels: Map<string, Kernel<S>>;
  /** A line saying what the backend runs on (e.g. gpu.js mode). */
  describe?(): string;
  /** Whether the backend's kernel for `prim` takes these dtypes (absent = all); bind runs the CPU kernel otherwise (e.g. float64 on gpu.js). */
  supports?(prim: string, inputs: readonly DType[], out: DType): boolean;
  /** Acquires the device (called by setBackend, so importing a backend costs nothing). */
  init?(): void;
  /**
   * The jit arena hook: backing memory of at least `bytes` for a compiled graph's intermediates
   * (the CPU backend returns an ArrayBuffer; a wasm-memory backend may return its memory's buffer,
   * keeping `offset` bytes reserved below the arena). Absent: jitted graphs run without a memory
   * plan, freeing each intermediate after its last use.
   */
  arena?(bytes: number): { readonly buffer: ArrayBuffer; readonly offset: number };
  /** Typed-array storage views of an arena (the CPU backend's storage is the view itself). */
  view?(buffer: ArrayBuffer, byteOffset: number, dtype: DType, size: number): S;
  /** Storage is symbolic (a jit trace's abstract values): host reads are errors. */
  readonly abstract?: boolean;
}

let backends: Map<string, Backend<any>> | undefined;
let current: Backend<any> | undefined;

/** The registry, holding the built-in backends from its first use on (see the module comment). */
function registry(): Map<string, Backend<any>> {
  if (!backends) {
    backends = new Map([cpuBackend, gpuBackend].map((b) => [b.name, b]));
    current = cpuBackend;
  }
  return backends;
}

/** Adds a backend (replacing one of the same name), selectable with `setBackend(b.name)`. */
export function registerBackend(b: Backend<any>): void {
  const all = registry();
  if (current === all.get(b.name)) current = b;
  all.set(b.name, b);
}

export function findBackend(name: string): Backend<any> {
  const b = registry().get(name);
  if (!b) throw new Error(`setBackend: unknown backend '${name}' (registered: ${listBackends().join(', ')})`);
  return b;
}

/** Selects the backend new tensors and ops run on. */
export function setBackend(name: string): Backend<any> {
  const b = findBackend(name);
  b.init?.();
  current = b;
  return current;
}

/** The backend new tensors and ops run on ('cpu' unless `setBackend` chose another). */
export function getBackend(): Backend<any> {
  registry();
  return current!;
}

export const listBackends = (): string[] => [...registry().keys()];

/** Registers a kernel for a primitive on a backend. */
export function registerKernel<S>(backend: string, prim: string, kernel: Kernel<S>): void {
  findBackend(backend).kernels.set(prim, kernel as Kernel<any>);
}
