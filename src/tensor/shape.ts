/** Shapes, strides, broadcasting and axis handling. Errors name the op and the shapes. */

export type Shape = readonly number[];

export const fmt = (s: Shape): string => `[${s.join(',')}]`;

export const sizeOf = (s: Shape): number => {
  // An indexed loop: for-of allocates an iterator until the caller is optimised, and this runs per tensor.
  let n = 1;
  for (let i = 0; i < s.length; i++) n *= s[i];
  return n;
};

export const shapesEqual = (a: Shape, b: Shape): boolean =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/** Row-major (C-order) strides. */
export const stridesOf = (s: Shape): number[] => {
  const st = new Array<number>(s.length);
  let acc = 1;
  for (let i = s.length - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
};

export function checkShape(op: string, s: Shape): void {
  for (const d of s) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(`${op}: invalid shape ${fmt(s)}: dimensions must be non-negative integers`);
    }
  }
}

/** NumPy broadcasting of any number of shapes. */
export function broadcastShapes(op: string, ...shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (let i = 0; i < rank; i++) {
    for (const s of shapes) {
      const d = s[s.length - rank + i] ?? 1;
      if (d === 1) continue;
      if (out[i] !== 1 && out[i] !== d) {
        throw new Error(`${op}: shapes ${shapes.map(fmt).join(' and ')} do not broadcast`);
      }
      out[i] = d;
    }
  }
  return out;
}

/** Normalises one axis (negative counts from the end). */
export function normAxis(op: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= Math.max(rank, 1)) {
    throw new Error(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return axis < 0 ? axis + rank : axis;
}

/** Normalises a list of axes; undefined means all axes. Sorted, no duplicates. */
export function normAxes(op: string, axes: number | readonly number[] | undefined, rank: number): number[] {
  if (axes === undefined) return Array.from({ length: rank }, (_, i) => i);
  const list = typeof axes === 'number' ? [axes] : axes;
  const out = list.map((a) => normAxis(op, a, rank));
  if (new Set(out).size !== out.length) throw new Error(`${op}: repeated axis in [${list.join(',')}]`);
  return out.sort((a, b) => a - b);
}

/** The shape a reduction over `axes` leaves, with or without kept dims. */
export function reducedShape(s: Shape, axes: readonly number[], keepdims: boolean): number[] {
  const out: number[] = [];
  s.forEach((d, i) => {
    if (axes.includes(i)) {
      if (keepdims) out.push(1);
    } else out.push(d);
  });
  return out;
}

/** Strides of `shape` aligned to `out` (rank padded on the left), 0 along broadcast axes. */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = new Array<number>(out.length).fill(0);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    st[out.length - shape.length + i] = shape[i] === 1 ? 0 : acc;
    acc *= shape[i];
  }
  return st;
}

/**
 * The fewest axes that walk the same elements: merges axes i and i+1 wherever
 * stride[i] = stride[i+1]·shape[i+1] for every operand (contiguous runs, and runs broadcast in
 * both axes) and drops size-1 axes. Every backend's strided loops start from this.
 */
export function collapseAxes(shape: Shape, strides: readonly ArrayLike<number>[]): { shape: number[]; strides: number[][] } {
  // Plain loops (no closures): kernels call this on every run.
  const s: number[] = [];
  const st: number[][] = [];
  for (let k = 0; k < strides.length; k++) st.push([]);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    const last = s.length - 1;
    let merge = last >= 0;
    for (let k = 0; merge && k < strides.length; k++) merge = st[k][last] === strides[k][i] * shape[i];
    if (merge) s[last] *= shape[i];
    else s.push(shape[i]);
    for (let k = 0; k < strides.length; k++) st[k][s.length - 1] = strides[k][i];
  }
  return { shape: s, strides: st };
}
