/**
 * Reductions over any set of axes. Adjacent axes with the same role (reduced or kept) are merged
 * first, so BN's statistics over [0, 2, 3] of [N, C, H, W] become [N, C, H·W] → [C]: contiguous
 * inner runs summed in a tight loop. Float32 input is accumulated in float64.
 */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { arrayFor } from '../../tensor/tensor.ts';
import { sizeOf } from '../../tensor/shape.ts';

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}

/** [size, reduced?] runs of the input shape, size-1 axes dropped. */
function runs(shape: readonly number[], axes: readonly number[]): [number, boolean][] {
  const out: [number, boolean][] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const r = axes.includes(i);
    if (out.length && out[out.length - 1][1] === r) out[out.length - 1][0] *= d;
    else out.push([d, r]);
  });
  return out;
}

function reduceImpl(kind: 'sum' | 'max') {
  const isMax = kind === 'max';
  return ([x]: readonly KernelArg<TypedArray>[], { axes }: ReduceAttrs, out: OutSpec): TypedArray => {
    const src = x.storage;
    const nOut = sizeOf(out.shape);
    const acc = new Float64Array(nOut);
    if (isMax) acc.fill(-Infinity);
    const r = runs(x.shape, axes);
    if (src.length === 0 || r.length === 0) {
      if (src.length && !r.length) acc[0] = src[0] as number; // every axis has size 1
      const y = arrayFor(out.dtype, nOut);
      y.set(acc);
      return y;
    }
    // Output strides of the runs (0 along reduced runs).
    const rank = r.length;
    const ost = new Array<number>(rank);
    let s = 1;
    for (let i = rank - 1; i >= 0; i--) {
      ost[i] = r[i][1] ? 0 : s;
      if (!r[i][1]) s *= r[i][0];
    }
    const [last, lastReduced] = r[rank - 1];
    const idx = new Int32Array(rank);
    let o = 0;
    for (let i = 0; i < src.length; i += last) {
      if (lastReduced) {
        let v = isMax ? -Infinity : 0;
        if (isMax) for (let j = 0; j < last; j++) { const e = src[i + j]; if (e > v || e !== e) v = e; }
        else for (let j = 0; j < last; j++) v += src[i + j];
        if (isMax) { if (v > acc[o] || v !== v) acc[o] = v; } else acc[o] += v;
      } else if (isMax) {
        for (let j = 0; j < last; j++) { const e = src[i + j]; if (e > acc[o + j] || e !== e) acc[o + j] = e; }
      } else {
        for (let j = 0; j < last; j++) acc[o + j] += src[i + j];
      }
      for (let d = rank - 2; d >= 0; d--) {
        idx[d]++;
        o += ost[d];
        if (idx[d] < r[d][0]) break;
        o -= ost[d] * r[d][0];
        idx[d] = 0;
      }
    }
    const y = arrayFor(out.dtype, nOut);
    y.set(acc);
    return y;
  };
}

export const sumImpl = reduceImpl('sum');
export const maxImpl = reduceImpl('max');
