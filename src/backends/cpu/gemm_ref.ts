/**
 * The one TypeScript GEMM: the reference every fast GEMM is tested against, float64 matmul's kernel, and the
 * sgemm's fallback where the engine has no wasm SIMD (fast/sgemm.ts). Accumulates in float64.
 */
import type { TypedArray } from '../backend.ts';

/** C[m, n] = Σ_k A(m, k)·B(k, n) for one matrix, A and B given by offsets and strides. */
export function gemm(
  A: TypedArray, aOff: number, sam: number, sak: number,
  B: TypedArray, bOff: number, sbk: number, sbn: number,
  C: TypedArray, cOff: number, M: number, N: number, K: number,
): void {
  if (sbn === 1) {
    // i-k-j: the inner loop runs along contiguous rows of B and C.
    const acc = new Float64Array(N);
    for (let i = 0; i < M; i++) {
      acc.fill(0);
      for (let k = 0; k < K; k++) {
        const a = A[aOff + i * sam + k * sak];
        if (a === 0) continue;
        const bRow = bOff + k * sbk;
        for (let j = 0; j < N; j++) acc[j] += a * B[bRow + j];
      }
      C.set(acc, cOff + i * N);
    }
  } else {
    // B is transposed (contiguous along k): dot products.
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        const a0 = aOff + i * sam;
        const b0 = bOff + j * sbn;
        for (let k = 0; k < K; k++) s += A[a0 + k * sak] * B[b0 + k * sbk];
        C[cOff + i * N + j] = s;
      }
    }
  }
}

