/**
 * The traced program (JAX's jaxpr, in small): a list of primitive equations over numbered
 * variables. Tracing runs the user's function on abstract tensors whose storage is an `Abstract`
 * value; `bind` (src/autograd/trace.ts) hands every primitive to the `Tracer` below instead of a
 * kernel, so the forward pass, the pullbacks that grad runs, BN state updates and optimizer math
 * all land in one graph. Tensors created inside the function (and captured from closures) become
 * constants; draws from a key passed in become host nodes, recomputed from each call's key.
 */
import type { Backend, DType } from '../backends/backend.ts';
import type { Shape } from '../tensor/shape.ts';
import { sizeOf } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import { type Key, type KeyTracer, isKey, setKeyTracer } from '../tensor/random.ts';

/** Where a variable's value comes from. */
export type Source =
  | { readonly kind: 'input'; readonly index: number }
  | { readonly kind: 'const'; readonly tensor: Tensor }
  | { readonly kind: 'host'; readonly node: number }
  | { readonly kind: 'eqn'; readonly eqn: number };

export interface Var {
  readonly id: number;
  readonly shape: Shape;
  readonly dtype: DType;
  readonly size: number;
  readonly src: Source;
}

export interface Eqn {
  readonly prim: string;
  readonly ins: readonly number[];
  readonly attrs: unknown;
  readonly out: number;
  /** Attributes recomputed per call from host nodes (e.g. stochastic windows drawn from the key). */
  readonly dynAttrs: readonly (readonly [name: string, node: number])[];
}

/** Where a tracked key comes from: a key argument, or (element `index` of) a host node's value. */
export type KeySrc = { readonly input: number } | { readonly node: number; readonly index?: number };

/** A draw from a tracked key, replayed on the host at every call. */
export interface HostNode {
  readonly from: KeySrc;
  readonly compute: (k: Key) => unknown;
}

export interface Graph {
  readonly vars: Var[];
  readonly eqns: Eqn[];
  readonly hosts: HostNode[];
  /** The flattened outputs: a variable id, or a static value (a number, a string, an untracked key). */
  outputs: OutputLeaf[];
}
export type OutputLeaf = { readonly v: number } | { readonly value: unknown };

/** A traced value's storage: just its variable id. */
export class Abstract {
  constructor(readonly id: number) {}
}

/** The backend of traced tensors: no kernels, no host reads. */
export const traceBackend: Backend<any> = {
  name: 'jit-trace',
  abstract: true,
  upload: () => {
    throw new Error('jit: a traced value cannot be made from host data');
  },
  download: () => {
    throw new Error('jit: a host read of a traced value (argmax, indices from a tensor, …) cannot be traced; do it outside the jitted function');
  },
  kernels: new Map(),
};

/** Records binds into a graph (the Recorder of src/autograd/trace.ts) and key draws (random.ts's KeyTracer). */
export class Tracer implements KeyTracer {
  readonly graph: Graph = { vars: [], eqns: [], hosts: [], outputs: [] };
  readonly backend = traceBackend;
  private readonly consts = new Map<Tensor, number>();
  private readonly keys = new Map<Key, KeySrc>();
  /** Arrays drawn from tracked keys (windows, indices) → their host node. */
  private readonly arrays = new WeakMap<object, number>();

  private newVar(shape: Shape, dtype: DType, src: Source): number {
    const id = this.graph.vars.length;
    this.graph.vars.push({ id, shape: Object.freeze([...shape]), dtype, size: sizeOf(shape), src });
    return id;
  }

  /** An abstract tensor for tensor argument `index`. */
  input(x: Tensor, index: number): Tensor {
    const id = this.newVar(x.shape, x.dtype, { kind: 'input', index });
    return new Tensor(x.shape, x.dtype, new Abstract(id), traceBackend);
  }

