/** The training loop's fold: its state transitions and the checkpoint record of a state, on tiny states without a model. */
import { describe, expect, it } from 'vitest';
import type { Params, State } from '../../src/nn/efficientnet.ts';
import type { OptState } from '../../src/train/optim.ts';
import type { StepResult } from '../../src/train/step.ts';
import { type LoopState, Checkpointer, accFromPartial, accToPartial, afterBatch, closeEpoch, emptyAcc, shouldStopEarly } from '../../src/train/loop.ts';

const w = (v: number) => ({ w: v }) as unknown as Params;
const s0: LoopState = {
  params: w(0), state: {} as State, opt: { name: 'sgd', step: 0, slots: {} } as unknown as OptState,
  epoch: 0, step: 0, globalStep: 0, acc: emptyAcc, bestAuc: null, bestEpoch: null, lastAuc: null, epochSeconds: [],
};
const step = (v: number, lossSum: number, logits: number[]): StepResult => ({
  params: w(v), state: {} as State, opt: { name: 'sgd', step: v, slots: {} } as unknown as OptState, lossSum, logits: Float32Array.from(logits), gradNorm: null,
});
const bad = { name: 'img,3', path: '/d/img,3.jpg', error: { _tag: 'CorruptImage', file: '/d/img,3.jpg', reason: 'bad "header"\nat byte 2' } } as const;

describe('the fold over batches and epochs', () => {
  it('afterBatch takes the step\'s weights and adds the batch to the epoch\'s accumulators, leaving the old state as it was', () => {
    const s1 = afterBatch(s0, { index: 0, labels: Int32Array.from([1, 0]) as never, skipped: [] }, step(1, 1.5, [0, 0]), 1);
    const s2 = afterBatch(s1, { index: 1, labels: Int32Array.from([1]) as never, skipped: [bad as never] }, step(2, 0.5, [Math.log(3)]), 1);
    expect(s0.acc).toBe(emptyAcc);
    expect([s1.step, s1.globalStep, s2.step, s2.globalStep, s2.params]).toEqual([1, 1, 2, 2, w(2)]);
    expect(s2.acc).toMatchObject({ lossSum: 2, count: 3, images: 3, labels: [1, 0, 1] });
    expect(s2.acc.scores.map((p) => +p.toFixed(6))).toEqual([0.5, 0.5, 0.75]);
    expect(s2.acc.skipped).toEqual([['img,3', '/d/img,3.jpg', expect.stringContaining('bad "header"\nat byte 2')]]);
  });

  it('closeEpoch moves to the next epoch and keeps the best AUC; the first epoch is best even when its AUC is undefined', () => {
    const mid = { ...s0, step: 3, acc: { ...emptyAcc, count: 5 } };
    const a = closeEpoch(mid, NaN, 2);
    expect(a.improved).toBe(true);
    expect(a.state).toMatchObject({ epoch: 1, step: 0, acc: emptyAcc, bestAuc: null, bestEpoch: 1, epochSeconds: [2] });
    const b = closeEpoch(a.state, 0.7, 3);
    expect([b.improved, b.state.bestAuc, b.state.bestEpoch]).toEqual([true, 0.7, 2]);
    const c = closeEpoch(b.state, 0.6, 1);
    expect([c.improved, c.state.bestAuc, c.state.bestEpoch, c.state.lastAuc, c.state.epochSeconds]).toEqual([false, 0.7, 2, 0.6, [2, 3, 1]]);
  });

  it('early stopping: patience epochs past the best one, never after the last epoch', () => {
    const at = (epoch: number, bestEpoch: number) => ({ ...s0, epoch, bestEpoch, bestAuc: 0.5 });
    const cfg = { patience: 2, epochs: 10 };
    expect(shouldStopEarly(cfg, at(3, 2))).toBe(false);
    expect(shouldStopEarly(cfg, at(4, 2))).toBe(true);
    expect(shouldStopEarly(cfg, at(10, 2))).toBe(false); // the run ends anyway
    expect(shouldStopEarly({ ...cfg, patience: null }, at(9, 1))).toBe(false);
  });
});

describe('the Checkpointer\'s record of a state', () => {
  const ck = new Checkpointer('/runs/x', { name: 'b0', options: { numClasses: 1 } }, 7);

  it('mid-epoch: the position and the accumulators; at an epoch end: the weights\' epoch and no accumulators', () => {
    const mid = afterBatch(s0, { index: 0, labels: Int32Array.from([1, 0]) as never, skipped: [bad as never] }, step(1, 1, [0, 0]), 1);
    const t = ck.trainerOf(mid);
    expect(t).toMatchObject({ epoch: 0, stepInEpoch: 1, globalStep: 1, weightsEpoch: null, extra: { seed: 7 }, model: { name: 'b0' } });
    expect(accFromPartial(t.partial!)).toEqual({ ...mid.acc, images: 0 });
    const end = ck.trainerOf(closeEpoch(mid, 0.8, 1).state);
    expect(end).toMatchObject({ epoch: 1, stepInEpoch: 0, weightsEpoch: 1, partial: null, bestMetric: 0.8, bestEpoch: 1 });
    expect([ck.last, ck.best]).toEqual(['/runs/x/last', '/runs/x/best']);
  });

  it('reads skipped rows of older checkpoints (comma-free "name,path,reason" lines)', () => {
    const acc = accFromPartial({ lossSum: 1, count: 1, labels: [1], scores: [0.5], skipped: ['a,/d/a.jpg,corrupt image  truncated'] });
    expect(acc.skipped).toEqual([['a', '/d/a.jpg', 'corrupt image  truncated']]);
    expect(accToPartial(acc).skipped).toEqual(['a,/d/a.jpg,corrupt image  truncated']);
  });
});
