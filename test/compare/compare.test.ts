/**
 * npm run compare: reading the seed's per-epoch CSVs with their quirks (committed fixtures in the
 * same format, and the real files in ../shared when present), this project's run folders grouped
 * by a config key, the written outputs, and the paper's table reproduced from the seed's results.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { readEpochTable } from '../../src/compare/epochs.ts';
import { findRuns, groupRuns } from '../../src/compare/runs.ts';
import { compareGroups } from '../../src/compare/report.ts';
import { main as compareMain } from '../../src/compare/cli.ts';
import { runCli } from '../helpers/cli.ts';

const FIX = path.resolve(__dirname, '../fixtures/seed-results');
const SEED = path.resolve(__dirname, '../../../shared/data/seed-results');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const right = <A>(e: E.Either<{ message: string } | { file: string; message: string }, A>): A => {
  if (E.isLeft(e)) throw new Error(JSON.stringify(e.left));
  return e.right;
};

const run = (args: string[]) => runCli(compareMain, args);

describe('per-epoch tables', () => {
  it("undoes the seed's quirks: index column, placeholder row of zeros, epochs from 0", () => {
    const t = right(readEpochTable(path.join(FIX, 'B0/base/base1_per_epoch.csv')));
    expect(t.quirks).toEqual(['index column', 'placeholder row', 'epochs from 0']);
    expect(t.epochs).toEqual([1, 2, 3]);
    expect(t.columns.get('Val RoC')).toEqual([0.85, 0.9, 0.88]);
    expect(t.columns.get('Train Loss')).toEqual([0.004, 0.003, 0.0031]);
  });

  it("reads this project's per_epoch.csv as is (extra columns kept)", () => {
    const f = path.join(tmp, 'per_epoch.csv');
    fs.writeFileSync(f, 'Epoch,Train Loss,Val Loss,Train RoC,Val RoC,Val Accuracy,LR\n1,0.7,0.69,0.55,0.6,0.5,0.001\n2,0.6,0.65,0.7,0.75,0.6,0.001\n');
    const t = right(readEpochTable(f));
    expect(t.quirks).toEqual([]);
    expect(t.epochs).toEqual([1, 2]);
    expect(t.columns.get('LR')).toEqual([0.001, 0.001]);
  });

  it('names the file, line and column of a bad table', () => {
    const f = path.join(tmp, 'bad_per_epoch.csv');
    fs.writeFileSync(f, 'Epoch,Train Loss,Val Loss,Train RoC\n1,2,3,4\n');
    expect(E.isLeft(readEpochTable(f)) && readEpochTable(f)).toMatchObject({ left: { file: f, message: expect.stringMatching(/missing column 'Val RoC'/) } });
    fs.writeFileSync(f, 'Epoch,Train Loss,Val Loss,Train RoC,Val RoC\n1,0.5,0.5,0.7,x\n');
    expect(readEpochTable(f)).toMatchObject({ left: { message: "line 2, column 'Val RoC': not a number: 'x'" } });
  });
});

describe('comparison of the fixture groups (hand-computed)', () => {
  it('groups by folder; best and last AUC per group; Welch p-values as SciPy computes them', () => {
    const runs = right(findRuns([FIX], null));
    const groups = groupRuns(runs);
    expect([...groups.keys()]).toEqual(['B0/base', 'B0/full split']);
    const c = compareGroups(groups, 'B0/base', { seed: 1, reps: 2000 });
    const [base, fs_] = c.rows;
    // base: best 0.90 and 0.87, last 0.88 and 0.87; full split: best 0.93 and 0.94, last 0.92 and 0.94 (a 2-epoch run).
    expect(base.best.mean).toBeCloseTo(0.885, 12);
    expect(base.best.sd).toBeCloseTo(Math.SQRT2 * 0.015, 12);
    expect(base.best.max).toBe(0.9);
    expect(base.last.mean).toBeCloseTo(0.875, 12);
    expect([fs_.epochs.min, fs_.epochs.max]).toEqual([2, 3]);
    expect(fs_.bestVs!.diff).toBeCloseTo(0.05, 12);
    expect(fs_.bestVs!.welch.p).toBeCloseTo(0.15775809687741643, 9); // scipy.stats.ttest_ind([.93,.94],[.90,.87],equal_var=False)
    expect(fs_.bestVs!.welch.df).toBeCloseTo(1.2195121951219465, 9);
    expect(fs_.lastVs!.diff).toBeCloseTo(0.055, 12);
    expect(fs_.lastVs!.welch.p).toBeCloseTo(0.06928617334395255, 9);
    // Two values per group: the resampled difference lies between the extreme combinations.
    expect(fs_.bestVs!.ci.lo).toBeGreaterThanOrEqual(0.93 - 0.9 - 1e-12);
    expect(fs_.bestVs!.ci.hi).toBeLessThanOrEqual(0.94 - 0.87 + 1e-12);
    expect(base.bestVs).toBeNull();
  });

  it('the CLI writes comparison.md, comparison.csv and PNG spread plots; bad arguments are usage errors', async () => {
    const out = path.join(tmp, 'cmp');
    const r = await run([FIX, '--baseline', 'B0/base', '--out', out, '--reps', '1000']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\| B0\/full split \| 2 \| 2–3 \| 0\.9350 ± 0\.0071 \| 0\.9400 \| 0\.9300 ± 0\.0141 \| 0\.9400 \| \+0\.0500 \| 0\.1578 \|/);
    for (const f of ['comparison.md', 'comparison.csv', 'spread_val_auc.png', 'spread_train_auc.png', 'spread_val_loss.png', 'spread_train_loss.png']) {
      expect(fs.existsSync(path.join(out, f)), f).toBe(true);
    }
    expect(fs.readFileSync(path.join(out, 'spread_val_auc.png')).subarray(1, 4).toString()).toBe('PNG');
    const csv = fs.readFileSync(path.join(out, 'comparison.csv'), 'utf8').trim().split('\n');
    expect(csv[0].split(',').slice(0, 5)).toEqual(['group', 'runs', 'epochs_min', 'epochs_max', 'best_mean']);
    expect(csv[2].startsWith('B0/full split,2,2,3,0.935')).toBe(true);
    const bad = await run([FIX, '--baseline', 'B9', '--out', out]);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--baseline: no group 'B9' \(groups: B0\/base, B0\/full split\)/);
    expect((await run(['/nonexistent/runs'])).err).toMatch(/not found: \/nonexistent\/runs/);
  });

  it('groups run folders by a key of their config.json (--by model)', () => {
    const exp = path.join(tmp, 'exp');
    const runDir = (name: string, model: string, aucs: number[]) => {
      const d = path.join(exp, name);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ config: { model, seed: 1 } }));
      fs.writeFileSync(path.join(d, 'per_epoch.csv'), ['Epoch,Train Loss,Val Loss,Train RoC,Val RoC', ...aucs.map((a, i) => `${i + 1},0.6,0.6,0.6,${a}`)].join('\n') + '\n');
    };
    runDir('b0_seed-1', 'b0', [0.6, 0.7]);
    runDir('b0_seed-2', 'b0', [0.65, 0.6]);
    runDir('b0-full-split_seed-1', 'b0-full-split', [0.8, 0.9]);
    const byFolder = groupRuns(right(findRuns([exp], null)));
    expect([...byFolder.keys()]).toEqual(['exp']);
    const byModel = groupRuns(right(findRuns([exp], 'model')));
    expect(new Map([...byModel].map(([k, v]) => [k, v.length]))).toEqual(new Map([['b0', 2], ['b0-full-split', 1]]));
    expect(findRuns([exp], 'optimizer')).toMatchObject({ left: { message: expect.stringMatching(/--by optimizer: .*config.json has no key 'optimizer'/) } });
  });
});

describe('the seed paper\'s published results (../shared/data/seed-results)', () => {
  const here = fs.existsSync(path.join(SEED, 'B0', 'base'));
  it.skipIf(!here)(`reproduce the paper's table and give full split vs B0 a p-value${here ? '' : ' (skipped: ../shared/data/seed-results is absent)'}`, () => {
    const groups = groupRuns(right(findRuns([SEED], null)));
    const c = compareGroups(groups, 'B0/base', { seed: 1337, reps: 2000 });
    const row = (g: string) => c.rows.find((r) => r.group === g)!;
    // PAPER.md, "Results": runs, mean best validation AUC, max.
    const paper: [string, number, number, number][] = [
      ['B0/base', 14, 0.9566, 0.9584],
      ['B0/base 64 input channels', 5, 0.9576, 0.9589],
      ['B0/stochastic stem', 6, 0.9555, 0.9592],
      ['B0/stochastic skip', 5, 0.9561, 0.957],
      ['B0/full split', 8, 0.9586, 0.9594],
      ['B0/full split tta', 3, 0.9586, 0.9605],
      ['B4/base', 5, 0.9565, 0.9588],
      ['B4/stochastic_stem', 5, 0.9543, 0.9554],
    ];
    for (const [g, n, mean, max] of paper) {
      expect([g, row(g).best.n, row(g).best.mean.toFixed(4), row(g).best.max.toFixed(4)]).toEqual([g, n, mean.toFixed(4), max.toFixed(4)]);
    }
    expect(row('B0/stochastic stem').epochs.min).toBe(50);
    // scipy.stats.ttest_ind(full split, base, equal_var=False): t 4.8809, df 18.17, p 1.1715e-4.
    const fs_ = row('B0/full split').bestVs!;
    expect(fs_.welch.t).toBeCloseTo(4.880861420395182, 8);
    expect(fs_.welch.p).toBeCloseTo(0.00011715121196327693, 9);
    expect(fs_.ci.lo).toBeGreaterThan(0);
  });
});
