/**
 * `npm run compare -- DIR… [--by KEY] [--baseline NAME] [--out DIR]`: groups runs (this project's
 * run folders and the seed's per-epoch CSVs), prints per group the spread of the best and the
 * last-epoch validation AUC and each group's difference from the baseline with a Welch p-value and
 * a bootstrap interval, and writes comparison.md, comparison.csv and spread plots.
 * Exit codes: 0 done, 2 usage error (a missing folder, a file that is not a per-epoch table, …).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { EXIT, runIfMain, usageExit } from '../cli/program.ts';
import { commandMain, defineCommand, int, str } from '../cli/options.ts';
import { OUT, SEED } from '../cli/shared.ts';
import { LOG_FILE } from '../experiment/log.ts';
import { findRuns, groupRuns } from './runs.ts';
import { compareGroups, comparisonMarkdown, writeComparison } from './report.ts';

const HELP = `
Runs: every per_epoch.csv (a run folder of npm run train or npm run experiment) and every
*_per_epoch.csv (the seed paper's published results, read with their quirks: an unnamed index
column, a first row of zeros, epochs from 0) under the given folders.
Groups: by default the folder holding the runs (an experiment folder; a seed variant folder such
as B0/full split); --by KEY groups run folders by a key of their config.json (model, seed, lr, …).
The baseline is the first group unless --baseline names one.

Examples:
  npm run compare -- ../shared/data/seed-results/B0 --baseline base
  npm run compare -- runs/thesis-synthetic --by model --baseline b0
  npm run compare -- runs/isic-sample --by model --out runs/isic-comparison`;

const stamp = () => new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');

export const COMPARE_COMMAND = defineCommand({
  name: 'compare',
  description: 'Compare groups of training runs: spread of the validation AUC, Welch t-tests and bootstrap intervals against a baseline, plots.',
  args: [['<dirs...>', 'run folders, experiment folders, or folders of per-epoch CSVs']],
  after: HELP,
  options: {
    by: { flags: '--by <key>', help: 'group run folders by this key of their config.json', parse: str, default: null, derived: 'by folder' },
    baseline: { flags: '--baseline <name>', help: 'the group the others are compared with', parse: str, default: null, derived: 'the first' },
    out: { ...OUT, derived: 'DIR/comparison for one experiment folder, else runs/comparison-<time>' },
    seed: { ...SEED, help: 'seed of the bootstrap resampling', default: 1337 },
    reps: { flags: '--reps <n>', help: 'bootstrap resamples', parse: int(100), default: 10000 },
  },
});

export const main = commandMain(COMPARE_COMMAND, async (parsed, argv) => {
  const o = parsed.values;
  const dirs = parsed.args;
  const runs = findRuns(dirs, o.by);
  if (E.isLeft(runs)) return usageExit(runs.left.message);
  const groups = groupRuns(runs.right);
  const baseline = o.baseline ?? [...groups.keys()][0];
  if (!groups.has(baseline)) return usageExit(`--baseline: no group '${baseline}' (groups: ${[...groups.keys()].join(', ')})`);
  const c = compareGroups(groups, baseline, { seed: o.seed, reps: o.reps });

  const oneExperiment = dirs.length === 1 && fs.existsSync(path.join(dirs[0], LOG_FILE));
  const out = path.resolve(o.out ?? (oneExperiment ? path.join(dirs[0], 'comparison') : path.join('runs', `comparison-${stamp()}`)));
  fs.mkdirSync(out, { recursive: true });
  const header = `# Comparison of ${runs.right.length} runs in ${groups.size} groups\n\nnpm run compare -- ${argv.join(' ')}\n\nSources: ${dirs.map((d) => path.resolve(d)).join(', ')}`;
  const files = await writeComparison(out, c, header);
  process.stdout.write(`${runs.right.length} runs in ${groups.size} groups${o.by ? ` (by ${o.by})` : ' (by folder)'}; baseline ${baseline}\n\n`);
  process.stdout.write(comparisonMarkdown(c));
  process.stdout.write(`\nwrote ${files.map((f) => path.relative(process.cwd(), f)).join(', ')}\n`);
  return EXIT.ok;
});

runIfMain(import.meta.url, main, 'compare');
