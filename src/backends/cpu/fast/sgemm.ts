/**
 * sgemm: single-precision GEMM with BLAS semantics on row-major matrices, computed by the generated wasm SIMD
 * kernel (sgemm_wasm.ts) on the pool's threads (pool.ts), in the shared wasm heap (heap.ts).
 *
 * `sgemmPtr` multiplies operands that already live in the heap, in place. `sgemm` takes typed arrays: operands
 * that are views of the heap are used in place; the others are copied into a temporary (a memcpy,
 * O(MK + KN + MN)), the product runs there (O(MNK)), and C is copied back. Tasks are stripes of C (columns, or
 * rows for tall products). An optional epilogue (a per-row affine + SiLU: batch norm folded into a conv) is applied
 * by the micro-kernel as it stores the final sums (sgemm_wasm.ts), so C is written once.
 */
import { type PoolKernel, Job, S as scratchAt, loadKernels, poolThreads, poolWorkerTasks, setPoolThreads, stopPool } from './pool.ts';
import { type WasmHeap, wasmHeap } from './heap.ts';
import { gemm } from '../gemm_ref.ts';
import { D, EPI_MODE, FLAT_COLS, type GemmShape, scratchBytes, sgemmModuleBytes } from './sgemm_wasm.ts';
import { fmaEnabled } from './fma.ts';
import { type RowEpilogue, affineRows, epilogueFrom } from './activations.ts';

/** Above this many operand bytes a call is split in halves (recursively) so it always fits. */
let maxCallBytes = 256 * 1024 * 1024;
/** Stripes of C per product at most. */
const MAX_TASKS = 64;
/** Task descriptors, i.e. stripes in one job over all the products of a batch. */
const MAX_DESC = 512;
/** Target bytes of B + C per column chunk of a wide product (about a quarter of a 2 MiB L2). */
const CHUNK_BYTES = 512 * 1024;

interface Engine {
  readonly heap: WasmHeap;
  readonly gemm: PoolKernel;
  readonly shape: GemmShape;
  readonly scratch: ReturnType<typeof scratchBytes>;
  /** Task descriptors (MAX_DESC × D.size bytes). */
  readonly desc: number;
}

let engine: Engine | null | undefined;

/**
 * The blocking used. Measured (CPU time, min of 6 interleaved rounds, same process, 2-core Xeon 8488C-class under
 * load), GFLOP/s on 1024³ / 256³ / B0 pointwise 24×25088×96: 4×8 with the k loop not unrolled 29.9 / 30.6 / 20.2;
 * 2×16 29.8 / 28.8 / 19.3; 2×16 unrolled ×2 23.2 / 24.2 / 16.7; 3×16 25.1 / 23.0 / 17.0; 6×8 22.4 / 23.0 / 16.0
 * (V8 keeps xmm15 as scratch: 6×8's 15 live vectors spill, and unrolling adds pressure too).
 */
export const DEFAULT_SHAPE: Omit<GemmShape, 'fma'> = { MR: 4, NR: 8, MC: 96, KC: 256, NC: 2048 };

function createEngine(blocking: Omit<GemmShape, 'fma'> = DEFAULT_SHAPE): Engine | null {
  const heap = wasmHeap();
  if (!heap) return null;
  const shape: GemmShape = { ...blocking, fma: fmaEnabled() };
  const { gemm } = loadKernels(sgemmModuleBytes(shape, heap.importSpec()), ['gemm']);
  return { heap, gemm, shape, scratch: scratchBytes(shape), desc: heap.alloc(MAX_DESC * D.size) };
}

/** Rebuilds the engine with another blocking (for tuning runs). */
export function reconfigureSgemm(blocking: Omit<GemmShape, 'fma'>): void {
  if (engine) engine.heap.release(engine.desc);
  engine = createEngine(blocking);
}

function getEngine(): Engine | null {
  if (engine === undefined) engine = createEngine();
  return engine;
}

/** Threads sgemm will use (the pool's: 1 when workers or a shared memory are unavailable). */
export function sgemmThreads(): number {
  return getEngine() ? poolThreads() : 1;
}

