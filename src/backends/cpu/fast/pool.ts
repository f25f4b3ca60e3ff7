/**
 * The CPU backend's one worker pool: threads that run wasm kernels on the shared heap (heap.ts). A job is a list
 * of tasks, each a list of kernel calls (a command buffer in the heap: module, function, i32 arguments), claimed
 * task by task with a compare-and-swap by the main thread and whichever workers are awake. On a busy machine a
 * worker that is not scheduled simply claims nothing: the main thread never waits for a worker that has not
 * started a task, only for tasks already claimed. Every kernel module is compiled once on the main thread and
 * sent to the workers (`loadKernels`), which instantiate it on the same memory before claiming work.
 *
 * Each thread has its own scratch area; an argument marked in a call's scratch mask is an offset into the
 * scratch of the thread that runs it (packing buffers, padded planes, staging). Workers are eval'd plain JS (no
 * .ts loader needed under tsx or vitest), block in Atomics.wait between jobs and never keep the process alive.
 */
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { type WasmModule, wasmApi } from './wasm.ts';
import { type WasmHeap, wasmHeap } from './heap.ts';

const MAX_THREADS = 8;
/** Arguments a kernel call can take (all i32). */
const MAX_ARGS = 12;
/** Words per call: module, function, argument count, scratch mask, arguments. */
export const CALL_WORDS = 4 + MAX_ARGS;
/** Tasks per job at most (the claim word counts them in 16 bits). */
export const MAX_TASKS = 4096;

// Control block (Int32 word offsets from its base).
// The claim word: the job's generation (16 bits) above the next unclaimed task (16 bits). A claim is a
// compare-exchange of the whole word, so it succeeds only in the job whose generation the claimer read, after the
// claimer's readiness check for that job; plain numbers, so claiming allocates nothing.
const CLAIM = 0;
const NTASKS = 1; // tasks in the current job (written before the claim word that publishes it)
const SEQ = 2; // job sequence (workers sleep on it)
const DONE = 3; // tasks finished in the current job
const FAIL = 4; // a task trapped
const WORKER_TASKS = 5; // tasks run by workers since start (a statistic)
const NMOD = 6; // modules a worker must have instantiated to take part
const TASKS = 7; // byte address of the task table (task t = words [tab[t], tab[t + 1]))
const READY = 16; // + slot
const SCRATCH = 32; // + slot: byte address of each thread's scratch
const CTL_WORDS = 64;

const RUN_TASK = `function runTask(i32, mods, slot, t, C) {
  const tab = i32[C + ${TASKS}] >>> 2;
  const scratch = i32[C + ${SCRATCH} + slot];
  let w = i32[tab + t];
  const end = i32[tab + t + 1];
  while (w < end) {
    const f = mods[i32[w]][i32[w + 1]];
    const m = i32[w + 3];
    ${Array.from({ length: MAX_ARGS }, (_, k) => `const a${k} = i32[w + ${4 + k}] + ((m >> ${k}) & 1) * scratch;`).join('\n    ')}
    f(${Array.from({ length: MAX_ARGS }, (_, k) => `a${k}`).join(', ')});
    w += ${CALL_WORDS};
  }
}`;

/**
 * Claims and runs tasks of the current job until none is left (the main thread and the workers run this). A worker
 * claims only when `env.ready()` says its view covers the memory (which another thread may have grown) and it has
 * instantiated every module the job may call; else it leaves the tasks to the others.
 */
const CLAIM_LOOP = `function claimLoop(env, mods, slot, isWorker, C) {
  for (;;) {
    const v = Atomics.load(env.i32, C + ${CLAIM});
    const next = v & 0xffff;
    // Read after the claim word: a newer job's count can only pair with an older claim word whose exchange fails.
    const n = Atomics.load(env.i32, C + ${NTASKS});
    if (next >= n) return;
    if (isWorker && !env.ready()) return;
    if (Atomics.compareExchange(env.i32, C + ${CLAIM}, v, v + 1) !== v) continue;
    const i32 = env.i32;
    try { runTask(i32, mods, slot, next, C); } catch (e) { Atomics.store(i32, C + ${FAIL}, 1); }
    if (isWorker) Atomics.add(i32, C + ${WORKER_TASKS}, 1);
    if (Atomics.add(i32, C + ${DONE}, 1) + 1 === n) Atomics.notify(i32, C + ${DONE});
  }
}`;

