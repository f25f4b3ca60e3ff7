/**
 * Data-movement kernels on gpu.js. Transpose, broadcastTo and slice are one strided copy
 * (`stridedCopyKernel`); reshape shares the storage (tensors are immutable).
 */
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import type { KernelThis } from './elementwise.ts';
import { GpuBuffer, type GpuRuntime } from './runtime.ts';
import { RANK, broadcastStridesOf, coalesce, keyOf, sizeOf, stridedConstants, stridesOf } from './strides.ts';

declare function coord(i: number, s: number, d: number): number;
declare function idiv(a: number, b: number): number;

type Arg = KernelArg<GpuBuffer>;
type Rt = () => GpuRuntime;

/** y[i] = x[base + Σₖ cₖ(i)·aₖ]: transpose, broadcast and slice (see strides.ts for c0…c5). */
function stridedCopyKernel(this: KernelThis, x: Float32Array): number {
  const i = this.thread.x;
  const c0 = coord(i, this.constants.o0, this.constants.d0);
  const c1 = coord(i, this.constants.o1, this.constants.d1);
  const c2 = coord(i, this.constants.o2, this.constants.d2);
  const c3 = coord(i, this.constants.o3, this.constants.d3);
  const c4 = coord(i, this.constants.o4, this.constants.d4);
  const c5 = coord(i, this.constants.o5, this.constants.d5);
  return x[this.constants.base + c0 * this.constants.a0 + c1 * this.constants.a1 + c2 * this.constants.a2 + c3 * this.constants.a3 + c4 * this.constants.a4 + c5 * this.constants.a5];
}

/** Padding: the input coordinate along axis k is cₖ − lₖ; outside [0, xₖ) on any axis reads `value`. */
function padKernel(this: KernelThis, x: Float32Array): number {
  const i = this.thread.x;
  const c0 = coord(i, this.constants.o0, this.constants.d0) - this.constants.l0;
  const c1 = coord(i, this.constants.o1, this.constants.d1) - this.constants.l1;
  const c2 = coord(i, this.constants.o2, this.constants.d2) - this.constants.l2;
  const c3 = coord(i, this.constants.o3, this.constants.d3) - this.constants.l3;
  const c4 = coord(i, this.constants.o4, this.constants.d4) - this.constants.l4;
  const c5 = coord(i, this.constants.o5, this.constants.d5) - this.constants.l5;
  if (c0 < 0 || c0 >= this.constants.x0 || c1 < 0 || c1 >= this.constants.x1 || c2 < 0 || c2 >= this.constants.x2) return this.constants.value;
  if (c3 < 0 || c3 >= this.constants.x3 || c4 < 0 || c4 >= this.constants.x4 || c5 < 0 || c5 >= this.constants.x5) return this.constants.value;
  return x[c0 * this.constants.a0 + c1 * this.constants.a1 + c2 * this.constants.a2 + c3 * this.constants.a3 + c4 * this.constants.a4 + c5 * this.constants.a5];
}

/** Two tensors joined along the middle axis of (outer, la + lb, inner). */
function concatKernel(this: KernelThis, a: Float32Array, b: Float32Array): number {
  const i = this.thread.x;
  const inner = this.constants.inner;
  const j = coord(i, inner, this.constants.la + this.constants.lb);
  const o = idiv(i, inner * (this.constants.la + this.constants.lb));
  const r = i - idiv(i, inner) * inner;
  if (j < this.constants.la) return a[(o * this.constants.la + j) * inner + r];
  return b[(o * this.constants.lb + j - this.constants.la) * inner + r];
}

/** Gather along the middle axis of (outer, dim, inner) at `idx` (k indices). */
function gatherKernel(this: KernelThis, x: Float32Array, idx: Float32Array): number {
  const i = this.thread.x;
  const inner = this.constants.inner;
  const j = coord(i, inner, this.constants.k);
  const o = idiv(i, inner * this.constants.k);
  const r = i - idiv(i, inner) * inner;
  return x[(o * this.constants.dim + idx[j]) * inner + r];
}

/** The transpose of gather: output slot s of (outer, size, inner) sums the slices j with idx[j] = s. */
function scatterAddKernel(this: KernelThis, x: Float32Array, idx: Float32Array): number {
  const i = this.thread.x;
  const inner = this.constants.inner;
  const s = coord(i, inner, this.constants.size);
  const o = idiv(i, inner * this.constants.size);
  const r = i - idiv(i, inner) * inner;
  let acc = 0;
  for (let j = 0; j < this.constants.k; j++) {
    if (idx[j] == s) acc += x[(o * this.constants.k + j) * inner + r];
  }
  return acc;
}