  /** A tracked copy of key argument `index` (same words, so tracing draws real values). */
  inputKey(k: Key, index: number): Key {
    const t = Object.freeze({ k0: k.k0, k1: k.k1 });
    this.keys.set(t, { input: index });
    return t;
  }

  /** The variable holding `x`: its own if traced, else a constant. */
  varOf(x: Tensor): number {
    if (x.storage instanceof Abstract) return x.storage.id;
    let id = this.consts.get(x);
    if (id === undefined) {
      id = this.newVar(x.shape, x.dtype, { kind: 'const', tensor: x });
      this.consts.set(x, id);
    }
    return id;
  }

  record(prim: string, inputs: readonly Tensor[], attrs: unknown, spec: { shape: Shape; dtype: DType }): Abstract {
    const ins = inputs.map((x) => this.varOf(x));
    const out = this.newVar(spec.shape, spec.dtype, { kind: 'eqn', eqn: this.graph.eqns.length });
    this.graph.eqns.push({ prim, ins, attrs, out, dynAttrs: this.dynamicAttrs(attrs) });
    return new Abstract(out);
  }

  private dynamicAttrs(attrs: unknown): [string, number][] {
    if (typeof attrs !== 'object' || attrs === null) return [];
    const dyn: [string, number][] = [];
    for (const [k, v] of Object.entries(attrs)) {
      const node = typeof v === 'object' && v !== null ? this.arrays.get(v) : undefined;
      if (node !== undefined) dyn.push([k, node]);
    }
    return dyn;
  }

  /** KeyTracer: a draw from a tracked key becomes a host node; its value is tracked in turn. */
  draw<T>(k: Key, compute: (k: Key) => T): T {
    const from = this.keys.get(k);
    if (!from) return compute(k);
    const node = this.graph.hosts.length;
    this.graph.hosts.push({ from, compute });
    // Draws nested inside `compute` are part of this node, not nodes of their own.
    const prev = setKeyTracer(null);
    try {
      return this.track(compute(k), node) as T;
    } finally {
      setKeyTracer(prev);
    }
  }

  private track(value: unknown, node: number): unknown {
    if (value instanceof Tensor) {
      const id = this.newVar(value.shape, value.dtype, { kind: 'host', node });
      return new Tensor(value.shape, value.dtype, new Abstract(id), traceBackend);
    }
    if (isKey(value)) {
      const t = Object.freeze({ ...value });
      this.keys.set(t, { node });
      return t;
    }
    if (Array.isArray(value) && value.every(isKey)) {
      return value.map((v, index) => {
        const t = Object.freeze({ ...v });
        this.keys.set(t, { node, index });
        return t;
      });
    }
    if (ArrayBuffer.isView(value)) this.arrays.set(value, node);
    return value;
  }

  /** Whether `k` derives from a key argument (such keys cannot be returned: they have no value yet). */
  tracksKey(k: Key): boolean {
    return this.keys.has(k);
  }
}

/** Removes equations whose results no output needs (autograd computes some that nothing reads). */
export function pruneDead(g: Graph): Graph {
  const needed = new Set<number>();
  for (const o of g.outputs) if ('v' in o) needed.add(o.v);
  const keep: boolean[] = new Array(g.eqns.length).fill(false);
  for (let i = g.eqns.length - 1; i >= 0; i--) {
    const e = g.eqns[i];
    if (!needed.has(e.out)) continue;
    keep[i] = true;
    for (const v of e.ins) needed.add(v);
  }
  // Variables keep their ids; equations are renumbered.
  const renum = new Map<number, number>();
  const eqns: Eqn[] = [];
  g.eqns.forEach((e, i) => {
    if (!keep[i]) return;
    renum.set(i, eqns.length);
    eqns.push(e);
  });
  const vars = g.vars.map((v) => (v.src.kind === 'eqn' ? { ...v, src: { kind: 'eqn' as const, eqn: renum.get(v.src.eqn) ?? -1 } } : v));
  return { vars, eqns, hosts: g.hosts, outputs: g.outputs };
}
