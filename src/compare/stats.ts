/**
 * The statistics of a comparison: per group mean, sample standard deviation and max; per group
 * against the baseline the difference of means, Welch's t-test (unequal variances; stdlib's
 * ttest2) and a percentile bootstrap 95% interval of the difference, resampled with the project's
 * counter-based random keys, so a seed gives the same interval on every machine.
 */
import ttest2 from '@stdlib/stats-ttest2';
import { foldIn, key, randint } from '../tensor/random.ts';

export interface Spread {
  readonly n: number;
  readonly mean: number;
  /** Sample standard deviation (n − 1); NaN for one value. */
  readonly sd: number;
  readonly max: number;
  readonly min: number;
}

export function spread(xs: readonly number[]): Spread {
  const n = xs.length;
  if (n === 0) return { n, mean: NaN, sd: NaN, max: NaN, min: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : NaN;
  return { n, mean, sd, max: Math.max(...xs), min: Math.min(...xs) };
}

export interface Welch {
  readonly t: number;
  readonly df: number;
  /** Two-sided p-value of "the means are equal". */
  readonly p: number;
}

/**
 * Welch's two-sample t-test of x against y. NaN when a group has fewer than two values or both
 * have no variance (the test is undefined there).
 */
export function welch(x: readonly number[], y: readonly number[]): Welch {
  const nan = { t: NaN, df: NaN, p: NaN };
  if (x.length < 2 || y.length < 2) return nan;
  const sx = spread(x);
  const sy = spread(y);
  if (sx.sd === 0 && sy.sd === 0) return nan;
  const r = ttest2([...x], [...y], { variance: 'unequal', alternative: 'two-sided' });
  return { t: r.statistic, df: r.df, p: r.pValue };
}

export interface Interval {
  readonly lo: number;
  readonly hi: number;
}

/** The q-quantile of sorted values, linear between order statistics (NumPy's default, "type 7"). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const h = (sorted.length - 1) * q;
  const i = Math.floor(h);
  return i + 1 < sorted.length ? sorted[i] + (h - i) * (sorted[i + 1] - sorted[i]) : sorted[i];
}

/**
 * Percentile bootstrap interval of mean(x) − mean(y): `reps` resamples of each group with
 * replacement (its own size), drawn from `seed` (resample r uses the key folded with r).
 */
export function bootstrapDiff(x: readonly number[], y: readonly number[], opts: { seed: number; reps?: number; level?: number }): Interval {
  const reps = opts.reps ?? 10_000;
  const level = opts.level ?? 0.95;
  if (x.length === 0 || y.length === 0) return { lo: NaN, hi: NaN };
  const root = key(opts.seed);
  const diffs = new Float64Array(reps);
  const meanOf = (xs: readonly number[], idx: Int32Array) => {
    let s = 0;
    for (let i = 0; i < idx.length; i++) s += xs[idx[i]];
    return s / idx.length;
  };
  for (let r = 0; r < reps; r++) {
    const k = foldIn(root, r);
    diffs[r] = meanOf(x, randint(foldIn(k, 0), x.length, 0, x.length)) - meanOf(y, randint(foldIn(k, 1), y.length, 0, y.length));
  }
  diffs.sort();
  return { lo: quantile(diffs, (1 - level) / 2), hi: quantile(diffs, 1 - (1 - level) / 2) };
}