function stridedCopy(rt: Rt, op: string, x: Arg, base: number, strides: number[], out: OutSpec): GpuBuffer {
  const n = sizeOf(out.shape);
  const st = coalesce(out.shape, [strides], op);
  const constants = { ...stridedConstants(st, ['a']), base };
  return rt().run(keyOf('stridedCopy', x.storage.size, constants), () => ({ fn: stridedCopyKernel, output: n, constants }), [x.storage], n);
}

const leftPad = (xs: readonly number[], fill: number): number[] => [...new Array<number>(RANK - xs.length).fill(fill), ...xs];

export function layoutKernels(rt: Rt): Record<string, Kernel<GpuBuffer, any>> {
  return {
    reshape: ([x]: readonly Arg[]) => x.storage,
    transpose: ([x]: readonly Arg[], { perm }: { perm: number[] }, out: OutSpec) => {
      const st = stridesOf(x.shape);
      return stridedCopy(rt, 'transpose', x, 0, perm.map((p) => st[p]), out);
    },
    broadcastTo: ([x]: readonly Arg[], _a: unknown, out: OutSpec) => stridedCopy(rt, 'broadcastTo', x, 0, broadcastStridesOf(x.shape, out.shape), out),
    slice: ([x]: readonly Arg[], { begin }: { begin: number[] }, out: OutSpec) => {
      const st = stridesOf(x.shape);
      return stridedCopy(rt, 'slice', x, begin.reduce((p, b, i) => p + b * st[i], 0), st, out);
    },
    pad: ([x]: readonly Arg[], { widths, value }: { widths: [number, number][]; value: number }, out: OutSpec) => {
      if (x.shape.length > RANK) throw new Error(`pad (gpu): rank ${x.shape.length} is above ${RANK}`);
      const n = sizeOf(out.shape);
      if (x.storage.size === 0) return rt().upload(new Float32Array(n).fill(value), 'float32');
      const dims = leftPad(out.shape, 1);
      const os = stridesOf(dims);
      const xs = leftPad(stridesOf(x.shape), 0);
      const xd = leftPad(x.shape, 1);
      const lo = leftPad(widths.map((w) => w[0]), 0);
      const constants: Record<string, number> = { value };
      for (let k = 0; k < RANK; k++) Object.assign(constants, { [`d${k}`]: dims[k], [`o${k}`]: os[k], [`a${k}`]: xs[k], [`x${k}`]: xd[k], [`l${k}`]: lo[k] });
      return rt().run(keyOf('pad', constants), () => ({ fn: padKernel, output: n, constants }), [x.storage], n);
    },
    concat: (xs: readonly Arg[], { axis }: { axis: number }, out: OutSpec) => {
      const parts = xs.filter((x) => x.storage.size > 0);
      const outer = sizeOf(out.shape.slice(0, axis));
      const inner = sizeOf(out.shape.slice(axis + 1));
      if (parts.length === 0) return rt().upload(new Float32Array(sizeOf(out.shape)), 'float32');
      let acc = parts[0].storage;
      let la = parts[0].shape[axis];
      for (const p of parts.slice(1)) {
        const lb = p.shape[axis];
        const n = outer * (la + lb) * inner;
        const constants = { inner, la, lb };
        const next = rt().run(keyOf('concat', outer, constants), () => ({ fn: concatKernel, output: n, constants }), [acc, p.storage], n);
        if (acc !== parts[0].storage) rt().dispose(acc);
        acc = next;
        la += lb;
      }
      return acc;
    },
    gather: ([x]: readonly Arg[], { axis, indices }: { axis: number; indices: Int32Array }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      if (n === 0) return new GpuBuffer(new Float32Array(0), 0);
      const inner = sizeOf(x.shape.slice(axis + 1));
      const constants = { inner, k: indices.length, dim: x.shape[axis] };
      return rt().run(keyOf('gather', x.storage.size, constants), () => ({ fn: gatherKernel, output: n, constants }), [x.storage, new GpuBuffer(Float32Array.from(indices), indices.length)], n);
    },
    scatterAdd: ([x]: readonly Arg[], { axis, indices, size }: { axis: number; indices: Int32Array; size: number }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      if (n === 0) return new GpuBuffer(new Float32Array(0), 0);
      if (indices.length === 0 || x.storage.size === 0) return rt().upload(new Float32Array(n), 'float32');
      const inner = sizeOf(out.shape.slice(axis + 1));
      const constants = { inner, k: indices.length, size };
      return rt().run(keyOf('scatterAdd', x.storage.size, constants), () => ({ fn: scatterAddKernel, output: n, constants }), [x.storage, new GpuBuffer(Float32Array.from(indices), indices.length)], n);
    },
  };
}
