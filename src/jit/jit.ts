/**
 * `jit(f)`: a function transform in the family of grad/vjp (JAX's jit). The first call with a
 * given signature traces `f` on abstract tensors into a graph (src/jit/graph.ts), folds eval-mode
 * batch norm into the convs before it (fold.ts), fuses its elementwise chains into kernels of the
 * backend's and a depthwise conv's plane sums into its step (fuse.ts), plans its memory (plan.ts)
 * and keeps the result; later calls with the same signature run the compiled graph (execute.ts).
 *
 * Signature (the cache key): the arguments' tree structure, each tensor's shape and dtype, where
 * the keys sit, and every other (static) value — numbers, strings and booleans by value, other
 * objects (functions, configs) by identity. Tensors and keys are inputs: new values with the same
 * shapes reuse the compiled graph, and draws from a key (windows, dropout masks) are recomputed
 * per call. The cache holds the `cacheSize` (default 8) most recently used signatures. A call whose
 * arguments have the structure of the most recent entry's finds it without building the signature
 * string (signature.ts), so a steady training loop pays nothing per parameter tensor to look it up.
 */
import { type Backend, type DType, type FusedGroup, getBackend } from '../backends/backend.ts';
import { bytesPerElement } from '../backends/kernel.ts';
import { recording, withRecorder } from '../autograd/trace.ts';
import { type Key, isKey, setKeyTracer } from '../tensor/random.ts';
import { Tensor, assertLive, markDonated } from '../tensor/tensor.ts';
import { type Eqn, type Graph, type OutputLeaf, Tracer, pruneDead } from './graph.ts';
import { type Step, schedule } from './fuse.ts';
import { foldConvAffine, foldInputScale } from './fold.ts';
import { fusedKernels } from './fused-group.ts';
import { type MemoryPlan, planMemory } from './plan.ts';
import { ArenaExecutable, type StepObserver, runUnplanned } from './execute.ts';
import { type Profile, summarize } from './profile.ts';
import { type Flat, type Template, flattenArgs, gather, isRecord } from './signature.ts';

export interface JitOptions {
  /**
   * Indices of arguments donated to the call (JAX's donate_argnums): outputs may be written into
   * their tensors' buffers (parameters, optimizer and BN state updated in place), and the donated
   * tensors may not be used afterwards (reading one throws an error naming it).
   */
  readonly donate?: readonly number[];
  /** Compiled signatures kept (least recently used evicted first); default 8. */
  readonly cacheSize?: number;
  /** Fuse elementwise chains, and a depthwise conv's plane sums into its step (default true; off is for comparisons). */
  readonly fuse?: boolean;
  /**
   * Fold conv2d → per-channel affine pairs (eval-mode batch norm) into conv2dAffine steps, and per-image channel
   * scales (squeeze-excite's gate) into the 1×1 conv reading them where the backend's kernel takes one (default
   * true; off is for comparisons).
   */
  readonly fold?: boolean;
}

/** What a compiled signature costs and contains. */
export interface Lowered {
  readonly signature: string;
  readonly memory: Omit<MemoryPlan, 'placement'> & {
    /** Bytes of the tensor arguments and of the constants the graph holds. */
    readonly inputBytes: number;
    readonly constBytes: number;
    /** Arguments + constants + arena + per-call outputs: the live bytes of one call at its peak (an upper bound). */
    readonly peakBytes: number;
  };
  readonly stats: {
    readonly eqns: number;
    readonly steps: number;
    /** Fused groups, each run as one kernel of the backend's (`Backend.fuse`). */
    readonly fusedLoops: number;
    /** Equations inside those groups. */
    readonly fusedOps: number;
    /** Those of the groups that end in a sum (its input never stored). */
    readonly fusedReductions: number;
    /** Fused groups by what runs them (the kernels' `via`: the CPU backend's 'wasm-simd' or 'js', 'wgsl', 'gpu.js'). */
    readonly fusedBy: Readonly<Record<string, number>>;
    /** Groups the backend declined: their equations run one by one. */
    readonly declinedGroups: number;
    /** conv2d → per-channel affine pairs (eval-mode batch norm, its SiLU included) run as one conv2dAffine step. */
    readonly foldedAffines: number;
    /** Per-image channel scales (squeeze-excite's gate) multiplied in by the 1×1 conv reading them (`Kernel.inputScale`). */
    readonly foldedScales: number;
    /** Sums over a depthwise conv's output planes (squeeze-excite's pooling) written by the conv's step, the sum's pass saved (`Kernel.writesSums`). */
    readonly convSums: number;
    /** Primitives whose kernels allocate their own outputs (no `writesInto`): outside the arena. */
    readonly ownOutputOps: readonly string[];
    readonly compileMs: number;
    readonly backend: string;
  };
}

