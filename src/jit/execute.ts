/**
 * Running a compiled graph. On a backend with an arena hook (the CPU backend, whose arena is a region of the wasm
 * heap) every intermediate lives at its planned offset in one arena shared by all compiled graphs of that backend
 * and reused across calls, so the wasm kernels address it in place; kernels marked `writesInto` write into their
 * slot through `OutSpec.into`, the others' results keep the storage they allocate (`Lowered.stats.ownOutputOps`
 * lists them). Views of the arena are re-made whenever the arena moves or its memory grows. Kernel arguments are
 * built once and only their storage fields change per call, so a steady-state call allocates little beyond its
 * outputs. Backends without the hook (gpu.js, webgpu) run the steps one by one and dispose each intermediate after
 * its last use. Either way a fused group is one step whose kernel the backend compiled (`Backend.fuse`), run like a
 * primitive's kernel with the group's leaves as inputs (a group that also writes sums gets their storage in its
 * attrs, as does a conv step that writes the sums over its output planes).
 */
import { type Backend, type DType, type Kernel, type KernelArg, type TypedArray, findBackend } from '../backends/backend.ts';
import { runKernel, toBackend } from '../autograd/trace.ts';
import { type Key } from '../tensor/random.ts';
import { Tensor, arrayFor } from '../tensor/tensor.ts';
import type { Graph, KeySrc } from './graph.ts';
import type { Step } from './fuse.ts';
import type { MemoryPlan } from './plan.ts';

/** Told each kernel step's index and wall time (ms) as a call runs (`Jitted.profile`). */
export type StepObserver = (step: number, ms: number) => void;

/** The largest arena each backend has been asked for (the backend keeps one arena of that size). */
const arenaSizes = new Map<Backend, number>();

let binds = 0;
/** How many times compiled graphs have (re)made their arena views: once per graph, then once per arena move or heap growth (for tests). */
export const arenaBinds = (): number => binds;

/** The bytes each backend's jit arena holds now (for leak checks and reports). */
export const arenaBytes = (backend: Backend = findBackend('cpu')): number => arenaSizes.get(backend) ?? 0;

/** Evaluates the host draws of a call from its keys. */
function drawHosts(g: Graph, keys: readonly Key[], values: unknown[]): void {
  const keyOf = (s: KeySrc): Key => {
    if ('input' in s) return keys[s.input];
    const v = values[s.node];
    return (s.index === undefined ? v : (v as Key[])[s.index]) as Key;
  };
  g.hosts.forEach((h, i) => (values[i] = h.compute(keyOf(h.from))));
}

/** A fused group's kernel takes no attributes. */
const NO_ATTRS = Object.freeze({});

const attrsFor = (step: Step, hostValues: readonly unknown[]) => {
  if (step.kind !== 'prim') return NO_ATTRS;
  const { eqn } = step;
  if (!eqn.dynAttrs.length) return eqn.attrs;
  const a: Record<string, unknown> = { ...(eqn.attrs as object) };
  for (const [name, node] of eqn.dynAttrs) a[name] = hostValues[node];
  return a;
};

/** Storage of `t` on backend `b` (moved through the host if it lives elsewhere). */
const storageOn = (t: Tensor, b: Backend): unknown => (t.backend === b ? t.storage : b.upload(t.backend.download(t.storage, t.dtype, t.size), t.dtype));

type MutableArg = { storage: unknown; shape: readonly number[]; dtype: DType };

