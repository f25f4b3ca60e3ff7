import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  binaryMetrics,
  cohenKappa,
  midRanks,
  multiclassMetrics,
  rocAuc,
  rocCurve,
  thresholdMetrics,
  youdenThreshold,
} from '../../src/train/metrics.ts';

describe('ROC AUC', () => {
  it('matches sklearn’s documented example', () => {
    // sklearn.metrics.roc_auc_score / roc_curve docstring example.
    expect(rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])).toBeCloseTo(0.75, 15);
    const c = rocCurve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]);
    expect(c.fpr).toEqual([0, 0, 0.5, 0.5, 1]);
    expect(c.tpr).toEqual([0, 0.5, 0.5, 1, 1]);
    expect(c.thresholds).toEqual([Infinity, 0.8, 0.4, 0.35, 0.1]);
  });

  it('counts ties as one half', () => {
    expect(rocAuc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])).toBe(0.5);
    // pairs (pos, neg): (.6,.2)=1 (.6,.6)=½ (.9,.2)=1 (.9,.6)=1 → 3.5/4
    expect(rocAuc([0, 0, 1, 1], [0.2, 0.6, 0.6, 0.9])).toBe(0.875);
    expect(Array.from(midRanks([3, 1, 3, 2]))).toEqual([3.5, 1, 3.5, 2]);
  });

  it('is NaN with one class', () => {
    expect(rocAuc([1, 1], [0.2, 0.3])).toBeNaN();
  });

  it('equals the pairwise count (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 6 })), { minLength: 2, maxLength: 40 }),
        (rows) => {
          const y = rows.map((r) => r[0]);
          const s = rows.map((r) => r[1] / 6);
          let num = 0;
          let den = 0;
          for (let i = 0; i < y.length; i++) {
            for (let j = 0; j < y.length; j++) {
              if (y[i] === 1 && y[j] === 0) {
                den++;
                num += s[i] > s[j] ? 1 : s[i] === s[j] ? 0.5 : 0;
              }
            }
          }
          const auc = rocAuc(y, s);
          if (den === 0) expect(auc).toBeNaN();
          else expect(auc).toBeCloseTo(num / den, 12);
          // The trapezoid area under the curve equals the rank formula.
          if (den > 0) {
            const { fpr, tpr } = rocCurve(y, s);
            let area = 0;
            for (let i = 1; i < fpr.length; i++) area += ((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1])) / 2;
            expect(area).toBeCloseTo(auc, 12);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('rejects bad input', () => {
    expect(() => rocAuc([0, 2], [0.1, 0.2])).toThrow(/label 2/);
    expect(() => rocAuc([0, 1], [0.1])).toThrow(/2 labels but 1 scores/);
  });
});

describe('threshold metrics (hand-computed)', () => {
  const y = [1, 1, 1, 0, 0, 0, 0, 1];
  const p = [0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.5, 0.55];

  it('at 0.5', () => {
    const m = thresholdMetrics(y, p, 0.5);
    expect(m.confusion).toEqual({ tp: 3, fp: 2, tn: 2, fn: 1 });
    expect(m.accuracy).toBe(5 / 8);
    expect(m.sensitivity).toBe(3 / 4);
    expect(m.specificity).toBe(2 / 4);
    expect(m.precision).toBe(3 / 5);
    expect(m.f1).toBeCloseTo(6 / 9, 15);
    expect(m.f2).toBeCloseTo(15 / 21, 15);
    // p_o = 5/8, p_e = ½·3/8 + ½·5/8 = ½ → κ = (5/8 − ½) / ½
    expect(m.kappa).toBeCloseTo(0.25, 15);
  });

  it('at Youden’s threshold', () => {
    // J = tpr − fpr peaks at 0.5 first at the threshold 0.55.
    expect(youdenThreshold(y, p)).toBe(0.55);
    const m = binaryMetrics(y, p);
    expect(m.auc).toBe(0.75);
    expect(m.atYouden.threshold).toBe(0.55);
    expect(m.atYouden.confusion).toEqual({ tp: 3, fp: 1, tn: 3, fn: 1 });
    expect(m.atYouden.sensitivity).toBe(0.75);
    expect(m.atYouden.specificity).toBe(0.75);
    expect(m.positives).toBe(4);
  });

  it('F-scores are 0 and κ NaN where undefined', () => {
    const m = thresholdMetrics([0, 0], [0.1, 0.2], 0.5);
    expect(m.f1).toBe(0);
    expect(m.sensitivity).toBeNaN();
    expect(m.kappa).toBeNaN();
  });

  it('κ of sklearn’s cohen_kappa_score cases', () => {
    // Perfect agreement and chance-level agreement.
    expect(cohenKappa([[3, 0], [0, 5]])).toBe(1);
    expect(cohenKappa([[1, 1], [1, 1]])).toBe(0);
  });
});

describe('multi-class metrics (hand-computed)', () => {
  it('one-vs-rest AUC, macro, balanced accuracy, κ', () => {
    const labels = [0, 1, 2, 2, 1, 0];
    const probs = [0.7, 0.2, 0.1, 0.3, 0.4, 0.3, 0.2, 0.3, 0.5, 0.1, 0.6, 0.3, 0.5, 0.3, 0.2, 0.6, 0.3, 0.1];
    const m = multiclassMetrics(labels, probs, 3);
    expect(m.confusion).toEqual([
      [2, 0, 0],
      [1, 1, 0],
      [0, 1, 1],
    ]);
    expect(m.aucPerClass[0]).toBe(1);
    expect(m.aucPerClass[1]).toBe(5 / 8);
    expect(m.aucPerClass[2]).toBe(7.5 / 8);
    expect(m.macroAuc).toBeCloseTo((1 + 0.625 + 0.9375) / 3, 15);
    expect(m.accuracy).toBeCloseTo(4 / 6, 15);
    expect(m.balancedAccuracy).toBeCloseTo(2 / 3, 15);
    expect(m.kappa).toBeCloseTo(0.5, 15);
  });

  it('balanced accuracy of sklearn’s docstring example is 0.625', () => {
    const yTrue = [0, 1, 0, 0, 1, 0];
    const yPred = [0, 1, 0, 0, 0, 1];
    const probs = yPred.flatMap((c) => (c === 0 ? [1, 0] : [0, 1]));
    expect(multiclassMetrics(yTrue, probs, 2).balancedAccuracy).toBe(0.625);
  });
});