/** Tasks that worker threads have run since the pool started (sgemm's and the other kernels'): shows the threads are used. */
export function sgemmWorkerTasks(): number {
  return getEngine() ? poolWorkerTasks() : 0;
}

/** Whether the wasm SIMD path is available (else sgemm runs a plain TS loop with the same semantics). */
export function sgemmIsWasm(): boolean {
  return getEngine() !== null;
}

/** Limits further calls (of every pooled kernel) to `n` threads (≤ the workers started); for benchmarks and tests. */
export function setSgemmThreads(n: number): void {
  setPoolThreads(n);
}

export { stopPool };

/** Sets the operand size above which a call is split in two (tests use a small one to cover the split). */
export function setSgemmMaxCallBytes(n: number): number {
  const old = maxCallBytes;
  maxCallBytes = Math.max(1024, n);
  return old;
}

/** Leading dim of a stored rows×cols matrix inside wasm: its own when the gaps are small (one memcpy), else cols. */
function wasmLd(rows: number, cols: number, ld: number): number {
  return rows <= 1 || (ld - cols) * rows <= cols * rows ? ld : cols;
}

function copyIn(heap: Float32Array, dst: number, dstLd: number, src: Float32Array, off: number, rows: number, cols: number, ld: number): void {
  if (dstLd === ld) heap.set(src.subarray(off, off + (rows - 1) * ld + cols), dst);
  else for (let i = 0; i < rows; i++) heap.set(src.subarray(off + i * ld, off + i * ld + cols), dst + i * dstLd);
}

function check(cond: boolean, msg: () => string): void {
  if (!cond) throw new Error(`sgemm: ${msg()}`);
}

