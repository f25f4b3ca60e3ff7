/**
 * Sum / max reductions and the batched matmul on gpu.js. A reduction over any axes is written as
 * up to three kept groups (coordinates of the output index) and up to three reduced groups
 * (nested loops), after merging adjacent axes of the same kind; more groups than that go through
 * a transpose that moves the reduced axes last first.
 */
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import type { KernelThis } from './elementwise.ts';
import type { GpuBuffer, GpuRuntime } from './runtime.ts';
import { broadcastStridesOf, keyOf, sizeOf, stridesOf } from './strides.ts';

declare function coord(i: number, s: number, d: number): number;
declare function idiv(a: number, b: number): number;

type Arg = KernelArg<GpuBuffer>;
type Rt = () => GpuRuntime;

/** y[o] = Σ over (r0, r1, r2) of x[base(o) + r0·t0 + r1·t1 + r2·t2]; base from o's kept coordinates. */
function sumKernel(this: KernelThis, x: Float32Array): number {
  const o = this.thread.x;
  const base = coord(o, this.constants.ko0, this.constants.kd0) * this.constants.ks0 + coord(o, this.constants.ko1, this.constants.kd1) * this.constants.ks1 + coord(o, this.constants.ko2, this.constants.kd2) * this.constants.ks2;
  let acc = 0;
  for (let r0 = 0; r0 < this.constants.rd0; r0++) {
    for (let r1 = 0; r1 < this.constants.rd1; r1++) {
      for (let r2 = 0; r2 < this.constants.rd2; r2++) {
        acc += x[base + r0 * this.constants.rs0 + r1 * this.constants.rs1 + r2 * this.constants.rs2];
      }
    }
  }
  return acc;
}

function maxKernel(this: KernelThis, x: Float32Array): number {
  const o = this.thread.x;
  const base = coord(o, this.constants.ko0, this.constants.kd0) * this.constants.ks0 + coord(o, this.constants.ko1, this.constants.kd1) * this.constants.ks1 + coord(o, this.constants.ko2, this.constants.kd2) * this.constants.ks2;
  let m = x[base];
  for (let r0 = 0; r0 < this.constants.rd0; r0++) {
    for (let r1 = 0; r1 < this.constants.rd1; r1++) {
      for (let r2 = 0; r2 < this.constants.rd2; r2++) {
        m = Math.max(m, x[base + r0 * this.constants.rs0 + r1 * this.constants.rs1 + r2 * this.constants.rs2]);
      }
    }
  }
  return m;
}

/**
 * C[t, m, n] = Σₖ op(A)[m, k]·op(B)[k, n] for output (batch…, M, N) flattened; the batch index t
 * maps to A's and B's matrix offsets through up to three broadcast batch coordinates.
 */
function matmulKernel(this: KernelThis, a: Float32Array, b: Float32Array): number {
  const i = this.thread.x;
  const m = coord(i, this.constants.N, this.constants.M);
  const n = coord(i, 1, this.constants.N);
  const t = idiv(i, this.constants.M * this.constants.N);
  const t0 = coord(t, this.constants.bo0, this.constants.bd0);
  const t1 = coord(t, this.constants.bo1, this.constants.bd1);
  const t2 = coord(t, this.constants.bo2, this.constants.bd2);
  const ao = t0 * this.constants.as0 + t1 * this.constants.as1 + t2 * this.constants.as2 + m * this.constants.sam;
  const bo = t0 * this.constants.bs0 + t1 * this.constants.bs1 + t2 * this.constants.bs2 + n * this.constants.sbn;
  let acc = 0;
  for (let k = 0; k < this.constants.K; k++) {
    acc += a[ao + k * this.constants.sak] * b[bo + k * this.constants.sbk];
  }
  return acc;
}

interface Groups {
  kept: [number, number][]; // [extent, input stride]
  reduced: [number, number][];
}

/** Merges adjacent axes of the same kind (kept / reduced) of a row-major input. */
export function groupAxes(shape: readonly number[], axes: readonly number[]): Groups {
  const st = stridesOf(shape);
  const g: Groups = { kept: [], reduced: [] };
  let prev: 'kept' | 'reduced' | null = null;
  shape.forEach((d, k) => {
    if (d === 1) return;
    const kind = axes.includes(k) ? 'reduced' : 'kept';
    const list = g[kind];
    if (prev === kind) {
      const last = list[list.length - 1];
      list[list.length - 1] = [last[0] * d, st[k]];
    } else list.push([d, st[k]]);
    prev = kind;
  });
  return g;
}

/**
 * The matmul kernel's constants: M, N, K, the operand strides along m, n, k (transposes folded in)
 * and the batch axes of the output merged to three (bd, bo: extents and output strides; as, bs:
 * A's and B's matrix offsets per batch step, 0 where broadcast). Shared with the webgpu kernels.
 */