/** A graph bound to the CPU arena: storage table, reusable kernel arguments, copy counter. */
export class ArenaExecutable {
  private readonly st: unknown[];
  private readonly args: MutableArg[][];
  private readonly specs: { shape: readonly number[]; dtype: DType; into: unknown }[];
  private readonly kernels: (Kernel | null)[];
  private readonly hostValues: unknown[];
  /**
   * Per step that writes sums beside its output (a fused group writing its values and their sums, a conv writing
   * its plane sums): its attrs with the sums' storage, set per call; else null.
   */
  private readonly sumsAttrs: ({ sums: unknown } | null)[];
  /** The arena buffer and offset the views in `st` were made on. */
  private boundTo: ArrayBufferLike | null = null;
  private boundAt = -1;
  /** Per step: kernel-owned buffers read for the last time there (dropped after it, as eager would). */
  private readonly dropAfter: number[][];
  /** Variables whose storage is per call (inputs, host draws, outputs, kernel-owned): cleared after a call. */
  private readonly perCall: number[];
  /** Tensor inputs whose buffers donated outputs take (moved into the backend's kernel memory with `pin`). */
  private readonly taken: boolean[];
  /** This call's storage of each tensor input. */
  private readonly given: unknown[];
  /**
   * Per tensor input that is not donated: the tensor the last call got (weakly held) and, once the same tensor has
   * come two calls in a row, the copy of its storage pinned into the backend's kernel memory (`Backend.pin`). A model's parameters passed call after call (inference) are then copied in
   * once instead of by every kernel on every call; inputs that change per call (images) are never pinned. Tensors
   * are immutable (a donated one cannot be passed again), so a pinned copy stays valid while its tensor comes.
   */
  private readonly lastInput: (WeakRef<Tensor> | undefined)[] = [];
  private readonly pinned: unknown[] = [];
  /** Results a writesInto kernel returned elsewhere on the last call (copied into their slot; should stay 0). */
  copies = 0;

  constructor(
    readonly graph: Graph,
    readonly steps: readonly Step[],
    readonly plan: MemoryPlan,
    readonly backend: Backend,
  ) {
    const g = graph;
    this.st = new Array(g.vars.length).fill(null);
    this.hostValues = new Array(g.hosts.length).fill(null);
    this.args = steps.map((s) => s.ins.map((v) => ({ storage: null, shape: g.vars[v].shape, dtype: g.vars[v].dtype })));
    this.specs = steps.map((s) => ({ shape: g.vars[s.out].shape, dtype: g.vars[s.out].dtype, into: null }));
    this.sumsAttrs = steps.map((s) => (s.kind === 'alias' || s.sums === undefined ? null : s.kind === 'fused' ? { sums: null } : { ...(s.eqn.attrs as object), sums: null }));
    this.kernels = steps.map((s) => {
      if (s.kind === 'fused') return s.kernel;
      if (s.kind !== 'prim') return null;
      const k = backend.kernels.get(s.eqn.prim);
      if (!k) throw new Error(`jit: no kernel for '${s.eqn.prim}' on backend '${backend.name}'`);
      return k;
    });
    g.vars.forEach((v) => {
      if (v.src.kind !== 'const') return;
      // Constants go where the kernels address them in place (the wasm heap), once per compiled graph.
      const c = storageOn(v.src.tensor, backend);
      this.st[v.id] = backend.pin?.(c, v.dtype) ?? c;
    });
    this.perCall = g.vars.filter((v) => v.src.kind !== 'const' && plan.placement[v.id].kind !== 'arena').map((v) => v.id);
    this.dropAfter = dropSchedule(g, steps, plan);
    this.taken = [];
    for (const p of plan.placement) if (p.kind === 'donated') this.taken[p.input] = true;
    this.given = [];
  }

  /** Forgets the last call's per-call storage, so nothing it allocated outlives it here. */
  clear(): void {
    for (const v of this.perCall) this.st[v] = null;
    this.given.fill(null);
  }

  /**
   * Points arena variables at views of the arena, re-made when the backend moved it (a larger plan) or its
   * memory's buffer changed (the wasm heap grew: views of a non-shared memory are detached then). Checked before
   * a call and after every step, since a kernel's scratch allocations may grow the heap mid-call.
   */
  private bindArena(): void {
    const bytes = Math.max(this.plan.arenaBytes, 1);
    const a = this.backend.arena!(bytes);
    if (this.boundTo === a.buffer && this.boundAt === a.offset) return;
    arenaSizes.set(this.backend, Math.max(arenaSizes.get(this.backend) ?? 0, bytes));
    this.graph.vars.forEach((v) => {
      const p = this.plan.placement[v.id];
      if (p.kind === 'arena') this.st[v.id] = this.backend.view!(a.buffer, a.offset + p.offset, v.dtype, v.size);
    });
    // Reshapes of arena buffers share the new views.
    for (const s of this.steps) if (s.kind === 'alias' && this.st[s.ins[0]] !== null && this.plan.placement[s.out].kind === 'alias') this.st[s.out] = this.st[s.ins[0]];
    this.boundTo = a.buffer;
    this.boundAt = a.offset;
    binds++;
  }

