/** Data-movement kernels: strided copies for transpose/slice/pad/broadcast, concat, gather, scatter, cast. */
import type { DType, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { arrayFor } from '../kernel.ts';
import { broadcastStrides, collapseAxes, sizeOf, stridesOf } from '../../tensor/shape.ts';

type Arg = KernelArg<TypedArray>;

/** The array a kernel writes: the caller's `into` slot (jit's arena) or a new zeroed array. */
export const outputFor = (out: OutSpec): TypedArray => (out.into as TypedArray | undefined) ?? arrayFor(out.dtype, sizeOf(out.shape));
/** Like outputFor, zeroed (for kernels that accumulate or leave cells untouched). */
export const zeroedOutputFor = (out: OutSpec): TypedArray => (out.into ? (out.into as TypedArray).fill(0) : arrayFor(out.dtype, sizeOf(out.shape)));

/**
 * Walks `shape` in row-major order, reading src[srcOff + Σ idx·srcStrides] and writing
 * dst[dstOff + Σ idx·dstStrides] (the one loop behind every layout op).
 */
export function copyStrided(
  src: TypedArray, srcOff: number, srcStrides: ArrayLike<number>,
  dst: TypedArray, dstOff: number, dstStrides: ArrayLike<number>,
  shape: readonly number[],
): void {
  if (sizeOf(shape) === 0) return;
  // Fewest axes first: contiguous and doubly-broadcast runs merge into one.
  const c = collapseAxes(shape, [srcStrides, dstStrides]);
  const rank = c.shape.length;
  if (rank === 0) {
    dst[dstOff] = src[srcOff];
    return;
  }
  const ss = c.strides[0], ds = c.strides[1];
  const n = sizeOf(c.shape);
  const last = c.shape[rank - 1];
  const ls = ss[rank - 1];
  const ld = ds[rank - 1];
  const idx = new Int32Array(rank);
  let s = srcOff;
  let d = dstOff;
  for (let done = 0; done < n; done += last) {
    // A subarray per row allocates: short rows are copied by the loop below.
    if (ls === 1 && ld === 1 && last >= 256) dst.set(src.subarray(s, s + last), d);
    else if (ls === 0 && ld === 1) dst.fill(src[s], d, d + last);
    else for (let j = 0; j < last; j++) dst[d + j * ld] = src[s + j * ls];
    for (let k = rank - 2; k >= 0; k--) {
      idx[k]++;
      s += ss[k];
      d += ds[k];
      if (idx[k] < c.shape[k]) break;
      s -= ss[k] * c.shape[k];
      d -= ds[k] * c.shape[k];
      idx[k] = 0;
    }
  }
}

/** Storage is never mutated, so a reshape shares it. */
export const reshapeImpl = ([x]: readonly Arg[]): TypedArray => x.storage;

export function transposeImpl([x]: readonly Arg[], { perm }: { perm: number[] }, out: OutSpec): TypedArray {
  const st = stridesOf(x.shape);
  const y = outputFor(out);
  copyStrided(x.storage, 0, perm.map((p) => st[p]), y, 0, stridesOf(out.shape), out.shape);
  return y;
}

export function broadcastToImpl([x]: readonly Arg[], _a: unknown, out: OutSpec): TypedArray {
  const y = outputFor(out);
  copyStrided(x.storage, 0, broadcastStrides(x.shape, out.shape), y, 0, stridesOf(out.shape), out.shape);
  return y;
}

export function sliceImpl([x]: readonly Arg[], { begin }: { begin: number[] }, out: OutSpec): TypedArray {
  const st = stridesOf(x.shape);
  const y = outputFor(out);
  copyStrided(x.storage, begin.reduce((p, b, i) => p + b * st[i], 0), st, y, 0, stridesOf(out.shape), out.shape);
  return y;
}

export function padImpl([x]: readonly Arg[], { widths, value }: { widths: [number, number][]; value: number }, out: OutSpec): TypedArray {
  const y = value === 0 ? zeroedOutputFor(out) : outputFor(out).fill(value);
  const st = stridesOf(out.shape);
  copyStrided(x.storage, 0, stridesOf(x.shape), y, widths.reduce((p, w, i) => p + w[0] * st[i], 0), st, x.shape);
  return y;
}

export function concatImpl(xs: readonly Arg[], { axis }: { axis: number }, out: OutSpec): TypedArray {
  const y = outputFor(out);
  const outer = sizeOf(out.shape.slice(0, axis));
  const rowOut = sizeOf(out.shape.slice(axis));
  let off = 0;
  for (const x of xs) {
    const row = sizeOf(x.shape.slice(axis));
    for (let o = 0; o < outer; o++) y.set(x.storage.subarray(o * row, (o + 1) * row), o * rowOut + off);
    off += row;
  }
  return y;
}

interface GatherAttrs {
  axis: number;
  indices: Int32Array;
  size?: number;
}

export function gatherImpl([x]: readonly Arg[], { axis, indices }: GatherAttrs, out: OutSpec): TypedArray {
  const y = outputFor(out);
  const outer = sizeOf(x.shape.slice(0, axis));
  const inner = sizeOf(x.shape.slice(axis + 1));
  const dim = x.shape[axis];
  const k = indices.length;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < k; j++) {
      const s = (o * dim + indices[j]) * inner;
      y.set(x.storage.subarray(s, s + inner), (o * k + j) * inner);
    }
  }
  return y;
}

export function scatterAddImpl([x]: readonly Arg[], { axis, indices, size }: GatherAttrs, out: OutSpec): TypedArray {
  const y = zeroedOutputFor(out);
  const outer = sizeOf(out.shape.slice(0, axis));
  const inner = sizeOf(out.shape.slice(axis + 1));
  const k = indices.length;
  const src = x.storage;
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < k; j++) {
      const s = (o * k + j) * inner;
      const d = (o * size! + indices[j]) * inner;
      for (let i = 0; i < inner; i++) y[d + i] += src[s + i];
    }
  }
  return y;
}

export function castImpl([x]: readonly Arg[], { dtype }: { dtype: DType }, out: OutSpec): TypedArray {
  const y = (out.into as TypedArray | undefined) ?? arrayFor(dtype, x.storage.length);
  y.set(x.storage);
  return y;
}
