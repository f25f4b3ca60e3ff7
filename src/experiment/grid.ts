/**
 * An experiment file: a base training config plus axes to vary, expanded into one cell (one run of
 * the trainer) per combination. The keys are those of `npm run train -- --config`, validated by the
 * same table (src/train/config.ts), so a typo is caught before any run starts. Cells get stable,
 * readable names from their axis values, so a restarted experiment finds its runs again.
 *
 *   { "name": "demo", "base": { "epochs": 8, "imgSize": 64 },
 *     "grid": { "model": ["b0", "b0-full-split"], "seed": [1, 2, 3] } }
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from 'fp-ts/lib/Either.js';
import { type Key, type TrainConfig, type UsageError, parseConfigEntry, resolveConfig, usage } from '../train/config.ts';
import { checkModel, modelSpecFor } from '../train/run.ts';
import type { CellJob } from './cell.ts';
import { readJsonFile, renderJsonFileError } from '../io/json.ts';

export interface ExperimentSpec {
  readonly name: string;
  readonly description: string | null;
  /** Where the spec came from (a file or `preset NAME`), for messages and the log. */
  readonly source: string;
  /** Base config as given (JSON values, paths made absolute). */
  readonly base: Readonly<Record<string, unknown>>;
  /** Axes in file order: config key (as written) → values. */
  readonly grid: Readonly<Record<string, readonly unknown[]>>;
}

export interface Cell {
  /** Stable name, also the run folder's name inside the experiment folder. */
  readonly name: string;
  /** The axis values of this cell (keys as written in the file). */
  readonly axes: Readonly<Record<string, unknown>>;
  /** The run's config file contents: base ⊕ axis values. */
  readonly config: Readonly<Record<string, unknown>>;
}

/** Keys the experiment sets itself for every run. */
const RESERVED = new Set<Key>(['out', 'resume', 'config', 'quiet']);
/** Keys holding paths: made absolute, so workers with another working directory find them. */
const PATH_KEYS = new Set<Key>(['data', 'valCsv', 'initWeights']);
const TOP_KEYS = ['name', 'description', 'base', 'grid'];

export const PRESET_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../experiments');

