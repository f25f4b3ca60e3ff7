/**
 * A comparison of groups of runs: the numbers (per group and against the baseline), and their
 * renderings — comparison.md, comparison.csv and one spread plot per metric (the mean over runs per
 * epoch with a min–max band, groups overlaid, like the seed's results-analysis figures).
 */
import * as path from 'node:path';
import { csvText } from '../data/csv.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { lineChartSvg, writePng } from '../train/plots.ts';
import { aucSummary } from './epochs.ts';
import type { RunRecord } from './runs.ts';
import { type Interval, type Spread, type Welch, bootstrapDiff, spread, welch } from './stats.ts';

export interface VsBaseline {
  readonly diff: number;
  readonly welch: Welch;
  readonly ci: Interval;
}

export interface GroupRow {
  readonly group: string;
  readonly runs: readonly RunRecord[];
  readonly epochs: Spread;
  readonly best: Spread;
  readonly last: Spread;
  /** null for the baseline itself. */
  readonly bestVs: VsBaseline | null;
  readonly lastVs: VsBaseline | null;
}

export interface Comparison {
  readonly baseline: string;
  readonly seed: number;
  readonly reps: number;
  readonly rows: readonly GroupRow[];
}

export function compareGroups(groups: ReadonlyMap<string, readonly RunRecord[]>, baseline: string, opts: { seed: number; reps: number }): Comparison {
  const metric = (rs: readonly RunRecord[]) => {
    const s = rs.map((r) => aucSummary(r.table));
    return { best: s.map((x) => x.bestAuc), last: s.map((x) => x.lastAuc), epochs: s.map((x) => x.epochs) };
  };
  const base = metric(groups.get(baseline)!);
  const vs = (x: readonly number[], y: readonly number[]): VsBaseline => ({
    diff: spread(x).mean - spread(y).mean,
    welch: welch(x, y),
    ci: bootstrapDiff(x, y, opts),
  });
  const rows = [...groups].map(([group, runs]): GroupRow => {
    const m = metric(runs);
    const isBase = group === baseline;
    return {
      group,
      runs,
      epochs: spread(m.epochs),
      best: spread(m.best),
      last: spread(m.last),
      bestVs: isBase ? null : vs(m.best, base.best),
      lastVs: isBase ? null : vs(m.last, base.last),
    };
  });
  return { baseline, seed: opts.seed, reps: opts.reps, rows };
}

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const sgn = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(4)}` : 'n/a');
const pv = (p: number) => (!Number.isFinite(p) ? 'n/a' : p < 1e-3 ? p.toExponential(1) : p.toFixed(4));
const ci = (c: Interval) => (Number.isFinite(c.lo) ? `[${sgn(c.lo)}, ${sgn(c.hi)}]` : 'n/a');
const ms = (s: Spread) => `${f4(s.mean)} ± ${f4(s.sd)}`;
const epochRange = (s: Spread) => (s.min === s.max ? String(s.max) : `${s.min}–${s.max}`);

/** The markdown table (also what the CLI prints). */
export function comparisonMarkdown(c: Comparison): string {
  const lines = [
    `Best validation AUC = the best epoch of each run; last = its last epoch. Mean ± sample sd over runs. ` +
      `Δ = group mean − baseline mean (${c.baseline}); p = Welch's t-test, two-sided; 95% CI = percentile bootstrap of Δ (${c.reps} resamples, seed ${c.seed}).`,
    '',
    '| group | runs | epochs | best val AUC | max | last-epoch AUC | max | Δ best | p (best) | 95% CI (best) | Δ last | p (last) | 95% CI (last) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of c.rows) {
    const v = (x: VsBaseline | null) => (x ? [sgn(x.diff), pv(x.welch.p), ci(x.ci)] : ['baseline', '', '']);
    lines.push(`| ${[r.group, r.best.n, epochRange(r.epochs), ms(r.best), f4(r.best.max), ms(r.last), f4(r.last.max), ...v(r.bestVs), ...v(r.lastVs)].join(' | ')} |`);
  }
  return `${lines.join('\n')}\n`;
}

