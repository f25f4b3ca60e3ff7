/**
 * Fast float32 building blocks for the CPU backend (WebAssembly SIMD generated at run time, threads over a
 * shared WebAssembly.Memory). The plain TS kernels in ../ stay the reference these are tested against.
 *
 * sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc)
 *   C ← alpha·op(A)·op(B) + beta·C, row-major BLAS semantics: op(A) is M×K (A stored M×K, or K×M when transA),
 *   op(B) is K×N (B stored K×N, or N×K when transB), C is M×N; lda/ldb/ldc are the row strides of the stored
 *   matrices; beta = 0 never reads C. Runs on `sgemmThreads()` threads; falls back to TS without wasm SIMD.
 *
 * For a conv as GEMM (NCHW, one image): pointwise   y(O, HW) = w(O, C)·x(C, HW):
 *   sgemm(false, false, O, H*W, C, 1, w, 0, C, x, n*C*H*W, H*W, 0, y, n*O*H*W, H*W)
 * im2col: y(O, OH·OW) = w(O, C·kh·kw)·cols(C·kh·kw, OH·OW); the weight gradient is ct·colsᵀ (transB = true)
 * and the input gradient's columns are wᵀ·ct (transA = true).
 */
export { sgemm, sgemmTs, sgemmThreads, sgemmIsWasm, setSgemmThreads, setSgemmMaxCallBytes } from './sgemm.ts';
