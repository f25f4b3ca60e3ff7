import { describe, expect, it } from 'vitest';
import { keyData } from '../../src/tensor/random.ts';
import { evalKey, initKey, microBatches, trainKey } from '../../src/train/step.ts';

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
