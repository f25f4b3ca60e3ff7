/**
 * The public ops. Each is a thin wrapper that validates arguments and binds a primitive from the
 * table (src/autograd/primitives.ts), or a composite of primitives whose gradient follows for free.
 */
import type { DType } from '../backends/backend.ts';
import { bind, detach } from '../autograd/trace.ts';
import { type Shape, broadcastShapes, checkShape, fmt, normAxes, normAxis, reducedShape, sizeOf } from './shape.ts';
import { type Tensor, arrayFor, fromArray, hostRead } from './tensor.ts';

export type TensorLike = Tensor | number;

const lift = (x: TensorLike, like: TensorLike, dtype?: DType): Tensor =>
  typeof x === 'number'
    ? full([], x, dtype ?? (typeof like === 'number' ? 'float32' : like.dtype))
    : x;

// ---- creation ----------------------------------------------------------------------------------

export function full(shape: Shape, value: number, dtype: DType = 'float32'): Tensor {
  checkShape('full', shape);
  const a = arrayFor(dtype, sizeOf(shape));
  if (value !== 0) a.fill(value);
  return fromArray(a, shape);
}
export const zeros = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 0, dtype);
export const ones = (shape: Shape, dtype: DType = 'float32'): Tensor => full(shape, 1, dtype);
export const zerosLike = (x: Tensor): Tensor => full(x.shape, 0, x.dtype);
export const onesLike = (x: Tensor): Tensor => full(x.shape, 1, x.dtype);

/** Values start, start + step, … below stop (NumPy's arange). `arange(n)` = 0 … n − 1. */
export function arange(start: number, stop?: number, step = 1, dtype: DType = 'float32'): Tensor {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('arange: step must not be 0');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const a = arrayFor(dtype, n);
  for (let i = 0; i < n; i++) a[i] = start + i * step;
  return fromArray(a, [n]);
}

/** The n × m identity (m = n by default). */
export function eye(n: number, m = n, dtype: DType = 'float32'): Tensor {
  checkShape('eye', [n, m]);
  const a = arrayFor(dtype, n * m);
  for (let i = 0; i < Math.min(n, m); i++) a[i * m + i] = 1;
  return fromArray(a, [n, m]);
}

// ---- elementwise -------------------------------------------------------------------------------

const unary = (name: string) => (x: Tensor): Tensor => bind(name, [x], {});
const binary = (name: string) => (a: TensorLike, b: TensorLike): Tensor => bind(name, [lift(a, b), lift(b, a)], {});

export const neg = unary('neg');
export const exp = unary('exp');
export const log = unary('log');
export const sqrt = unary('sqrt');
export const abs = unary('abs');
export const sign = unary('sign');
export const sigmoid = unary('sigmoid');
export const tanh = unary('tanh');
export const relu = unary('relu');
/** x · sigmoid(x), a.k.a. swish. */
export const silu = unary('silu');
/** log(1 + eˣ), computed stably. */
export const softplus = unary('softplus');

export const add = binary('add');
export const sub = binary('sub');
export const mul = binary('mul');
export const div = binary('div');
export const pow = binary('pow');
export const maximum = binary('maximum');
export const minimum = binary('minimum');
export const square = (x: Tensor): Tensor => mul(x, x);
/** x·a + b in one pass (broadcasting); with `{ act: 'silu' }`, silu(x·a + b) in the same kernel. */
export const affine = (x: TensorLike, a: TensorLike, b: TensorLike, opts: { act?: 'silu' } = {}): Tensor => {
  const X = lift(x, typeof a === 'number' ? b : a);
  return bind('affine', [X, lift(a, X), lift(b, X)], opts.act ? { act: opts.act } : {});
};
/** ct · silu'(x), the VJP of silu in one pass. */
export const siluGrad = binary('siluGrad');

// Comparisons return 0/1 in the inputs' dtype and carry no gradient.
export const greater = binary('greater');
export const greaterEqual = binary('greaterEqual');
export const less = (a: TensorLike, b: TensorLike): Tensor => greater(b, a);
export const lessEqual = (a: TensorLike, b: TensorLike): Tensor => greaterEqual(b, a);
export const equal = binary('equal');

/** Elementwise choice: a where cond ≠ 0, else b (all three broadcast). */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const A = lift(a, typeof b === 'number' ? cond : b);
  return bind('where', [cond, A, lift(b, A)], {});
}

/** Clamps to [lo, hi]; the gradient passes where lo ≤ x ≤ hi. */
export function clip(x: Tensor, lo: number, hi: number): Tensor {
  if (lo > hi) throw new Error(`clip: lower bound ${lo} is above upper bound ${hi}`);
  return minimum(maximum(x, lo), hi);
}

