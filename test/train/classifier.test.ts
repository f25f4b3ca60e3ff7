/**
 * A short Fashion-MNIST run (Debian's dataset-fashion-mnist): a 12,610-parameter nn.layers net,
 * trained with classifier.fit on the first 2,000 training images for 3 epochs (Adam, one-cycle,
 * flips and crops), must reach a fixed accuracy on the first 1,000 test images far above chance
 * (0.1). Measured: 0.698 with the forward and backward pass jitted (the default), 0.721 eager (the
 * two agree to float rounding per step, which Adam's early steps amplify over a run); floor 0.6.
 * About 40 s of CPU time.
 */
import * as E from 'fp-ts/lib/Either.js';
import { describe, expect, it } from 'vitest';
import { datasets, nn, random } from '../../src/index.ts';
import { fit } from '../../src/train/classifier.ts';

const train = datasets.loadIdxSplit(datasets.FASHION_MNIST_DIR, 'train');
const test = datasets.loadIdxSplit(datasets.FASHION_MNIST_DIR, 'test');
const missing = E.isLeft(train) ? datasets.renderDataError(train.left) : E.isLeft(test) ? datasets.renderDataError(test.left) : null;

describe.skipIf(missing !== null)(`Fashion-MNIST subset${missing ? ` (skipped: ${missing}; apt-get install dataset-fashion-mnist)` : ''}`, () => {
  it('reads the Debian package: 60,000 + 10,000 images of 28×28, labels 0–9', () => {
    const [tr, te] = [train, test].map((r) => (r as E.Right<datasets.IdxImageSet>).right);
    expect([tr.count, tr.rows, tr.cols, te.count]).toEqual([60000, 28, 28, 10000]);
    expect(Math.max(...tr.labels)).toBe(9);
  });

  it('trains a depthwise-separable net on 2,000 images past a 0.6 test accuracy floor', () => {
    const tr = datasets.takeIdx((train as E.Right<datasets.IdxImageSet>).right, 2000);
    const te = datasets.takeIdx((test as E.Right<datasets.IdxImageSet>).right, 1000);
    const net = nn.createNetwork(nn.dwsNet({ widths: [16, 24, 32, 32, 48, 48, 64] }), { key: random.key(0), inputShape: [1, 1, 28, 28] });
    expect(nn.parameterCount(net)).toBe(12610);
    const { history } = fit(net, tr, te, { epochs: 3, batchSize: 50, lr: 1e-2, mean: 0.286, std: 0.353, flip: true, padCrop: 2 });
    expect(history.map((h) => h.epoch)).toEqual([1, 2, 3]);
    expect(history[2].trainLoss).toBeLessThan(history[0].trainLoss);
    expect(history[2].test.accuracy).toBeGreaterThan(0.6);
    const c = history[2].test.confusion;
    expect(c.flat().reduce((a, b) => a + b, 0)).toBe(1000);
    history[2].test.perClass.forEach((a, i) => expect(a).toBeCloseTo(c[i][i] / c[i].reduce((x, y) => x + y, 0), 12));
  }, 600_000);
});
