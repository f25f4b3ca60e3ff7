/**
 * A training run from a resolved configuration: data, split, model, run folder, resume, then the
 * loop. Problems the user can fix (unknown model, missing data, a run folder already in use) come
 * back as usage errors; everything else as a run error with one line of explanation.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import * as E from 'fp-ts/lib/Either.js';
import { getBackend, setBackend } from '../backends/backend.ts';
import { parameterCount } from '../nn/model.ts';
import { type Model, createModel, modelConfig, parseModelName } from '../nn/model.ts';
import { modelNames } from '../nn/archs.ts';
import type { ModelConfig, Params, State } from '../nn/efficientnet.ts';
import { fromTorchvisionE, formatTorchvisionKeyError } from '../nn/torchvision.ts';
import { readTensors, type Leaf } from '../io/safetensors.ts';
import { flattenWithPath, keystr, treeMapWithPath } from '../autograd/pytree.ts';
import { Tensor } from '../tensor/tensor.ts';
import { cast } from '../tensor/ops.ts';
import { type Dataset, type Item, classWeights, loadDataset, posWeight } from '../data/readers.ts';
import { type Split, readSplit, skippedRecord, splitDataset, writeSplit } from '../data/split.ts';
import { ensureSynthetic } from '../data/synthetic.ts';
import { type DataError, renderDataError } from '../data/errors.ts';
import { type TrainerState, loadCheckpoint, readTrainerState, renderCheckpointError, resolveCheckpointDir, loadWeights } from './checkpoint.ts';
import { type Key as ConfigKey, type TrainConfig, type UsageError, RESUMABLE_KEYS, flagOf, usage } from './config.ts';
import type { LossSpec } from './losses.ts';
import { Checkpointer, type LoopStart, type Outcome, initKey, optimizerFor, runLoop } from './loop.ts';
import { RunLog } from './runlog.ts';
import type { Reporter } from './report.ts';
import { readJsonFile, renderJsonFileError } from '../io/json.ts';

export interface RunError {
  readonly _tag: 'RunError';
  readonly message: string;
}
const runError = (message: string): RunError => ({ _tag: 'RunError', message });
export type TrainError = UsageError | RunError;

/** Data errors a user fixes by pointing at the right data are usage errors (exit 2). */
const dataError = (e: DataError): TrainError => usage(renderDataError(e));

// ---- model ---------------------------------------------------------------------------------------

export interface ModelSpec {
  readonly name: string;
  readonly options: Record<string, unknown>;
}

/** createModel's options from the config (without the key). */
export function modelSpecFor(cfg: Pick<TrainConfig, 'model' | 'imgSize' | 'hrSize' | 'widthMult' | 'depthMult' | 'bnMomentum' | 'headInit'>, numClasses: number): ModelSpec {
  const options: Record<string, unknown> = { numClasses };
  if (cfg.imgSize !== null) options.lowSize = cfg.imgSize;
  // A pure-stochastic model has no low-res input: --img-size sets where its backbone runs instead,
  // at the stem output a low-res model of that size has (⌈side/2⌉: 112 at the paper's 224), so the
  // variants of one run share the backbone's cost.
  if (cfg.imgSize !== null && archOf(cfg.model) === 'pure-stochastic') options.stochOutSize = Math.ceil(cfg.imgSize / 2);
  if (cfg.hrSize !== null) options.highSize = cfg.hrSize;
  if (cfg.widthMult !== null) options.widthMult = cfg.widthMult;
  if (cfg.depthMult !== null) options.depthMult = cfg.depthMult;
  if (cfg.bnMomentum !== null) options.bnMomentum = cfg.bnMomentum;
  options.headInit = cfg.headInit;
  return { name: cfg.model, options };
}

const archOf = (name: string): string | null => {
  try {
    return parseModelName(name).arch;
  } catch {
    return null;
  }
};

/** The model's config, or a usage error naming the model or the size that does not fit. */
export function checkModel(spec: ModelSpec): E.Either<UsageError, ModelConfig> {
  try {
    parseModelName(spec.name);
  } catch {
    return E.left(usage(`unknown model '${spec.name}' (${modelNames.join(', ')}, or bN with any of their suffixes)`));
  }
  try {
    return E.right(modelConfig(spec.name, spec.options));
  } catch (e) {
    return E.left(usage(`invalid model settings: ${(e as Error).message}`));
  }
}

export const isStochastic = (mc: ModelConfig): boolean => mc.stochOutSize !== null;

