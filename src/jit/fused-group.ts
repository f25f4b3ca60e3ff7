/**
 * Fused groups for the backends' fusion hook (`Backend.fuse`): a group of equations of a compiled graph described
 * as a `FusedGroup` (its leaves with their broadcast strides, the expression, the output), and the one cache of
 * compiled group kernels. Each leaf is read at the output's index with NumPy broadcasting (a broadcastTo member is
 * that read). A backend compiles a group into one kernel of its own or declines it; jit runs a declined group's
 * equations one by one (fuse.ts).
 */
import type { Backend, FusedGroup, FusedKernel, FusedNode } from '../backends/backend.ts';
import { broadcastStrides, collapseAxes } from '../tensor/shape.ts';
import type { Graph } from './graph.ts';

/**
 * The description of the group of equations `members` (indices in evaluation order, the last one its output), and
 * the variables its leaves are. An affine with its SiLU fused becomes an affine node and a silu node.
 */
export function describeGroup(g: Graph, members: readonly number[]): { group: FusedGroup; leaves: number[] } {
  const root = g.eqns[members[members.length - 1]];
  const out = g.vars[root.out];
  const nodeOf = new Map<number, number>();
  const leaves: number[] = [];
  const leafOf = (v: number) => {
    const k = leaves.indexOf(v);
    return k >= 0 ? k : leaves.push(v) - 1;
  };
  const nodes: FusedNode[] = [];
  for (const m of members) {
    const e = g.eqns[m];
    nodes.push({ prim: e.prim, args: e.ins.map((v) => (nodeOf.has(v) ? { node: nodeOf.get(v)! } : { leaf: leafOf(v) })) });
    if (e.prim === 'affine' && (e.attrs as { act?: string } | undefined)?.act === 'silu') nodes.push({ prim: 'silu', args: [{ node: nodes.length - 1 }] });
    nodeOf.set(e.out, nodes.length - 1);
  }
  const c = collapseAxes(out.shape, leaves.map((v) => broadcastStrides(g.vars[v].shape, out.shape)));
  const ls = leaves.map((v, k) => ({ shape: g.vars[v].shape, dtype: g.vars[v].dtype, strides: c.strides[k] }));
  const key = JSON.stringify([out.shape, out.dtype, ls.map((l) => [l.shape, l.dtype]), nodes]);
  return { group: { shape: out.shape, dtype: out.dtype, loopShape: c.shape, leaves: ls, nodes, key }, leaves };
}

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
