/**
 * A training run from a resolved configuration: data, split, model, run folder, resume, then the
 * loop. Problems the user can fix (unknown model, missing data, a run folder already in use) come
 * back as usage errors; everything else as a run error with one line of explanation.
 */
import '../index.ts'; // registers the primitives and backends
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import * as E from 'fp-ts/lib/Either.js';
import { getBackend, setBackend } from '../backends/backend.ts';
import { parameterCount } from '../nn/model.ts';
import { createModel, modelConfig, parseModelName } from '../nn/model.ts';
import type { ModelConfig, Params, State } from '../nn/efficientnet.ts';
import { fromTorchvisionE, formatTorchvisionKeyError } from '../nn/torchvision.ts';
import { readSafetensorsE, type Leaf } from '../io/safetensors.ts';
import { flatten, unflatten } from '../autograd/pytree.ts';
import { Tensor } from '../tensor/tensor.ts';
import { cast } from '../tensor/ops.ts';
import { type Dataset, type Item, classWeights, loadDataset, posWeight } from '../data/readers.ts';
import { type Split, readSplit, splitDataset, writeSplit } from '../data/split.ts';
import { ensureSynthetic } from '../data/synthetic.ts';
import { type DataError, renderDataError } from '../data/errors.ts';
import { type TrainerState, loadCheckpoint, readTrainerState, renderCheckpointError, resolveCheckpointDir, leafNames, loadWeights } from './checkpoint.ts';
import { type Key as ConfigKey, type TrainConfig, type UsageError, RESUMABLE_KEYS, flagOf, usage } from './config.ts';
import type { LossSpec } from './losses.ts';
import { type LoopStart, type Outcome, initKey, optimizerFor, runLoop } from './loop.ts';
import { RunFiles, writePlots } from './outputs.ts';
import type { Reporter } from './report.ts';

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
    return E.left(usage(`unknown model '${spec.name}' (b0…b7, b0-64, b0-stochastic-stem, b4-stochastic-stem, b0-stochastic-skip, b0-full-split, b4-full-split, b0-pure-stochastic)`));
  }
  try {
    return E.right(modelConfig(spec.name, spec.options));
  } catch (e) {
    return E.left(usage(`invalid model settings: ${(e as Error).message}`));
  }
}

export const isStochastic = (mc: ModelConfig): boolean => mc.stochOutSize !== null;

/**
 * Initial weights from a file: a checkpoint of ours (folder or weights.safetensors) or a
 * torchvision state dict. Tensors are copied by name and shape; for two-backbone models a name is
 * also tried without its first component (`low.blocks.0…` ← `blocks.0…`), so torchvision weights
 * initialise both backbones. Returns the new trees and a line saying what was copied.
 */
