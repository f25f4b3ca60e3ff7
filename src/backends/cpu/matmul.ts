/** Batched matrix product with broadcast batch dims; transposes are read through strides, never materialised. */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { outputFor } from './layout.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { broadcastStrides } from '../../tensor/shape.ts';
import { sgemm, sgemmIsWasm, sgemmPtr } from './fast/sgemm.ts';
import { STAGE_MAX_FLOATS, wasmHeap } from './fast/heap.ts';
import { gemm } from './gemm_ref.ts';

/** float32 products with at least this many multiply-adds go to the wasm SIMD sgemm (below it the copy-in costs more). */
export const SGEMM_MIN_MACS = 4096;

interface MatmulAttrs {
  transA: boolean;
  transB: boolean;
}

export { gemm };

/** Bytes of `floats` rounded up to 64. */
const up64 = (floats: number) => Math.ceil(floats / 16) * 64;

/** Byte addresses of a product's operands in the wasm heap (`stageOperands`), reused call after call. */
const at = { a: 0, b: 0, c: 0 };

/**
 * Puts into `at` the heap addresses of A, B and C for the wasm sgemm: their own where they are views of the heap,
 * else places in the heap's stage (`WasmHeap.stage`), A and B copied there, for operands outside it of up to
 * STAGE_MAX_FLOATS each (a model's small weights given to a compiled graph as inputs, eager's small arrays). One
 * copy per call instead of sgemm's per product, into scratch kept from call to call rather than allocated for each.
 * Returns whether C was staged (the caller copies it out), or null with no heap or an operand too large to stage.
 */
function stageOperands(A: Float32Array, B: Float32Array, C: Float32Array): boolean | null {
  const h = sgemmIsWasm() ? wasmHeap() : null;
  if (!h) return null;
  at.a = h.ptrOf(A);
  at.b = h.ptrOf(B);
  at.c = h.ptrOf(C);
  const nA = at.a < 0 ? A.length : 0, nB = at.b < 0 ? B.length : 0, nC = at.c < 0 ? C.length : 0;
  if (Math.max(nA, nB, nC) > STAGE_MAX_FLOATS) return null;
  if (nA + nB + nC === 0) return false;
  const s = h.stage(up64(nA) + up64(nB) + 4 * nC);
  const mem = h.f32();
  if (nA) mem.set(A, (at.a = s) >>> 2);
  if (nB) mem.set(B, (at.b = s + up64(nA)) >>> 2);
  if (nC) at.c = s + up64(nA) + up64(nB);
  h.copiedBytes += 4 * (nA + nB);
  return nC > 0;
}

export function matmulImpl([a, b]: readonly KernelArg<TypedArray>[], { transA, transB }: MatmulAttrs, out: OutSpec): TypedArray {
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const M = transA ? ac : ar;
  const K = transA ? ar : ac;
  const N = transB ? br : bc;
  // Element (m, k) of op(A) sits at m·sam + k·sak within a matrix.
  const sam = transA ? 1 : ac;
  const sak = transA ? ac : 1;
  const sbk = transB ? 1 : bc;
  const sbn = transB ? bc : 1;
  const batch = out.shape.slice(0, -2);
  const nb = sizeOf(batch);
  const C = outputFor(out);
  const aSt = broadcastStrides(a.shape.slice(0, ra - 2), batch);
  const bSt = broadcastStrides(b.shape.slice(0, rb - 2), batch);
  const idx = new Int32Array(batch.length);
  // float32 goes to the wasm sgemm when the product is big enough; float64 stays on the TS reference.
  const fast = C instanceof Float32Array && a.storage instanceof Float32Array && b.storage instanceof Float32Array && M * N * K >= SGEMM_MIN_MACS;
  const staged = fast ? stageOperands(a.storage as Float32Array, b.storage as Float32Array, C as Float32Array) : null;
  for (let t = 0; t < nb; t++) {
    let ao = 0;
    let bo = 0;
    for (let d = 0; d < batch.length; d++) {
      ao += idx[d] * aSt[d];
      bo += idx[d] * bSt[d];
    }
    if (staged !== null) {
      sgemmPtr(transA, transB, M, N, K, 1, at.a + 4 * ao * ar * ac, ac, at.b + 4 * bo * br * bc, bc, 0, at.c + 4 * t * M * N, N);
    } else if (fast) {
      sgemm(transA, transB, M, N, K, 1, a.storage as Float32Array, ao * ar * ac, ac, b.storage as Float32Array, bo * br * bc, bc, 0, C as Float32Array, t * M * N, N);
    } else {
      gemm(a.storage, ao * ar * ac, sam, sak, b.storage, bo * br * bc, sbk, sbn, C, t * M * N, M, N, K);
    }
    for (let d = batch.length - 1; d >= 0; d--) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  if (staged) {
    const h = wasmHeap()!;
    C.set(h.view(at.c, C.length));
    h.copiedBytes += C.length * 4;
  }
  return C;
}
