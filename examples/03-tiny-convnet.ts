/**
 * Example 3 — a tiny conv net: tell horizontal from vertical stripes in 12×12 images.
 * Run: npx tsx examples/03-tiny-convnet.ts
 *
 * Shows: NCHW images, conv2d with 'same' padding, max pooling, global average pooling, a dense
 * head, and a training loop with `valueAndGrad` over a parameter record.
 */
import {
  type Tensor, add, binaryCrossEntropyWithLogits, conv2d, equal, globalAvgPool2d, greater, item, matmul, maxPool2d, mean, mul, random, relu, reshape, sub, tensor, treeMap, valueAndGrad,
} from '@stochconv/engine';

// 64 images of 1×12×12: stripes of period 3, horizontal (label 0) or vertical (label 1), random phase and noise.
const N = 64;
const S = 12;
const k = random.key(7);
const phase = random.randint(random.foldIn(k, 0), N, 0, 3);
const noise = random.uniformArray(random.foldIn(k, 1), N * S * S);
const px = new Float32Array(N * S * S);
const labels = new Float32Array(N);
for (let n = 0; n < N; n++) {
  labels[n] = n % 2;
  for (let i = 0; i < S; i++) {
    for (let j = 0; j < S; j++) {
      const along = labels[n] ? j : i;
      px[(n * S + i) * S + j] = ((along + phase[n]) % 3 === 0 ? 1 : 0) + 0.3 * noise[(n * S + i) * S + j];
    }
  }
}
const X = tensor(px, [N, 1, S, S]);
const Y = tensor(labels, [N, 1]);

// conv 3×3 (1 → 8) → ReLU → max-pool 2 → conv 3×3 (8 → 8) → ReLU → global average → dense (8 → 1).
const [k1, k2, k3] = random.split(random.key(1), 3);
let params = {
  c1: random.normal(k1, [8, 1, 3, 3], 0, Math.sqrt(2 / 9)),
  c2: random.normal(k2, [8, 8, 3, 3], 0, Math.sqrt(2 / 72)),
  w: random.normal(k3, [8, 1], 0, Math.sqrt(1 / 8)),
  b: tensor([0]),
};
type Params = typeof params;

const forward = (p: Params, x: Tensor): Tensor => {
  let h = relu(conv2d(x, p.c1, { padding: 'same' }));
  h = maxPool2d(h, { kernel: 2, stride: 2 });
  h = relu(conv2d(h, p.c2, { padding: 'same' }));
  const pooled = reshape(globalAvgPool2d(h), [x.shape[0], 8]);
  return add(matmul(pooled, p.w), p.b);
};
const step = valueAndGrad((p: Params) => binaryCrossEntropyWithLogits(forward(p, X), Y));

for (let t = 1; t <= 60; t++) {
  const [loss, g] = step(params);
  params = treeMap((pi: Tensor, gi: Tensor) => sub(pi, mul(gi, 0.5)), params, g);
  if (t % 20 === 0) console.log(`step ${t}: loss ${item(loss).toFixed(4)}`);
}
const acc = item(mean(equal(greater(forward(params, X), 0), Y)));
console.log(`training accuracy: ${(acc * 100).toFixed(1)}%`);