const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { memory, ctl, slot, port } = workerData;
const C = ctl >>> 2;
const mods = [];
${RUN_TASK}
${CLAIM_LOOP}
function load(need) {
  while (mods.length < need) {
    const m = receiveMessageOnPort(port);
    if (!m) return false;
    const inst = new WebAssembly.Instance(m.message.module, { env: { mem: memory } });
    mods.push(m.message.names.map((n) => inst.exports[n]));
  }
  return true;
}
const env = {
  i32: new Int32Array(memory.buffer),
  ready() {
    if (env.i32.buffer !== memory.buffer) env.i32 = new Int32Array(memory.buffer);
    return load(Atomics.load(env.i32, C + ${NMOD}));
  },
};
Atomics.store(env.i32, C + ${READY} + slot, 1);
Atomics.notify(env.i32, C + ${READY} + slot);
let seen = Atomics.load(env.i32, C + ${SEQ});
for (;;) {
  Atomics.wait(env.i32, C + ${SEQ}, seen);
  seen = Atomics.load(env.i32, C + ${SEQ});
  claimLoop(env, mods, slot, true, C);
}
`;

type Fn = (...a: number[]) => void;
interface ClaimEnv {
  i32: Int32Array;
  ready(): boolean;
}
type ClaimLoop = (env: ClaimEnv, mods: Fn[][], slot: number, isWorker: boolean, C: number) => void;
// The same source the workers run, compiled once here for the main thread.
type RunTask = (i32: Int32Array, mods: Fn[][], slot: number, t: number, C: number) => void;
const { claimLoop, runTask } = new Function(`${RUN_TASK}\n${CLAIM_LOOP}\nreturn { claimLoop, runTask };`)() as { claimLoop: ClaimLoop; runTask: RunTask };

interface Pool {
  readonly heap: WasmHeap;
  readonly ctl: number;
  readonly mods: Fn[][];
  /** Export names per module (for error messages). */
  readonly names: (readonly string[])[];
  readonly ports: MessagePort[];
  workers: Worker[];
  /** Threads used by jobs (1 + ready workers, or fewer when set). */
  nthreads: number;
  scratchBytes: number;
  scratch: number[];
  /** The command and task buffers of the last job (kept, grown when a job needs more). */
  cmd: { ptr: number; bytes: number };
  seq: number;
  /** The last published job's generation (16 bits). */
  gen: number;
  /** The main thread's view of the control block (re-made when the heap grows). */
  env: ClaimEnv;
}

let pool: Pool | null | undefined;

function wantedThreads(): number {
  const env = Number(process.env.STOCHCONV_THREADS);
  const n = Number.isFinite(env) && env >= 1 ? Math.floor(env) : availableParallelism();
  return Math.max(1, Math.min(MAX_THREADS, n));
}

function createPool(): Pool | null {
  const heap = wasmHeap();
  if (!heap) return null;
  const ctl = heap.alloc(CTL_WORDS * 4);
  heap.i32().fill(0, ctl >>> 2, (ctl >>> 2) + CTL_WORDS);
  const p: Pool = { heap, ctl, mods: [], names: [], ports: [], workers: [], nthreads: 1, scratchBytes: 0, scratch: [], cmd: { ptr: heap.alloc(64), bytes: 64 }, seq: 0, gen: 0, env: { i32: new Int32Array(0), ready: () => true } };
  const want = wantedThreads();
  if (heap.shared && want > 1) startWorkers(p, want - 1);
  return p;
}

/** Spawns workers and waits (bounded) for each to report ready; those that don't come up are dropped. */
function startWorkers(p: Pool, n: number): void {
  const C = p.ctl >>> 2;
  for (let w = 1; w <= n; w++) {
    let worker: Worker;
    const { port1, port2 } = new MessageChannel();
    try {
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { memory: p.heap.memory, ctl: p.ctl, slot: w, port: port2 }, transferList: [port2] });
    } catch {
      break;
    }
    worker.unref();
    port1.unref();
    worker.on('error', () => {
      // A dead worker is noticed at the next job (its task never finishes); the pool stops using threads then.
    });
    const i32 = p.heap.i32();
    const ok = Atomics.wait(i32, C + READY + w, 0, 5000) !== 'timed-out' || Atomics.load(i32, C + READY + w) === 1;
    if (!ok) {
      void worker.terminate();
      break;
    }
    p.workers.push(worker);
    p.ports.push(port1);
  }
  p.nthreads = 1 + p.workers.length;
}

function getPool(): Pool | null {
  if (pool === undefined) pool = createPool();
  return pool;
}

/** A function of a kernel module loaded into the pool: call it here (`run`) or put it in a job (`Job.call`). */
export interface PoolKernel {
  readonly mod: number;
  readonly fn: number;
  readonly name: string;
  readonly run: Fn;
}

/**
 * Compiles `bytes` (a module importing the heap's memory as env.mem), instantiates it here and on every worker,
 * and returns its exported functions by name.
 */
export function loadKernels(bytes: Uint8Array, names: readonly string[]): Record<string, PoolKernel> {
  const p = getPool();
  const W = wasmApi;
  if (!p || !W) throw new Error('pool: WebAssembly SIMD is not available');
  const module: WasmModule = new W.Module(bytes);
  const inst = new W.Instance(module, { env: { mem: p.heap.memory } });
  const fns = names.map((n) => {
    const f = inst.exports[n];
    if (typeof f !== 'function') throw new Error(`pool: the module has no exported function '${n}'`);
    return f as Fn;
  });
  const mod = p.mods.length;
  p.mods.push(fns);
  p.names.push(names);
  for (const port of p.ports) port.postMessage({ module, names });
  Atomics.store(p.heap.i32(), (p.ctl >>> 2) + NMOD, p.mods.length);
  return Object.fromEntries(names.map((name, fn) => [name, { mod, fn, name, run: fns[fn] }]));
}

/** Threads jobs use (1 when workers or a shared memory are unavailable). */
export function poolThreads(): number {
  return getPool()?.nthreads ?? 1;
}

/**
 * Tasks for a job of about `want` grains of work: a multiple of the thread count (equal tasks then end together:
 * 3 on 2 threads take as long as 4), at most 4 per thread.
 */
export function taskCount(want: number): number {
  const T = poolThreads();
  return Math.min(4 * T, T * Math.ceil(Math.max(1, want) / T));
}

/** Tasks that worker threads have run since the pool started: shows the threads are used. */
export function poolWorkerTasks(): number {
  const p = getPool();
  return p ? Atomics.load(p.heap.i32(), (p.ctl >>> 2) + WORKER_TASKS) : 0;
}

/** Limits further jobs to `n` threads (≤ the workers started); for benchmarks and tests. */
export function setPoolThreads(n: number): void {
  const p = getPool();
  if (p) p.nthreads = Math.max(1, Math.min(1 + p.workers.length, Math.floor(n)));
}

/** Stops the workers (jobs then run on the main thread). */
export function stopPool(): void {
  const p = getPool();
  if (!p) return;
  for (const w of p.workers) void w.terminate();
  p.workers = [];
  p.nthreads = 1;
}

/** Byte offset into the running thread's scratch, as a call argument. */
export interface ScratchArg {
  readonly scratch: number;
}
/**
 * `S(offset)`: a scratch offset as a call argument. Make it once per job and pass it to each call (an object passed
 * on allocates nothing; a number tag would be a double that optimised code boxes anew at every call).
 */
export const S = (offset: number): ScratchArg => ({ scratch: offset });
/** A kernel call's argument: an i32 (or u32: a byte address), or an offset into the running thread's scratch. */
export type CallArg = number | ScratchArg;

/** Writes argument `a` at word `at` (0 when absent); returns 1 when it is a scratch offset. */
function put(w: Int32Array, at: number, a: CallArg | undefined): number {
  if (a === undefined) {
    w[at] = 0;
    return 0;
  }
  if (typeof a === 'number') {
    w[at] = a;
    return 0;
  }
  w[at] = a.scratch;
  return 1;
}

/**
 * Command buffers of jobs that have run, for the next jobs to build theirs in. A step of a compiled graph runs
 * hundreds of jobs, some of thousands of calls (megabytes of commands): allocating each job's buffer anew would
 * churn tens of megabytes of ArrayBuffers per step through the process's allocator.
 */
const spareWords: Int32Array[] = [];
/** Task start lists of jobs that have run, likewise reused. */
const spareStarts: number[][] = [];
const SPARE_BUFFERS = 4;
const NO_WORDS = new Int32Array(0);
const NO_STARTS: number[] = [0];

/**
 * A job under construction: `call` appends a kernel call to the current task, `endTask` closes it. `run` needs
 * each thread's scratch to hold `scratchBytes`. A job with one task, or on a pool of one thread, runs on the
 * calling thread alone. A job runs once: `run` hands its command buffer on to later jobs. `call` allocates nothing
 * (positional arguments; scratch offsets made once per job), so a job may hold thousands of calls.
 */
export class Job {
  private words: Int32Array = spareWords.pop() ?? new Int32Array(CALL_WORDS * 64);
  private n = 0;
  private starts: number[] = spareStarts.pop() ?? [0];
  private spent = false;

  /** Appends k(a0, a1, …) to the current task. */
  call(k: PoolKernel, a0?: CallArg, a1?: CallArg, a2?: CallArg, a3?: CallArg, a4?: CallArg, a5?: CallArg, a6?: CallArg, a7?: CallArg, a8?: CallArg, a9?: CallArg, a10?: CallArg, a11?: CallArg): this {
    const nargs = +(a0 !== undefined) + +(a1 !== undefined) + +(a2 !== undefined) + +(a3 !== undefined) + +(a4 !== undefined) + +(a5 !== undefined) +
      +(a6 !== undefined) + +(a7 !== undefined) + +(a8 !== undefined) + +(a9 !== undefined) + +(a10 !== undefined) + +(a11 !== undefined);
    const w = this.slot(k, nargs);
    const at = this.n * CALL_WORDS + 4;
    w[at - 1] =
      put(w, at, a0) | (put(w, at + 1, a1) << 1) | (put(w, at + 2, a2) << 2) | (put(w, at + 3, a3) << 3) | (put(w, at + 4, a4) << 4) | (put(w, at + 5, a5) << 5) |
      (put(w, at + 6, a6) << 6) | (put(w, at + 7, a7) << 7) | (put(w, at + 8, a8) << 8) | (put(w, at + 9, a9) << 9) | (put(w, at + 10, a10) << 10) | (put(w, at + 11, a11) << 11);
    this.n++;
    return this;
  }

  /** Appends k(...args) to the current task (arguments from an array). */
  callWith(k: PoolKernel, args: readonly CallArg[]): this {
    if (args.length > MAX_ARGS) throw new Error(`pool: ${k.name} called with ${args.length} arguments (at most ${MAX_ARGS})`);
    const w = this.slot(k, args.length);
    const at = this.n * CALL_WORDS + 4;
    let mask = 0;
    for (let i = 0; i < MAX_ARGS; i++) mask |= put(w, at + i, args[i]) << i;
    w[at - 1] = mask;
    this.n++;
    return this;
  }

  /** Room for the next call (the buffer grown when full), its module, function and argument count written. */
  private slot(k: PoolKernel, nargs: number): Int32Array {
    if (this.spent) throw new Error(`pool: ${k.name} added to a job that has already run`);
    if ((this.n + 1) * CALL_WORDS > this.words.length) {
      const w = new Int32Array(this.words.length * 2);
      w.set(this.words.subarray(0, this.n * CALL_WORDS));
      this.words = w;
    }
    const o = this.n * CALL_WORDS;
    this.words[o] = k.mod;
    this.words[o + 1] = k.fn;
    this.words[o + 2] = nargs;
    return this.words;
  }

  endTask(): this {
    if (this.spent) throw new Error('pool: endTask on a job that has already run');
    if (this.starts[this.starts.length - 1] !== this.n) this.starts.push(this.n);
    return this;
  }

  get tasks(): number {
    return this.starts.length - 1 + (this.starts[this.starts.length - 1] !== this.n ? 1 : 0);
  }

  run(scratchBytes = 0): void {
    if (this.spent) throw new Error('pool: a job runs once');
    this.endTask();
    this.spent = true;
    try {
      const T = this.starts.length - 1;
      if (T === 0) return;
      if (T > MAX_TASKS) throw new Error(`pool: a job of ${T} tasks (at most ${MAX_TASKS})`);
      const p = getPool();
      if (!p) throw new Error('pool: WebAssembly SIMD is not available');
      runJob(p, this.words, this.n * CALL_WORDS, this.starts, scratchBytes);
    } finally {
      if (spareWords.length < SPARE_BUFFERS) spareWords.push(this.words);
      this.words = NO_WORDS;
      if (spareStarts.length < SPARE_BUFFERS) {
        this.starts.length = 1;
        spareStarts.push(this.starts);
      }
      this.starts = NO_STARTS;
    }
  }
}

/**
 * A job kept alive for the life of the process, so that Job's map always has an instance. Jobs are transient: after a
 * full collection none may be left, V8 then drops the map (map transitions are weak) and deoptimizes the optimized
 * code of `call` and `slot`, which checks it. Recompiling them after every full collection took several ms of
 * compiler time on the two cores the kernels run on (the eager stochastic stem with both gradients: 17 ms calls
 * turned into 30 ms ones).
 */
export const JOB_MAP_KEEPER = new Job();

function ensureScratch(p: Pool, bytes: number): void {
  if (bytes <= p.scratchBytes && p.scratch.length) return;
  for (const s of p.scratch) p.heap.release(s);
  p.scratchBytes = Math.max(bytes, p.scratchBytes * 1.25, 1 << 16);
  p.scratch = Array.from({ length: 1 + p.workers.length }, () => p.heap.alloc(p.scratchBytes));
}

/** Runs the job whose calls are `words[0, len)`, task t being calls [starts[t], starts[t + 1]). */
function runJob(p: Pool, words: Int32Array, len: number, starts: readonly number[], scratchBytes: number): void {
  const h = p.heap;
  ensureScratch(p, scratchBytes);
  const T = starts.length - 1;
  const need = len * 4 + (T + 1) * 4;
  if (need > p.cmd.bytes) {
    h.release(p.cmd.ptr);
    p.cmd = { ptr: h.alloc(need * 2), bytes: need * 2 };
  }
  const C = p.ctl >>> 2;
  const i32 = h.i32();
  const cw = p.cmd.ptr >>> 2;
  // A subarray would allocate on every job: short command lists are copied word by word.
  if (len > 4096) i32.set(words.subarray(0, len), cw);
  else for (let i = 0; i < len; i++) i32[cw + i] = words[i];
  const tab = cw + len;
  for (let t = 0; t <= T; t++) i32[tab + t] = cw + starts[t] * CALL_WORDS;
  i32[C + TASKS] = tab * 4;
  for (let s = 0; s < p.scratch.length; s++) i32[C + SCRATCH + s] = p.scratch[s];
  if (T === 1 || p.nthreads === 1) {
    // This thread alone: run the tasks in order without publishing the job, so no worker can claim one.
    try {
      for (let t = 0; t < T; t++) runTask(i32, p.mods, 0, t, C);
    } catch {
      throw trapped(p, words, len);
    }
    return;
  }
  if (p.env.i32 !== i32) p.env = { i32, ready: () => true };
  Atomics.store(i32, C + DONE, 0);
  Atomics.store(i32, C + FAIL, 0);
  Atomics.store(i32, C + NTASKS, T);
  // Publish the job (everything above is written before this store), then wake the workers.
  p.gen = (p.gen + 1) & 0xffff;
  Atomics.store(i32, C + CLAIM, p.gen << 16);
  Atomics.store(i32, C + SEQ, ++p.seq);
  Atomics.notify(i32, C + SEQ, p.nthreads - 1);
  claimLoop(p.env, p.mods, 0, false, C);
  // Only tasks a worker has already claimed can be outstanding.
  let d: number;
  let idle = 0;
  while ((d = Atomics.load(i32, C + DONE)) < T) {
    if (Atomics.wait(i32, C + DONE, d, 1000) === 'timed-out' && Atomics.load(i32, C + DONE) === d && ++idle >= 60) break;
  }
  if (Atomics.load(i32, C + DONE) < T) {
    stopPool();
    throw new Error(`pool: a worker thread stopped in the middle of a task (${Atomics.load(i32, C + DONE)} of ${T} done); the pool now runs on one thread`);
  }
  if (Atomics.load(i32, C + FAIL) !== 0) throw trapped(p, words, len);
}

/** The error for a job in which a kernel trapped, naming the functions it calls. */
function trapped(p: Pool, words: Int32Array, len: number): Error {
  const names = new Set<string>();
  for (let w = 0; w < len; w += CALL_WORDS) names.add(p.names[words[w]]?.[words[w + 1]] ?? `module ${words[w]} function ${words[w + 1]}`);
  return new Error(`pool: a wasm kernel trapped (out-of-bounds address or a bad argument) in a job calling ${[...names].join(', ')}`);
}
