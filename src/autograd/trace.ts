/**
 * Reverse-mode tracing. `bind` runs a primitive on its backend and, when an input depends on a
 * live trace, records a node with the pullback beside it (micrograd's closure, tinygrad's table).
 * A trace is live only while `vjp` runs the user's function, so values that escape a transform
 * are constants afterwards and nothing builds graphs outside `vjp`/`grad`.
 * Nesting (grad of a function that calls grad) works because pullbacks are public ops: while an
 * inner trace runs its backward pass, outer traces are still live and record it.
 */
import { type Backend, findBackend, getBackend, type KernelArg } from '../backends/backend.ts';
import { type Shape, fmt, shapesEqual } from '../tensor/shape.ts';
import { type Node, Tensor, assertLive } from '../tensor/tensor.ts';
import { checkUint8Inputs, getPrimitive } from './registry.ts';

const live = new Set<number>();
let nextTrace = 1;

export function openTrace(): number {
  const id = nextTrace++;
  live.add(id);
  return id;
}
export function closeTrace(id: number): void {
  live.delete(id);
}

/** The live traces a set of inputs depends on. */
function liveTraces(inputs: readonly Tensor[]): number[] {
  let out: number[] | undefined;
  for (const x of inputs) {
    const n = x.node;
    if (!n) continue;
    for (const t of n.traces) {
      if (live.has(t) && !(out ??= []).includes(t)) out.push(t);
    }
  }
  return out ?? [];
}

export const isTracked = (x: Tensor, trace: number): boolean => x.node?.traces.includes(trace) ?? false;

/** Moves a tensor's storage to another backend (through the host). */
export function toBackend(x: Tensor, b: Backend): Tensor {
  if (x.backend === b) return x;
  const host = x.backend.download(x.storage, x.dtype, x.size);
  return new Tensor(x.shape, x.dtype, b.upload(host, x.dtype), b, x.node);
}

/**
 * A graph recorder (jit's tracer): while one is installed, bind records each primitive instead of
 * running it and the output holds the recorder's abstract storage. Autograd is unaffected, so the
 * pullbacks run by grad inside a jitted function are recorded too.
 */
export interface Recorder {
  readonly backend: Backend;
  record(name: string, inputs: readonly Tensor[], attrs: unknown, spec: { shape: Shape; dtype: Tensor['dtype'] }): unknown;
}
let recorder: Recorder | null = null;

/** Runs `f` with `r` recording every bind (nested recorders restore the outer one). */
export function withRecorder<T>(r: Recorder, f: () => T): T {
  const prev = recorder;
  recorder = r;
  try {
    return f();
  } finally {
    recorder = prev;
  }
}
export const recording = (): boolean => recorder !== null;

/** Runs primitive `name` and records it for autograd when needed. */
export function bind<A>(name: string, inputs: readonly Tensor[], attrs: A): Tensor {
  const prim = getPrimitive(name);
  for (const x of inputs) assertLive(x, name);
  checkUint8Inputs(prim, inputs);
  const spec = prim.infer(inputs, attrs);
  const [storage, backend] = recorder ? [recorder.record(name, inputs, attrs, spec), recorder.backend] : runKernel(name, inputs, attrs, spec);
  const traces = prim.vjp ? liveTraces(inputs) : [];
  if (traces.length === 0) return new Tensor([...spec.shape], spec.dtype, storage, backend);
  let out: Tensor;
  const node: Node = {
    traces,
    inputs,
    pullback: (ct) =>
      prim.vjp!(ct, { inputs, out, attrs, needs: inputs.map((x) => traces.some((t) => isTracked(x, t))) }),
  };
  out = new Tensor([...spec.shape], spec.dtype, storage, backend, node);
  return out;
}

/** Runs a primitive's kernel where its inputs live; a kernel a backend lacks runs on the CPU reference. */
export function runKernel(name: string, inputs: readonly Tensor[], attrs: unknown, spec: { shape: Shape; dtype: Tensor['dtype'] }): [unknown, Backend] {
  let backend: Backend = inputs.length ? inputs[0].backend : getBackend();
  if (backend.abstract) throw new Error(`${name}: ${inputs[0]} is a value traced by jit used outside its jitted function (it escaped through a closure or a global)`);
  let kernel = backend.kernels.get(name);
  if (kernel && backend.supports && !backend.supports(name, inputs.map((x) => x.dtype), spec.dtype)) kernel = undefined;
  if (!kernel) {
    backend = findBackend('cpu');
    kernel = backend.kernels.get(name);
    if (!kernel) throw new Error(`${name}: no kernel registered on backend 'cpu'`);
  }
  const args: KernelArg[] = inputs.map((x) => {
    const y = toBackend(x, backend);
    return { storage: y.storage, shape: y.shape, dtype: y.dtype };
  });
  return [kernel(args, attrs, spec), backend];
}

