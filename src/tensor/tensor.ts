/** The immutable N-d tensor: a shape, a dtype and backend storage. Autograd hangs a node on it. */
import { type Backend, type DType, type TypedArray, getBackend } from '../backends/backend.ts';
import { arrayFor, dtypeOf } from '../backends/kernel.ts';
import { type Shape, checkShape, fmt, sizeOf } from './shape.ts';

export type { DType, TypedArray };

/** @internal Autograd bookkeeping (see src/autograd/trace.ts). */
export interface Node {
  /** Ids of the traces this value depends on. */
  readonly traces: readonly number[];
  /** The tensors this one was computed from (empty for a trace's leaf). */
  readonly inputs: readonly Tensor[];
  /** Pushes the cotangent of this value back to its inputs. */
  readonly pullback: ((ct: Tensor) => readonly (Tensor | null)[]) | null;
}

export class Tensor {
  readonly size: number;
  constructor(
    readonly shape: Shape,
    readonly dtype: DType,
    /** @internal */ readonly storage: unknown,
    /** @internal */ readonly backend: Backend,
    /** @internal */ readonly node: Node | undefined = undefined,
  ) {
    this.size = sizeOf(shape);
    Object.freeze(shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  toString(): string {
    return `Tensor(${fmt(this.shape)}, ${this.dtype})`;
  }
}

export const isTensor = (x: unknown): x is Tensor => x instanceof Tensor;

export { arrayFor };

/**
 * Wraps host data on the current backend: taken as is, not copied, except that the CPU backend copies float32
 * arrays of 1 MiB or more into its wasm heap (where its kernels read them in place). Either way the tensor is
 * immutable: don't write to `data` afterwards.
 */
export function fromArray(data: TypedArray, shape: Shape, backend: Backend = getBackend()): Tensor {
  const dtype = dtypeOf(data);
  return new Tensor([...shape], dtype, backend.upload(data, dtype), backend);
}

type NestedNumbers = number | readonly NestedNumbers[];

function flattenNested(x: NestedNumbers, shape: number[], out: number[], depth: number): void {
  if (typeof x === 'number') {
    if (depth !== shape.length && shape.length > 0) throw new Error('tensor: ragged nested array');
    out.push(x);
    return;
  }
  if (shape.length === depth) shape.push(x.length);
  else if (shape[depth] !== x.length) throw new Error('tensor: ragged nested array');
  for (const v of x) flattenNested(v, shape, out, depth + 1);
}

/**
 * Makes a tensor. The dtype follows the data: Float64Array → float64; Uint8Array → uint8 (images; see
 * DType); Float32Array or numbers → float32 (override with `dtype`; uint8 values must be integers in [0, 255]).
 * Without `shape`, nested arrays give their own shape.
 * @example tensor([1, 2, 3, 4], [2, 2])
 */
export function tensor(
  data: TypedArray | NestedNumbers,
  shape?: Shape,
  dtype?: DType,
): Tensor {
  let flat: ArrayLike<number>;
  let inferred: number[];
  if (typeof data === 'number') {
    flat = [data];
    inferred = [];
  } else if (ArrayBuffer.isView(data)) {
    flat = data;
    inferred = [data.length];
  } else {
    const out: number[] = [];
    inferred = [];
    flattenNested(data, inferred, out, 0);
    flat = out;
  }
  const s = shape ? [...shape] : inferred;
  checkShape('tensor', s);
  if (sizeOf(s) !== flat.length) {
    throw new Error(`tensor: ${flat.length} values do not fill shape ${fmt(s)} (${sizeOf(s)} elements)`);
  }
  const dt: DType = dtype ?? (data instanceof Float64Array ? 'float64' : data instanceof Uint8Array ? 'uint8' : 'float32');
  if (dt === 'uint8' && !(data instanceof Uint8Array)) checkBytes(flat);
  const buf = arrayFor(dt, flat.length);
  buf.set(flat);
  return fromArray(buf, s);
}

/** Throws naming the first value that is not an integer in [0, 255] (what a uint8 tensor holds). */
function checkBytes(flat: ArrayLike<number>): void {
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new Error(`tensor: uint8 values must be integers in [0, 255]; value ${i} is ${v}`);
  }
}

export const scalar = (v: number, dtype: DType = 'float32'): Tensor => tensor([v], [], dtype);

// ---- donation and host reads -------------------------------------------------------------------

const donated = new WeakMap<Tensor, string>();

/** @internal Marks `t` as donated to a jitted call (its buffer now holds another value); `name` is its path in the arguments. */
export const markDonated = (t: Tensor, name: string): void => void donated.set(t, name);

/** @internal Throws if `t` was donated: its storage was reused for an output. */
export function assertLive(t: Tensor, op: string): void {
  const name = donated.get(t);
  if (name !== undefined) throw new Error(`${op}: ${name} (${t}) was donated to a jitted call; its buffer now holds that call's output — use the returned value`);
}

/** @internal The values on the host; inside jit a traced value has none, so the error names the read (`op`). */
export function hostRead(t: Tensor, op: string): TypedArray {
  assertLive(t, op);
  if (t.backend.abstract) {
    throw new Error(`${op}: ${t} is a traced value inside jit and has no host values yet; return it from the jitted function and read it outside`);
  }
  return t.backend.download(t.storage, t.dtype, t.size);
}

/** A typed-array copy of the values (row-major). */
export function dataSync(t: Tensor): TypedArray {
  return hostRead(t, 'dataSync');
}

/** The Promise form of dataSync, for devices that read back asynchronously. */
export async function data(t: Tensor): Promise<TypedArray> {
  if (!t.backend.downloadAsync) return hostRead(t, 'data');
  assertLive(t, 'data');
  return t.backend.downloadAsync(t.storage, t.dtype, t.size);
}

/** The single value of a one-element tensor. */
export function item(t: Tensor): number {
  if (t.size !== 1) throw new Error(`item: tensor of shape ${fmt(t.shape)} has ${t.size} elements, not 1`);
  return hostRead(t, 'item')[0];
}

/** Nested JS arrays of the values. */
export function toArray(t: Tensor): NestedNumbers {
  const d = hostRead(t, 'toArray');
  const build = (dim: number, off: number): NestedNumbers => {
    if (dim === t.shape.length) return d[off];
    const stride = sizeOf(t.shape.slice(dim + 1));
    return Array.from({ length: t.shape[dim] }, (_, i) => build(dim + 1, off + i * stride));
  };
  return build(0, 0);
}
