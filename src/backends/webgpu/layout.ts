/**
 * Data-movement kernels in WGSL. Transpose, broadcastTo and slice are one strided copy; reshape
 * shares the buffer (tensors are immutable); gather / scatterAdd take their indices as an i32 buffer.
 */
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import { RANK, broadcastStridesOf, coalesce, sizeOf, stridedConstants, stridesOf } from '../gpu/strides.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { compute, coords, offset } from './shader.ts';

type Arg = KernelArg<WebGpuBuffer>;
type Dev = () => WebGpuDevice;

/** y[i] = x[base + Σₖ cₖ(i)·aₖ]: transpose, broadcast and slice. */
function stridedCopy(dev: Dev, op: string, x: Arg, base: number, strides: number[], out: OutSpec): WebGpuBuffer {
  const st = coalesce(out.shape, [strides], op);
  const ints = { ...stridedConstants(st, ['a']), BASE: base };
  return compute(dev(), { op, size: sizeOf(out.shape), ints, inputs: [['x', x.storage]], body: `${coords()}\n  return x[BASE + ${offset('a')}];` });
}

const leftPad = (xs: readonly number[], fill: number): number[] => [...new Array<number>(RANK - xs.length).fill(fill), ...xs];
const filled = (dev: Dev, n: number, value: number): WebGpuBuffer => dev().upload(new Float32Array(n).fill(value));

export function layoutWebGpuKernels(dev: Dev): Record<string, Kernel<WebGpuBuffer, any>> {
  return {
    reshape: ([x]: readonly Arg[]) => x.storage,
    transpose: ([x]: readonly Arg[], { perm }: { perm: number[] }, out: OutSpec) => {
      const st = stridesOf(x.shape);
      return stridedCopy(dev, 'transpose', x, 0, perm.map((p) => st[p]), out);
    },
    broadcastTo: ([x]: readonly Arg[], _a: unknown, out: OutSpec) => stridedCopy(dev, 'broadcastTo', x, 0, broadcastStridesOf(x.shape, out.shape), out),
    slice: ([x]: readonly Arg[], { begin }: { begin: number[] }, out: OutSpec) => {
      const st = stridesOf(x.shape);
      return stridedCopy(dev, 'slice', x, begin.reduce((p, b, i) => p + b * st[i], 0), st, out);
    },
    // The input coordinate along axis k is cₖ − lₖ; outside [0, xₖ) on any axis reads `value`.
    pad: ([x]: readonly Arg[], { widths, value }: { widths: [number, number][]; value: number }, out: OutSpec) => {
      if (x.shape.length > RANK) throw new Error(`pad (webgpu): rank ${x.shape.length} is above ${RANK}`);
      const n = sizeOf(out.shape);
      if (x.storage.size === 0) return filled(dev, n, value);
      const dims = leftPad(out.shape, 1);
      const os = stridesOf(dims);
      const xs = leftPad(stridesOf(x.shape), 0);
      const xd = leftPad(x.shape, 1);
      const lo = leftPad(widths.map((w) => w[0]), 0);
      const ints: Record<string, number> = {};
      for (let k = 0; k < RANK; k++) Object.assign(ints, { [`d${k}`]: dims[k], [`o${k}`]: os[k], [`a${k}`]: xs[k], [`x${k}`]: xd[k], [`l${k}`]: lo[k] });
      const ks = [0, 1, 2, 3, 4, 5];
      const body = [
        ...ks.map((k) => `  let c${k} = coord(i, o${k}, d${k}) - l${k};`),
        `  if (${ks.map((k) => `c${k} < 0 || c${k} >= x${k}`).join(' || ')}) { return PAD; }`,
        `  return x[${offset('a')}];`,
      ].join('\n');
      return compute(dev(), { op: 'pad', size: n, ints, floats: { PAD: value }, inputs: [['x', x.storage]], body });
    },
    // Two tensors at a time joined along the middle axis of (outer, LA + LB, inner).
    concat: (xs: readonly Arg[], { axis }: { axis: number }, out: OutSpec) => {
      const parts = xs.filter((x) => x.storage.size > 0);
      const outer = sizeOf(out.shape.slice(0, axis));
      const inner = sizeOf(out.shape.slice(axis + 1));
      if (parts.length === 0) return filled(dev, sizeOf(out.shape), 0);
      if (parts.length === 1) return stridedCopy(dev, 'concat', parts[0], 0, stridesOf(out.shape), out);
      let acc = parts[0].storage;
      let la = parts[0].shape[axis];
      for (const p of parts.slice(1)) {
        const lb = p.shape[axis];
        const body = [
          '  let j = coord(i, INNER, LA + LB);',
          '  let o = i / (INNER * (LA + LB));',
          '  let r = i % INNER;',
          '  if (j < LA) { return a[(o * LA + j) * INNER + r]; }',
          '  return b[(o * LB + j - LA) * INNER + r];',
        ].join('\n');
        const next = compute(dev(), { op: 'concat', size: outer * (la + lb) * inner, ints: { INNER: inner, LA: la, LB: lb }, inputs: [['a', acc], ['b', p.storage]], body });
        if (acc !== parts[0].storage) dev().dispose(acc);
        acc = next;
        la += lb;
      }
      return acc;
    },
    // Gather along the middle axis of (outer, DIM, inner) at the K indices.
    gather: ([x]: readonly Arg[], { axis, indices }: { axis: number; indices: Int32Array }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      if (n === 0) return dev().alloc(0, 'gather');
      const idx = dev().upload(Int32Array.from(indices), 'gather indices');
      const body = '  let j = coord(i, INNER, K);\n  let o = i / (INNER * K);\n  return x[(o * DIM + idx[j]) * INNER + i % INNER];';
      const y = compute(dev(), { op: 'gather', size: n, ints: { INNER: sizeOf(x.shape.slice(axis + 1)), K: indices.length, DIM: x.shape[axis] }, inputs: [['x', x.storage], ['idx', idx, 'i32']], body });
      dev().dispose(idx);
      return y;
    },
    // The transpose of gather: output slot s of (outer, SIZE, inner) sums the slices j with idx[j] = s.
    scatterAdd: ([x]: readonly Arg[], { axis, indices, size }: { axis: number; indices: Int32Array; size: number }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      if (indices.length === 0 || x.storage.size === 0) return filled(dev, n, 0);
      const idx = dev().upload(Int32Array.from(indices), 'scatterAdd indices');
      const body = [
        '  let s = coord(i, INNER, SIZE);',
        '  let o = i / (INNER * SIZE);',
        '  let r = i % INNER;',
        '  var acc = 0.0;',
        '  for (var j = 0; j < K; j++) { if (idx[j] == s) { acc += x[(o * K + j) * INNER + r]; } }',
        '  return acc;',
      ].join('\n');
      const y = compute(dev(), { op: 'scatterAdd', size: n, ints: { INNER: sizeOf(out.shape.slice(axis + 1)), K: indices.length, SIZE: size }, inputs: [['x', x.storage], ['idx', idx, 'i32']], body });
      dev().dispose(idx);
      return y;
    },
  };
}
