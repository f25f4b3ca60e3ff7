/**
 * Fast float32 building blocks for the CPU backend (WebAssembly SIMD generated at run time, threads over a
 * shared WebAssembly.Memory). The plain TS kernels in ../ stay the reference these are tested against.
 *
 * sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc)
 *   C ← alpha·op(A)·op(B) + beta·C, row-major BLAS semantics: op(A) is M×K (A stored M×K, or K×M when transA),
 *   op(B) is K×N (B stored K×N, or N×K when transB), C is M×N; lda/ldb/ldc are the row strides of the stored
 *   matrices; beta = 0 never reads C. Runs on `sgemmThreads()` threads; falls back to TS without wasm SIMD.
 *
 * For a conv as GEMM (NCHW, one image n, P = OH·OW, K = C·kh·kw):
 *   forward      y(O, P)  = w(O, K)·col(K, P)     sgemm(false, false, O, P, K, 1, w, 0, K, col, 0, P, 0, y, n·O·P, P)
 *   grad input   col(K, P) = wᵀ·ct(O, P)          sgemm(true, false, K, P, O, 1, w, 0, K, ct, n·O·P, P, 0, col, 0, P)
 *   grad filter  dw(O, K) += ct(O, P)·colᵀ        sgemm(false, true, O, K, P, 1, ct, n·O·P, P, col, 0, P, 1, dw, 0, K)
 * (pointwise: col is x itself at offset n·C·H·W.)
 *
 * siluF32(x, out?) / sigmoidF32(x, out?): float32 SiLU and sigmoid with a SIMD exp (the reference loops spend
 * ~20 ns per element in Math.exp).
 */
export { sgemm, sgemmTs, sgemmThreads, sgemmIsWasm, sgemmWorkerTasks, setSgemmThreads, setSgemmMaxCallBytes } from './sgemm.ts';
export { fastActivationKernel, sigmoidF32, siluF32 } from './activations.ts';
