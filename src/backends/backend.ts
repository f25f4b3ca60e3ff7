/**
 * The backend interface the primitives dispatch to (TensorFlow.js's kernel registry, in small):
 * a backend owns storage (typed arrays, GPU textures, ...) and a table of kernels keyed by
 * primitive name. Adding an op = one primitive-table entry + one kernel per backend.
 *
 * Wiring: the built-in backends ('cpu', the default, and 'gpu') are imported here and are in the
 * registry from the start, so any module that makes a tensor has them, whatever else was imported.
 * Their modules import nothing back from here at run time (see kernel.ts), so there is no import
 * cycle to order. `registerBackend` adds others. The primitive table is wired the same way
 * (src/autograd/registry.ts).
 */
import type { Shape } from '../tensor/shape.ts';
import { cpuBackend } from './cpu/index.ts';
import { gpuBackend } from './gpu/index.ts';

/**
 * Element types. uint8 is for images as they are decoded (one byte per channel value): only `cast` and the
 * stochastic conv's image (read through its `decode`) take it; other ops name it as an error.
 */
export type DType = 'float32' | 'float64' | 'uint8';
export type TypedArray = Float32Array | Float64Array | Uint8Array;
/** The float element types, those every op takes. */
export type FloatDType = Exclude<DType, 'uint8'>;

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
  /**
   * Given storage in `attrs.sums` (`FusedSums`: [N, O] of the output's dtype), the kernel also writes the sum over
   * each plane of its NCHW output there (set with `writesSums`): jit then runs a `sum` over axes [2, 3] of a
   * depthwise conv's output inside the conv's step (the CPU kernels add the values up as they store them).
   */
  readonly writesSums?: boolean;
  /**
   * A 1×1 conv kernel that takes one more input, last: a scale per image and input channel ([N, C, 1, 1]) that its
   * input is multiplied by as the kernel reads it, when the attrs carry `inputScale: true` (jit's `foldInputScale`:
   * squeeze-excite's gate folded into the conv after it).
   */
  readonly inputScale?: boolean;
};

export { takesInputScale, writesInto, writesSums } from './kernel.ts';

/** An operand of a fused node: input `leaf` of the group, or the value of an earlier node. */
export type FusedOperand = { readonly leaf: number } | { readonly node: number };

/**
 * One elementwise primitive of a fused group, without attributes: affine's fused SiLU (`act: 'silu'`) is a `silu`
 * node of its own, and a `broadcastTo` node passes its operand through.
 */
export interface FusedNode {
  readonly prim: string;
  readonly args: readonly FusedOperand[];
}

/** An input of a fused group, read at each output element's index with NumPy broadcasting. */
export interface FusedLeaf {
  readonly shape: Shape;
  readonly dtype: DType;
  /** Element strides over the group's `loopShape` (0 along broadcast axes). */
  readonly strides: readonly number[];
}

/**
 * The reduction that ends a fused group: the expression's values are summed over some axes. The sums are the
 * group's output and the values are never stored, unless `values` is set: then the kernel writes the values as its
 * output (over the group's `shape`) and the sums into the storage its attrs name (`FusedSums`), in one pass.
 */
export interface FusedReduce {
  /** The sums' shape (the sum's output, with or without the summed axes kept as size 1). */
  readonly shape: Shape;
  /** Sum element strides over the group's `loopShape`: 0 along the summed axes. */
  readonly strides: readonly number[];
  /** The values are read elsewhere too: the kernel writes them (its output) as well as the sums. */
  readonly values?: boolean;
}

/**
 * The attrs of a fused kernel whose group writes its values and their sums (`FusedReduce.values`), and what a
 * `writesSums` kernel finds beside its own attrs.
 */
export interface FusedSums<S = unknown> {
  /** Storage the sums are written into (the group's dtype, `FusedReduce.shape`; a conv's: [N, O]). */
  readonly sums: S;
}

/**
 * A chain (a tree, in general) of elementwise primitives that jit runs as one kernel, described for a backend's code
 * generator: its inputs (leaves), the expression over them and its output. Every node computes one value per element
 * of `shape`, so intermediates never need storage. With `reduce`, the output is the sum of the last node's values
 * over the axes `reduce` names (a `sum` fused with the elementwise work producing its input); a backend that has no
 * code for that declines the group.
 */