  /** Runs one call; returns the storage of every variable the outputs name. `observe` gets each kernel step's time. */
  run(inputs: readonly Tensor[], keys: readonly Key[], observe?: StepObserver): unknown[] {
    const { graph: g, st, plan } = this;
    this.bindArena();
    drawHosts(g, keys, this.hostValues);
    const given = this.given;
    given.length = inputs.length;
    for (let i = 0; i < inputs.length; i++) {
      const s = storageOn(inputs[i], this.backend);
      given[i] = this.taken[i] ? this.backend.pin?.(s, inputs[i].dtype) || s : this.repeated(i, inputs[i], s);
    }
    for (let id = 0; id < g.vars.length; id++) {
      const v = g.vars[id];
      const p = plan.placement[v.id];
      if (v.src.kind === 'input') st[v.id] = given[v.src.index];
      else if (v.src.kind === 'host') st[v.id] = storageOn(this.hostValues[v.src.node] as Tensor, this.backend);
      else if (p.kind === 'fresh') st[v.id] = arrayFor(v.dtype, v.size);
      else if (p.kind === 'donated') st[v.id] = given[p.input];
      else if (p.kind === 'owned') st[v.id] = null;
    }
    this.copies = 0;
    for (let i = 0; i < this.steps.length; i++) {
      if (observe && this.steps[i].kind !== 'alias') {
        const t = performance.now();
        this.runStep(i);
        observe(i, performance.now() - t);
      } else this.runStep(i);
      const drop = this.dropAfter[i];
      for (let k = 0; k < drop.length; k++) st[drop[k]] = null;
      if (this.steps[i].kind !== 'alias') this.bindArena();
    }
    return st;
  }

  /** Input i's storage for this call: `s`, or its pinned copy when `t` is the tensor the last call got too (`lastInput`). */
  private repeated(i: number, t: Tensor, s: unknown): unknown {
    if (!this.backend.pin) return s;
    if (this.lastInput[i]?.deref() !== t) {
      this.lastInput[i] = new WeakRef(t);
      this.pinned[i] = undefined;
      return s;
    }
    this.pinned[i] ??= this.backend.pin(s, t.dtype) ?? s;
    return this.pinned[i];
  }

  private runStep(i: number): void {
    const s = this.steps[i];
    const st = this.st;
    if (s.kind === 'alias') {
      st[s.out] = st[s.ins[0]];
      return;
    }
    const out = st[s.out] as TypedArray;
    const args = this.args[i];
    for (let k = 0; k < s.ins.length; k++) args[k].storage = st[s.ins[k]];
    const spec = this.specs[i];
    spec.into = out ?? undefined;
    const sums = this.sumsAttrs[i];
    if (sums) sums.sums = st[s.sums!];
    const res = this.kernels[i]!(args as KernelArg[], sums ?? attrsFor(s, this.hostValues), spec) as TypedArray;
    if (!out) st[s.out] = res; // a kernel that allocates its own output
    else if (res !== out) {
      // A kernel marked writesInto that returned other storage: correct, but a copy.
      out.set(res);
      this.copies++;
    }
  }
}

/** For each step, the kernel-owned variables (and their reshapes) last read there, outputs excepted. */
function dropSchedule(g: Graph, steps: readonly Step[], plan: MemoryPlan): number[][] {
  const root = g.vars.map((v) => v.id);
  for (const s of steps) if (s.kind === 'alias') root[s.out] = root[s.ins[0]];
  const last = new Array<number>(g.vars.length).fill(-1);
  steps.forEach((s, i) => s.ins.forEach((v) => (last[root[v]] = i)));
  for (const o of g.outputs) if ('v' in o) last[root[o.v]] = steps.length;
  const drop: number[][] = steps.map(() => []);
  g.vars.forEach((v) => {
    const r = root[v.id];
    const owned = plan.placement[r].kind === 'owned';
    if (owned && last[r] >= 0 && last[r] < steps.length) drop[last[r]].push(v.id);
  });
  return drop;
}