// ---- reductions --------------------------------------------------------------------------------

export interface ReduceOptions {
  readonly keepdims?: boolean;
}
export type Axes = number | readonly number[];

const reduce = (name: string) => (x: Tensor, axes?: Axes, opts: ReduceOptions = {}): Tensor =>
  bind(name, [x], { axes: normAxes(name, axes, x.rank), keepdims: opts.keepdims ?? false });

/** Sum over `axes` (all when omitted). */
export const sum = reduce('sum');
/** Maximum over `axes`; ties share the gradient equally. */
export const max = reduce('max');
export const min = (x: Tensor, axes?: Axes, opts?: ReduceOptions): Tensor => neg(max(neg(x), axes, opts));

export function mean(x: Tensor, axes?: Axes, opts?: ReduceOptions): Tensor {
  const ax = normAxes('mean', axes, x.rank);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  return div(sum(x, ax, opts), n);
}

/** Mean and biased variance over `axes` (two exact passes; one kernel). */
export function moments(x: Tensor, axes?: Axes, opts: ReduceOptions = {}): [mean: Tensor, variance: Tensor] {
  const ax = normAxes('moments', axes, x.rank);
  const m = bind('moments', [x], { axes: ax, keepdims: opts.keepdims ?? false });
  const rest = m.shape.slice(1);
  return [reshape(slice(m, [0], [1]), rest), reshape(slice(m, [1], [1]), rest)];
}

/** log Σ exp(x) over `axes`, shifted by the (constant) maximum for stability. */
export function logSumExp(x: Tensor, axes?: Axes, opts: ReduceOptions = {}): Tensor {
  const ax = normAxes('logSumExp', axes, x.rank);
  const m = stopGradient(max(x, ax, { keepdims: true }));
  const mSafe = where(equal(abs(m), Infinity), 0, m);
  const s = add(log(sum(exp(sub(x, mSafe)), ax, { keepdims: true })), mSafe);
  return opts.keepdims ? s : reshape(s, reducedShape(x.shape, ax, false));
}

export const logSoftmax = (x: Tensor, axis = -1): Tensor => sub(x, logSumExp(x, axis, { keepdims: true }));
export const softmax = (x: Tensor, axis = -1): Tensor => exp(logSoftmax(x, axis));

/** Index of the maximum along `axis` (not differentiable), as float values. */
export function argmax(x: Tensor, axis = -1): Tensor {
  const ax = normAxis('argmax', axis, x.rank);
  const moved = moveAxisLast(x, ax);
  const n = x.shape[ax];
  const d = hostRead(moved, 'argmax');
  const rows = moved.size / Math.max(n, 1);
  const out = arrayFor(x.dtype, rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let j = 1; j < n; j++) if (d[r * n + j] > d[r * n + best]) best = j;
    out[r] = best;
  }
  return fromArray(out, reducedShape(x.shape, [ax], false));
}

const moveAxisLast = (x: Tensor, ax: number): Tensor =>
  ax === x.rank - 1 ? x : transpose(x, [...x.shape.keys()].filter((i) => i !== ax).concat(ax));

// ---- linear algebra ----------------------------------------------------------------------------

export interface MatmulOptions {
  readonly transposeA?: boolean;
  readonly transposeB?: boolean;
}