export function initFromWeights(
  file: string,
  mc: ModelConfig,
  params: Params,
  state: State,
): E.Either<TrainError, { params: Params; state: State; note: string }> {
  if (!fs.existsSync(file)) return E.left(usage(`--init-weights: file not found: ${file}`));
  if (fs.statSync(file).isDirectory()) {
    const r = loadWeights(file, { params, state });
    if (E.isLeft(r)) return E.left(usage(`--init-weights: ${renderCheckpointError(r.left)}`));
    return E.right({ params: r.right.params as Params, state: r.right.state as State, note: `initialised every tensor from ${file}` });
  }
  const read = readSafetensorsE(file);
  if (E.isLeft(read)) return E.left(usage(`--init-weights: ${read.left.file}: ${read.left.message}`));
  let flat: ReadonlyMap<string, Leaf> = read.right.tensors;
  let source = 'names of this engine';
  if ([...flat.keys()].some((k) => k.startsWith('features.'))) {
    const tv = fromTorchvisionE(mc.variant, new Map(flat));
    if (E.isLeft(tv)) return E.left(usage(`--init-weights: ${formatTorchvisionKeyError(tv.left)}`));
    const m = new Map<string, Leaf>();
    for (const [tree, prefix] of [[tv.right.params, 'p'], [tv.right.state, 's']] as const) {
      const [ls] = flatten(tree);
      leafNames(tree).forEach((n, i) => m.set(`${prefix}:${n}`, ls[i]));
    }
    flat = m;
    source = 'torchvision names';
  }
  let copied = 0;
  let total = 0;
  const skipped: string[] = [];
  const fill = (tree: unknown, prefix: string): unknown => {
    const [ls, def] = flatten(tree);
    const names = leafNames(tree);
    const out = ls.map((l, i) => {
      total++;
      const n = names[i];
      const candidates = source === 'torchvision names' ? [`${prefix}:${n}`, `${prefix}:${n.split('.').slice(1).join('.')}`] : [n];
      for (const c of candidates) {
        const t = flat.get(c);
        if (t instanceof Tensor && t.shape.length === l.shape.length && t.shape.every((d, j) => d === l.shape[j])) {
          copied++;
          return t.dtype === l.dtype ? t : cast(t, l.dtype);
        }
      }
      skipped.push(n);
      return l;
    });
    return unflatten(def, out);
  };
  const p = fill(params, 'p') as Params;
  const s = source === 'torchvision names' ? (fill(state, 's') as State) : state;
  if (copied === 0) return E.left(usage(`--init-weights: no tensor of ${file} fits ${mc.name} (by name and shape)`));
  return E.right({
    params: p,
    state: s,
    note: `initialised ${copied}/${total} tensors from ${file} (${source})${skipped.length ? `; kept fresh: ${skipped.slice(0, 4).join(', ')}${skipped.length > 4 ? ', …' : ''}` : ''}`,
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
  let saved: TrainConfig;
  try {
    saved = (JSON.parse(fs.readFileSync(file, 'utf8')) as { config: TrainConfig }).config;
  } catch (e) {
    return E.left(usage(`--resume: cannot read ${file}: ${(e as Error).message}`));
  }
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

export async function train(cfg: TrainConfig, io: RunIo): Promise<E.Either<TrainError, RunResult>> {
  const { reporter } = io;
  const resuming = cfg.resume !== null;

  // Backend.
  if (cfg.backend === 'gpu') {
    try {
      await import('../backends/gpu/index.ts');
      // The first line of a gpu run says what runs it: the mode and, on WebGPU, the adapter and its limits.
      reporter.line(`backend: ${setBackend('gpu').describe!()}`);
    } catch (e) {
      return E.left(runError(`--backend gpu: ${(e as Error).message.split('\n')[0]}`));
    }
  } else setBackend('cpu');

  // Model name and sizes first: cheap, and the most common typo.
  const pre = checkModel(modelSpecFor(cfg, cfg.task === 'binary' ? 1 : 2));
  if (E.isLeft(pre)) return pre;

  // Data.
  let dirs = [...cfg.data];
  if (dirs.length === 0) {
    reporter.line(`data: the built-in synthetic set (${cfg.syntheticCount} images of ${cfg.syntheticSize} px; generated once, then cached)`);
    const d = await te(syntheticSet(cfg));
    if (E.isLeft(d)) return d;
    dirs = [d.right];
  }
  for (const d of dirs) if (!fs.existsSync(d)) return E.left(usage(`--data: folder not found: ${d}`));
  const dsE = await te(loadDataset(dirs, { task: cfg.task, ...(cfg.format ? { format: cfg.format } : {}), ...(cfg.minResolution ? { minResolution: cfg.minResolution } : {}) }));
  if (E.isLeft(dsE)) return dsE;
  let ds: Dataset = dsE.right;
  if (cfg.limit !== null && ds.items.length > cfg.limit) ds = { ...ds, items: ds.items.slice(0, cfg.limit) };

  // Run folder.
  const outDir = runFolder(cfg);
  if (!resuming && resolveCheckpointDir(path.join(outDir, 'last'))) {
    return E.left(usage(`--out: ${outDir} already holds a run (continue it with --resume ${outDir}, or choose another --out)`));
  }
  const files = new RunFiles(outDir);

  // Split.
  let split: Split;
  if (resuming) {
    const s = await te(readSplit(outDir));
    if (E.isLeft(s)) return s;
    split = s.right;
  } else {
    const s = E.mapLeft(dataError)(splitDataset(ds, { valFraction: cfg.valFraction, seed: cfg.seed, ...(cfg.valCsv ? { valCsv: cfg.valCsv } : {}) }));
    if (E.isLeft(s)) return s;
    split = s.right;
  }
  if (split.train.length === 0 || split.val.length === 0) {
    return E.left(usage(`data: the split left ${split.train.length} training and ${split.val.length} validation images; need both (more images or another --val-fraction)`));
  }

  // Model.
  const numClasses = cfg.task === 'binary' ? 1 : ds.classes.length;
  if (cfg.task === 'multiclass' && numClasses < 2) return E.left(usage(`--task multiclass: the data has only ${numClasses} class`));
  const spec = modelSpecFor(cfg, numClasses);
  const mcE = checkModel(spec);
  if (E.isLeft(mcE)) return mcE;
  let model = createModel(spec.name, { ...spec.options, key: initKey(cfg.seed) });
  const mc = model.config;
  const notes: string[] = [];
  if (cfg.initWeights && !resuming) {
    const r = initFromWeights(cfg.initWeights, mc, model.params, model.state);
    if (E.isLeft(r)) return r;
    model = { ...model, params: r.right.params, state: r.right.state };
    notes.push(r.right.note);
  }
  let tta = cfg.tta;
  if (tta > 1 && !isStochastic(mc)) {
    reporter.warn(`--tta ${tta}: ${mc.name} has no stochastic layer at inference, so every pass would be the same; using 1`);
    tta = 1;
  }
  const run: TrainConfig = { ...cfg, tta, out: outDir };

  const loss: LossSpec = {
    name: cfg.loss,
    posWeight: numClasses === 1 ? (cfg.posWeight === 'auto' ? posWeight(split.train) : cfg.posWeight) : 1,
    classWeights: numClasses > 1 && cfg.posWeight === 'auto' ? classWeights(split.train, numClasses) : null,
    focalGamma: cfg.focalGamma,
    numClasses,
  };

  // Start or resume.
  let start: LoopStart = { params: model.params, state: model.state };
  let trainer: TrainerState | undefined;
  if (resuming) {
    const ts = readTrainerState(files.last);
    if (E.isLeft(ts)) return E.left(usage(`--resume: ${renderCheckpointError(ts.left)}`));
    const ck = loadCheckpoint(files.last, { params: model.params, state: model.state, opt: optimizerFor(run).init(model.params) });
    if (E.isLeft(ck)) return E.left(usage(`--resume: ${renderCheckpointError(ck.left)}`));
    trainer = ck.right.trainer;
    start = { params: ck.right.params as Params, state: ck.right.state as State, opt: ck.right.opt, trainer };
    files.truncateForResume(trainer.epoch, trainer.globalStep);
    if (trainer.epoch >= run.epochs) {
      return E.left(usage(`--resume: the run already finished its ${trainer.epoch} epochs (raise --epochs to continue it)`));
    }
  } else {
    files.reset();
    const w = await te(writeSplit(outDir, split));
    if (E.isLeft(w)) return w;
    const config = {
      config: run,
      command: ['npm run train --', ...io.argv].join(' '),
      model: { ...spec, parameters: parameterCount(model), config: mc },
      data: {
        folders: dirs.map((d) => path.resolve(d)),
        classes: ds.classes,
        images: ds.items.length,
        train: split.train.length,
        val: split.val.length,
        trainPerClass: countBy(split.train, Math.max(2, numClasses)),
        valPerClass: countBy(split.val, Math.max(2, numClasses)),
        skippedAtLoad: ds.skipped.length,
        duplicates: ds.duplicates.length,
        split: 'split.csv',
      },
      loss,
      seed: cfg.seed,
      backend: { name: getBackend().name, ...(getBackend().describe ? { describe: getBackend().describe!() } : {}) },
      versions: versions(),
      started: new Date().toISOString(),
      notes,
    };
    fs.writeFileSync(files.config, `${JSON.stringify(config, null, 2)}\n`);
    if (ds.skipped.length) files.addSkipped(ds.skipped.map((s) => `${s.name},${s.path},${renderDataError(s.error).replace(/[\n,]/g, ' ')}`));
  }

  reporter.line(
    `${resuming ? 'resuming' : 'training'} ${mc.name} (${(parameterCount(model) / 1e6).toFixed(2)} M parameters; ` +
      `${mc.highSize !== null ? `${mc.lowSize} + ${mc.highSize} px` : `${mc.lowSize} px`}) on ${split.train.length} images, validating on ${split.val.length}; ` +
      `${run.epochs} epochs, batch ${run.batchSize} (micro ${run.microBatch}), ${run.optimizer} lr ${run.lr}, ${run.schedule} schedule${tta > 1 ? `, TTA ${tta}` : ''}; backend ${getBackend().name}`,
  );
  for (const n of notes) reporter.line(n);
  if (trainer) reporter.line(`resuming at epoch ${trainer.epoch + 1}, batch ${trainer.stepInEpoch + 1} (step ${trainer.globalStep})`);
  reporter.line(`run folder: ${outDir}`);

  const outcome = await runLoop(
    { cfg: run, mc, modelSpec: spec, train: split.train, val: split.val, classes: ds.classes, loss, files, reporter, stopRequested: io.stopRequested },
    start,
  );
  if (outcome.kind === 'completed' || outcome.kind === 'early-stopped' || outcome.kind === 'interrupted') {
    await writePlots(files, outcome.bestEpoch);
  }
  return E.right({ outDir, outcome });
}

function countBy(items: readonly Item[], n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const it of items) c[it.label]++;
  return c;
}
