/**
 * sgemm: single-precision GEMM with BLAS semantics on row-major matrices, computed by the generated wasm SIMD
 * kernel (sgemm_wasm.ts) on up to `threads()` threads that share one WebAssembly.Memory (SharedArrayBuffer).
 *
 * Operands are copied into the wasm memory (a memcpy, O(MK + KN + MN)), the product runs there (O(MNK)), and C is
 * copied back. Threads split C into column (or row) stripes; worker threads are eval'd plain JS (no .ts loader
 * needed under tsx or vitest) that block in Atomics.wait between calls and never keep the process alive.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { type WasmMemory, type WasmModule, wasmApi } from './wasm.ts';
import { D, type GemmShape, hasRelaxedSimd, hasSimd, scratchBytes, sgemmModuleBytes } from './sgemm_wasm.ts';

const PAGE = 65536;
const MAX_PAGES = 16384; // 1 GiB of address space reserved for the shared memory
/** Above this many operand bytes a call is split in halves (recursively) so it always fits. */
let maxCallBytes = 256 * 1024 * 1024;
const MAX_THREADS = 8;
/** Target bytes of B + C per column chunk of a wide product (about a quarter of a 2 MiB L2). */
const CHUNK_BYTES = 512 * 1024;

/**
 * Control block at the start of the shared memory. Work is a list of tasks (stripes of C, one descriptor each)
 * claimed with a compare-and-swap on one 64-bit word, tag(32) | n(16) | next(16), by the main thread and by
 * whichever workers are awake. On a busy machine a worker that is not scheduled simply claims nothing: the main
 * thread never waits for a worker that has not started a task, only for tasks already claimed.
 */
const CLAIM = 0; // BigInt64 index 0 (bytes 0-7)
const SEQ = 2; // Int32 indices: job sequence (workers sleep on it), finished tasks, failure flag, ready flags
const DONE = 3;
const FAIL = 4;
const WORKER_TASKS = 5; // tasks run by workers since start (a statistic)
const READY = 16;
const DESC_BASE = 1024;
const MAX_TASKS = 64;
const CTL_BYTES = DESC_BASE + MAX_TASKS * D.size;

interface Engine {
  readonly memory: WasmMemory;
  readonly module: WasmModule;
  readonly gemm: (d: number, scratch: number) => void;
  readonly shape: GemmShape;
  readonly scratch: ReturnType<typeof scratchBytes>;
  readonly dataBase: number;
  workers: Worker[];
  /** Threads actually available (1 + ready workers). */
  nthreads: number;
  seq: number;
  tag: bigint;
}

let engine: Engine | null | undefined;

function wantedThreads(): number {
  const env = Number(process.env.STOCHCONV_THREADS);
  const n = Number.isFinite(env) && env >= 1 ? Math.floor(env) : availableParallelism();
  return Math.max(1, Math.min(MAX_THREADS, n));
}

