/**
 * Trees of tensors (JAX's pytrees): nested arrays and plain records whose leaves are tensors.
 * One walker serves everything that visits a tree: the transforms, the optimizers, checkpoints and
 * safetensors files. Records are visited in sorted key order, so the leaf order does not depend on
 * how a record was built.
 *
 * Key paths (JAX's `tree_flatten_with_path`): each leaf's path is the list of record keys and array
 * indices leading to it; `keystr` writes it with dots (`blocks.0.w`), the names of checkpoints,
 * safetensors files and PyTorch state dicts, and `treeFromPaths` builds a tree back from such paths.
 */
import { Tensor } from '../tensor/tensor.ts';

export type Tree<T = Tensor> = T | readonly Tree<T>[] | { readonly [k: string]: Tree<T> };

/** The structure of a tree, to rebuild it from a list of leaves. */
export type TreeDef =
  | { kind: 'leaf' }
  | { kind: 'static'; value: unknown }
  | { kind: 'array'; children: TreeDef[] }
  | { kind: 'record'; keys: string[]; children: TreeDef[] };

/** A step into a tree: a record key or an array index. */
export type PathKey = string | number;
export type KeyPath = readonly PathKey[];

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && Object.getPrototypeOf(x) === Object.prototype;

/** Whether `x` is a node the walker descends into (an array or a plain record). */
export const isContainer = (x: unknown): x is readonly unknown[] | Record<string, unknown> => Array.isArray(x) || isRecord(x);

const isTensorLeaf = (x: unknown): x is Tensor => x instanceof Tensor;
const LEAF: TreeDef = { kind: 'leaf' };

/** The walk: calls `leaf` for each leaf with its path (a live stack: copy it to keep it). */
function walk(tree: unknown, isLeaf: (x: unknown) => boolean, leaf: (x: unknown, path: readonly PathKey[]) => void): TreeDef {
  const path: PathKey[] = [];
  const child = (x: unknown, k: PathKey): TreeDef => {
    path.push(k);
    const d = visit(x);
    path.pop();
    return d;
  };
  const visit = (x: unknown): TreeDef => {
    if (isLeaf(x)) {
      leaf(x, path);
      return LEAF;
    }
    if (Array.isArray(x)) return { kind: 'array', children: x.map(child) };
    if (isRecord(x)) {
      const keys = Object.keys(x).sort();
      return { kind: 'record', keys, children: keys.map((k) => child(x[k], k)) };
    }
    return { kind: 'static', value: x };
  };
  return visit(tree);
}

/**
 * Leaves in a fixed order (record keys sorted) and the structure. Leaves are tensors unless
 * `isLeaf` says otherwise; other values that are neither arrays nor plain records are kept as
 * static parts of the structure.
 */
export function flatten<L = Tensor>(tree: unknown, isLeaf: (x: unknown) => x is L = isTensorLeaf as (x: unknown) => x is L): [L[], TreeDef] {
  const leaves: L[] = [];
  const def = walk(tree, isLeaf, (x) => leaves.push(x as L));
  return [leaves, def];
}

/** Like `flatten`, with each leaf's key path. */
export function flattenWithPath<L = Tensor>(
  tree: unknown,
  isLeaf: (x: unknown) => x is L = isTensorLeaf as (x: unknown) => x is L,
): [[KeyPath, L][], TreeDef] {
  const leaves: [KeyPath, L][] = [];
  const def = walk(tree, isLeaf, (x, path) => leaves.push([[...path], x as L]));
  return [leaves, def];
}

export function unflatten<T>(def: TreeDef, leaves: readonly unknown[]): T {
  let i = 0;
  const build = (d: TreeDef): unknown => {
    switch (d.kind) {
      case 'leaf':
        return leaves[i++];
      case 'static':
        return d.value;
      case 'array':
        return d.children.map(build);
      case 'record':
        return Object.fromEntries(d.keys.map((k, j) => [k, build(d.children[j])]));
    }
  };
  const out = build(def) as T;
  if (i !== leaves.length) throw new Error(`unflatten: ${leaves.length} leaves for a tree of ${i}`);
  return out;
}

/** The leaves of the other trees, in `leaves`' order, checked to be as many. */
function alongside(what: string, n: number, rest: readonly unknown[]): Tensor[][] {
  return rest.map((r) => {
    const [l] = flatten(r);
    if (l.length !== n) throw new Error(`${what}: trees differ (${n} vs ${l.length} leaves)`);
    return l;
  });
}

/** Applies f to every leaf of one or more trees of the same structure. */
export function treeMap<R>(f: (...xs: Tensor[]) => R, tree: unknown, ...rest: unknown[]): any {
  const [leaves, def] = flatten(tree);
  const others = alongside('treeMap', leaves.length, rest);
  return unflatten(def, leaves.map((x, i) => f(x, ...others.map((o) => o[i]))));
}

/** Applies f to every leaf with its key path (JAX's `tree_map_with_path`). */
export function treeMapWithPath<R>(f: (path: KeyPath, ...xs: Tensor[]) => R, tree: unknown, ...rest: unknown[]): any {
  const [leaves, def] = flattenWithPath(tree);
  const others = alongside('treeMapWithPath', leaves.length, rest);
  return unflatten(def, leaves.map(([path, x], i) => f(path, x, ...others.map((o) => o[i]))));
}

export const treeLeaves = (tree: unknown): Tensor[] => flatten(tree)[0];

/** A key path written with dots, as checkpoint and state-dict names are: `['blocks', 0, 'w']` → `blocks.0.w`. */
export const keystr = (path: KeyPath): string => path.join('.');

/**
 * Builds the nested tree that has `leaf` at each `path` (e.g. from `name.split('.')`): records,
 * where a record whose keys are exactly 0 … n − 1 becomes an array, so `blocks.0.w` gives
 * `{ blocks: [{ w }] }`. Throws if a path is also the prefix of another, or given twice.
 */
export function treeFromPaths<L>(entries: Iterable<readonly [KeyPath, L]>): Record<string, Tree<L>> {
  const root: Record<string, unknown> = {};
  const leaves = new Set<unknown>();
  for (const [path, leaf] of entries) {
    if (path.length === 0) throw new Error('treeFromPaths: a leaf at the root (empty path)');
    let node = root;
    for (let i = 0; i < path.length - 1; i++) {
      const k = String(path[i]);
      const next = node[k];
      if (next === undefined) node = node[k] = {};
      else if (isRecord(next) && !leaves.has(next)) node = next;
      else throw new Error(`'${keystr(path.slice(0, i + 1))}' is both a leaf and a prefix of '${keystr(path)}'`);
    }
    const last = String(path[path.length - 1]);
    if (last in node) throw new Error(`'${keystr(path)}' is ${leaves.has(node[last]) ? 'given twice' : 'both a leaf and a prefix of other paths'}`);
    node[last] = leaf;
    leaves.add(leaf);
  }
  const arrayify = (x: unknown): unknown => {
    if (leaves.has(x) || !isRecord(x)) return x;
    const keys = Object.keys(x);
    const kids = Object.fromEntries(keys.map((k) => [k, arrayify(x[k])]));
    const isArray = keys.length > 0 && keys.every((_, i) => String(i) in kids);
    return isArray ? keys.map((_, i) => kids[String(i)]) : kids;
  };
  return arrayify(root) as Record<string, Tree<L>>;
}