/** Tensors of a weights file by name, and whether they were renamed from torchvision's names (`p:`/`s:` + our name). */
interface InitSource {
  readonly tensors: ReadonlyMap<string, Leaf>;
  readonly naming: 'engine' | 'torchvision';
}

function readInitSource(file: string, mc: ModelConfig): E.Either<TrainError, InitSource> {
  const read = readTensors(file);
  if (E.isLeft(read)) return E.left(usage(`--init-weights: ${read.left.file}: ${read.left.message}`));
  const flat = read.right.tensors;
  if (![...flat.keys()].some((k) => k.startsWith('features.'))) return E.right({ tensors: flat, naming: 'engine' });
  const tv = fromTorchvisionE(mc.variant, new Map(flat));
  if (E.isLeft(tv)) return E.left(usage(`--init-weights: ${formatTorchvisionKeyError(tv.left)}`));
  const m = new Map<string, Leaf>();
  for (const [tree, prefix] of [[tv.right.params, 'p'], [tv.right.state, 's']] as const) {
    for (const [p, l] of flattenWithPath(tree)[0]) m.set(`${prefix}:${keystr(p)}`, l);
  }
  return E.right({ tensors: m, naming: 'torchvision' });
}

/** `tree` with every leaf that `src` has under a matching name and shape replaced (cast to the leaf's dtype). */
function fillByName(tree: unknown, prefix: 'p' | 's', src: InitSource): { tree: unknown; copied: number; total: number; kept: string[] } {
  const kept: string[] = [];
  let copied = 0;
  let total = 0;
  const candidates = (n: string) => (src.naming === 'torchvision' ? [`${prefix}:${n}`, `${prefix}:${n.split('.').slice(1).join('.')}`] : [n]);
  const out = treeMapWithPath((path, l) => {
    total++;
    const name = keystr(path);
    for (const c of candidates(name)) {
      const t = src.tensors.get(c);
      if (t instanceof Tensor && t.shape.length === l.shape.length && t.shape.every((d, j) => d === l.shape[j])) {
        copied++;
        return t.dtype === l.dtype ? t : cast(t, l.dtype);
      }
    }
    kept.push(name);
    return l;
  }, tree);
  return { tree: out, copied, total, kept };
}

/**
 * Initial weights from a file: a checkpoint of ours (folder or weights.safetensors) or a
 * torchvision state dict. Tensors are copied by name and shape; for two-backbone models a name is
 * also tried without its first component (`low.blocks.0…` ← `blocks.0…`), so torchvision weights
 * initialise both backbones. Returns the new trees and a line saying what was copied.
 */
export function initFromWeights(file: string, mc: ModelConfig, params: Params, state: State): E.Either<TrainError, { params: Params; state: State; note: string }> {
  if (!fs.existsSync(file)) return E.left(usage(`--init-weights: file not found: ${file}`));
  if (fs.statSync(file).isDirectory()) {
    const r = loadWeights(file, { params, state });
    if (E.isLeft(r)) return E.left(usage(`--init-weights: ${renderCheckpointError(r.left)}`));
    return E.right({ params: r.right.params as Params, state: r.right.state as State, note: `initialised every tensor from ${file}` });
  }
  const src = readInitSource(file, mc);
  if (E.isLeft(src)) return src;
  const p = fillByName(params, 'p', src.right);
  // Our own files hold parameters only; torchvision's state dicts also hold the BN statistics.
  const s = src.right.naming === 'torchvision' ? fillByName(state, 's', src.right) : { tree: state, copied: 0, total: 0, kept: [] };
  const copied = p.copied + s.copied;
  if (copied === 0) return E.left(usage(`--init-weights: no tensor of ${file} fits ${mc.name} (by name and shape)`));
  const kept = [...p.kept, ...s.kept];
  const source = src.right.naming === 'torchvision' ? 'torchvision names' : 'names of this engine';
  return E.right({
    params: p.tree as Params,
    state: s.tree as State,
    note: `initialised ${copied}/${p.total + s.total} tensors from ${file} (${source})${kept.length ? `; kept fresh: ${kept.slice(0, 4).join(', ')}${kept.length > 4 ? ', …' : ''}` : ''}`,
  });
}

// ---- run folder ----------------------------------------------------------------------------------

const stamp = () => new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');

/** The run folder: --out, or runs/<model>-<timestamp>. */
export const runFolder = (cfg: Pick<TrainConfig, 'out' | 'model'>): string => path.resolve(cfg.out ?? path.join('runs', `${cfg.model}-${stamp()}`));