/** Claims and runs tasks of the current job until none is left (shared by the main thread and the workers). */
const CLAIM_LOOP = `function claimLoop(big, ctl, gemm, scratch, isWorker) {
  for (;;) {
    const v = Atomics.load(big, ${CLAIM});
    const next = Number(v & 0xffffn);
    const n = Number((v >> 16n) & 0xffffn);
    if (next >= n) return;
    if (Atomics.compareExchange(big, ${CLAIM}, v, v + 1n) !== v) continue;
    try { gemm(${DESC_BASE} + next * ${D.size}, scratch); } catch (e) { Atomics.store(ctl, ${FAIL}, 1); }
    if (isWorker) Atomics.add(ctl, ${WORKER_TASKS}, 1);
    if (Atomics.add(ctl, ${DONE}, 1) + 1 === n) Atomics.notify(ctl, ${DONE});
  }
}`;

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, slot, scratch } = workerData;
const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
const gemm = inst.exports.gemm;
const ctl = new Int32Array(memory.buffer, 0, 64);
const big = new BigInt64Array(memory.buffer, 0, 1);
${CLAIM_LOOP}
Atomics.store(ctl, ${READY} + slot, 1);
Atomics.notify(ctl, ${READY} + slot);
let seen = Atomics.load(ctl, ${SEQ});
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  seen = Atomics.load(ctl, ${SEQ});
  claimLoop(big, ctl, gemm, scratch, true);
}
`;

type ClaimLoop = (big: BigInt64Array, ctl: Int32Array, gemm: (d: number, s: number) => void, scratch: number, isWorker: boolean) => void;
// The same source the workers run, compiled once here for the main thread.
const claimLoop = new Function(`${CLAIM_LOOP}; return claimLoop;`)() as ClaimLoop;

/**
 * The blocking used. Measured (CPU time, min of 6 interleaved rounds, same process, 2-core Xeon 8488C-class under
 * load), GFLOP/s on 1024³ / 256³ / B0 pointwise 24×25088×96: 4×8 with the k loop not unrolled 29.9 / 30.6 / 20.2;
 * 2×16 29.8 / 28.8 / 19.3; 2×16 unrolled ×2 23.2 / 24.2 / 16.7; 3×16 25.1 / 23.0 / 17.0; 6×8 22.4 / 23.0 / 16.0
 * (V8 keeps xmm15 as scratch: 6×8's 15 live vectors spill, and unrolling adds pressure too).
 */
export const DEFAULT_SHAPE: Omit<GemmShape, 'fma'> = { MR: 4, NR: 8, MC: 96, KC: 256, NC: 2048 };

function createEngine(blocking: Omit<GemmShape, 'fma'> = DEFAULT_SHAPE): Engine | null {
  const W = wasmApi;
  if (W === undefined || !hasSimd()) return null;
  const fma = hasRelaxedSimd();
  const shape: GemmShape = { ...blocking, fma };
  const scratch = scratchBytes(shape);
  const want = wantedThreads();
  const align = (x: number) => Math.ceil(x / 64) * 64;
  const perThread = align(scratch.total);
  const dataBase = align(CTL_BYTES + MAX_THREADS * perThread);
  const scratchOf = (t: number) => CTL_BYTES + t * perThread;
  const initial = Math.ceil((dataBase + 16 * 1024 * 1024) / PAGE);
  let shared = typeof SharedArrayBuffer !== 'undefined';
  let memory: WasmMemory;
  try {
    memory = new W.Memory({ initial, maximum: MAX_PAGES, shared });
  } catch {
    shared = false;
    memory = new W.Memory({ initial, maximum: MAX_PAGES });
  }
  const module = new W.Module(sgemmModuleBytes(shape, { initial, maximum: MAX_PAGES, shared }));
  const inst = new W.Instance(module, { env: { mem: memory } });
  const gemm = inst.exports.gemm as (d: number, scratch: number) => void;
  const e: Engine = { memory, module, gemm, shape, scratch, dataBase, workers: [], nthreads: 1, seq: 0, tag: 0n };
  if (shared && want > 1) startWorkers(e, want - 1, scratchOf);
  return e;
}

/** Spawns workers and waits (bounded) for each to report ready; those that don't come up are dropped. */
function startWorkers(e: Engine, n: number, scratchOf: (t: number) => number): void {
  const ctl = new Int32Array(e.memory.buffer, 0, 64);
  for (let w = 1; w <= n; w++) {
    let worker: Worker;
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module: e.module, memory: e.memory, slot: w, scratch: scratchOf(w) } });
    } catch {
      break;
    }
    worker.unref();
    worker.on('error', () => {
      // A dead worker is noticed at the next call (its done word never moves); drop the pool then.
    });
    const ok = Atomics.wait(ctl, READY + w, 0, 5000) !== 'timed-out' || Atomics.load(ctl, READY + w) === 1;
    if (!ok) {
      void worker.terminate();
      break;
    }
    e.workers.push(worker);
  }
  e.nthreads = 1 + e.workers.length;
}

/** Rebuilds the engine with another blocking (for tuning runs); stops the old workers. */
export function reconfigureSgemm(blocking: Omit<GemmShape, 'fma'>): void {
  if (engine) for (const w of engine.workers) void w.terminate();
  engine = createEngine(blocking);
}

function getEngine(): Engine | null {
  if (engine === undefined) engine = createEngine();
  return engine;
}

/** Threads sgemm will use (1 when workers or shared memory are unavailable). */
export function sgemmThreads(): number {
  return getEngine()?.nthreads ?? 1;
}

/** Tasks (stripes of C) that worker threads have run since the engine started: shows the threads are used. */
export function sgemmWorkerTasks(): number {
  const e = getEngine();
  return e ? Atomics.load(new Int32Array(e.memory.buffer, 0, 64), WORKER_TASKS) : 0;
}

/** Whether the wasm SIMD path is available (else sgemm runs a plain TS loop with the same semantics). */
export function sgemmIsWasm(): boolean {
  return getEngine() !== null;
}

/** Limits further calls to `n` threads (≤ the workers started); for benchmarks and tests. */
export function setSgemmThreads(n: number): void {
  const e = getEngine();
  if (e) e.nthreads = Math.max(1, Math.min(1 + e.workers.length, Math.floor(n)));
}

/** Sets the operand size above which a call is split in two (tests use a small one to cover the split). */
export function setSgemmMaxCallBytes(n: number): number {
  const old = maxCallBytes;
  maxCallBytes = Math.max(1024, n);
  return old;
}

function ensureBytes(e: Engine, end: number): void {
  const have = e.memory.buffer.byteLength;
  if (end > have) e.memory.grow(Math.ceil((end - have) / PAGE));
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
 * being read (NaNs in C are ignored). Elements of C outside the M×N block (ldc > N) are left untouched.
 *
 * @example sgemm(false, false, 2, 2, 3, 1, a, 0, 3, b, 0, 2, 0, c, 0, 2) // c = a(2×3)·b(3×2)
 */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number,
  B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  const [ar, ac] = transA ? [K, M] : [M, K];
  const [br, bc] = transB ? [N, K] : [K, N];
  check(Number.isInteger(M) && Number.isInteger(N) && Number.isInteger(K) && M >= 0 && N >= 0 && K >= 0, () => `sizes M=${M} N=${N} K=${K} must be non-negative integers`);
  check(lda >= Math.max(1, ac), () => `lda=${lda} < ${ac} (A stored ${ar}×${ac}, transA=${transA})`);
  check(ldb >= Math.max(1, bc), () => `ldb=${ldb} < ${bc} (B stored ${br}×${bc}, transB=${transB})`);
  check(ldc >= Math.max(1, N), () => `ldc=${ldc} < N=${N}`);
  if (M === 0 || N === 0) return;
  check(cOff >= 0 && cOff + (M - 1) * ldc + N <= C.length, () => `C (length ${C.length}) too short for ${M}×${N} at offset ${cOff}, ldc ${ldc}`);
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
  const e = getEngine();
  if (!e) {
    sgemmTs(transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  run(e, transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
}

function run(
  e: Engine, transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  // Stored shapes; in wasm each is either copied as one extent (keeping its leading dim) or compacted row by row.
  const [ar, ac] = transA ? [K, M] : [M, K];
  const [br, bc] = transB ? [N, K] : [K, N];
  const bytes = 4 * (ar * ac + br * bc + M * N) + 256;
  if (bytes > maxCallBytes && (M > 1 || N > 1)) {
    // Split the larger of M, N in halves: each half is an independent sgemm on sub-blocks.
    if (M >= N) {
      const h = M >> 1;
      run(e, transA, transB, h, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
      run(e, transA, transB, M - h, N, K, alpha, A, aOff + (transA ? h : h * lda), lda, B, bOff, ldb, beta, C, cOff + h * ldc, ldc);
    } else {
      const h = N >> 1;
      run(e, transA, transB, M, h, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
      run(e, transA, transB, M, N - h, K, alpha, A, aOff, lda, B, bOff + (transB ? h * ldb : h), ldb, beta, C, cOff + h, ldc);
    }
    return;
  }
  // Wide, short products (conv as GEMM: few output channels, N = batch·H·W) stream in column chunks so the
  // copied B and C of a chunk are still in L2 when the kernel packs and writes them (A is small then, re-copying it is cheap).
  const w = Math.max(256, Math.floor(CHUNK_BYTES / (4 * (K + M)) / 64) * 64);
  if (N > 2 * w && M * K <= (K * w) >> 2) {
    for (let j = 0; j < N; j += w) {
      const n = Math.min(w, N - j);
      run(e, transA, transB, M, n, K, alpha, A, aOff, lda, B, bOff + (transB ? j * ldb : j), ldb, beta, C, cOff + j, ldc);
    }
    return;
  }
  const a16 = (x: number) => Math.ceil(x / 16) * 16;
  const ldA = wasmLd(ar, ac, lda);
  const ldB = wasmLd(br, bc, ldb);
  const pA = e.dataBase;
  const pB = a16(pA + 4 * ((ar - 1) * ldA + ac));
  const pC = a16(pB + 4 * ((br - 1) * ldB + bc));
  const cExt = M * N;
  ensureBytes(e, pC + 4 * cExt);
  const heap = new Float32Array(e.memory.buffer);
  copyIn(heap, pA >> 2, ldA, A, aOff, ar, ac, lda);
  copyIn(heap, pB >> 2, ldB, B, bOff, br, bc, ldb);
  const cw = pC >> 2;
  if (beta !== 0) copyIn(heap, cw, N, C, cOff, M, N, ldc);
  // op(A)(i, k) at pA + i·rsA + k·csA; op(B)(k, j) at pB + k·rsB + j·csB (bytes).
  const rsA = transA ? 4 : 4 * ldA;
  const csA = transA ? 4 * ldA : 4;
  const rsB = transB ? 4 : 4 * ldB;
  const csB = transB ? 4 * ldB : 4;
  const { MR, NR } = e.shape;
  const flops = 2 * M * N * K;
  // Tasks: stripes of columns when there are enough NR panels, else of rows; at least one per thread, and about
  // 128 columns (rows) each so that re-packing A (B) per task stays under ~10%. Tiny products are one task.
  const T = flops < 4e5 ? 1 : e.nthreads;
  const colPanels = Math.ceil(N / NR);
  const rowPanels = Math.ceil(M / MR);
  const byCols = colPanels >= 4 * T || colPanels >= rowPanels;
  const panels = byCols ? colPanels : rowPanels;
  const S = T === 1 ? 1 : Math.min(panels, MAX_TASKS, Math.max(T, Math.floor((byCols ? N : M) / 128)));
  const i32 = new Int32Array(e.memory.buffer, 0, CTL_BYTES >> 2);
  const f32v = new Float32Array(e.memory.buffer, 0, CTL_BYTES >> 2);
  let start = 0;
  for (let t = 0; t < S; t++) {
    const end = Math.round(((t + 1) * panels) / S);
    const lo = start;
    start = end;
    const d = (DESC_BASE + t * D.size) >> 2;
    let m0 = 0, m1 = M, n0 = 0, n1 = N;
    if (byCols) {
      n0 = lo * NR;
      n1 = Math.min(N, end * NR);
    } else {
      m0 = lo * MR;
      m1 = Math.min(M, end * MR);
    }
    i32[d + D.M / 4] = m1 - m0;
    i32[d + D.N / 4] = n1 - n0;
    i32[d + D.K / 4] = K;
    i32[d + D.A / 4] = pA + m0 * rsA;
    i32[d + D.rsA / 4] = rsA;
    i32[d + D.csA / 4] = csA;
    i32[d + D.B / 4] = pB + n0 * csB;
    i32[d + D.rsB / 4] = rsB;
    i32[d + D.csB / 4] = csB;
    i32[d + D.C / 4] = pC + 4 * (m0 * N + n0);
    i32[d + D.ldc / 4] = 4 * N;
    f32v[d + D.alpha / 4] = alpha;
    f32v[d + D.beta / 4] = beta;
  }
  const big = new BigInt64Array(e.memory.buffer, 0, 1);
  Atomics.store(i32, DONE, 0);
  Atomics.store(i32, FAIL, 0);
  // Publish the job (descriptors are written before this store), then wake the workers.
  e.tag = (e.tag + 1n) & 0xffffffffn;
  Atomics.store(big, CLAIM, (e.tag << 32n) | (BigInt(S) << 16n));
  if (S > 1) {
    Atomics.store(i32, SEQ, ++e.seq);
    Atomics.notify(i32, SEQ);
  }
  claimLoop(big, i32, e.gemm, CTL_BYTES, false);
  // Only tasks a worker has already claimed can be outstanding.
  let d: number;
  let idle = 0;
  while ((d = Atomics.load(i32, DONE)) < S) {
    if (Atomics.wait(i32, DONE, d, 1000) === 'timed-out' && Atomics.load(i32, DONE) === d && ++idle >= 60) break;
  }
  if (Atomics.load(i32, DONE) < S || Atomics.load(i32, FAIL) !== 0) {
    // A worker died in a task or trapped: stop using threads and redo this product on the main thread.
    for (const w of e.workers) void w.terminate();
    e.workers = [];
    e.nthreads = 1;
    Atomics.store(big, CLAIM, 0n);
    if (Atomics.load(i32, FAIL) !== 0 && S === 1) throw new Error(`sgemm: the wasm kernel trapped on M=${M} N=${N} K=${K}`);
    run(e, transA, transB, M, N, K, alpha, A, aOff, lda, B, bOff, ldb, beta, C, cOff, ldc);
    return;
  }
  const out = new Float32Array(e.memory.buffer, pC, cExt);
  if (ldc === N) C.set(out, cOff);
  else for (let i = 0; i < M; i++) C.set(out.subarray(i * N, (i + 1) * N), cOff + i * ldc);
}

/** Plain TS with the same semantics: the fallback without wasm SIMD, and the reference for tests. */
export function sgemmTs(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number,
  beta: number, C: Float32Array, cOff: number, ldc: number,
): void {
  const sam = transA ? 1 : lda;
  const sak = transA ? lda : 1;
  const sbk = transB ? 1 : ldb;
  const sbn = transB ? ldb : 1;
  const acc = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    acc.fill(0);
    for (let k = 0; k < K; k++) {
      const a = A[aOff + i * sam + k * sak];
      const b0 = bOff + k * sbk;
      for (let j = 0; j < N; j++) acc[j] += a * B[b0 + j * sbn];
    }
    const r = cOff + i * ldc;
    for (let j = 0; j < N; j++) C[r + j] = alpha * acc[j] + (beta === 0 ? 0 : beta * C[r + j]);
  }
}
