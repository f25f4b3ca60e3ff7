/** The CPU backend ('cpu', the default; src/backends/backend.ts registers it): plain TypeScript and wasm kernels over typed arrays, the reference for every other backend. */
import type { Backend, Kernel, TypedArray } from '../backend.ts';
import { writesInto } from '../kernel.ts';
import { convKernels } from './conv.ts';
import { elementwiseExprs, elementwiseKernel, fastElementwiseKernel } from './elementwise.ts';
import * as L from './layout.ts';
import { fuseCpu } from './fused.ts';
import { OWNED_MIN_FLOATS, type Region, wasmHeap } from './fast/heap.ts';
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
// Every kernel here honours OutSpec.into (jit's arena slots).
for (const [name, k] of Object.entries(table)) kernels.set(name, writesInto(k));

/**
 * jit's arena: a region of the wasm heap (fast/heap.ts), so the kernels' pointer paths read and write the planned
 * buffers in place; replaced by a larger region when a plan needs more. Without wasm SIMD, a plain ArrayBuffer.
 */
let region: Region | null = null;
let plain: ArrayBuffer | null = null;
/** The last answer, returned again while it holds (a compiled graph asks after every step). */
let placed: { buffer: ArrayBufferLike; offset: number } = { buffer: new ArrayBuffer(0), offset: 0 };
function arena(bytes: number): { buffer: ArrayBufferLike; offset: number } {
  const h = wasmHeap();
  if (!h) {
    if (!plain || plain.byteLength < bytes) plain = new ArrayBuffer(bytes);
    return placed.buffer === plain ? placed : (placed = { buffer: plain, offset: 0 });
  }
  if (!region || region.bytes < bytes) {
    region?.release();
    region = null;
    region = h.reserve(bytes);
  }
  const buffer = h.buffer();
  return placed.buffer === buffer && placed.offset === region.ptr ? placed : (placed = { buffer, offset: region.ptr });
}

/**
 * A float32 or uint8 array's copy in the wasm heap, owned by the returned view (heap.ts `owned`); undefined when
 * `s` is there already or the heap cannot hold owned arrays. jit pins donated buffers and constants (never
 * declined); `upload` places tensors of 1 MiB or more there, where the wasm kernels read them in place instead of copying
 * them in for every call.
 */
function inHeap(s: TypedArray, dtype: string, budgeted: boolean): TypedArray | undefined {
  const h = wasmHeap();
  if (!h || dtype === 'float64' || s.length === 0 || h.ptrOf(s) >= 0) return undefined;
  const v = s instanceof Uint8Array ? h.ownedU8(s.length, budgeted) : h.owned(s.length, budgeted);
  v?.set(s as Float32Array & Uint8Array);
  return v ?? undefined;
}
const pin = (s: TypedArray, dtype: string) => inHeap(s, dtype, false);

export const cpuBackend: Backend<TypedArray> = {
  name: 'cpu',
  upload: (data, dtype) => (data.byteLength >= 4 * OWNED_MIN_FLOATS && inHeap(data, dtype, true)) || data,
  download: (s) => s.slice(),
  kernels,
  arena,
  pin,
  fuse: fuseCpu,
  view: (buffer, byteOffset, dtype, size) =>
    dtype === 'float64' ? new Float64Array(buffer, byteOffset, size) : dtype === 'uint8' ? new Uint8Array(buffer, byteOffset, size) : new Float32Array(buffer, byteOffset, size),
  describe: () => 'cpu (TypeScript kernels)',
};