/** Matrix product with NumPy semantics: batched over leading dims, which broadcast; 1-D operands are promoted. */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  if (a.rank === 0 || b.rank === 0) throw new Error(`matmul: operands must be at least 1-D, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const aVec = a.rank === 1;
  const bVec = b.rank === 1;
  const A = aVec ? reshape(a, [1, a.shape[0]]) : a;
  const B = bVec ? reshape(b, [b.shape[0], 1]) : b;
  let y = bind('matmul', [A, B], { transA: !!opts.transposeA && !aVec, transB: !!opts.transposeB && !bVec });
  if (aVec) y = squeeze(y, [-2]);
  if (bVec) y = squeeze(y, [-1]);
  return y;
}

// ---- shape ops ---------------------------------------------------------------------------------

/** Same values, new shape; one dimension may be −1 (inferred). */
export function reshape(x: Tensor, shape: Shape): Tensor {
  const s = [...shape];
  const infer = s.indexOf(-1);
  if (infer >= 0) {
    if (s.indexOf(-1, infer + 1) >= 0) throw new Error(`reshape: more than one -1 in ${fmt(shape)}`);
    const rest = sizeOf(s.filter((_, i) => i !== infer));
    if (rest === 0 || x.size % rest !== 0) throw new Error(`reshape: cannot reshape ${fmt(x.shape)} into ${fmt(shape)}`);
    s[infer] = x.size / rest;
  }
  checkShape('reshape', s);
  if (sizeOf(s) !== x.size) {
    throw new Error(`reshape: cannot reshape ${fmt(x.shape)} (${x.size} elements) into ${fmt(shape)} (${sizeOf(s)} elements)`);
  }
  if (s.length === x.rank && s.every((d, i) => d === x.shape[i])) return x;
  return bind('reshape', [x], { shape: s });
}

export const flatten = (x: Tensor, startAxis = 0): Tensor => {
  const a = normAxis('flatten', startAxis, Math.max(x.rank, 1));
  return reshape(x, [...x.shape.slice(0, a), -1]);
};

/** Permutes the axes (reverses them by default). */
export function transpose(x: Tensor, perm?: readonly number[]): Tensor {
  const p = perm ? perm.map((a) => normAxis('transpose', a, x.rank)) : [...x.shape.keys()].reverse();
  if (p.length !== x.rank || new Set(p).size !== p.length) {
    throw new Error(`transpose: [${perm}] is not a permutation of the axes of shape ${fmt(x.shape)}`);
  }
  if (p.every((a, i) => a === i)) return x;
  return bind('transpose', [x], { perm: p });
}
export const permute = transpose;

/** Removes size-1 axes (the given ones, or all). */
export function squeeze(x: Tensor, axes?: readonly number[]): Tensor {
  const ax = axes ? normAxes('squeeze', axes, x.rank) : x.shape.flatMap((d, i) => (d === 1 ? [i] : []));
  for (const a of ax) if (x.shape[a] !== 1) throw new Error(`squeeze: axis ${a} of shape ${fmt(x.shape)} is not 1`);
  return reshape(x, x.shape.filter((_, i) => !ax.includes(i)));
}

/** Inserts a size-1 axis at `axis`. */
export function expandDims(x: Tensor, axis: number): Tensor {
  const a = normAxis('expandDims', axis, x.rank + 1);
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return reshape(x, s);
}
export const unsqueeze = expandDims;

export function broadcastTo(x: Tensor, shape: Shape): Tensor {
  const s = broadcastShapes('broadcastTo', x.shape, shape);
  if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) {
    throw new Error(`broadcastTo: shape ${fmt(x.shape)} cannot be broadcast to ${fmt(shape)}`);
  }
  if (s.length === x.rank && s.every((d, i) => d === x.shape[i])) return x;
  return bind('broadcastTo', [x], { shape: s });
}

/** Sums a tensor down to `shape` (the inverse of broadcasting; used by autograd). */
export function sumTo(x: Tensor, shape: Shape): Tensor {
  const lead = x.rank - shape.length;
  if (lead < 0) throw new Error(`sumTo: cannot sum ${fmt(x.shape)} to the larger rank of ${fmt(shape)}`);
  const axes: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && x.shape[i] !== 1)) axes.push(i);
    else if (shape[i - lead] !== x.shape[i]) throw new Error(`sumTo: cannot sum ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  return reshape(axes.length ? sum(x, axes, { keepdims: true }) : x, shape);
}

/**
 * A box of `x`: `begin` per axis (negative counts from the end) and `size` per axis (−1: to the end).
 * Missing trailing axes are taken whole.
 */
export function slice(x: Tensor, begin: readonly number[], size?: readonly number[]): Tensor {
  if (begin.length > x.rank) throw new Error(`slice: ${begin.length} begin indices for shape ${fmt(x.shape)}`);
  const b: number[] = [];
  const s: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const d = x.shape[i];
    let bi = begin[i] ?? 0;
    if (bi < 0) bi += d;
    let si = size?.[i] ?? -1;
    if (si === -1) si = d - bi;
    if (!Number.isInteger(bi) || !Number.isInteger(si) || bi < 0 || si < 0 || bi + si > d) {
      throw new Error(`slice: begin [${begin}] size [${size ?? []}] is outside shape ${fmt(x.shape)} (axis ${i})`);
    }
    b.push(bi);
    s.push(si);
  }
  if (s.every((d, i) => d === x.shape[i])) return x;
  return bind('slice', [x], { begin: b, size: s });
}