/** Runs a graph step by step on `backend` (no arena), disposing intermediates after their last use. */
export function runUnplanned(g: Graph, steps: readonly Step[], backend: Backend, inputs: readonly Tensor[], keys: readonly Key[], observe?: StepObserver): Tensor[] {
  const hostValues: unknown[] = new Array(g.hosts.length);
  drawHosts(g, keys, hostValues);
  const vals: (Tensor | null)[] = g.vars.map((v) =>
    v.src.kind === 'input' ? inputs[v.src.index] : v.src.kind === 'const' ? v.src.tensor : v.src.kind === 'host' ? (hostValues[v.src.node] as Tensor) : null,
  );
  // A reshape shares its input's storage: free a buffer after the last read of any of its views.
  const root = g.vars.map((v) => v.id);
  for (const s of steps) if (s.kind === 'alias') root[s.out] = root[s.ins[0]];
  const last = new Array<number>(g.vars.length).fill(-1);
  steps.forEach((s, i) => s.ins.forEach((v) => (last[root[v]] = i)));
  for (const o of g.outputs) if ('v' in o) last[root[o.v]] = steps.length;
  steps.forEach((s, i) => {
    const v = g.vars[s.out];
    const x0 = vals[s.ins[0]];
    const t = observe && s.kind !== 'alias' ? performance.now() : 0;
    if (s.kind === 'alias') vals[s.out] = new Tensor(v.shape, v.dtype, x0!.storage, x0!.backend);
    else if (s.kind === 'prim' && s.sums === undefined) {
      const [storage, backend] = runKernel(s.eqn.prim, s.ins.map((x) => vals[x]!), attrsFor(s, hostValues), { shape: v.shape, dtype: v.dtype });
      vals[s.out] = new Tensor(v.shape, v.dtype, storage, backend);
    } else {
      const sums = s.sums === undefined ? null : g.vars[s.sums];
      const sumsStorage = sums && backend.upload(arrayFor(sums.dtype, sums.size), sums.dtype);
      // A conv writing its plane sums runs the backend's kernel that declared it would (schedule checked).
      const kernel = s.kind === 'fused' ? s.kernel : backend.kernels.get(s.eqn.prim)!;
      const attrs = s.kind === 'fused' ? (sums ? { sums: sumsStorage } : NO_ATTRS) : { ...(s.eqn.attrs as object), sums: sumsStorage };
      vals[s.out] = runOn(kernel, attrs, v, s.ins.map((x) => vals[x]!), backend);
      if (sums) vals[sums.id] = new Tensor([...sums.shape], sums.dtype, sumsStorage, backend);
    }
    if (observe && s.kind !== 'alias') observe(i, performance.now() - t);
    for (const x of s.ins) {
      const t = vals[x]!;
      if (root[x] === x && last[x] === i && g.vars[x].src.kind === 'eqn') t.backend.dispose?.(t.storage);
    }
  });
  return vals as Tensor[];
}

/**
 * A kernel of `backend` (a fused group's, or a conv's that writes its plane sums) on `ins`, moved there for the call
 * where they live elsewhere; `attrs` name the storage any sums go to.
 */
function runOn(kernel: Kernel, attrs: unknown, v: { shape: readonly number[]; dtype: DType }, ins: readonly Tensor[], backend: Backend): Tensor {
  const moved = ins.map((x) => toBackend(x, backend));
  const storage = kernel(moved, attrs, { shape: v.shape, dtype: v.dtype });
  moved.forEach((m, k) => m !== ins[k] && backend.dispose?.(m.storage));
  return new Tensor([...v.shape], v.dtype, storage, backend);
}