function versions(): Record<string, string> {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const v: Record<string, string> = { node: process.version };
  for (const p of ['package.json', ...['sharp', 'fp-ts', 'commander', 'cli-progress', 'gpu.js', 'tsx'].map((n) => `node_modules/${n}/package.json`)]) {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(root, p), 'utf8')) as { name: string; version: string };
      v[j.name] = j.version;
    } catch {
      /* not installed */
    }
  }
  try {
    v.git = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    /* not a checkout */
  }
  return v;
}

// ---- the run -------------------------------------------------------------------------------------

export interface RunIo {
  readonly reporter: Reporter;
  readonly stopRequested: () => boolean;
  /** The flags given explicitly on the command line (to check what a resume may change). */
  readonly explicit: ReadonlySet<ConfigKey>;
  readonly argv: readonly string[];
}

export interface RunResult {
  readonly outDir: string;
  readonly outcome: Outcome;
}

async function te<A>(t: () => Promise<E.Either<DataError, A>>): Promise<E.Either<TrainError, A>> {
  return E.mapLeft(dataError)(await t());
}

/** Loads the configuration saved in a run folder and applies what may change on resume. */
export function resumeConfig(dir: string, cli: Partial<TrainConfig>, explicit: ReadonlySet<ConfigKey>): E.Either<UsageError, TrainConfig> {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return E.left(usage(`--resume: ${dir} is not a run folder (no config.json)`));
  const json = readJsonFile(file);
  if (E.isLeft(json)) return E.left(usage(`--resume: ${renderJsonFileError(json.left, 'run config')}`));
  const saved = (json.right as { config: TrainConfig }).config;
  for (const k of explicit) {
    if (RESUMABLE_KEYS.includes(k)) continue;
    if (JSON.stringify(cli[k]) !== JSON.stringify(saved[k])) {
      return E.left(usage(`${flagOf(k)} cannot be changed when resuming (the run was started with ${JSON.stringify(saved[k])}); only ${RESUMABLE_KEYS.map(flagOf).join(', ')} can`));
    }
  }
  const over = Object.fromEntries([...explicit].filter((k) => RESUMABLE_KEYS.includes(k)).map((k) => [k, cli[k]]));
  if (!resolveCheckpointDir(path.join(dir, 'last'))) return E.left(usage(`--resume: ${dir} has no checkpoint yet (last/ is missing)`));
  return E.right({ ...saved, ...over, out: dir, resume: dir });
}

/** The built-in synthetic set a run without --data trains on (generated once, then cached). */
export const syntheticSet = (cfg: Pick<TrainConfig, 'syntheticCount' | 'syntheticSize'>) => ensureSynthetic({ count: cfg.syntheticCount, size: cfg.syntheticSize });

/** Selects the backend; a gpu run's first line says what runs it (the mode and, on WebGPU, the adapter and its limits). */
async function useBackend(cfg: TrainConfig, reporter: Reporter): Promise<E.Either<TrainError, void>> {
  if (cfg.backend !== 'gpu') {
    setBackend('cpu');
    return E.right(undefined);
  }
  try {
    await import('../backends/gpu/index.ts');
    reporter.line(`backend: ${setBackend('gpu').describe!()}`);
    return E.right(undefined);
  } catch (e) {
    return E.left(runError(`--backend gpu: ${(e as Error).message.split('\n')[0]}`));
  }
}

/** The dataset: --data's folders merged (or the synthetic set), cut to --limit. */
async function loadData(cfg: TrainConfig, reporter: Reporter): Promise<E.Either<TrainError, { dirs: string[]; ds: Dataset }>> {
  let dirs = [...cfg.data];
  if (dirs.length === 0) {
    reporter.line(`data: the built-in synthetic set (${cfg.syntheticCount} images of ${cfg.syntheticSize} px; generated once, then cached)`);
    const d = await te(syntheticSet(cfg));
    if (E.isLeft(d)) return d;
    dirs = [d.right];
  }
  for (const d of dirs) if (!fs.existsSync(d)) return E.left(usage(`--data: folder not found: ${d}`));
  const ds = await te(loadDataset(dirs, { task: cfg.task, ...(cfg.format ? { format: cfg.format } : {}), ...(cfg.minResolution ? { minResolution: cfg.minResolution } : {}) }));
  if (E.isLeft(ds)) return ds;
  const limited = cfg.limit !== null && ds.right.items.length > cfg.limit ? { ...ds.right, items: ds.right.items.slice(0, cfg.limit) } : ds.right;
  return E.right({ dirs, ds: limited });
}

