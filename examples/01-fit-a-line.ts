/**
 * Example 1 — fitting a line with `grad`.
 * Run: npx tsx examples/01-fit-a-line.ts
 *
 * Parameters are a plain record of tensors; `grad(loss)` returns a record of the same shape,
 * and an update is just arithmetic on the two. Nothing is mutated.
 */
import { grad, mean, mul, add, sub, square, tensor, item, random, type Tensor } from '@stochconv/engine';

// Data: y = 3x + 2 plus a little noise, from an explicit random key.
const k = random.key(0);
const x = random.uniform(k, [64], -1, 1);
const y = add(add(mul(x, 3), 2), random.normal(random.foldIn(k, 1), [64], 0, 0.05));

type Params = { w: Tensor; b: Tensor };
const predict = (p: Params, xs: Tensor) => add(mul(xs, p.w), p.b);
const loss = (p: Params) => mean(square(sub(predict(p, x), y)));

let params: Params = { w: tensor([0]), b: tensor([0]) };
const dLoss = grad(loss);
for (let step = 0; step < 200; step++) {
  const g = dLoss(params);
  // Plain gradient descent: p ← p − lr · ∇p
  params = { w: sub(params.w, mul(g.w, 0.1)), b: sub(params.b, mul(g.b, 0.1)) };
}
console.log(`w = ${item(params.w).toFixed(3)}, b = ${item(params.b).toFixed(3)}, loss = ${item(loss(params)).toExponential(2)}`);
