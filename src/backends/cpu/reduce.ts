/** Reductions over any set of axes: a fast path over a trailing block, a strided walk otherwise. */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { arrayFor } from '../../tensor/tensor.ts';
import { sizeOf, stridesOf } from '../../tensor/shape.ts';

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}

function reduceImpl(kind: 'sum' | 'max') {
  return ([x]: readonly KernelArg<TypedArray>[], { axes }: ReduceAttrs, out: OutSpec): TypedArray => {
    const src = x.storage;
    const shape = x.shape;
    const nOut = sizeOf(out.shape);
    // Accumulate in float64 so float32 sums of many terms keep their precision.
    const acc = new Float64Array(nOut);
    if (kind === 'max') acc.fill(-Infinity);
    const rank = shape.length;
    const trailing = axes.every((a, i) => a === rank - axes.length + i);
    if (trailing) {
      // Output index = input index / (size of the reduced block).
      const block = sizeOf(shape.slice(rank - axes.length));
      for (let o = 0; o < nOut; o++) {
        let s = kind === 'max' ? -Infinity : 0;
        const base = o * block;
        if (kind === 'sum') for (let j = 0; j < block; j++) s += src[base + j];
        else for (let j = 0; j < block; j++) { const v = src[base + j]; if (v > s || v !== v) s = v; }
        acc[o] = s;
      }
    } else {
      // Walk the input in order; the output offset moves with stride 0 along reduced axes.
      const full = stridesOf(shape.map((d, i) => (axes.includes(i) ? 1 : d)));
      const ost = shape.map((_, i) => (axes.includes(i) ? 0 : full[i]));
      const idx = new Int32Array(rank);
      let o = 0;
      const n = src.length;
      for (let i = 0; i < n; i++) {
        const v = src[i];
        if (kind === 'sum') acc[o] += v;
        else if (v > acc[o] || v !== v) acc[o] = v;
        for (let k = rank - 1; k >= 0; k--) {
          idx[k]++;
          o += ost[k];
          if (idx[k] < shape[k]) break;
          o -= ost[k] * shape[k];
          idx[k] = 0;
        }
      }
    }
    const y = arrayFor(out.dtype, nOut);
    y.set(acc);
    return y;
  };
}

export const sumImpl = reduceImpl('sum');
export const maxImpl = reduceImpl('max');