export interface Jitted<A extends unknown[], R> {
  (...args: A): R;
  /** Compiles (or finds) the entry for these arguments without running it. */
  lower(...args: A): Lowered;
  /**
   * Runs one call (compiling first if needed) with every step timed: its result, and where the time went per
   * operation and per category (profile.ts; `formatProfile` prints it). Donation applies as to a plain call.
   */
  profile(...args: A): { result: R; profile: Profile };
  /** How many times `f` has been traced and compiled. */
  readonly compiles: number;
  /** Drops every compiled entry. */
  clear(): void;
}

interface Entry {
  readonly graph: Graph;
  readonly steps: Step[];
  readonly plan: MemoryPlan | null;
  readonly exec: ArenaExecutable | null;
  readonly backend: Backend;
  /** The backend's kernel table when compiled (a restarted gpu backend has a new one, and the entry is recompiled). */
  readonly table: unknown;
  readonly lowered: Lowered;
  /** The arguments' structure, for finding this entry again without building the signature (signature.ts). */
  readonly template: Template;
  /** Each tensor argument's path (for error messages) and whether its argument is donated. */
  readonly paths: readonly string[];
  readonly donated: readonly boolean[];
  /** Builds the output tree of a call. */
  readonly output: OutputBuilder;
}

/** Rebuilds `x` with tensors and keys replaced in order (the inverse of flattenArgs's walk). */
function rebuild(x: unknown, tensors: readonly unknown[], keys: readonly Key[], at = { t: 0, k: 0 }): unknown {
  if (x instanceof Tensor) return tensors[at.t++];
  if (isKey(x)) return keys[at.k++];
  if (Array.isArray(x)) return x.map((v) => rebuild(v, tensors, keys, at));
  if (isRecord(x)) return Object.fromEntries(Object.keys(x).sort().map((k) => [k, rebuild(x[k], tensors, keys, at)]));
  return x;
}

/** Leaves of an output tree: tensors (by variable) and static values, in walk order. */
function outputLeaves(y: unknown, tracer: Tracer): OutputLeaf[] {
  const out: OutputLeaf[] = [];
  const walk = (x: unknown): void => {
    if (x instanceof Tensor) out.push({ v: tracer.varOf(x) });
    else if (isKey(x)) {
      if (tracer.tracksKey(x)) throw new Error('jit: the function returns a key derived from a key argument; derive it outside the jitted function');
      out.push({ value: x });
    } else if (Array.isArray(x)) x.forEach(walk);
    else if (isRecord(x)) Object.keys(x).sort().forEach((k) => walk(x[k]));
    else out.push({ value: x });
  };
  walk(y);
  return out;
}

/** Builds a call's output tree from its leaves (in `outputLeaves`'s order), starting at leaf `at.i`. */
type OutputBuilder = (leaves: readonly unknown[], at: { i: number }) => unknown;

/**
 * The builder of the traced output tree `y`, made once per compiled entry: the tree's shape (arrays, records with
 * their keys sorted) is settled at trace time, so a call only creates the new containers.
 */
function outputBuilder(y: unknown): OutputBuilder {
  if (y instanceof Tensor || isKey(y) || !(Array.isArray(y) || isRecord(y))) return (leaves, at) => leaves[at.i++];
  if (Array.isArray(y)) {
    const items = y.map(outputBuilder);
    return (leaves, at) => items.map((b) => b(leaves, at));
  }
  const keys = Object.keys(y).sort();
  const values = keys.map((k) => outputBuilder(y[k]));
  return (leaves, at) => {
    const out: Record<string, unknown> = {};
    for (let k = 0; k < keys.length; k++) out[keys[k]] = values[k](leaves, at);
    return out;
  };
}

const bytes = (t: { size: number; dtype: DType }) => t.size * bytesPerElement(t.dtype);

function trace<A extends unknown[]>(f: (...a: A) => unknown, args: A, flat: Flat): { graph: Graph; shape: unknown } {
  const tracer = new Tracer();
  const tensors = flat.tensors.map((t, i) => tracer.input(t, i));
  const keys = flat.keys.map((k, i) => tracer.inputKey(k, i));
  const abstractArgs = rebuild(args, tensors, keys) as A;
  const prev = setKeyTracer(tracer);
  let y: unknown;
  try {
    y = withRecorder(tracer, () => f(...abstractArgs));
  } finally {
    setKeyTracer(prev);
  }
  tracer.graph.outputs = outputLeaves(y, tracer);
  return { graph: pruneDead(tracer.graph), shape: y };
}