/** Pads with `value`: `widths[i] = [before, after]` for axis i (missing axes: no padding). */
export function pad(x: Tensor, widths: readonly (readonly [number, number])[], value = 0): Tensor {
  if (widths.length > x.rank) throw new Error(`pad: ${widths.length} pad widths for shape ${fmt(x.shape)}`);
  const w = x.shape.map((_, i) => [...(widths[i] ?? [0, 0])] as [number, number]);
  for (const [lo, hi] of w) {
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || hi < 0) {
      throw new Error(`pad: widths must be non-negative integers, got ${JSON.stringify(widths)}`);
    }
  }
  if (w.every(([lo, hi]) => lo === 0 && hi === 0)) return x;
  return bind('pad', [x], { widths: w, value });
}

/** Joins tensors along an existing axis. */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('concat: no tensors');
  const a = normAxis('concat', axis, xs[0].rank);
  if (xs.length === 1) return xs[0];
  return bind('concat', xs, { axis: a });
}

/** Joins tensors along a new axis. */
export function stack(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: no tensors');
  const a = normAxis('stack', axis, xs[0].rank + 1);
  for (const x of xs) {
    if (x.rank !== xs[0].rank || x.shape.some((d, i) => d !== xs[0].shape[i])) {
      throw new Error(`stack: shapes ${xs.map((t) => fmt(t.shape)).join(' and ')} differ`);
    }
  }
  return concat(xs.map((x) => expandDims(x, a)), a);
}

/** Splits along `axis` into pieces of the given sizes. */
export function split(x: Tensor, sizes: readonly number[], axis = 0): Tensor[] {
  const a = normAxis('split', axis, x.rank);
  if (sizes.reduce((p, q) => p + q, 0) !== x.shape[a]) {
    throw new Error(`split: sizes [${sizes}] do not add up to ${x.shape[a]} (axis ${a} of ${fmt(x.shape)})`);
  }
  let off = 0;
  return sizes.map((n) => {
    const begin = x.shape.map((_, i) => (i === a ? off : 0));
    const size = x.shape.map((d, i) => (i === a ? n : d));
    off += n;
    return slice(x, begin, size);
  });
}

function toIndices(op: string, idx: Tensor | readonly number[] | Int32Array, dim: number): { indices: Int32Array; shape: number[] } {
  let indices: Int32Array;
  let shape: number[];
  if (idx instanceof Int32Array) [indices, shape] = [idx, [idx.length]];
  else if (Array.isArray(idx)) [indices, shape] = [Int32Array.from(idx as number[]), [idx.length]];
  else {
    const t = idx as Tensor;
    indices = Int32Array.from(hostRead(t, op));
    shape = [...t.shape];
  }
  for (const i of indices) {
    if (!Number.isInteger(i) || i < 0 || i >= dim) throw new Error(`${op}: index ${i} is out of range for an axis of size ${dim}`);
  }
  return { indices, shape };
}

/** Picks entries along `axis` (NumPy's take): output shape = x.shape[:axis] + indices.shape + x.shape[axis+1:]. */
export function gather(x: Tensor, indices: Tensor | readonly number[] | Int32Array, axis = 0): Tensor {
  const a = normAxis('gather', axis, x.rank);
  return bind('gather', [x], { axis: a, ...toIndices('gather', indices, x.shape[a]) });
}
/** PyTorch's name for gather with 1-D indices. */
export const indexSelect = (x: Tensor, axis: number, indices: Tensor | readonly number[] | Int32Array): Tensor =>
  gather(x, indices, axis);

/** The same values, with no gradient flowing through. */
export const stopGradient = (x: Tensor): Tensor => detach(x);

export function cast(x: Tensor, dtype: DType): Tensor {
  if (dtype === 'uint8') throw new Error(`cast: to uint8 is not supported (uint8 tensors are images as decoded: make them with tensor(Uint8Array, shape))`);
  if (dtype !== 'float32' && dtype !== 'float64') throw new Error(`cast: unknown dtype '${dtype}'`);
  return x.dtype === dtype ? x : bind('cast', [x], { dtype });
}

/** Adds slices of `x` into zeros along `axis` at `indices` (the transpose of gather). */
export function scatterAdd(x: Tensor, indices: Int32Array, indexShape: readonly number[], axis: number, size: number): Tensor {
  for (const i of indices) if (i < 0 || i >= size) throw new Error(`scatterAdd: index ${i} is out of range for an axis of size ${size}`);
  return bind('scatterAdd', [x], { axis, indices, shape: [...indexShape], size });
}

/** The values of an integer-valued tensor as a plain list (for indices). */
export const toIndexList = (t: Tensor): number[] => Array.from(hostRead(t, 'toIndexList'));
