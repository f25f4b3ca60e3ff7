import { describe, expect, it } from 'vitest';
import { dataSync, keystr, tensor, treeFlatten, treeFlattenWithPath, treeFromPaths, treeMap, treeMapWithPath, treeUnflatten } from '../../src/index.ts';

describe('pytree', () => {
  const a = tensor([1]);
  const b = tensor([2, 3]);
  const c = tensor([4]);
  // Records are visited in sorted key order whatever order they were built in.
  const tree = { z: [a, { q: b }], m: c, note: 'static', n: null };

  it('flattens records in sorted key order, keeps non-tensors as static parts and unflattens to the same tree', () => {
    const [leaves, def] = treeFlatten(tree);
    expect(leaves).toEqual([c, a, b]);
    const back = treeUnflatten<typeof tree>(def, leaves);
    expect(back).toEqual(tree);
    expect(back.z[0]).toBe(a);
    expect(() => treeUnflatten(def, [a])).toThrow(/1 leaves for a tree of 3/);
  });

  it('gives each leaf its key path in the same order; keystr writes it with dots', () => {
    const [withPath, def] = treeFlattenWithPath(tree);
    expect(withPath.map(([p]) => p)).toEqual([['m'], ['z', 0], ['z', 1, 'q']]);
    expect(withPath.map(([p]) => keystr(p))).toEqual(['m', 'z.0', 'z.1.q']);
    expect(def).toEqual(treeFlatten(tree)[1]);
  });

  it('a custom leaf predicate decides what a leaf is (as JAX is_leaf)', () => {
    const [leaves] = treeFlattenWithPath({ a: 1, b: [2, 'x'] }, (x): x is unknown => typeof x === 'number');
    expect(leaves).toEqual([[['a'], 1], [['b', 0], 2]]);
  });

  it('treeMap and treeMapWithPath map leaves of trees of one structure, and refuse trees that differ', () => {
    const doubled = treeMap((x) => tensor(Array.from(dataSync(x), (v) => 2 * v)), tree);
    expect(Array.from(dataSync(doubled.z[1].q))).toEqual([4, 6]);
    expect(doubled.note).toBe('static');
    const named = treeMapWithPath((p, x, y) => `${keystr(p)}:${x.size + y.size}`, { u: a, v: [b] }, { u: c, v: [a] });
    expect(named).toEqual({ u: 'u:2', v: ['v.0:3'] });
    expect(() => treeMap((x) => x, { u: a }, { u: a, v: b })).toThrow(/trees differ \(1 vs 2 leaves\)/);
  });

  it('treeFromPaths inverts flattenWithPath through dotted names; records keyed 0 … n − 1 become arrays', () => {
    const [withPath] = treeFlattenWithPath({ blocks: [{ w: a }, { w: b }], stem: { w: c } });
    const back = treeFromPaths(withPath.map(([p, x]) => [keystr(p).split('.'), x] as const));
    expect(back).toEqual({ blocks: [{ w: a }, { w: b }], stem: { w: c } });
    // Keys that only look like indices, or have a gap, stay records.
    expect(treeFromPaths([[['x', '1'], a], [['x', '2'], b]])).toEqual({ x: { 1: a, 2: b } });
    expect(treeFromPaths([[['x', '0'], a], [['x', '01'], b]])).toEqual({ x: { 0: a, '01': b } });
  });

  it('treeFromPaths names a path that is both a leaf and a prefix, or given twice', () => {
    expect(() => treeFromPaths([[['a'], a], [['a', 'b'], b]])).toThrow(/'a' is both a leaf and a prefix of 'a.b'/);
    expect(() => treeFromPaths([[['a', 'b'], b], [['a'], a]])).toThrow(/'a' is both a leaf and a prefix of other paths/);
    expect(() => treeFromPaths([[['a'], a], [['a'], b]])).toThrow(/'a' is given twice/);
  });
});
