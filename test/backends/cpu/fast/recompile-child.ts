/**
 * Child process of recompile.test.ts (run with --expose-gc --trace-opt): eager conv kernels of every job-building
 * family, with a full collection every few calls; prints RECOMPILE-MARK after the warm-up, then runs more rounds.
 */
import * as E from '../../../../src/index.ts';
import { setStochasticBandRows } from '../../../../src/backends/cpu/fast/stochconv.ts';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('recompile-child: run with --expose-gc');
setStochasticBandRows(16); // the forward and both gradients in bands, as at 1024²
const key = E.random.key(3);
const n = 4, size = 256, out = 60;
const img = E.random.normal(E.random.foldIn(key, 1), [n, 3, size, size]);
const img8 = E.tensor(Uint8Array.from(E.dataSync(E.random.uniform(E.random.foldIn(key, 2), [n, 3, size, size])), (v) => Math.floor(v * 256)), [n, 3, size, size]);
const ws = E.random.normal(E.random.foldIn(key, 3), [16, 3, 3, 3], 0, 0.1);
const wd = E.random.normal(E.random.foldIn(key, 4), [16, 1, 3, 3], 0, 0.1);
const wp = E.random.normal(E.random.foldIn(key, 5), [24, 16, 1, 1], 0, 0.1);
const x = E.random.normal(E.random.foldIn(key, 6), [n, 3, 64, 64]);
const sliceSize = E.stochasticSliceSize([out, out], [3, 3], 2);
let step = 0;
const opts = () => ({ stride: 2, outSize: [out, out] as [number, number], windows: E.sampleWindows(E.random.foldIn(key, 100 + step++), { batch: n, channels: 16, inputSize: [size, size], sliceSize, perImage: true }) });

function round(): void {
  // Stochastic conv: forward on bytes (banded), forward + filter and input gradients on floats.
  E.dataSync(E.stochasticConv2d(img8, ws, { ...opts(), decode: E.datasets.imagenetDecode }));
  const [, pull] = E.vjp(([a, b]: E.Tensor[]) => E.stochasticConv2d(a, b, opts()), [img, ws]);
  pull(E.ones([n, 16, out, out])).forEach((g) => E.dataSync(g));
  // A dense, a depthwise and a pointwise conv with their gradients.
  const f = (v: E.Tensor[]) => E.sum(E.conv2d(E.depthwiseConv2d(E.conv2d(x, v[0], { stride: 2, padding: 'same' }), v[1], { padding: 'same' }), v[2]));
  E.grad(f)([ws, wd, wp]).forEach((g) => E.dataSync(g));
}

for (let i = 0; i < 24; i++) {
  round();
  if (i % 2 === 1) gc();
}
console.log('RECOMPILE-MARK');
for (let i = 0; i < 12; i++) {
  round();
  if (i % 2 === 1) gc();
}
console.log('RECOMPILE-END');
