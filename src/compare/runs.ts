/**
 * Finding runs to compare and grouping them. A run is a `per_epoch.csv` (this project's run folders)
 * or a `*_per_epoch.csv` file (the seed's published results), found under the given paths. By
 * default a run's group is the folder that holds it (the experiment folder for a run folder, the
 * variant folder for a seed CSV), named by its path below the argument; with `--by KEY` a run folder
 * is grouped by that key of its config.json (`model`, `seed`, `lr`, …), while CSV files without a
 * config keep their folder.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { type EpochTable, readEpochTable, renderTableError } from './epochs.ts';
import { readJsonFile } from '../io/json.ts';

export interface RunRecord {
  /** The run folder or CSV file. */
  readonly path: string;
  readonly group: string;
  readonly table: EpochTable;
  /** The run's resolved training config (run folders), or null (CSV files). */
  readonly config: Readonly<Record<string, unknown>> | null;
}

export interface CompareError {
  readonly _tag: 'CompareError';
  readonly message: string;
}
export const compareError = (message: string): CompareError => ({ _tag: 'CompareError', message });

const RUN_CSV = /(^|_)per_epoch\.csv$/;
const natural = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

/** Every per-epoch CSV under `p` (or `p` itself), in natural name order; run folders are not descended into. */
function findCsvs(p: string): string[] {
  const st = fs.statSync(p);
  if (st.isFile()) return [p];
  const own = path.join(p, 'per_epoch.csv');
  if (fs.existsSync(own)) return [own];
  const out: string[] = [];
  for (const e of fs.readdirSync(p, { withFileTypes: true }).sort((a, b) => natural(a.name, b.name))) {
    const q = path.join(p, e.name);
    if (e.isDirectory()) out.push(...findCsvs(q));
    else if (e.isFile() && RUN_CSV.test(e.name)) out.push(q);
  }
  return out;
}

const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function readRunConfig(dir: string): Record<string, unknown> | null {
  const f = path.join(dir, 'config.json');
  const json = readJsonFile(f);
  return E.isRight(json) ? ((json.right as { config?: Record<string, unknown> } | null)?.config ?? null) : null;
}

/** The runs under `paths`, grouped by folder or by a config key. */
export function findRuns(paths: readonly string[], by: string | null): E.Either<CompareError, RunRecord[]> {
  const runs: RunRecord[] = [];
  for (const arg of paths) {
    if (!fs.existsSync(arg)) return E.left(compareError(`not found: ${arg}`));
    const root = path.resolve(arg);
    const csvs = findCsvs(root);
    if (csvs.length === 0) return E.left(compareError(`no runs in ${arg} (looked for per_epoch.csv and *_per_epoch.csv files)`));
    for (const csv of csvs) {
      const table = readEpochTable(csv);
      if (E.isLeft(table)) return E.left(compareError(renderTableError(table.left)));
      const ownFolder = path.basename(csv) === 'per_epoch.csv';
      const runPath = ownFolder ? path.dirname(csv) : csv;
      const config = ownFolder ? readRunConfig(runPath) : null;
      const holder = path.dirname(runPath);
      const rel = path.relative(root, holder);
      let group = rel === '' || rel.startsWith('..') ? path.basename(holder) : rel.split(path.sep).join('/');
      if (by && config) {
        const k = camel(by);
        if (!(k in config)) return E.left(compareError(`--by ${by}: ${runPath}/config.json has no key '${by}' (keys: ${Object.keys(config).join(', ')})`));
        const v = config[k];
        group = Array.isArray(v) ? v.map((x) => path.basename(String(x))).join('+') : String(v);
      }
      runs.push({ path: runPath, group, table: table.right, config });
    }
  }
  return E.right(runs);
}

/** Runs by group, groups in order of first appearance. */
export function groupRuns(runs: readonly RunRecord[]): Map<string, RunRecord[]> {
  const m = new Map<string, RunRecord[]>();
  for (const r of runs) m.set(r.group, [...(m.get(r.group) ?? []), r]);
  return m;
}
