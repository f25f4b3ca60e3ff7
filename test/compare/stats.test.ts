/**
 * The comparison's statistics against values computed by hand or with SciPy
 * (scipy.stats.ttest_ind(x, y, equal_var=False), SciPy 1.17), and the bootstrap against
 * distributions small enough to enumerate.
 */
import { describe, expect, it } from 'vitest';
import { bootstrapDiff, quantile, spread, welch } from '../../src/compare/stats.ts';

describe('spread', () => {
  it('mean, sample sd (n − 1), min and max', () => {
    const s = spread([2, 4, 4, 4, 5, 5, 7, 9]);
    expect(s.mean).toBe(5);
    expect(s.sd).toBeCloseTo(Math.sqrt(32 / 7), 14);
    expect([s.min, s.max, s.n]).toEqual([2, 9, 8]);
    expect(spread([0.5]).sd).toBeNaN();
  });
});

describe("Welch's t-test", () => {
  it('matches SciPy: statistic, degrees of freedom (Welch–Satterthwaite) and two-sided p', () => {
    // By hand: se² = 1.6667/4 + 10/5 = 2.41667, t = (2.5 − 6)/√2.41667 = −2.25144.
    const a = welch([1, 2, 3, 4], [2, 4, 6, 8, 10]);
    expect(a.t).toBeCloseTo(-2.2514363231593695, 12);
    expect(a.df).toBeCloseTo(5.520787746170677, 10);
    expect(a.p).toBeCloseTo(0.06913359319239237, 10);
    const b = welch([0.95, 0.96, 0.955], [0.94, 0.945, 0.95, 0.942]);
    expect(b.t).toBeCloseTo(2.9743721946240975, 10);
    expect(b.df).toBeCloseTo(4.0455220578398725, 9);
    expect(b.p).toBeCloseTo(0.04038727062426674, 10);
  });

  it('is undefined (NaN) with fewer than two runs in a group or no variance at all', () => {
    expect(welch([1], [1, 2]).p).toBeNaN();
    expect(welch([1, 1], [2, 2]).p).toBeNaN();
  });
});

describe('bootstrap interval of a difference of means', () => {
  it('quantile interpolates between order statistics (NumPy default)', () => {
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
    expect(quantile([1, 2, 3, 4], 0.25)).toBe(1.75);
    expect(quantile([1, 2, 3, 4], 1)).toBe(4);
  });

  it('groups without spread give the difference itself', () => {
    expect(bootstrapDiff([3, 3, 3], [1, 1], { seed: 1, reps: 500 })).toEqual({ lo: 2, hi: 2 });
  });

  it('matches the enumerated bootstrap distribution', () => {
    // x = y = {0, 1}: a resample mean is 0, ½, 1 with probability ¼, ½, ¼, so the difference is
    // −1, −½, 0, ½, 1 with probability 1/16, 4/16, 6/16, 4/16, 1/16. Its 10% and 90% quantiles are
    // −½ and ½ (cumulative 5/16 ≥ 0.1 > 1/16, 15/16 ≥ 0.9 > 11/16); with 10 000 resamples the
    // empirical quantiles are ±0.024 away from the jumps, far inside those plateaus.
    expect(bootstrapDiff([0, 1], [0, 1], { seed: 7, reps: 10_000, level: 0.8 })).toEqual({ lo: -0.5, hi: 0.5 });
    // x = {0, 1} against a single 0: 2.5% and 97.5% quantiles are 0 and 1.
    expect(bootstrapDiff([0, 1], [0], { seed: 7, reps: 10_000 })).toEqual({ lo: 0, hi: 1 });
  });

  it('is reproducible from its seed and close to the normal-theory interval for larger samples', () => {
    const x = Array.from({ length: 40 }, (_, i) => 0.95 + 0.01 * Math.sin(i * 1.7));
    const y = Array.from({ length: 30 }, (_, i) => 0.945 + 0.012 * Math.cos(i * 2.3));
    const a = bootstrapDiff(x, y, { seed: 1337 });
    expect(bootstrapDiff(x, y, { seed: 1337 })).toEqual(a);
    expect(bootstrapDiff(x, y, { seed: 1338 })).not.toEqual(a);
    const sx = spread(x);
    const sy = spread(y);
    const d = sx.mean - sy.mean;
    // The bootstrap uses the plug-in (n) variance: se = √(Σ var_n / n).
    const se = Math.sqrt((sx.sd ** 2 * (x.length - 1)) / x.length ** 2 + (sy.sd ** 2 * (y.length - 1)) / y.length ** 2);
    expect(Math.abs(a.lo - (d - 1.96 * se))).toBeLessThan(0.1 * se);
    expect(Math.abs(a.hi - (d + 1.96 * se))).toBeLessThan(0.1 * se);
  });
});
