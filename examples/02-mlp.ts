/**
 * Example 2 — a small MLP on a toy dataset (two interleaved spirals).
 * Run: npx tsx examples/02-mlp.ts
 *
 * Shows: parameter trees, `valueAndGrad`, `treeMap` to update every leaf, and the stable
 * `binaryCrossEntropyWithLogits` loss.
 */
import {
  type Tensor, add, binaryCrossEntropyWithLogits, div, equal, greater, item, matmul, mean, mul, random, relu, sqrt, sub, tensor, treeMap, valueAndGrad,
} from '@stochconv/engine';

// Two spirals, 200 points each, labels 0 and 1.
const n = 200;
const pts: number[] = [];
const labels: number[] = [];
for (let c = 0; c < 2; c++) {
  for (let i = 0; i < n; i++) {
    const r = (i / n) * 3 + 0.2;
    const t = 1.75 * r + c * Math.PI;
    pts.push(r * Math.cos(t), r * Math.sin(t));
    labels.push(c);
  }
}
const X = tensor(pts, [2 * n, 2]);
const Y = tensor(labels, [2 * n, 1]);

// A 2 → 32 → 32 → 1 network, He-initialised from an explicit key.
const [k1, k2, k3] = random.split(random.key(42), 3);
const layer = (k: random.Key, i: number, o: number) => ({ w: random.normal(k, [i, o], 0, Math.sqrt(2 / i)), b: tensor(new Float32Array(o), [o]) });
let params = { l1: layer(k1, 2, 32), l2: layer(k2, 32, 32), l3: layer(k3, 32, 1) };
type Params = typeof params;

const forward = (p: Params, x: Tensor) => {
  const h1 = relu(add(matmul(x, p.l1.w), p.l1.b));
  const h2 = relu(add(matmul(h1, p.l2.w), p.l2.b));
  return add(matmul(h2, p.l3.w), p.l3.b); // logits
};
const lossFn = (p: Params) => binaryCrossEntropyWithLogits(forward(p, X), Y);
const step = valueAndGrad(lossFn);

// Adam, written out: its state is just more trees.
const zerosTree = (t: Params) => treeMap((x: Tensor) => mul(x, 0), t) as Params;
let m = zerosTree(params);
let v = zerosTree(params);
const [lr, b1, b2] = [0.02, 0.9, 0.999];
for (let t = 1; t <= 400; t++) {
  const [loss, g] = step(params);
  m = treeMap((mi: Tensor, gi: Tensor) => add(mul(mi, b1), mul(gi, 1 - b1)), m, g);
  v = treeMap((vi: Tensor, gi: Tensor) => add(mul(vi, b2), mul(mul(gi, gi), 1 - b2)), v, g);
  const c1 = 1 - b1 ** t;
  const c2 = 1 - b2 ** t;
  // p ← p − lr · m̂ / (√v̂ + ε)
  params = treeMap((p: Tensor, mi: Tensor, vi: Tensor) => sub(p, div(mul(mi, lr / c1), add(sqrt(mul(vi, 1 / c2)), 1e-8))), params, m, v);
  if (t % 100 === 0) console.log(`step ${t}: loss ${item(loss).toFixed(4)}`);
}

const acc = item(mean(equal(greater(forward(params, X), 0), Y)));
console.log(`training accuracy: ${(acc * 100).toFixed(1)}%`);