/** The committed presets (experiments/*.json), by name. */
export function presetNames(): string[] {
  if (!fs.existsSync(PRESET_DIR)) return [];
  return fs.readdirSync(PRESET_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

export function presetFile(name: string): E.Either<UsageError, string> {
  const names = presetNames();
  if (!names.includes(name)) return E.left(usage(`unknown preset '${name}' (committed presets: ${names.join(', ') || 'none'})`));
  return E.right(path.join(PRESET_DIR, `${name}.json`));
}

/** Reads an experiment file; `source` defaults to the file name. */
export function readExperimentFile(file: string, source = file): E.Either<UsageError, ExperimentSpec> {
  const json = readJsonFile(file);
  if (E.isLeft(json)) return E.left(usage(renderJsonFileError(json.left, 'experiment file')));
  return parseExperiment(json.right, source, path.basename(file).replace(/\.json$/, ''));
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validates an experiment object: every key of base and grid, every axis value, every cell's config. */
export function parseExperiment(json: unknown, source: string, defaultName: string, cwd = process.cwd()): E.Either<UsageError, ExperimentSpec> {
  const bad = (m: string) => E.left(usage(`${source}: ${m}`));
  if (!isObject(json)) return bad('must hold a JSON object with "base" and "grid"');
  for (const k of Object.keys(json)) if (!TOP_KEYS.includes(k)) return bad(`unknown key '${k}' (expected ${TOP_KEYS.join(', ')})`);
  const name = json.name ?? defaultName;
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) return bad(`"name" must be a string of letters, digits, '.', '_' or '-'`);
  const description = json.description ?? null;
  if (description !== null && typeof description !== 'string') return bad(`"description" must be a string`);
  const baseIn = json.base ?? {};
  if (!isObject(baseIn)) return bad(`"base" must be an object of config keys`);
  if (!isObject(json.grid)) return bad(`"grid" must be an object mapping config keys to lists of values`);

  const canonical = new Map<Key, string>();
  const check = (k: string, v: unknown, where: string): E.Either<UsageError, Key> => {
    const r = parseConfigEntry(k, v, `${source} (${where})`);
    if (E.isLeft(r)) return r;
    const key = r.right[0];
    if (RESERVED.has(key)) return E.left(usage(`${source}: '${k}' in ${where} is set by the experiment for each run and cannot be given`));
    return E.right(key);
  };
  const absPaths = (key: Key, v: unknown): unknown =>
    !PATH_KEYS.has(key) || v === null ? v : Array.isArray(v) ? v.map((p) => path.resolve(cwd, String(p))) : path.resolve(cwd, String(v));

  const base: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(baseIn)) {
    const key = check(k, v, `base.${k}`);
    if (E.isLeft(key)) return key;
    if (canonical.has(key.right)) return bad(`'${k}' is given twice in base`);
    canonical.set(key.right, `base.${k}`);
    base[k] = absPaths(key.right, v);
  }
  const grid: Record<string, unknown[]> = {};
  for (const [k, vs] of Object.entries(json.grid)) {
    if (!Array.isArray(vs)) return bad(`grid.${k} must be a list of values`);
    if (vs.length === 0) return bad(`grid.${k} is empty (an axis needs at least one value)`);
    const keys = vs.map((v, i) => check(k, v, `grid.${k}[${i}]`));
    for (const r of keys) if (E.isLeft(r)) return r;
    const key = (keys[0] as E.Right<Key>).right;
    if (canonical.has(key)) return bad(`grid.${k} sets '${key}', which ${canonical.get(key)} already sets`);
    canonical.set(key, `grid.${k}`);
    const seen = new Set(vs.map((v) => JSON.stringify(v)));
    if (seen.size !== vs.length) return bad(`grid.${k} lists a value twice`);
    grid[k] = vs.map((v) => absPaths(key, v));
  }
  if (Object.keys(grid).length === 0) return bad(`"grid" has no axes`);
  const spec: ExperimentSpec = { name, description, source, base, grid };
  const cells = expandGrid(spec);
  if (E.isLeft(cells)) return cells;
  return E.right(spec);
}

/** Part of a run name for one value: file-name-safe, paths shortened to their last component. */
function slug(v: unknown): string {
  if (Array.isArray(v)) return v.map(slug).join('+');
  const s = typeof v === 'string' && v.includes('/') ? path.basename(v) : String(v);
  return s.replace(/[^A-Za-z0-9.+-]+/g, '-');
}

/** The cell's name: `value` for the model axis, `key-value` for the others, in axis order, joined by `_`. */
export function cellName(axes: Readonly<Record<string, unknown>>): string {
  return Object.entries(axes)
    .map(([k, v]) => (k === 'model' ? slug(v) : `${k}-${slug(v)}`))
    .join('_');
}

/**
 * Every combination of the axes, each validated as a full training config (an error names the cell
 * and the problem). The last axis varies slowest, so with `{model: […], seed: […]}` every model's
 * first seed runs before any second seed: an experiment cut short still compares all variants.
 */
export function expandGrid(spec: ExperimentSpec): E.Either<UsageError, Cell[]> {
  let combos: Record<string, unknown>[] = [{}];
  for (const [k, vs] of Object.entries(spec.grid)) combos = vs.flatMap((v) => combos.map((c) => ({ ...c, [k]: v })));
  const cells: Cell[] = [];
  const names = new Map<string, Record<string, unknown>>();
  for (const axes of combos) {
    const name = cellName(axes);
    const other = names.get(name);
    if (other) return E.left(usage(`${spec.source}: cells ${JSON.stringify(other)} and ${JSON.stringify(axes)} get the same run name '${name}'; make the values distinct`));
    names.set(name, axes);
    const config = { ...spec.base, ...axes };
    const r = checkCell(config);
    if (E.isLeft(r)) return E.left(usage(`${spec.source}: run ${name}: ${r.left.message}`));
    cells.push({ name, axes, config });
  }
  return E.right(cells);
}

/** The cell's config as the trainer will resolve it, and its model (name and sizes) checked. */
function checkCell(config: Record<string, unknown>): E.Either<UsageError, TrainConfig> {
  const parsed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    const r = parseConfigEntry(k, v, 'the run config');
    if (E.isLeft(r)) return r;
    parsed[r.right[0]] = r.right[1];
  }
  const cfg = resolveConfig(parsed as Partial<TrainConfig>);
  if (E.isLeft(cfg)) return cfg;
  const m = checkModel(modelSpecFor(cfg.right, cfg.right.task === 'binary' ? 1 : 2));
  return E.isLeft(m) ? m : cfg;
}

/** The number of epochs and the patience a cell's run is configured with (to tell when it is complete). */
export function cellPlan(config: Readonly<Record<string, unknown>>): { epochs: number; patience: number | null } {
  const cfg = checkCell({ ...config });
  if (E.isLeft(cfg)) throw new Error(cfg.left.message);
  return { epochs: cfg.right.epochs, patience: cfg.right.patience };
}

/** The cells as jobs for a runner: absolute run folders inside the experiment folder `dir`. */
export function cellJobs(spec: ExperimentSpec, cells: readonly Cell[], dir: string): CellJob[] {
  return cells.map((c) => ({ experiment: spec.name, name: c.name, dir: path.resolve(dir, c.name), config: c.config, ...cellPlan(c.config) }));
}