/** The train/validation split: read back from the run folder when resuming, else made from the seed (or --val-csv). */
async function splitFor(cfg: TrainConfig, ds: Dataset, outDir: string): Promise<E.Either<TrainError, Split>> {
  const s = cfg.resume !== null ? await te(readSplit(outDir)) : E.mapLeft(dataError)(splitDataset(ds, { valFraction: cfg.valFraction, seed: cfg.seed, ...(cfg.valCsv ? { valCsv: cfg.valCsv } : {}) }));
  if (E.isRight(s) && (s.right.train.length === 0 || s.right.val.length === 0)) {
    return E.left(usage(`data: the split left ${s.right.train.length} training and ${s.right.val.length} validation images; need both (more images or another --val-fraction)`));
  }
  return s;
}

/** What a run trains: the model (initialised, or from --init-weights), its loss, and the configuration as it will run. */
interface Setup {
  readonly run: TrainConfig;
  readonly spec: ModelSpec;
  readonly model: Model;
  readonly loss: LossSpec;
  readonly notes: readonly string[];
}

function setUp(cfg: TrainConfig, ds: Dataset, split: Split, outDir: string, reporter: Reporter): E.Either<TrainError, Setup> {
  const numClasses = cfg.task === 'binary' ? 1 : ds.classes.length;
  if (cfg.task === 'multiclass' && numClasses < 2) return E.left(usage(`--task multiclass: the data has only ${numClasses} class`));
  const spec = modelSpecFor(cfg, numClasses);
  const mcE = checkModel(spec);
  if (E.isLeft(mcE)) return mcE;
  let model = createModel(spec.name, { ...spec.options, key: initKey(cfg.seed) });
  const notes: string[] = [];
  if (cfg.initWeights && cfg.resume === null) {
    const r = initFromWeights(cfg.initWeights, model.config, model.params, model.state);
    if (E.isLeft(r)) return r;
    model = { ...model, params: r.right.params, state: r.right.state };
    notes.push(r.right.note);
  }
  let tta = cfg.tta;
  if (tta > 1 && !isStochastic(model.config)) {
    reporter.warn(`--tta ${tta}: ${model.config.name} has no stochastic layer at inference, so every pass would be the same; using 1`);
    tta = 1;
  }
  const loss: LossSpec = {
    name: cfg.loss,
    posWeight: numClasses === 1 ? (cfg.posWeight === 'auto' ? posWeight(split.train) : cfg.posWeight) : 1,
    classWeights: numClasses > 1 && cfg.posWeight === 'auto' ? classWeights(split.train, numClasses) : null,
    focalGamma: cfg.focalGamma,
    numClasses,
  };
  return E.right({ run: { ...cfg, tta, out: outDir }, spec, model, loss, notes });
}

/** Where a resumed run continues: the weights, optimizer and trainer state of its last/ checkpoint; the log cut back to match. */
function resumeStart(su: Setup, log: RunLog, ck: Checkpointer): E.Either<TrainError, LoopStart & { trainer: TrainerState }> {
  const ts = readTrainerState(ck.last);
  if (E.isLeft(ts)) return E.left(usage(`--resume: ${renderCheckpointError(ts.left)}`));
  const { params, state } = su.model;
  const loaded = loadCheckpoint(ck.last, { params, state, opt: optimizerFor(su.run).init(params) });
  if (E.isLeft(loaded)) return E.left(usage(`--resume: ${renderCheckpointError(loaded.left)}`));
  const trainer = loaded.right.trainer;
  if (trainer.epoch >= su.run.epochs) return E.left(usage(`--resume: the run already finished its ${trainer.epoch} epochs (raise --epochs to continue it)`));
  log.resumeAt(trainer.epoch, trainer.globalStep);
  return E.right({ params: loaded.right.params as Params, state: loaded.right.state as State, opt: loaded.right.opt, trainer });
}

