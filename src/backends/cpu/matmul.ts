/** Batched matrix product with broadcast batch dims; transposes are read through strides, never materialised. */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { outputFor } from './layout.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { broadcastStrides } from '../../tensor/shape.ts';
import { sgemm, sgemmIsWasm, sgemmPtr } from './fast/sgemm.ts';
import { wasmHeap } from './fast/heap.ts';
import { gemm } from './gemm_ref.ts';

/** float32 products with at least this many multiply-adds go to the wasm SIMD sgemm (below it the copy-in costs more). */
export const SGEMM_MIN_MACS = 4096;

interface MatmulAttrs {
  transA: boolean;
  transB: boolean;
}

export { gemm };

/** A product's operands A, B, C and their heap addresses (`WasmHeap.stageCall`), reused call after call. */
const operands: (Float32Array | null)[] = [null, null, null];
const at = [0, 0, 0];

/**
 * Puts into `at` the heap addresses of A, B and C for the wasm sgemm: their own where they are views of the heap,
 * else places in the heap's stage, A and B copied there, for operands outside it of up to STAGE_MAX_FLOATS each (a
 * model's small weights given to a compiled graph as inputs, eager's small arrays): one copy per call instead of
 * sgemm's per product, into scratch kept from call to call. False with no heap or an operand too large to stage.
 */
function stageOperands(A: Float32Array, B: Float32Array, C: Float32Array): boolean {
  const h = sgemmIsWasm() ? wasmHeap() : null;
  operands[0] = A;
  operands[1] = B;
  operands[2] = C;
  return !!h && h.stageCall(operands, 2, at);
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
  const staged = fast && stageOperands(a.storage as Float32Array, b.storage as Float32Array, C as Float32Array);
  for (let t = 0; t < nb; t++) {
    let ao = 0;
    let bo = 0;
    for (let d = 0; d < batch.length; d++) {
      ao += idx[d] * aSt[d];
      bo += idx[d] * bSt[d];
    }
    if (staged) {
      sgemmPtr(transA, transB, M, N, K, 1, at[0] + 4 * ao * ar * ac, ac, at[1] + 4 * bo * br * bc, bc, 0, at[2] + 4 * t * M * N, N);
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
  if (staged) wasmHeap()!.unstage(operands, 2, at);
  operands.fill(null);
  return C;
}
