import { describe, expect, it } from 'vitest';
import { learningRate, validateSchedule, type ScheduleConfig } from '../../src/train/schedule.ts';

describe('learning-rate schedules', () => {
  it('exponential as in the paper: constant for 15 epochs, then ×0.9 per epoch', () => {
    const c: ScheduleConfig = { name: 'exponential', lr: 1e-3, epochs: 60, stepsPerEpoch: 10, warmupEpochs: 15, decay: 0.9 };
    for (let e = 0; e < 15; e++) expect(learningRate(c, e, 3)).toBe(1e-3);
    expect(learningRate(c, 15)).toBeCloseTo(9e-4, 15);
    expect(learningRate(c, 16, 9)).toBeCloseTo(8.1e-4, 15);
    expect(learningRate(c, 59)).toBeCloseTo(1e-3 * 0.9 ** 45, 15);
    // Constant within an epoch.
    expect(learningRate(c, 20, 0)).toBe(learningRate(c, 20, 9));
  });

  it('constant', () => {
    expect(learningRate({ name: 'constant', lr: 0.1, epochs: 3, stepsPerEpoch: 4 }, 2, 3)).toBe(0.1);
  });

  it('cosine with linear warm-up', () => {
    const c: ScheduleConfig = { name: 'cosine', lr: 1, epochs: 10, stepsPerEpoch: 10, warmupEpochs: 1 };
    expect(learningRate(c, 0, 0)).toBeCloseTo(0.1, 15);
    expect(learningRate(c, 0, 9)).toBeCloseTo(1, 15);
    expect(learningRate(c, 1, 0)).toBeCloseTo(1, 15);
    // Halfway through the 90 cosine steps: ½.
    expect(learningRate(c, 5, 5)).toBeCloseTo(0.5, 12);
    expect(learningRate(c, 9, 9)).toBeCloseTo(0.5 * (1 + Math.cos((Math.PI * 89) / 90)), 12);
  });

  it('onecycle follows PyTorch’s OneCycleLR', () => {
    // total 100 steps, pct 0.3: rises over steps 0…29 from lr/25 to lr, falls to lr/25/1e4 at step 99.
    const c: ScheduleConfig = { name: 'onecycle', lr: 1, epochs: 10, stepsPerEpoch: 10 };
    expect(learningRate(c, 0, 0)).toBeCloseTo(0.04, 15);
    expect(learningRate(c, 2, 9)).toBeCloseTo(1, 15);
    expect(learningRate(c, 9, 9)).toBeCloseTo(0.04 / 1e4, 15);
    // Step 1 of the rise: start + (1 − start)·(1 − cos(π/29))/2 (torch's _annealing_cos).
    expect(learningRate(c, 0, 1)).toBeCloseTo(1 + ((0.04 - 1) / 2) * (1 + Math.cos(Math.PI / 29)), 12);
  });

  it('validates its settings', () => {
    expect(() => validateSchedule({ name: 'constant', lr: -1, epochs: 1, stepsPerEpoch: 1 })).toThrow(/lr/);
    expect(() => validateSchedule({ name: 'exponential', lr: 1, epochs: 1, stepsPerEpoch: 1, decay: 2 })).toThrow(/decay/);
    expect(() => validateSchedule({ name: 'nope' as never, lr: 1, epochs: 1, stepsPerEpoch: 1 })).toThrow(/unknown/);
  });
});