/** A fresh run folder: old outputs removed, split.csv, config.json and the images skipped at load written. */
async function freshStart(su: Setup, io: RunIo, data: { dirs: string[]; ds: Dataset }, split: Split, log: RunLog, ck: Checkpointer): Promise<E.Either<TrainError, LoopStart>> {
  log.reset();
  ck.clear();
  const w = await te(writeSplit(log.dir, split));
  if (E.isLeft(w)) return w;
  const { ds, dirs } = data;
  const C = Math.max(2, su.loss.numClasses);
  log.writeConfig({
    config: su.run,
    command: ['npm run train --', ...io.argv].join(' '),
    model: { ...su.spec, parameters: parameterCount(su.model), config: su.model.config },
    data: {
      folders: dirs.map((d) => path.resolve(d)),
      classes: ds.classes,
      images: ds.items.length,
      train: split.train.length,
      val: split.val.length,
      trainPerClass: countBy(split.train, C),
      valPerClass: countBy(split.val, C),
      skippedAtLoad: ds.skipped.length,
      duplicates: ds.duplicates.length,
      split: 'split.csv',
    },
    loss: su.loss,
    seed: su.run.seed,
    backend: { name: getBackend().name, ...(getBackend().describe ? { describe: getBackend().describe!() } : {}) },
    versions: versions(),
    started: new Date().toISOString(),
    notes: su.notes,
  });
  log.skipped(ds.skipped.map(skippedRecord));
  return E.right({ params: su.model.params, state: su.model.state });
}

/** The lines a run opens with: what it trains, on what, how, and where it writes. */
function introLines(su: Setup, split: Split, trainer: TrainerState | undefined): string[] {
  const { run, model } = su;
  const mc = model.config;
  const sizes = `${[mc.sides.low, mc.sides.high].filter((s) => s !== null).join(' + ')} px`;
  return [
    `${trainer ? 'resuming' : 'training'} ${mc.name} (${(parameterCount(model) / 1e6).toFixed(2)} M parameters; ${sizes}) on ${split.train.length} images, validating on ${split.val.length}; ` +
      `${run.epochs} epochs, batch ${run.batchSize} (micro ${run.microBatch}), ${run.optimizer} lr ${run.lr}, ${run.schedule} schedule${run.tta > 1 ? `, TTA ${run.tta}` : ''}; backend ${getBackend().name}`,
    ...su.notes,
    ...(trainer ? [`resuming at epoch ${trainer.epoch + 1}, batch ${trainer.stepInEpoch + 1} (step ${trainer.globalStep})`] : []),
    `run folder: ${run.out}`,
  ];
}

/** A training run from a resolved configuration (see the module comment). */
export async function train(cfg: TrainConfig, io: RunIo): Promise<E.Either<TrainError, RunResult>> {
  const { reporter } = io;
  const backend = await useBackend(cfg, reporter);
  if (E.isLeft(backend)) return backend;
  // Model name and sizes first: cheap, and the most common typo.
  const pre = checkModel(modelSpecFor(cfg, cfg.task === 'binary' ? 1 : 2));
  if (E.isLeft(pre)) return pre;
  const data = await loadData(cfg, reporter);
  if (E.isLeft(data)) return data;
  const outDir = runFolder(cfg);
  if (cfg.resume === null && resolveCheckpointDir(path.join(outDir, 'last'))) {
    return E.left(usage(`--out: ${outDir} already holds a run (continue it with --resume ${outDir}, or choose another --out)`));
  }
  const split = await splitFor(cfg, data.right.ds, outDir);
  if (E.isLeft(split)) return split;
  const su = setUp(cfg, data.right.ds, split.right, outDir, reporter);
  if (E.isLeft(su)) return su;
  const log = new RunLog(outDir);
  const checkpoints = new Checkpointer(outDir, su.right.spec, cfg.seed);
  const start = cfg.resume !== null ? resumeStart(su.right, log, checkpoints) : await freshStart(su.right, io, data.right, split.right, log, checkpoints);
  if (E.isLeft(start)) return start;
  const trainer = 'trainer' in start.right ? start.right.trainer : undefined;
  for (const l of introLines(su.right, split.right, trainer)) reporter.line(l);
  const { run, model, loss } = su.right;
  const ctx = { cfg: run, mc: model.config, train: split.right.train, val: split.right.val, classes: data.right.ds.classes, loss, log, checkpoints, reporter, stopRequested: io.stopRequested };
  const outcome = await runLoop(ctx, start.right);
  if (outcome.kind === 'completed' || outcome.kind === 'early-stopped' || outcome.kind === 'interrupted') await log.plots(outcome.bestEpoch);
  return E.right({ outDir, outcome });
}

function countBy(items: readonly Item[], n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const it of items) c[it.label]++;
  return c;
}