export function comparisonCsv(c: Comparison): string {
  const header = [
    'group', 'runs', 'epochs_min', 'epochs_max',
    'best_mean', 'best_sd', 'best_max', 'last_mean', 'last_sd', 'last_max',
    'baseline', 'best_diff', 'best_t', 'best_df', 'best_p', 'best_ci_lo', 'best_ci_hi',
    'last_diff', 'last_t', 'last_df', 'last_p', 'last_ci_lo', 'last_ci_hi',
  ];
  const vs = (x: VsBaseline | null) => (x ? [x.diff, x.welch.t, x.welch.df, x.welch.p, x.ci.lo, x.ci.hi] : ['', '', '', '', '', '']);
  const rows = c.rows.map((r) => [r.group, r.best.n, r.epochs.min, r.epochs.max, r.best.mean, r.best.sd, r.best.max, r.last.mean, r.last.sd, r.last.max, c.baseline, ...vs(r.bestVs), ...vs(r.lastVs)]);
  return csvText([header, ...rows]);
}

/** Up to ten groups get distinct colours (matplotlib's tab10, the seed's plotting default). */
const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export const SPREAD_METRICS = [
  { column: 'Val RoC', file: 'spread_val_auc.png', title: 'Validation ROC AUC', y: 'ROC AUC' },
  { column: 'Train RoC', file: 'spread_train_auc.png', title: 'Training ROC AUC', y: 'ROC AUC' },
  { column: 'Val Loss', file: 'spread_val_loss.png', title: 'Validation loss', y: 'Loss (per image)' },
  { column: 'Train Loss', file: 'spread_train_loss.png', title: 'Training loss', y: 'Loss (per image)' },
] as const;

/** Mean, min and max over runs at each epoch any run reached (runs of different lengths allowed). */
export function perEpochSpread(runs: readonly RunRecord[], column: string): { epochs: number[]; mean: number[]; min: number[]; max: number[] } {
  const at = new Map<number, number[]>();
  for (const r of runs) {
    const ys = r.table.columns.get(column)!;
    r.table.epochs.forEach((e, i) => at.set(e, [...(at.get(e) ?? []), ys[i]]));
  }
  const epochs = [...at.keys()].sort((a, b) => a - b);
  const s = epochs.map((e) => spread(at.get(e)!));
  return { epochs, mean: s.map((x) => x.mean), min: s.map((x) => x.min), max: s.map((x) => x.max) };
}

export function spreadSvg(c: Comparison, metric: (typeof SPREAD_METRICS)[number]): string {
  return lineChartSvg({
    title: `${metric.title} per epoch: mean over runs, band min–max`,
    xLabel: 'Epoch',
    yLabel: metric.y,
    integerX: true,
    width: 1000,
    height: 600,
    series: c.rows.map((r, i) => {
      const s = perEpochSpread(r.runs, metric.column);
      return { name: `${r.group} (n=${r.best.n})`, xs: s.epochs, ys: s.mean, band: { lo: s.min, hi: s.max }, color: PALETTE[i % PALETTE.length], markers: s.epochs.length <= 20 };
    }),
  });
}

/** Writes comparison.md, comparison.csv and the spread plots into `dir`; returns the files. */
export async function writeComparison(dir: string, c: Comparison, header: string): Promise<string[]> {
  const files = [path.join(dir, 'comparison.md'), path.join(dir, 'comparison.csv')];
  writeFileAtomic(files[0], `${header}\n\n${comparisonMarkdown(c)}`);
  writeFileAtomic(files[1], comparisonCsv(c));
  for (const m of SPREAD_METRICS) {
    const f = path.join(dir, m.file);
    await writePng(f, spreadSvg(c, m));
    files.push(f);
  }
  return files;
}