function compile<A extends unknown[]>(f: (...a: A) => unknown, args: A, flat: Flat, opts: JitOptions): Entry {
  const t0 = performance.now();
  const traced = trace(f, args, flat);
  const backend = flat.tensors[0]?.backend ?? getBackend();
  const fuse = opts.fuse !== false && backend.fuse ? (groups: readonly FusedGroup[]) => fusedKernels(backend, groups) : null;
  const folding = opts.fold !== false;
  const affines = folding && backend.kernels.has('conv2dAffine') ? foldConvAffine(traced.graph, !!fuse) : { graph: traced.graph, folded: 0 };
  const scales = folding ? foldInputScale(affines.graph, (prim) => !!backend.kernels.get(prim)?.inputScale) : { graph: affines.graph, folded: 0 };
  const graph = scales.graph;
  const arena = !!(backend.arena && backend.view);
  // A depthwise conv writes the sums over its output planes where its kernel says it can, for these dtypes.
  const writesSums = (e: Eqn) =>
    !!backend.kernels.get(e.prim)?.writesSums && (!backend.supports || backend.supports(e.prim, e.ins.map((v) => graph.vars[v].dtype), graph.vars[e.out].dtype));
  const { steps, declined, convSums } = schedule(graph, fuse, opts.fuse !== false ? writesSums : undefined);
  const donate = flat.tensors.map((_, i) => (opts.donate ?? []).includes(flat.argOf[i]));
  const writes = (s: Step & { kind: 'prim' | 'fused' }) => !!(s.kind === 'fused' ? s.kernel : backend.kernels.get(s.eqn.prim))?.writesInto;
  const plan = arena ? planMemory(graph, steps, donate, writes) : null;
  const exec = plan ? new ArenaExecutable(graph, steps, plan, backend) : null;
  const inputBytes = flat.tensors.reduce((p, t) => p + bytes(t), 0);
  const constBytes = graph.vars.reduce((p, v) => p + (v.src.kind === 'const' ? bytes(v) : 0), 0);
  const fused = steps.flatMap((s) => (s.kind === 'fused' ? [s] : []));
  const fusedBy: Record<string, number> = {};
  for (const s of fused) fusedBy[s.kernel.via] = (fusedBy[s.kernel.via] ?? 0) + 1;
  const memory = plan ?? { placement: [], arenaBytes: 0, unplannedBytes: 0, intermediateBytes: 0, freshBytes: 0, donatedBytes: 0 };
  const lowered: Lowered = {
    signature: flat.sig,
    memory: {
      arenaBytes: memory.arenaBytes,
      unplannedBytes: memory.unplannedBytes,
      intermediateBytes: memory.intermediateBytes,
      freshBytes: memory.freshBytes,
      donatedBytes: memory.donatedBytes,
      inputBytes,
      constBytes,
      peakBytes: inputBytes + constBytes + memory.intermediateBytes + memory.freshBytes,
    },
    stats: {
      eqns: graph.eqns.length,
      steps: steps.length,
      fusedLoops: fused.length,
      fusedOps: fused.reduce((p, s) => p + s.eqns, 0),
      fusedReductions: fused.filter((s) => s.group.reduce).length,
      fusedBy,
      declinedGroups: declined,
      foldedAffines: affines.folded,
      foldedScales: scales.folded,
      convSums,
      ownOutputOps: [...new Set(steps.flatMap((s) => (s.kind !== 'alias' && plan?.placement[s.out].kind === 'owned' ? [s.kind === 'prim' ? s.eqn.prim : 'fused'] : [])))],
      compileMs: performance.now() - t0,
      backend: backend.name,
    },
  };
  return { graph, steps, plan, exec, backend, table: backend.kernels, lowered, template: flat.template, paths: flat.paths, donated: donate, output: outputBuilder(traced.shape) };
}

/**
 * Compiles `f` per input signature and runs the compiled graph (see the module comment for the
 * cache key). Inside another jitted function's trace, `f` is simply inlined; called on values a
 * grad/vjp is tracing (jit inside grad), `f` runs eagerly so gradients flow. Put jit outside grad.
 * @example const step = jit((p, x) => valueAndGrad((q) => loss(q, x))(p)); step(params, batch)
 */