/** The same values without autograd history (stopGradient). */
export const detach = (x: Tensor): Tensor => (x.node ? new Tensor(x.shape, x.dtype, x.storage, x.backend) : x);

/** A leaf of trace `id`: the same values, tracked, with an identity link to `x` for outer traces. */
export function leafOf(x: Tensor, id: number): Tensor {
  const outer = liveTraces([x]);
  return new Tensor(x.shape, x.dtype, x.storage, x.backend, {
    traces: [id, ...outer],
    inputs: outer.length ? [x] : [],
    pullback: outer.length ? (ct) => [ct] : null,
  });
}

/** Drops history that no live trace can use any more, so escaped values hold no graph. */
export const release = (x: Tensor): Tensor => (x.node && liveTraces([x]).length === 0 ? detach(x) : x);

/**
 * Defines a differentiable function with a hand-written VJP (JAX's custom_vjp), for numerically
 * careful ops: `fwd` returns the output and residuals, `bwd` maps residuals and the cotangent to
 * the inputs' cotangents. The output is recorded as one node.
 */
export function customVjp<R>(
  fwd: (...xs: Tensor[]) => [Tensor, R],
  bwd: (res: R, ct: Tensor) => readonly (Tensor | null)[],
): (...xs: Tensor[]) => Tensor {
  return (...xs) => {
    const traces = liveTraces(xs);
    // The forward runs on detached inputs: its inner ops are not recorded.
    const [y, res] = fwd(...xs.map(detach));
    if (traces.length === 0) return y;
    return new Tensor(y.shape, y.dtype, y.storage, y.backend, { traces, inputs: xs, pullback: (ct) => bwd(res, ct) });
  };
}

// ---- the backward pass -------------------------------------------------------------------------

/** Sums a broadcast cotangent back to `shape` (the one central un-broadcast). */
export type SumTo = (ct: Tensor, shape: Shape) => Tensor;
export type Add = (a: Tensor, b: Tensor) => Tensor;
export type Cast = (a: Tensor, dtype: Tensor['dtype']) => Tensor;

/**
 * Pushes cotangents `cts` of `outputs` back through everything recorded on trace `id`;
 * returns the cotangents of `leaves` (null where nothing flowed).
 */
export function backward(
  id: number,
  outputs: readonly Tensor[],
  cts: readonly Tensor[],
  leaves: readonly Tensor[],
  ops: { sumTo: SumTo; add: Add; cast: Cast },
): (Tensor | null)[] {
  // Topological order over the nodes of this trace (iterative DFS: deep nets overflow recursion).
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  for (const root of outputs) {
    if (!isTracked(root, id) || seen.has(root)) continue;
    const stack: [Tensor, number][] = [[root, 0]];
    seen.add(root);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const ins = top[0].node!.inputs;
      if (top[1] < ins.length) {
        const child = ins[top[1]++];
        if (isTracked(child, id) && !seen.has(child)) {
          seen.add(child);
          stack.push([child, 0]);
        }
      } else {
        order.push(top[0]);
        stack.pop();
      }
    }
  }
  const grads = new Map<Tensor, Tensor>();
  const accumulate = (x: Tensor, g: Tensor) => {
    if (!shapesEqual(g.shape, x.shape)) g = ops.sumTo(g, x.shape);
    if (g.dtype !== x.dtype) g = ops.cast(g, x.dtype);
    const prev = grads.get(x);
    grads.set(x, prev ? ops.add(prev, g) : g);
  };
  outputs.forEach((y, i) => {
    if (!shapesEqual(cts[i].shape, y.shape)) {
      throw new Error(`vjp: cotangent shape ${fmt(cts[i].shape)} does not match output shape ${fmt(y.shape)}`);
    }
    if (isTracked(y, id)) accumulate(y, cts[i]);
  });
  const leafSet = new Set(leaves);
  for (let k = order.length - 1; k >= 0; k--) {
    const x = order[k];
    const g = grads.get(x);
    if (!g || leafSet.has(x)) continue;
    const node = x.node!;
    if (!node.pullback) continue;
    const inCts = node.pullback(g);
    // Free the cotangent of an interior node as soon as it has been pushed back.
    grads.delete(x);
    node.inputs.forEach((inp, j) => {
      const c = inCts[j];
      if (c && isTracked(inp, id)) accumulate(inp, c);
    });
  }
  return leaves.map((l) => grads.get(l) ?? null);
}
