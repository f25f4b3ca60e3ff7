/** Batched matrix product with broadcast batch dims; transposes are read through strides, never materialised. */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { outputFor } from './layout.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { broadcastStrides } from '../../tensor/shape.ts';
import { sgemm } from './fast/index.ts';
import { gemm } from './gemm_ref.ts';

/** float32 products with at least this many multiply-adds go to the wasm SIMD sgemm (below it the copy-in costs more). */
export const SGEMM_MIN_MACS = 4096;

interface MatmulAttrs {
  transA: boolean;
  transB: boolean;
}

export { gemm };

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
  for (let t = 0; t < nb; t++) {
    let ao = 0;
    let bo = 0;
    for (let d = 0; d < batch.length; d++) {
      ao += idx[d] * aSt[d];
      bo += idx[d] * bSt[d];
    }
    if (fast) {
      sgemm(transA, transB, M, N, K, 1, a.storage as Float32Array, ao * ar * ac, ac, b.storage as Float32Array, bo * br * bc, bc, 0, C as Float32Array, t * M * N, N);
    } else {
      gemm(a.storage, ao * ar * ac, sam, sak, b.storage, bo * br * bc, sbk, sbn, C, t * M * N, M, N, K);
    }
    for (let d = batch.length - 1; d >= 0; d--) {
      if (++idx[d] < batch[d]) break;
      idx[d] = 0;
    }
  }
  return C;
}
