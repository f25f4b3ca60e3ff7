/**
 * Sum / max reductions and the batched matmul in WGSL. A reduction over any axes is up to three
 * kept groups (coordinates of the output index) and up to three reduced groups (nested loops),
 * after merging adjacent axes of the same kind; more groups go through a transpose that moves the
 * reduced axes last. The grouping is the gpu.js backend's (gpu/reduce.ts).
 */
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import { matmulBatch, reducePlan } from '../gpu/reduce.ts';
import { sizeOf, stridesOf } from '../gpu/strides.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { compute } from './shader.ts';

type Arg = KernelArg<WebGpuBuffer>;
type Dev = () => WebGpuDevice;

const reduceBody = (init: string, step: string): string =>
  [
    '  let base = coord(i, ko0, kd0) * ks0 + coord(i, ko1, kd1) * ks1 + coord(i, ko2, kd2) * ks2;',
    `  var acc = ${init};`,
    '  for (var r0 = 0; r0 < rd0; r0++) {',
    '    for (var r1 = 0; r1 < rd1; r1++) {',
    '      for (var r2 = 0; r2 < rd2; r2++) {',
    '        let v = x[base + r0 * rs0 + r1 * rs1 + r2 * rs2];',
    `        ${step}`,
    '      }',
    '    }',
    '  }',
    '  return acc;',
  ].join('\n');

const bodies = {
  sum: reduceBody('0.0', 'acc += v;'),
  // NaN wins, as in the CPU kernel.
  max: reduceBody('x[base]', 'if (v > acc || v != v) { acc = v; }'),
};

function reduceKernel(dev: Dev, kind: 'sum' | 'max', transpose: Kernel<WebGpuBuffer>): Kernel<WebGpuBuffer> {
  const self = (inputs: readonly Arg[], attrs: { axes: number[] }, out: OutSpec): WebGpuBuffer => {
    const [x] = inputs;
    const n = sizeOf(out.shape);
    if (x.storage.size === 0) return dev().upload(new Float32Array(n).fill(kind === 'sum' ? 0 : -Infinity));
    const p = reducePlan(x.shape, attrs.axes);
    if (p.kind === 'transpose') {
      const moved = transpose([x], { perm: p.perm }, { shape: p.shape, dtype: x.dtype });
      const y = self([{ storage: moved, shape: p.shape, dtype: x.dtype }], { axes: p.axes }, out);
      dev().dispose(moved);
      return y;
    }
    const ints = p.sizes;
    return compute(dev(), { op: kind, size: n, ints, inputs: [['x', x.storage]], body: bodies[kind] });
  };
  return self;
}

/** C[t, m, n] = Σₖ op(A)[m, k]·op(B)[k, n]; the batch index t maps to A's and B's offsets through up to three broadcast batch coordinates. */
const matmulBody = [
  '  let m = coord(i, N, M);',
  '  let n = i % N;',
  '  let t = i / (M * N);',
  '  let t0 = coord(t, bo0, bd0);',
  '  let t1 = coord(t, bo1, bd1);',
  '  let t2 = coord(t, bo2, bd2);',
  '  let ao = t0 * as0 + t1 * as1 + t2 * as2 + m * sam;',
  '  let bo = t0 * bs0 + t1 * bs1 + t2 * bs2 + n * sbn;',
  '  var acc = 0.0;',
  '  for (var k = 0; k < K; k++) { acc += a[ao + k * sak] * b[bo + k * sbk]; }',
  '  return acc;',
].join('\n');

export function reduceWebGpuKernels(dev: Dev, transpose: Kernel<WebGpuBuffer>): Record<string, Kernel<WebGpuBuffer, any>> {
  return {
    sum: reduceKernel(dev, 'sum', transpose),
    max: reduceKernel(dev, 'max', transpose),
    matmul: ([a, b]: readonly Arg[], attrs: { transA: boolean; transB: boolean }, out: OutSpec) => {
      const n = sizeOf(out.shape);
      const mb = matmulBatch(a.shape, b.shape, out.shape, attrs);
      if (mb.K === 0 || n === 0) return dev().upload(new Float32Array(n));
      return compute(dev(), { op: 'matmul', size: n, ints: mb, inputs: [['a', a.storage], ['b', b.storage]], body: matmulBody });
    },
  };
}
