import { describe, expect, it } from 'vitest';
import { flatten } from '../../src/autograd/pytree.ts';
import { createModel } from '../../src/nn/model.ts';
import { key, keyData, normal } from '../../src/tensor/random.ts';
import { type Tensor, dataSync } from '../../src/tensor/tensor.ts';
import { compiledUpdate, rmsprop } from '../../src/train/optim.ts';
import { evalKey, initKey, microBatches, trainKey, trainStep } from '../../src/train/step.ts';

describe('one training step: micro-batches and keys', () => {
  it('splits a batch into micro-batches without a trailing single image', () => {
    expect(microBatches(100, 20)).toEqual([20, 20, 20, 20, 20]);
    expect(microBatches(10, 4)).toEqual([4, 4, 2]);
    expect(microBatches(9, 4)).toEqual([4, 5]);
    expect(microBatches(1, 4)).toEqual([1]);
    expect(microBatches(7, 20)).toEqual([7]);
  });

  it('derives keys by position only, distinct across streams and positions', () => {
    const ks = [initKey(1), trainKey(1, 0, 0, 0), trainKey(1, 0, 0, 1), trainKey(1, 0, 1, 0), trainKey(1, 1, 0, 0), evalKey(1, 0, 0, 0), evalKey(1, 0, 1, 0), trainKey(2, 0, 0, 0)];
    const seen = new Set(ks.map((k) => keyData(k).join(':')));
    expect(seen.size).toBe(ks.length);
    expect(keyData(trainKey(1, 3, 5, 2))).toEqual(keyData(trainKey(1, 3, 5, 2)));
  });
});

describe('trainStep', () => {
  it('runs the optimizer update compiled: one entry for every step and learning rate', async () => {
    const m = createModel('b0', { numClasses: 1, lowSize: 32, widthMult: 0.25, depthMult: 0.25, key: key(3) });
    const optimizer = rmsprop();
    const loss = { name: 'bce', posWeight: 1, classWeights: null, focalGamma: 2, numClasses: 1 } as const;
    const batch = { low: normal(key(4), [4, 3, 32, 32]), labels: Float32Array.from([0, 1, 1, 0]), names: [], skipped: [], index: 0 };
    let s = { params: m.params, state: m.state, opt: optimizer.init(m.params) };
    for (const lr of [1e-3, 5e-4, 2.5e-4]) s = await trainStep({ mc: m.config, ...s, optimizer, loss, batch, lr, microBatch: 4, clip: null, keyFor: (k) => key(k) });
    expect(compiledUpdate(optimizer).compiles).toBe(1);
    expect(s.opt.step).toBe(3);
    // The update moved every weight of the head (RMSprop's first steps are ±lr·10 per element).
    const [w0, w] = [flatten(m.params)[0] as Tensor[], flatten(s.params)[0] as Tensor[]];
    const last = w.length - 1;
    expect(dataSync(w[last]).every((v, j) => v !== dataSync(w0[last])[j])).toBe(true);
  });
});