export interface FusedGroup {
  /** The shape the nodes are evaluated over (the output's shape, unless the group reduces). */
  readonly shape: Shape;
  readonly dtype: DType;
  /**
   * `shape` with size-1 axes dropped and the axes every leaf (and a reduction's output) walks contiguously merged
   * (what a loop runs over).
   */
  readonly loopShape: readonly number[];
  /** The group's inputs, in kernel-argument order. */
  readonly leaves: readonly FusedLeaf[];
  /** The nodes in evaluation order; the last one is the output. */
  readonly nodes: readonly FusedNode[];
  /** Present when the group sums its values (see `FusedReduce`). */
  readonly reduce?: FusedReduce;
  /** Identifies the expression, shapes, dtypes and reduction: groups with equal keys compile to the same kernel. */
  readonly key: string;
}

/**
 * A fused group's kernel: an ordinary kernel over the group's leaves (attrs `{}`, or `FusedSums` for a group that
 * writes its values and their sums), marked `writesInto` where it
 * writes into the caller's storage (jit then plans its output in the arena like any primitive's), and saying what
 * it runs as ('wasm-simd', 'js', 'wgsl', 'gpu.js', …) for `Lowered.stats.fusedBy`.
 */
export type FusedKernel<S = unknown> = Kernel<S> & { readonly via: string };

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
   * The jit arena hook: the backend's one arena of at least `bytes` for compiled graphs' intermediates, as the
   * buffer it lies in now and its byte offset there. The backend keeps a single arena and replaces it (contents
   * not kept) when asked for more; asked again for no more, it returns the same offset. The buffer may change
   * between calls (the CPU backend's arena is a region of the growable wasm heap): a caller re-makes its views
   * whenever buffer or offset differ from those it bound. Absent: jitted graphs run without a memory plan,
   * freeing each intermediate after its last use.
   */
  arena?(bytes: number): { readonly buffer: ArrayBufferLike; readonly offset: number };
  /** Typed-array storage views of an arena (the CPU backend's storage is the view itself). */
  view?(buffer: ArrayBufferLike, byteOffset: number, dtype: DType, size: number): S;
  /**
   * jit: a copy of `storage` in the memory the backend's kernels address in place (the CPU backend's wasm heap),
   * owned by the returned storage and freed when that is garbage-collected; undefined when `storage` is there
   * already or the backend cannot. jit moves donated buffers there, so they stay there from call to call.
   */
  pin?(storage: S, dtype: DType): S | undefined;
  /**
   * The jit fusion hook: one kernel per fused group (elementwise, or ending in a sum: `FusedGroup.reduce`), or null
   * for a group the backend declines (an op, a dtype, a reduction or a binding limit it cannot serve), whose
   * primitives jit then runs one by one (a declined group's elementwise part is offered again). It receives the new
   * groups of a compiled graph all at once, so a backend may build them into one module; jit caches the results
   * by group key, per backend kernel table. Absent: no fusion.
   */
  fuse?(groups: readonly FusedGroup[]): (FusedKernel<S> | null)[];
  /** Storage is symbolic (a jit trace's abstract values): host reads are errors. */
  readonly abstract?: boolean;
}

const backends = new Map<string, Backend<any>>([cpuBackend, gpuBackend].map((b) => [b.name, b]));
let current: Backend<any> = cpuBackend;

/** Adds a backend (replacing one of the same name), selectable with `setBackend(b.name)`. */
export function registerBackend(b: Backend<any>): void {
  if (current === backends.get(b.name)) current = b;
  backends.set(b.name, b);
}

export function findBackend(name: string): Backend<any> {
  const b = backends.get(name);
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
  return current;
}

export const listBackends = (): string[] => [...backends.keys()];

/** Registers a kernel for a primitive on a backend. */
export function registerKernel<S>(backend: string, prim: string, kernel: Kernel<S>): void {
  findBackend(backend).kernels.set(prim, kernel as Kernel<any>);
}