export function matmulBatch(aShape: readonly number[], bShape: readonly number[], outShape: readonly number[], { transA, transB }: { transA: boolean; transB: boolean }): Record<string, number> {
  const ra = aShape.length;
  const rb = bShape.length;
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const N = transB ? br : bc;
  const batch = outShape.slice(0, -2);
  // Batch strides in units of elements (matrix size × broadcast batch stride), merged to ≤ 3 axes.
  const as = broadcastStridesOf(aShape.slice(0, ra - 2), batch).map((s) => s * ar * ac);
  const bs = broadcastStridesOf(bShape.slice(0, rb - 2), batch).map((s) => s * br * bc);
  const dims: number[] = [];
  const sa: number[] = [];
  const sb: number[] = [];
  batch.forEach((d, k) => {
    if (d === 1) return;
    const l = dims.length - 1;
    if (l >= 0 && sa[l] === as[k] * d && sb[l] === bs[k] * d) {
      dims[l] *= d;
      sa[l] = as[k];
      sb[l] = bs[k];
    } else {
      dims.push(d);
      sa.push(as[k]);
      sb.push(bs[k]);
    }
  });
  if (dims.length > 3) throw new Error(`matmul (gpu): batch shape [${batch}] has more than 3 non-mergeable axes`);
  while (dims.length < 3) {
    dims.unshift(1);
    sa.unshift(0);
    sb.unshift(0);
  }
  const bo = stridesOf(dims);
  const constants: Record<string, number> = {
    M, N, K,
    sam: transA ? 1 : ac, sak: transA ? ac : 1,
    sbk: transB ? 1 : bc, sbn: transB ? bc : 1,
  };
  for (let j = 0; j < 3; j++) Object.assign(constants, { [`bd${j}`]: dims[j], [`bo${j}`]: bo[j], [`as${j}`]: sa[j], [`bs${j}`]: sb[j] });
  return constants;
}

/**
 * A reduction as the GPU kernels run it (gpu.js and WGSL alike): the sizes and strides of up to
 * three kept groups (kd/ks, with ko the output strides) and three reduced groups (rd/rs), padded
 * with size-1 groups; with more groups, first a transpose that moves the reduced axes last.
 */
export type ReducePlan =
  | { readonly kind: 'groups'; readonly sizes: Record<string, number> }
  | { readonly kind: 'transpose'; readonly perm: number[]; readonly shape: number[]; readonly axes: number[] };

export function reducePlan(shape: readonly number[], axes: readonly number[]): ReducePlan {
  const g = groupAxes(shape, axes);
  if (g.kept.length > 3 || g.reduced.length > 3) {
    const rank = shape.length;
    const perm = [...shape.keys()].filter((k) => !axes.includes(k)).concat(axes);
    return { kind: 'transpose', perm, shape: perm.map((p) => shape[p]), axes: axes.map((_, i) => rank - axes.length + i) };
  }
  const pad = (gs: readonly (readonly [number, number])[]) => [...Array<readonly [number, number]>(3 - gs.length).fill([1, 0]), ...gs];
  const [kept, red] = [pad(g.kept), pad(g.reduced)];
  const kos = stridesOf(kept.map((k) => k[0]));
  const sizes: Record<string, number> = {};
  for (let j = 0; j < 3; j++) {
    Object.assign(sizes, { [`kd${j}`]: kept[j][0], [`ks${j}`]: kept[j][1], [`ko${j}`]: kos[j], [`rd${j}`]: red[j][0], [`rs${j}`]: red[j][1] });
  }
  return { kind: 'groups', sizes };
}

function reduceKernel(rt: Rt, kind: 'sum' | 'max', transpose: Kernel<GpuBuffer>): Kernel<GpuBuffer> {
  const self = (inputs: readonly Arg[], attrs: { axes: number[] }, out: OutSpec): GpuBuffer => {
    const [x] = inputs;
    const n = sizeOf(out.shape);
    const p = reducePlan(x.shape, attrs.axes);
    if (p.kind === 'transpose') {
      const moved = transpose([x], { perm: p.perm }, { shape: p.shape, dtype: x.dtype });
      const y = self([{ storage: moved, shape: p.shape, dtype: x.dtype }], { axes: p.axes }, out);
      rt().dispose(moved);
      return y;
    }
    const constants = p.sizes;
    if (x.storage.size === 0) return rt().upload(new Float32Array(n).fill(kind === 'sum' ? 0 : -Infinity), 'float32');
    const fn = kind === 'sum' ? sumKernel : maxKernel;
    return rt().run(keyOf(kind, x.storage.size, constants), () => ({ fn, output: n, constants }), [x.storage], n);
  };
  return self;
}

export function reduceKernels(rt: Rt, transpose: Kernel<GpuBuffer>): Record<string, Kernel<GpuBuffer, any>> {
  return {
    sum: reduceKernel(rt, 'sum', transpose),
    max: reduceKernel(rt, 'max', transpose),
    matmul: ([a, b]: readonly Arg[], attrs: { transA: boolean; transB: boolean }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      const constants = matmulBatch(a.shape, b.shape, out.shape, attrs);
      if (constants.K === 0 || n === 0) return rt().upload(new Float32Array(n), 'float32');
      return rt().run(keyOf('matmul', a.storage.size, b.storage.size, constants), () => ({ fn: matmulKernel, output: n, constants }), [a.storage, b.storage], n);
    },
  };
}