export function jit<A extends unknown[], R>(f: (...args: A) => R, opts: JitOptions = {}): Jitted<A, R> {
  const cacheSize = opts.cacheSize ?? 8;
  if (!(Number.isInteger(cacheSize) && cacheSize >= 1)) throw new Error(`jit: cacheSize must be a positive integer, got ${cacheSize}`);
  const cache = new Map<string, Entry>();
  /** The most recently used entry (the last in `cache`'s order): a call with its structure skips the signature. */
  let mru: Entry | undefined;
  let compiles = 0;
  const entryFor = (args: A, flat: Flat) => {
    let e = cache.get(flat.sig);
    if (e && e.table !== e.backend.kernels) e = undefined;
    if (e) {
      cache.delete(flat.sig);
    } else {
      for (const t of flat.tensors) assertLive(t, 'jit');
      e = compile(f, args, flat, opts);
      compiles++;
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value!);
    }
    cache.set(flat.sig, e);
    mru = e;
    return e;
  };
  /** Runs entry `e` on the call's tensors and keys (`observe` gets each step's time). */
  const runEntry = (e: Entry, tensors: Tensor[], keys: Key[], observe?: StepObserver): R => {
    checkDonation(e, tensors);
    const vals = e.exec ? e.exec.run(tensors, keys, observe) : runUnplanned(e.graph, e.steps, e.backend, tensors, keys, observe);
    const leaves = e.graph.outputs.map((o) => ('v' in o ? outputTensor(e, o.v, vals) : o.value));
    e.exec?.clear();
    for (let i = 0; i < tensors.length; i++) if (e.donated[i]) markDonated(tensors[i], e.paths[i]);
    return e.output(leaves, { i: 0 }) as R;
  };
  const call = (...args: A): R => {
    if (recording()) return f(...args);
    let tensors: Tensor[] = [];
    let keys: Key[] = [];
    const same = mru !== undefined && mru.table === mru.backend.kernels && gather(mru.template, args, tensors, keys);
    const flat = same ? null : flattenArgs(args);
    if (flat) ({ tensors, keys } = flat);
    // Under grad/vjp the compiled graph would drop the autograd history: run f eagerly instead.
    if (tensors.some((t) => t.node)) return f(...args);
    return runEntry(flat ? entryFor(args, flat) : mru!, tensors, keys);
  };
  const profile = (...args: A): { result: R; profile: Profile } => {
    const flat = flattenArgs(args);
    if (recording() || flat.tensors.some((t) => t.node)) throw new Error('jit: profile runs the compiled graph; call it outside grad/vjp and other traces');
    const e = entryFor(args, flat);
    const times: [number, number][] = [];
    const t0 = performance.now();
    const result = runEntry(e, flat.tensors, flat.keys, (i, ms) => times.push([i, ms]));
    return { result, profile: summarize(e.graph, e.steps, times, performance.now() - t0) };
  };
  const jitted = Object.assign(call, {
    profile,
    lower: (...args: A) => entryFor(args, flattenArgs(args)).lowered,
    clear: () => {
      cache.clear();
      mru = undefined;
    },
  });
  Object.defineProperty(jitted, 'compiles', { get: () => compiles });
  return jitted as unknown as Jitted<A, R>;
}

function outputTensor(e: Entry, v: number, vals: readonly unknown[]): Tensor {
  const info = e.graph.vars[v];
  const val = vals[v];
  if (val instanceof Tensor) return new Tensor(val.shape, val.dtype, val.storage, val.backend);
  return new Tensor(info.shape, info.dtype, val, e.backend);
}

/** The storage of a shapeOnly tensor. */
class NoValues {}

/**
 * A tensor with a shape and dtype but no values, for `lower` (sizing a compiled step without
 * allocating its inputs, e.g. a batch of 1024² images). Passing one to a call is an error.
 */
export const shapeOnly = (shape: readonly number[], dtype: Tensor['dtype'] = 'float32', backend: Backend = getBackend()): Tensor =>
  new Tensor([...shape], dtype, new NoValues(), backend);

/** Per storage object, the call that last saw it donated: finds a buffer passed twice without a map per call. */
const donatedIn = new WeakMap<object, number>();
let checks = 0;

/** Every tensor argument must be live and have values, and a donated buffer must not also be passed elsewhere. */
function checkDonation(e: Entry, tensors: readonly Tensor[]): void {
  const stamp = ++checks;
  let shared = false;
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i];
    assertLive(t, 'jit');
    if (t.storage instanceof NoValues) throw new Error(`jit: ${e.paths[i]} is a shapeOnly tensor (for lower()); pass one with values`);
    if (!e.donated[i]) continue;
    const s = t.storage;
    if (typeof s !== 'object' || s === null || donatedIn.get(s) === stamp) shared = true;
    else donatedIn.set(s, stamp);
  }
  for (let i = 0; i < tensors.length && !shared; i++) {
    const s = tensors[i].storage;
    if (!e.donated[i] && typeof s === 'object' && s !== null && donatedIn.get(s) === stamp) shared = true;
  }
  if (shared) throwShared(e, tensors);
}

/** Names the arguments that share a donated buffer. */
function throwShared(e: Entry, tensors: readonly Tensor[]): void {
  const seen = new Map<unknown, string>();
  tensors.forEach((t, i) => {
    if (!e.donated[i]) return;
    const other = seen.get(t.storage);
    if (other !== undefined) throw new Error(`jit: donated ${e.paths[i]} shares its buffer with ${other}`);
    seen.set(t.storage, e.paths[i]);
  });
  tensors.forEach((t, i) => {
    const d = seen.get(t.storage);
    if (d !== undefined && d !== e.paths[i]) throw new Error(`jit: ${e.paths[i]} shares its buffer with donated ${d}`);
  });
}