/**
 * C ← alpha·op(A)·op(B) + beta·C on row-major float32 matrices (BLAS sgemm, row-major).
 *
 * op(A) is M×K: A itself is M×K (transA false) or K×M (transA true), row i of the stored matrix at aOff + i·lda.
 * op(B) is K×N likewise with ldb; C is M×N with row stride ldc from cOff. beta = 0 means C is written without
 * being read (NaNs in C are ignored). Elements of C outside the M×N block (ldc > N) are left untouched. With `epi`,
 * row i of the result then becomes act(C[i, :]·scale[i] + shift[i]) (wasm only: scale and shift live in the heap).
 *
 * @example sgemm(false, false, 2, 2, 3, 1, a, 0, 3, b, 0, 2, 0, c, 0, 2) // c = a(2×3)·b(3×2)
 */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number,
  B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number, epi?: RowEpilogue,
): void {
  const [ar, ac] = transA ? [K, M] : [M, K];
  const [br, bc] = transB ? [N, K] : [K, N];
  check(Number.isInteger(M) && Number.isInteger(N) && Number.isInteger(K) && M >= 0 && N >= 0 && K >= 0, () => `sizes M=${M} N=${N} K=${K} must be non-negative integers`);
  check(lda >= Math.max(1, ac), () => `lda=${lda} < ${ac} (A stored ${ar}×${ac}, transA=${transA})`);
  check(ldb >= Math.max(1, bc), () => `ldb=${ldb} < ${bc} (B stored ${br}×${bc}, transB=${transB})`);
  check(ldc >= Math.max(1, N), () => `ldc=${ldc} < N=${N}`);
  if (M === 0 || N === 0) return;
  check(cOff >= 0 && cOff + (M - 1) * ldc + N <= C.length, () => `C (length ${C.length}) too short for ${M}×${N} at offset ${cOff}, ldc ${ldc}`);
  const e = getEngine();
  check(!epi || (!!e && K > 0 && alpha !== 0), () => 'an epilogue needs the wasm path (its operands live in the heap) and a product (K > 0, alpha ≠ 0)');
  if (K === 0 || alpha === 0) {
    for (let i = 0; i < M; i++) {
      const r = cOff + i * ldc;
      if (beta === 0) C.fill(0, r, r + N);
      else if (beta !== 1) for (let j = r; j < r + N; j++) C[j] *= beta;
    }
    return;
  }
  check(aOff >= 0 && aOff + (ar - 1) * lda + ac <= A.length, () => `A (length ${A.length}) too short for ${ar}×${ac} at offset ${aOff}, lda ${lda}`);
  check(bOff >= 0 && bOff + (br - 1) * ldb + bc <= B.length, () => `B (length ${B.length}) too short for ${br}×${bc} at offset ${bOff}, ldb ${ldb}`);
  if (!e) {
    sgemmTs(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  run(e, transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, epi);
}

/**
 * The columns of op(B) and C in blocks of `cols` per image (an NCHW activation read and written in place as the
 * [C, N·P] matrix of a 1×1 conv): column j = n·cols + p of op(B) is column p of image n, whose column 0 is `strideB`
 * floats after image n − 1's (rows and columns inside an image at ldb's usual strides); C likewise with `strideC`
 * and ldc. Each image takes whole packed panels and C tiles of sgemmPanelWidth() columns, its last one ragged when
 * `cols` is not a multiple of that width (those columns cost a full panel's arithmetic: imagesWaste).
 */
export interface GemmImages {
  readonly cols: number;
  readonly strideB: number;
  readonly strideC: number;
}

/**
 * Row scales of op(B): row k of op(B) is multiplied by the float at byte address `ptr` + 4k + 4·n·`stride` as it is
 * packed, n being the column's image (GemmImages) or the product of a batch (sgemmBatchPtr) whose B it is. A 1×1
 * conv's input times squeeze-excite's gate, per image and channel: the packed values are the float32 products x·s,
 * so the result equals the product of the scaled matrix bit for bit.
 */
export interface GemmRowScale {
  readonly ptr: number;
  readonly stride: number;
}

/** Columns per packed B panel and C tile (the micro-kernel's NR). */
export function sgemmPanelWidth(): number {
  return getEngine()?.shape.NR ?? DEFAULT_SHAPE.NR;
}

/** The share of a product's arithmetic spent on the ragged panels' dead columns with images of `cols` columns. */
export function imagesWaste(cols: number): number {
  const NR = sgemmPanelWidth();
  const padded = Math.ceil(cols / NR) * NR;
  return (padded - cols) / padded;
}

/**
 * sgemm on operands in the wasm heap: A, B and C are byte addresses (heap.ts), lda/ldb/ldc row strides in floats,
 * with sgemm's semantics (C ← alpha·op(A)·op(B) + beta·C; beta = 0 never reads C), then the epilogue if given.
 * With `images`, op(B)'s and C's columns are addressed image by image (GemmImages); the sums are those of the
 * same product on the matrices laid out plainly, bit for bit.
 */
export function sgemmPtr(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  pA: number, lda: number, pB: number, ldb: number, beta: number, pC: number, ldc: number, epi?: RowEpilogue, images?: GemmImages,
  scaleB?: GemmRowScale,
): void {
  const e = getEngine();
  if (!e) throw new Error('sgemmPtr: WebAssembly SIMD is not available (use sgemm on typed arrays)');
  const w = images ? Math.min(N, images.cols) : N;
  check(M >= 0 && N >= 0 && K >= 0 && ldc >= w && lda >= (transA ? M : K) && ldb >= (transB ? K : w), () => `sgemmPtr: bad sizes M=${M} N=${N} K=${K} lda=${lda} ldb=${ldb} ldc=${ldc}`);
  if (images) checkImages(images, 'sgemmPtr');
  if (M === 0 || N === 0) return;
  if (K === 0 || alpha === 0) {
    check(!images, () => `sgemmPtr: K = ${K}, alpha = ${alpha}: images need a product`);
    const h = e.heap.f32();
    for (let i = 0; i < M; i++) {
      const r = (pC >>> 2) + i * ldc;
      if (beta === 0) h.fill(0, r, r + N);
      else if (beta !== 1) for (let j = r; j < r + N; j++) h[j] *= beta;
    }
    if (epi) {
      const job = new Job();
      affineRows(job, epi, pC, M, N, ldc);
      job.endTask().run(0);
    }
    return;
  }
  gemmPtr(e, transA, transB, M, N, K, alpha, pA, lda, pB, ldb, beta, pC, ldc, epi, ONE, ONE_PART, images, scaleB);
}

function checkImages(im: GemmImages, fn: string): void {
  check(Number.isInteger(im.cols) && im.cols > 0, () => `${fn}: images of ${im.cols} columns: need a positive integer`);
  check(Number.isInteger(im.strideB) && Number.isInteger(im.strideC) && im.strideB >= 0 && im.strideC >= 0, () => `${fn}: image strides ${im.strideB}, ${im.strideC} must be non-negative integers`);
}

/** A batch of products of one shape: operand b of each at its first one's address + b·stride (floats). */
export interface GemmBatch {
  readonly count: number;
  readonly strideA: number;
  readonly strideB: number;
  readonly strideC: number;
}

/**
 * sgemmPtr on `batch.count` products of one shape at once (e.g. one per image of a conv: the filter shared,
 * strideA = 0), all their stripes of C in one job on the pool's threads: one wait for the whole batch instead of one
 * per product, and the threads stay busy across products. Products must not overlap in C.
 */
export function sgemmBatchPtr(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  pA: number, lda: number, pB: number, ldb: number, beta: number, pC: number, ldc: number, batch: GemmBatch, epi?: RowEpilogue,
  scaleB?: GemmRowScale,
): void {
  const e = getEngine();
  if (!e) throw new Error('sgemmBatchPtr: WebAssembly SIMD is not available (use sgemm on typed arrays)');
  check(batch.count >= 0 && Number.isInteger(batch.count), () => `sgemmBatchPtr: batch count ${batch.count} must be a non-negative integer`);
  check(K > 0 && alpha !== 0, () => `sgemmBatchPtr: K = ${K}, alpha = ${alpha}: a batch needs a product (use sgemmPtr per product)`);
  check(M >= 0 && N >= 0 && ldc >= N && lda >= (transA ? M : K) && ldb >= (transB ? K : N), () => `sgemmBatchPtr: bad sizes M=${M} N=${N} K=${K} lda=${lda} ldb=${ldb} ldc=${ldc}`);
  if (M === 0 || N === 0 || batch.count === 0) return;
  gemmPtr(e, transA, transB, M, N, K, alpha, pA, lda, pB, ldb, beta, pC, ldc, epi, batch, ONE_PART, undefined, scaleB);
}

/** Products summed into one C: operand p at its first one's address + p·stride (floats). */
export interface GemmParts {
  readonly count: number;
  readonly strideA: number;
  readonly strideB: number;
}

/**
 * C ← alpha·Σ_p op(A_p)·op(B_p) + beta·C (heap addresses, sgemmPtr's semantics), the products of `parts` summed in
 * one job: each stripe of C runs the k blocks of every part in turn. Bit-identical to one sgemmPtr per part with
 * beta = 1 after the first (e.g. a conv's filter gradient, summed over images), without a wait per part.
 */
export function sgemmSumPtr(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  pA: number, lda: number, pB: number, ldb: number, beta: number, pC: number, ldc: number, parts: GemmParts,
): void {
  const e = getEngine();
  if (!e) throw new Error('sgemmSumPtr: WebAssembly SIMD is not available (use sgemm on typed arrays)');
  check(parts.count >= 1 && Number.isInteger(parts.count), () => `sgemmSumPtr: parts count ${parts.count} must be a positive integer`);
  check(K > 0 && alpha !== 0, () => `sgemmSumPtr: K = ${K}, alpha = ${alpha}: the parts need a product (use sgemmPtr)`);
  check(M >= 0 && N >= 0 && ldc >= N && lda >= (transA ? M : K) && ldb >= (transB ? K : N), () => `sgemmSumPtr: bad sizes M=${M} N=${N} K=${K} lda=${lda} ldb=${ldb} ldc=${ldc}`);
  if (M === 0 || N === 0) return;
  gemmPtr(e, transA, transB, M, N, K, alpha, pA, lda, pB, ldb, beta, pC, ldc, undefined, ONE, parts);
}

/**
 * How an M×N×K product splits over T threads: each stripe of columns packs all of A (M·K floats), each stripe of
 * rows all of B (K·N), so the split is by rows when A is the larger operand to re-pack (M > N), else by columns;
 * about 128 columns (rows) each so that re-packing A (B) per task stays under ~10%, in a multiple of T (3 equal
 * tasks on 2 threads take as long as 4). Tiny products are one task.
 * Measured against column stripes whenever there were ≥ 4T column panels (2 threads, one process, interleaved,
 * medians of 50, a quiet spell on the shared 2-core box; rows/cols wall time): 1152×256×192 0.85, 1280×256×320
 * 0.83, 672×256×112 0.74, 1152×392×192 0.79, 1152×192×256 with Bᵀ (a filter gradient) 0.79, 672×112×1024 Bᵀ 0.81,
 * 320×256×1152 0.95, 1280×1024×256 1.01; and rows against columns on wide products: 480×1024×80 1.00–1.14,
 * 672×1024×112 0.99–1.13, 192×256×1152 1.03–1.13 (two runs; the box's noise is about ±8%).
 */
export function gemmTasks(M: number, N: number, K: number, MR: number, NR: number, threads: number): { byCols: boolean; panels: number; tasks: number } {
  const T = 2 * M * N * K < 4e5 ? 1 : threads;
  const colPanels = Math.ceil(N / NR);
  const rowPanels = Math.ceil(M / MR);
  const byCols = M <= N;
  const panels = byCols ? colPanels : rowPanels;
  const tasks = T === 1 ? 1 : Math.min(panels, MAX_TASKS, T * Math.max(1, Math.round(Math.floor((byCols ? N : M) / 128) / T)));
  return { byCols, panels, tasks };
}

const ONE: GemmBatch = { count: 1, strideA: 0, strideB: 0, strideC: 0 };
const ONE_PART: GemmParts = { count: 1, strideA: 0, strideB: 0 };

/**
 * Splits C into stripes (tasks) and runs them on the pool: each product of the batch in as many stripes as alone
 * (gemmTasks), fewer when the batch is large (at most MAX_TASKS in all, at least one per product), in jobs of at most
 * MAX_DESC stripes.
 */
function gemmPtr(
  e: Engine, transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  pA: number, lda: number, pB: number, ldb: number, beta: number, pC: number, ldc: number, epi?: RowEpilogue, batch: GemmBatch = ONE,
  parts: GemmParts = ONE_PART, images?: GemmImages, scaleB?: GemmRowScale,
): void {
  check(!scaleB || (scaleB.ptr > 0 && Number.isInteger(scaleB.stride) && scaleB.stride >= 0), () => `sgemm: row scales at ${scaleB!.ptr}, stride ${scaleB!.stride}: need a heap address and a non-negative integer stride`);
  // op(A)(i, k) at pA + i·rsA + k·csA; op(B)(k, j) at pB + k·rsB + j·csB (bytes).
  const rsA = transA ? 4 : 4 * lda;
  const csA = transA ? 4 * lda : 4;
  const rsB = transB ? 4 : 4 * ldb;
  const csB = transB ? 4 * ldb : 4;
  const { MR, NR } = e.shape;
  // With images, columns are counted in whole panels per image (cpi each; the last image's up to its last live one).
  const cpi = images ? Math.ceil(images.cols / NR) * NR : FLAT_COLS;
  const Nv = images ? Math.floor((N - 1) / images.cols) * cpi + Math.ceil((((N - 1) % images.cols) + 1) / NR) * NR : N;
  const { byCols, panels, tasks } = gemmTasks(M, Nv, K * parts.count, MR, NR, poolThreads());
  const S = batch.count === 1 ? tasks : Math.min(tasks, Math.max(1, Math.floor(MAX_TASKS / batch.count)));
  const st = stripesOf(M, Nv, S, panels, byCols, MR, NR);
  const i32 = e.heap.i32();
  const f32v = e.heap.f32();
  const perJob = Math.max(1, Math.floor(MAX_DESC / S));
  for (let b0 = 0; b0 < batch.count; b0 += perJob) {
    const job = new Job();
    let at = e.desc;
    for (let b = b0; b < Math.min(batch.count, b0 + perJob); b++) {
      const a = pA + 4 * b * batch.strideA, bb = pB + 4 * b * batch.strideB, c = pC + 4 * b * batch.strideC;
      for (let t = 0; t < S; t++) {
        const m0 = st[4 * t], m1 = st[4 * t + 1], n0 = st[4 * t + 2], n1 = st[4 * t + 3];
        const d = at >>> 2;
        i32[d + D.M / 4] = m1 - m0;
        i32[d + D.N / 4] = n1 - n0;
        i32[d + D.K / 4] = K;
        i32[d + D.A / 4] = a + m0 * rsA;
        i32[d + D.rsA / 4] = rsA;
        i32[d + D.csA / 4] = csA;
        i32[d + D.B / 4] = bb;
        i32[d + D.rsB / 4] = rsB;
        i32[d + D.csB / 4] = csB;
        i32[d + D.C / 4] = c + 4 * m0 * ldc;
        i32[d + D.ldc / 4] = 4 * ldc;
        f32v[d + D.alpha / 4] = alpha;
        f32v[d + D.beta / 4] = beta;
        i32[d + D.epi / 4] = epi ? EPI_MODE[epi.act ?? 'affine'] : 0;
        i32[d + D.scale / 4] = epi ? epi.scale + 4 * m0 : 0;
        i32[d + D.shift / 4] = epi ? epi.shift + 4 * m0 : 0;
        i32[d + D.parts / 4] = parts.count;
        i32[d + D.partA / 4] = 4 * parts.strideA;
        i32[d + D.partB / 4] = 4 * parts.strideB;
        i32[d + D.col0 / 4] = n0;
        i32[d + D.cpi / 4] = cpi;
        i32[d + D.live / 4] = images ? images.cols : FLAT_COLS;
        i32[d + D.nLive / 4] = N;
        i32[d + D.imgB / 4] = images ? 4 * images.strideB : 0;
        i32[d + D.imgC / 4] = images ? 4 * images.strideC : 0;
        i32[d + D.bScale / 4] = scaleB ? scaleB.ptr + 4 * b * scaleB.stride : 0;
        i32[d + D.imgS / 4] = scaleB && images ? 4 * scaleB.stride : 0;
        job.call(e.gemm, at, SCRATCH).endTask();
        at += D.size;
      }
    }
    job.run(e.scratch.total);
  }
}

/** The descriptors' scratch argument (made once: a call per stripe would allocate it anew). */
const SCRATCH = scratchAt(0);
/** stripesOf's answer, reused by every call (gemmPtr reads it before the next call). */
const stripeWords = new Int32Array(4 * MAX_TASKS);

/**
 * The S stripes of an M×N product, [m0, m1, n0, n1] at words 4t…4t+3: `panels` NR-wide column panels (MR-high row
 * panels) shared out evenly. Written into one reused array: a compiled step multiplies hundreds of times.
 */
function stripesOf(M: number, N: number, S: number, panels: number, byCols: boolean, MR: number, NR: number): Int32Array {
  for (let t = 0; t < S; t++) {
    const lo = Math.round((t * panels) / S), hi = Math.round(((t + 1) * panels) / S);
    stripeWords[4 * t] = byCols ? 0 : lo * MR;
    stripeWords[4 * t + 1] = byCols ? M : Math.min(M, hi * MR);
    stripeWords[4 * t + 2] = byCols ? lo * NR : 0;
    stripeWords[4 * t + 3] = byCols ? Math.min(N, hi * NR) : N;
  }
  return stripeWords;
}

function run(
  e: Engine, transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number, epi?: RowEpilogue,
): void {
  const h = e.heap;
  const inA = h.ptrOf(A), inB = h.ptrOf(B), inC = h.ptrOf(C);
  if (inA >= 0 && inB >= 0 && inC >= 0) {
    gemmPtr(e, transA, transB, M, N, K, alpha, inA + 4 * aOff, lda, inB + 4 * bOff, ldb, beta, inC + 4 * cOff, ldc, epi);
    return;
  }
  // Stored shapes; operands outside the heap are copied in as one extent (keeping their leading dim) or compacted row by row.
  const [ar, ac] = transA ? [K, M] : [M, K];
  const [br, bc] = transB ? [N, K] : [K, N];
  const bytes = 4 * (ar * ac + br * bc + M * N) + 256;
  if (bytes > maxCallBytes && (M > 1 || N > 1)) {
    // Split the larger of M, N in halves: each half is an independent sgemm on sub-blocks.
    if (M >= N) {
      const hM = M >> 1;
      run(e, transA, transB, hM, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, epi);
      run(e, transA, transB, M - hM, N, K, alpha, A, aOff + (transA ? hM : hM * lda), lda, B, bOff, ldb, beta, C, cOff + hM * ldc, ldc, epi && epilogueFrom(epi, hM));
    } else {
      const hN = N >> 1;
      run(e, transA, transB, M, hN, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc, epi);
      run(e, transA, transB, M, N - hN, K, alpha, A, aOff, lda, B, bOff + (transB ? hN * ldb : hN), ldb, beta, C, cOff + hN, ldc, epi);
    }
    return;
  }
  // Wide, short products (conv as GEMM: few output channels, N = batch·H·W) stream in column chunks so the
  // copied B and C of a chunk are still in L2 when the kernel packs and writes them (A is small then, re-copying it is cheap).
  const w = Math.max(256, Math.floor(CHUNK_BYTES / (4 * (K + M)) / 64) * 64);
  if (N > 2 * w && M * K <= (K * w) >> 2) {
    for (let j = 0; j < N; j += w) {
      const n = Math.min(w, N - j);
      run(e, transA, transB, M, n, K, alpha, A, aOff, lda, B, bOff + (transB ? j * ldb : j), ldb, beta, C, cOff + j, ldc, epi);
    }
    return;
  }
  const ldA = inA >= 0 ? lda : wasmLd(ar, ac, lda);
  const ldB = inB >= 0 ? ldb : wasmLd(br, bc, ldb);
  const ldC = inC >= 0 ? ldc : N;
  const extA = inA >= 0 ? 0 : 4 * ((ar - 1) * ldA + ac);
  const extB = inB >= 0 ? 0 : 4 * ((br - 1) * ldB + bc);
  const extC = inC >= 0 ? 0 : 4 * M * N;
  const a64 = (x: number) => Math.ceil(x / 64) * 64;
  const tmp = h.alloc(a64(extA) + a64(extB) + extC);
  try {
    const pA = inA >= 0 ? inA + 4 * aOff : tmp;
    const pB = inB >= 0 ? inB + 4 * bOff : tmp + a64(extA);
    const pC = inC >= 0 ? inC + 4 * cOff : tmp + a64(extA) + a64(extB);
    const heap = h.f32();
    h.copiedBytes += 4 * ((inA < 0 ? ar * ac : 0) + (inB < 0 ? br * bc : 0) + (inC < 0 ? (beta !== 0 ? 2 : 1) * M * N : 0));
    if (inA < 0) copyIn(heap, pA >>> 2, ldA, A, aOff, ar, ac, lda);
    if (inB < 0) copyIn(heap, pB >>> 2, ldB, B, bOff, br, bc, ldb);
    if (inC < 0 && beta !== 0) copyIn(heap, pC >>> 2, N, C, cOff, M, N, ldc);
    gemmPtr(e, transA, transB, M, N, K, alpha, pA, ldA, pB, ldB, beta, pC, ldC, epi);
    if (inC < 0) {
      const out = h.view(pC, M * N);
      if (ldc === N) C.set(out, cOff);
      else for (let i = 0; i < M; i++) C.set(out.subarray(i * N, (i + 1) * N), cOff + i * ldc);
    }
  } finally {
    h.release(tmp);
  }
}

/** The reference GEMM (../gemm_ref.ts) with sgemm's semantics: the fallback without wasm SIMD. */
export function sgemmTs(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  const P = new Float64Array(M * N);
  gemm(A, aOff, transA ? 1 : lda, transA ? lda : 1, B, bOff, transB ? 1 : ldb, transB ? ldb : 1, P, 0, M, N, K);
  for (let i = 0; i < M; i++) {
    const r = cOff + i * ldc;
    for (let j = 0; j < N; j++) C[r + j] = alpha * P[i * N + j] + (beta === 0 ? 0 : beta * C[r + j]);
  }
}
