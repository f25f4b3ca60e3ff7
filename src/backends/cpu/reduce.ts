/**
 * Reductions over any set of axes. Adjacent axes with the same role (reduced or kept) are merged
 * first, so BN's statistics over [0, 2, 3] of [N, C, H, W] become [N, C, H·W] → [C]: contiguous
 * inner runs summed in a tight loop. Float32 input is accumulated in float64; float32 sums and
 * moments of that per-channel pattern run on the wasm SIMD kernels of fast/activations.ts.
 */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { outputFor } from './layout.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { type PlanesGeom, channelMomentsF32, channelSumF32, fusedAvailable } from './fast/activations.ts';

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}

/** The shape as runs of adjacent axes with the same role: [size, reduced] (size-1 axes dropped). */
function mergedRuns(shape: readonly number[], axes: readonly number[]): [number, boolean][] {
  const r: [number, boolean][] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const red = axes.includes(i);
    if (r.length && r[r.length - 1][1] === red) r[r.length - 1][0] *= d;
    else r.push([d, red]);
  });
  return r;
}

/**
 * The reduction as per-channel sums over N·C planes of HW floats (BN statistics over [0, 2, 3] of NCHW, a bias
 * gradient, a full sum), for the float32 wasm kernels; null for other patterns or planes too short to pay off.
 */
function asChannels(x: KernelArg<TypedArray>, axes: readonly number[], out: OutSpec): PlanesGeom | null {
  if (!(x.storage instanceof Float32Array) || out.dtype !== 'float32' || !fusedAvailable()) return null;
  const r = mergedRuns(x.shape, axes);
  const red = r.map(([, b]) => (b ? 'r' : 'k')).join('');
  const size = (i: number) => r[i][0];
  const g = red === 'rkr' ? { N: size(0), C: size(1), HW: size(2) } : red === 'kr' ? { N: 1, C: size(0), HW: size(1) } : red === 'r' ? { N: 1, C: 1, HW: size(0) } : null;
  return g && g.HW >= 16 ? g : null;
}

/**
 * Visits the input in order as contiguous runs: `visit(i, len, o, reduced)` gets the input offset,
 * the run length, the output offset and whether the run is reduced (all of it folds into out[o])
 * or kept (element j goes to out[o + j]).
 */
function walkRuns(shape: readonly number[], axes: readonly number[], visit: (i: number, len: number, o: number, reduced: boolean) => void): void {
  const r = mergedRuns(shape, axes);
  const n = sizeOf(shape);
  if (n === 0) return;
  if (r.length === 0) {
    visit(0, 1, 0, true);
    return;
  }
  const rank = r.length;
  const ost = new Array<number>(rank);
  let s = 1;
  for (let k = rank - 1; k >= 0; k--) {
    ost[k] = r[k][1] ? 0 : s;
    if (!r[k][1]) s *= r[k][0];
  }
  const [last, lastReduced] = r[rank - 1];
  const idx = new Int32Array(rank);
  let o = 0;
  for (let i = 0; i < n; i += last) {
    visit(i, last, o, lastReduced);
    for (let d = rank - 2; d >= 0; d--) {
      idx[d]++;
      o += ost[d];
      if (idx[d] < r[d][0]) break;
      o -= ost[d] * r[d][0];
      idx[d] = 0;
    }
  }
}

const finish = (acc: Float64Array, out: OutSpec): TypedArray => {
  const y = outputFor(out);
  y.set(acc);
  return y;
};

/** Adds the sums of `src` over `axes` into `acc`. */
function sumInto(src: TypedArray, shape: readonly number[], axes: readonly number[], acc: Float64Array): Float64Array {
  walkRuns(shape, axes, (i, len, o, reduced) => {
    if (reduced) {
      let v = 0;
      for (let j = 0; j < len; j++) v += src[i + j];
      acc[o] += v;
    } else for (let j = 0; j < len; j++) acc[o + j] += src[i + j];
  });
  return acc;
}

export function sumImpl([x]: readonly KernelArg<TypedArray>[], { axes }: ReduceAttrs, out: OutSpec): TypedArray {
  const g = asChannels(x, axes, out);
  if (g) return channelSumF32(x.storage as Float32Array, g, out.into as Float32Array | undefined);
  return finish(sumInto(x.storage, x.shape, axes, new Float64Array(sizeOf(out.shape))), out);
}

export function maxImpl([x]: readonly KernelArg<TypedArray>[], { axes }: ReduceAttrs, out: OutSpec): TypedArray {
  const src = x.storage;
  const acc = new Float64Array(sizeOf(out.shape)).fill(-Infinity);
  // NaN wins, as in NumPy.
  walkRuns(x.shape, axes, (i, len, o, reduced) => {
    if (reduced) {
      let v = acc[o];
      for (let j = 0; j < len; j++) { const e = src[i + j]; if (e > v || e !== e) v = e; }
      acc[o] = v;
    } else for (let j = 0; j < len; j++) { const e = src[i + j]; if (e > acc[o + j] || e !== e) acc[o + j] = e; }
  });
  return finish(acc, out);
}

/** Mean and biased variance over `axes` (two passes in float64: exact where E[x²] − E[x]² would cancel). Output [2, …]. */
export function momentsImpl([x]: readonly KernelArg<TypedArray>[], { axes }: ReduceAttrs, out: OutSpec): TypedArray {
  const g = asChannels(x, axes, out);
  if (g) return channelMomentsF32(x.storage as Float32Array, g, out.into as Float32Array | undefined);
  const src = x.storage;
  const m = sizeOf(out.shape) / 2;
  const count = x.shape.reduce((p, d, i) => (axes.includes(i) ? p * d : p), 1);
  const mean = sumInto(src, x.shape, axes, new Float64Array(m));
  for (let o = 0; o < m; o++) mean[o] /= count;
  const sq = new Float64Array(m);
  walkRuns(x.shape, axes, (i, len, o, reduced) => {
    if (reduced) {
      const mu = mean[o];
      let v = 0;
      for (let j = 0; j < len; j++) { const d = src[i + j] - mu; v += d * d; }
      sq[o] += v;
    } else for (let j = 0; j < len; j++) { const d = src[i + j] - mean[o + j]; sq[o + j] += d * d; }
  });
  const y = outputFor(out);
  for (let o = 0; o < m; o++) {
    y[o] = mean[o];
    y[m + o] = sq[o] / count;
  }
  return y;
}
