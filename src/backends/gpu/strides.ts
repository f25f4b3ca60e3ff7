/**
 * Host-side index plumbing for the strided kernels: merge axes that every operand walks
 * contiguously, then pad to the fixed rank the kernels are written for, so a kernel is
 * `y[i] = f(x₁[Σₖ cₖ(i)·s₁ₖ], …)` with cₖ(i) the k-th coordinate of the flat output index i.
 */
import { collapseAxes, sizeOf, stridesOf } from '../../tensor/shape.ts';

/** The rank every strided kernel is written for. */
export const RANK = 6;

export interface Strided {
  /** Output extents, left-padded with 1 to RANK. */
  readonly dims: number[];
  /** Row-major strides of `dims` (what `coord` divides by). */
  readonly out: number[];
  /** Per operand: its strides along `dims` (0 on broadcast / padding axes). */
  readonly ins: number[][];
}

/**
 * Merges axis k into k+1 wherever every operand's stride along k equals its stride along k+1
 * times the extent of k+1 (they walk both axes as one), drops extent-1 axes, pads to RANK.
 */
export function coalesce(shape: readonly number[], strides: readonly (readonly number[])[], op: string): Strided {
  const c = collapseAxes(shape, strides);
  const d = c.shape;
  const s = c.strides;
  if (d.length > RANK) throw new Error(`${op} (gpu): ${d.length} non-mergeable axes in shape [${shape}]; the gpu kernels take at most ${RANK}`);
  while (d.length < RANK) {
    d.unshift(1);
    s.forEach((x) => x.unshift(0));
  }
  return { dims: d, out: stridesOf(d), ins: s };
}

/** Strides of `shape` aligned to `out`, 0 along broadcast axes (the shared helper). */
export { broadcastStrides as broadcastStridesOf } from '../../tensor/shape.ts';

/** The constants a strided kernel reads: d0…d5 (extents), o0…o5 (output strides), and per operand `<p>0…<p>5`. */
export function stridedConstants(st: Strided, prefixes: readonly string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (let k = 0; k < RANK; k++) {
    c[`d${k}`] = st.dims[k];
    c[`o${k}`] = st.out[k];
    prefixes.forEach((p, j) => (c[`${p}${k}`] = st.ins[j][k]));
  }
  return c;
}

export const keyOf = (...parts: unknown[]): string => JSON.stringify(parts);

export { sizeOf, stridesOf };
