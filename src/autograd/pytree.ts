/** Trees of tensors (JAX's pytrees): nested arrays and plain records whose leaves are tensors. */
import { Tensor } from '../tensor/tensor.ts';

export type Tree<T = Tensor> = T | readonly Tree<T>[] | { readonly [k: string]: Tree<T> };

/** The structure of a tree, to rebuild it from a list of leaves. */
export type TreeDef =
  | { kind: 'leaf' }
  | { kind: 'static'; value: unknown }
  | { kind: 'array'; children: TreeDef[] }
  | { kind: 'record'; keys: string[]; children: TreeDef[] };

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && Object.getPrototypeOf(x) === Object.prototype;

/** Leaves in a fixed order (record keys sorted) and the structure. Non-tensor values are kept as static parts. */
export function flatten(tree: unknown): [Tensor[], TreeDef] {
  const leaves: Tensor[] = [];
  const walk = (x: unknown): TreeDef => {
    if (x instanceof Tensor) {
      leaves.push(x);
      return { kind: 'leaf' };
    }
    if (Array.isArray(x)) return { kind: 'array', children: x.map(walk) };
    if (isRecord(x)) {
      const keys = Object.keys(x).sort();
      return { kind: 'record', keys, children: keys.map((k) => walk(x[k])) };
    }
    return { kind: 'static', value: x };
  };
  const def = walk(tree);
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

/** Applies f to every leaf of one or more trees of the same structure. */
export function treeMap<R>(f: (...xs: Tensor[]) => R, tree: unknown, ...rest: unknown[]): any {
  const [leaves, def] = flatten(tree);
  const others = rest.map((r) => {
    const [l, d] = flatten(r);
    if (l.length !== leaves.length) throw new Error(`treeMap: trees differ (${leaves.length} vs ${l.length} leaves)`);
    void d;
    return l;
  });
  return unflatten(def, leaves.map((x, i) => f(x, ...others.map((o) => o[i]))));
}

export const treeLeaves = (tree: unknown): Tensor[] => flatten(tree)[0];
