/** The CPU backend ('cpu', the default; src/backends/backend.ts registers it): plain TypeScript and wasm kernels over typed arrays, the reference for every other backend. */
import type { Backend, Kernel, TypedArray } from '../backend.ts';
import { writesInto } from '../kernel.ts';
import { convKernels } from './conv.ts';
import { elementwiseExprs, elementwiseKernel, fastElementwiseKernel } from './elementwise.ts';
import * as L from './layout.ts';
import { matmulImpl } from './matmul.ts';
import { maxImpl, momentsImpl, sumImpl } from './reduce.ts';

const kernels = new Map<string, Kernel<TypedArray>>();
// Each elementwise op: its generated loop, behind the float32 wasm path where it has one.
for (const [name, [arity, expr]] of Object.entries(elementwiseExprs)) kernels.set(name, writesInto(fastElementwiseKernel(name, elementwiseKernel(name, arity, expr))));
const table: Record<string, Kernel<TypedArray, any>> = {
  sum: sumImpl,
  max: maxImpl,
  moments: momentsImpl,
  matmul: matmulImpl,
  reshape: L.reshapeImpl,
  transpose: L.transposeImpl,
  broadcastTo: L.broadcastToImpl,
  slice: L.sliceImpl,
  pad: L.padImpl,
  concat: L.concatImpl,
  gather: L.gatherImpl,
  scatterAdd: L.scatterAddImpl,
  cast: L.castImpl,
  ...convKernels,
};
// Every kernel here but the convolutions' honours OutSpec.into (jit's arena slots).
for (const [name, k] of Object.entries(table)) kernels.set(name, name in convKernels ? k : writesInto(k));

export const cpuBackend: Backend<TypedArray> = {
  name: 'cpu',
  upload: (data) => data,
  download: (s) => s.slice(),
  kernels,
  // jit's arena: one ArrayBuffer, storage = typed-array views into it.
  arena: (bytes) => ({ buffer: new ArrayBuffer(bytes), offset: 0 }),
  view: (buffer, byteOffset, dtype, size) => (dtype === 'float64' ? new Float64Array(buffer, byteOffset, size) : new Float32Array(buffer, byteOffset, size)),
  describe: () => 'cpu (TypeScript kernels)',
};
