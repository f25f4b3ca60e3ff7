/**
 * Fused groups for the backends' fusion hook (`Backend.fuse`): a group of equations of a compiled graph described
 * as a `FusedGroup` (its leaves with their broadcast strides, the expression, the output or the sum it ends in), and the one cache of
 * compiled group kernels. Each leaf is read at the output's index with NumPy broadcasting (a broadcastTo member is
 * that read). A backend compiles a group into one kernel of its own or declines it; jit runs a declined group's
 * equations one by one (fuse.ts).
 */
import type { Backend, FusedGroup, FusedKernel, FusedNode } from '../backends/backend.ts';
import { broadcastStrides, collapseAxes } from '../tensor/shape.ts';
import type { Graph } from './graph.ts';

/**
 * The description of the group of equations `members` (indices in evaluation order, the last one its output), and
 * the variables its leaves are. An affine with its SiLU fused becomes an affine node and a silu node. A group whose
 * last member is a `sum` reduces: its nodes are the other members, evaluated over the sum's input shape; with
 * `values`, the group writes that input too (it has other readers).
 */
export function describeGroup(g: Graph, members: readonly number[], values = false): { group: FusedGroup; leaves: number[] } {
  const last = g.eqns[members[members.length - 1]];
  const sum = last.prim === 'sum' ? last : null;
  const elementwise = sum ? members.slice(0, -1) : members;
  const out = g.vars[sum ? sum.ins[0] : last.out];
  const nodeOf = new Map<number, number>();
  const leaves: number[] = [];
  const leafOf = (v: number) => {
    const k = leaves.indexOf(v);
    return k >= 0 ? k : leaves.push(v) - 1;
  };
  const nodes: FusedNode[] = [];
  for (const m of elementwise) {
    const e = g.eqns[m];
    nodes.push({ prim: e.prim, args: e.ins.map((v) => (nodeOf.has(v) ? { node: nodeOf.get(v)! } : { leaf: leafOf(v) })) });
    if (e.prim === 'affine' && (e.attrs as { act?: string } | undefined)?.act === 'silu') nodes.push({ prim: 'silu', args: [{ node: nodes.length - 1 }] });
    nodeOf.set(e.out, nodes.length - 1);
  }
  const strides = leaves.map((v) => broadcastStrides(g.vars[v].shape, out.shape));
  // The sum's output, indexed like the input with the summed axes kept (stride 0 there).
  if (sum) strides.push(broadcastStrides(keptShape(out.shape, (sum.attrs as { axes: readonly number[] }).axes), out.shape));
  const c = collapseAxes(out.shape, strides);
  const ls = leaves.map((v, k) => ({ shape: g.vars[v].shape, dtype: g.vars[v].dtype, strides: c.strides[k] }));
  const reduce = sum ? { shape: g.vars[sum.out].shape, strides: c.strides[leaves.length], ...(values && { values }) } : undefined;
  const key = JSON.stringify([out.shape, g.vars[last.out].dtype, ls.map((l) => [l.shape, l.dtype]), nodes, reduce ?? null]);
  const group: FusedGroup = { shape: out.shape, dtype: g.vars[last.out].dtype, loopShape: c.shape, leaves: ls, nodes, key, ...(reduce && { reduce }) };
  return { group, leaves };
}

/** `shape` with `axes` set to 1. */
const keptShape = (shape: readonly number[], axes: readonly number[]) => shape.map((d, i) => (axes.includes(i) ? 1 : d));

/** Compiled group kernels (null: declined), most recently used last, per backend kernel table (a restarted gpu backend has a new one). */
const caches = new WeakMap<object, Map<string, FusedKernel | null>>();
/** Kernels kept per kernel table (a B0 train step has ~900 groups, fewer distinct ones). */
const CACHE_SIZE = 8192;

/** The backend's kernel for each group (null where it declines), compiling the groups not in the cache in one batch. */
export function fusedKernels(backend: Backend, groups: readonly FusedGroup[]): (FusedKernel | null)[] {
  if (!backend.fuse) return groups.map(() => null);
  const table = backend.kernels;
  let cache = caches.get(table);
  if (!cache) caches.set(table, (cache = new Map()));
  const fresh = new Map<string, FusedGroup>();
  for (const g of groups) if (!cache.has(g.key)) fresh.set(g.key, g);
  if (fresh.size) {
    const ks = backend.fuse([...fresh.values()]);
    if (ks.length !== fresh.size) throw new Error(`backend '${backend.name}': fuse returned ${ks.length} kernels for ${fresh.size} groups`);
    [...fresh.keys()].forEach((key, i) => cache.set(key, ks[i]));
  }
  const out = groups.map((g) => {
    const k = cache.get(g.key)!;
    cache.delete(g.key);
    cache.set(g.key, k);
    return k;
  });
  for (const key of cache.keys()) {
    if (cache.size <= CACHE_SIZE) break;
    cache.delete(key);
  }
  return out;
}
