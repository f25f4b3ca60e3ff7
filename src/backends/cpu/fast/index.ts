/**
 * Fast float32 building blocks for the CPU backend: WebAssembly SIMD kernels generated at run time, all on ONE
 * shared wasm memory and one worker pool. The plain TS kernels in ../ stay the reference these are tested against.
 *
 * The memory (heap.ts — its header documents the contract): `wasmHeap()` is the WebAssembly.Memory every kernel
 * module imports, with an allocator (`alloc`/`release`, `reserve` for long-lived regions), fresh views after
 * growth (`f32()`, `view(ptr, n)`, `region.f32()`) and `ptrOf(view)`. A compiled graph places its buffers there
 * and calls the `...Ptr` entry points, which read and write those addresses in place; the typed-array entry points
 * (`sgemm`, `siluF32`, `depthwiseForwardF32`, …) wrap them, copying only arrays that are not views of the heap.
 *
 * The threads (pool.ts): `Job` builds a command buffer of kernel calls split into tasks; `loadKernels` compiles a
 * module for the main thread and every worker. sgemm, depthwise, the stochastic conv and the elementwise /
 * reduction kernels all run as jobs on it (`poolThreads()`, `setPoolThreads(n)`, `poolWorkerTasks()`).
 *
 * sgemm(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc)
 *   C ← alpha·op(A)·op(B) + beta·C, row-major BLAS semantics: op(A) is M×K (A stored M×K, or K×M when transA),
 *   op(B) is K×N (B stored K×N, or N×K when transB), C is M×N; lda/ldb/ldc are the row strides of the stored
 *   matrices; beta = 0 never reads C. `sgemmPtr` is the same on heap addresses, `sgemmBatchPtr` on a batch of
 *   products of one shape in one job, `sgemmSumPtr` on products summed into one C in one job. An optional per-row epilogue act(C·scale + shift) is applied as C is stored.
 *   `sgemmPtr`'s GemmImages address op(B)'s and C's columns image by image (a 1×1 conv over NCHW in place).
 *   Falls back to TS without wasm SIMD.
 *
 * For a conv as GEMM (NCHW, one image n, P = OH·OW, K = C·kh·kw):
 *   forward      y(O, P)  = w(O, K)·col(K, P)     sgemm(false, false, O, P, K, 1, w, 0, K, col, 0, P, 0, y, n·O·P, P)
 *   grad input   col(K, P) = wᵀ·ct(O, P)          sgemm(true, false, K, P, O, 1, w, 0, K, ct, n·O·P, P, 0, col, 0, P)
 *   grad filter  dw(O, K) += ct(O, P)·colᵀ        sgemm(false, true, O, K, P, 1, ct, n·O·P, P, col, 0, P, 1, dw, 0, K)
 * (pointwise: col is x itself at offset n·C·H·W); with one group the images' products run as one sgemmBatchPtr
 * (forward, 1×1 input gradient) or sgemmSumPtr (filter gradient). A dense forward over at most 8 input channels
 * (the stem) skips col altogether: directconv.ts reads bands of the input rows from thread scratch.
 *
 * Memory-bound kernels (activations.ts): silu / sigmoid / siluGrad, the BN affine (+ SiLU) over NCHW planes with
 * per-channel or full operands, its fused SiLU gradient, per-channel sums and moments (float64 accumulation).
 */
export { SLACK, type Region, WasmHeap, wasmHeap } from './heap.ts';
export { Job, type PoolKernel, S, loadKernels, poolThreads, poolWorkerTasks, setPoolThreads } from './pool.ts';
export { type GemmBatch, type GemmImages, type GemmParts, sgemm, sgemmBatchPtr, sgemmPtr, sgemmPanelWidth, sgemmSumPtr, sgemmTs, sgemmThreads, sgemmIsWasm, sgemmWorkerTasks, setSgemmThreads, setSgemmMaxCallBytes } from './sgemm.ts';
export {
  type AffineMode, type PlanesGeom, affineF32, affinePtr, affineSiluGradF32, affineSiluGradPtr, channelMomentsF32, channelMomentsPtr,
  channelSumF32, channelSumPtr, fastActivationKernel, fusedAvailable, sigmoidF32, sigmoidPtr, siluF32, siluGradF32, siluGradPtr, siluPtr,
} from './activations.ts';
export {
  type DepthwiseGeom, depthwiseForwardF32, depthwiseForwardPtr, depthwiseGradFilterF32, depthwiseGradFilterPtr, depthwiseGradInputF32,
  depthwiseGradInputPtr, depthwiseSimdOk,
} from './dwconv.ts';
export { DIRECT_MAX_CHANNELS, DIRECT_MAX_TAPS, type DirectGeom, directConvCalls, directConvForwardF32, directConvForwardPtr, directConvOk } from './directconv.ts';
export {
  type StochasticGeom, stochasticForwardF32, stochasticForwardPtr, stochasticGradFilterF32, stochasticGradFilterPtr, stochasticGradInputF32,
  stochasticGradInputPtr, stochasticSimdOk,
} from './stochconv.ts';
