/**
 * The backend fusion hook (`Backend.fuse`): a fused elementwise step of a compiled graph described
 * as data, so a backend without typed-array storage (webgpu) can compile it into one kernel of its
 * own instead of running its primitives one by one. The group is read off the graph: its leaves
 * are the step's inputs, its members the equations between them and its output. Each leaf is read
 * at the output's index with NumPy broadcasting (a broadcastTo member is that read), as in the
 * fused CPU loops of fuse.ts.
 *
 * A backend that declines a group (returns null: a dtype, an op or a binding limit it cannot
 * serve) gets its members run one by one, as if unfused.
 */
import type { Backend, DType, Kernel } from '../backends/backend.ts';
import { runKernel, toBackend } from '../autograd/trace.ts';
import type { Shape } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Graph } from './graph.ts';
import type { Step } from './fuse.ts';

/** An operand of a group member: leaf `leaf` (an input of the step) or the result of member `tmp`. */
export type FusedOperand = { readonly leaf: number } | { readonly tmp: number };

export interface FusedGroup {
  /** The output's shape and dtype (every member computes one value per output element). */
  readonly shape: Shape;
  readonly dtype: DType;
  /** The step's inputs, in kernel-argument order. */
  readonly leaves: readonly { readonly shape: Shape; readonly dtype: DType }[];
  /** The members in evaluation order; the last one is the output. */
  readonly members: readonly { readonly prim: string; readonly attrs: unknown; readonly args: readonly FusedOperand[]; readonly shape: Shape; readonly dtype: DType }[];
  /** Identifies the group's expression, shapes and dtypes (a cache key for compiled kernels). */
  readonly key: string;
}

type FusedStep = Step & { kind: 'fused' };

/** The group of a fused step: the equations reachable backwards from its output without crossing a leaf. */
export function fusedGroup(g: Graph, s: FusedStep): FusedGroup {
  const leafOf = new Map(s.ins.map((v, k) => [v, k]));
  const eqnOf = (v: number) => (g.vars[v].src as { eqn: number }).eqn;
  const seen = new Set<number>();
  const visit = (v: number): void => {
    if (leafOf.has(v) || seen.has(v)) return;
    seen.add(v);
    if (g.vars[v].src.kind !== 'eqn') throw new Error(`jit: fused group of ${s.ops.join(',')} reads variable ${v}, which is neither a leaf nor computed in the group`);
    g.eqns[eqnOf(v)].ins.forEach(visit);
  };
  visit(s.out);
  const order = [...seen].sort((a, b) => eqnOf(a) - eqnOf(b));
  const tmpOf = new Map(order.map((v, j) => [v, j]));
  const members = order.map((v) => {
    const e = g.eqns[eqnOf(v)];
    return { prim: e.prim, attrs: e.attrs, shape: g.vars[v].shape, dtype: g.vars[v].dtype, args: e.ins.map((x): FusedOperand => (leafOf.has(x) ? { leaf: leafOf.get(x)! } : { tmp: tmpOf.get(x)! })) };
  });
  const out = g.vars[s.out];
  const leaves = s.ins.map((v) => ({ shape: g.vars[v].shape, dtype: g.vars[v].dtype }));
  const key = JSON.stringify([out.shape, out.dtype, leaves, members]);
  return { shape: out.shape, dtype: out.dtype, leaves, members, key };
}

/** Per fused step: the backend it was compiled for and the backend's kernel (null: declined). */
const compiled = new WeakMap<Step, { backend: Backend; kernel: Kernel | null; group: FusedGroup }>();

/**
 * Runs a fused step on its leaves' backend (the first leaf's, as eager ops pick theirs): through
 * the backend's fused kernel when it gives one, else member by member with the eager kernels.
 */
export function runFused(g: Graph, s: FusedStep, ins: readonly Tensor[]): Tensor {
  const backend = ins[0].backend;
  let c = compiled.get(s);
  if (!c || c.backend !== backend) {
    const group = fusedGroup(g, s);
    c = { backend, kernel: backend.fuse?.(group) ?? null, group };
    compiled.set(s, c);
  }
  const { kernel, group } = c;
  if (kernel) {
    const args = ins.map((x) => toBackend(x, backend));
    const storage = kernel(args, {}, { shape: group.shape, dtype: group.dtype });
    return new Tensor(group.shape, group.dtype, storage, backend);
  }
  const tmps: Tensor[] = [];
  for (const m of group.members) {
    const args = m.args.map((a) => ('leaf' in a ? ins[a.leaf] : tmps[a.tmp]));
    const [storage, b] = runKernel(m.prim, args, m.attrs, { shape: m.shape, dtype: m.dtype });
    tmps.push(new Tensor(m.shape, m.dtype, storage, b));
  }
  for (const t of tmps.slice(0, -1)) t.backend.dispose?.(t.storage);
  return tmps[tmps.length - 1];
}
