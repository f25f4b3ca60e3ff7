/**
 * The training configuration: one table of flags (name, value syntax, help, parser, default) from
 * which the command-line parser, the `--config FILE.json` reader and `--help` are all made, so the
 * three cannot drift apart. Layers, lowest first: defaults → `--preset paper` → config file → flags.
 * Every error here is a usage error: a value, not an exception.
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import { optimizerNames, type OptimizerName } from './optim.ts';
import { scheduleNames, type ScheduleName } from './schedule.ts';

export type LossName = 'bce' | 'focal' | 'ce';

export interface TrainConfig {
  /** Dataset folders; empty = the built-in synthetic set. */
  readonly data: readonly string[];
  readonly format: string | null;
  readonly task: 'binary' | 'multiclass';
  readonly model: string;
  /** Low-res side (null: the model's default). */
  readonly imgSize: number | null;
  /** High-res side of two-input and pure-stochastic models (null: the model's default, 1024). */
  readonly hrSize: number | null;
  readonly widthMult: number | null;
  readonly depthMult: number | null;
  /** Batch-norm running-statistics momentum, PyTorch convention (null: the model's, 0.01). */
  readonly bnMomentum: number | null;
  readonly headInit: 'efficientnet' | 'zeros';
  readonly epochs: number;
  readonly batchSize: number;
  /** Images per forward/backward pass; gradients are accumulated over the batch. */
  readonly microBatch: number;
  readonly optimizer: OptimizerName;
  readonly lr: number;
  readonly weightDecay: number;
  readonly momentum: number;
  readonly alpha: number;
  readonly eps: number;
  readonly nesterov: boolean;
  readonly schedule: ScheduleName;
  readonly warmupEpochs: number;
  readonly decay: number;
  readonly clip: number | null;
  readonly loss: LossName;
  readonly focalGamma: number;
  readonly posWeight: 'auto' | number;
  readonly tta: number;
  readonly patience: number | null;
  readonly seed: number;
  readonly valFraction: number;
  readonly valCsv: string | null;
  readonly minResolution: number | null;
  readonly augment: boolean;
  readonly limit: number | null;
  readonly syntheticCount: number;
  readonly syntheticSize: number;
  /** A model trained after the run with the same data, split and recipe, for comparison (null: none). */
  readonly baseline: string | null;
  readonly workers: number;
  readonly backend: 'cpu' | 'gpu';
  readonly out: string | null;
  readonly resume: string | null;
  readonly initWeights: string | null;
  readonly preset: 'paper' | null;
  readonly config: string | null;
  readonly quiet: boolean;
}

export type Key = keyof TrainConfig;

export interface UsageError {
  readonly _tag: 'UsageError';
  readonly message: string;
}
export const usage = (message: string): UsageError => ({ _tag: 'UsageError', message });

class ParseError extends Error {}
const fail = (m: string): never => {
  throw new ParseError(m);
};

const int = (min: number) => (s: string): number => {
  const n = Number(s);
  if (s.trim() === '' || !Number.isInteger(n) || n < min) fail(`must be an integer ≥ ${min}`);
  return n;
};
const num = (lo: number, hi = Infinity, openLo = false) => (s: string): number => {
  const n = Number(s);
  if (s.trim() === '' || !Number.isFinite(n) || n < lo || (openLo && n === lo) || n > hi) {
    fail(`must be a number ${openLo ? '>' : '≥'} ${lo}${hi < Infinity ? ` and ≤ ${hi}` : ''}`);
  }
  return n;
};
const oneOf = <T extends string>(xs: readonly T[]) => (s: string): T => (xs.includes(s as T) ? (s as T) : fail(`must be one of ${xs.join(', ')}`));
const orNone = <T>(p: (s: string) => T) => (s: string): T | null => (s === 'none' || s === 'null' ? null : p(s));
const str = (s: string): string => (s.trim() === '' ? fail('must not be empty') : s);
const bool = (s: string): boolean => (s === 'true' ? true : s === 'false' ? false : fail('must be true or false'));

export interface Flag {
  readonly key: Key;
  /** e.g. '--img-size <px>'; boolean flags have no value. */
  readonly flags: string;
  readonly help: string;
  /** The default as shown in --help. */
  readonly shown: string;
  readonly parse: (s: string) => unknown;
  readonly repeatable?: boolean;
  readonly boolean?: boolean;
  /** Can be changed when resuming a run. */
  readonly resumable?: boolean;
}

/**
 * What the no-argument run does (shown in --help and used as the synthetic defaults): b0-full-split
 * at a reduced size on 960 synthetic images of 256 px (low-res view 32 px, 8× smaller: the class
 * texture is gone from it), compared with the low-res baseline b0, both inside 10 minutes on
 * 2 CPU cores (BENCHMARKS.md). 960 images rather than fewer: a 192-image validation set puts the
 * AUC's standard error near 0.025 (0.04 for a model at chance), so the result holds across seeds,
 * and 768 training images keep b0-full-split from overfitting the texture's nuisances; 6 epochs of
 * 48 steps suffice (it passes 0.85 in the first two). No augmentation: the set already draws every
 * nuisance at random, and cosine decay to 0 leaves a settled model at the last epoch, whose AUC
 * the run reports.
 */
export const SYNTHETIC_RUN = {
  model: 'b0-full-split',
  imgSize: 32,
  hrSize: 256,
  widthMult: 0.5,
  depthMult: 0.34,
  bnMomentum: 0.1,
  epochs: 6,
  batchSize: 16,
  microBatch: 16,
  syntheticCount: 960,
  syntheticSize: 256,
  optimizer: 'adam',
  lr: 1e-3,
  schedule: 'cosine',
  warmupEpochs: 0,
  augment: false,
  /** The low-res model the default run is compared with (the same backbone without the high-res view). */
  baseline: 'b0',
} as const;

export const FLAGS: readonly Flag[] = [
  { key: 'data', flags: '--data <dir>', help: 'dataset folder (repeatable: folders are merged)', shown: 'the built-in synthetic set', parse: str, repeatable: true },
  { key: 'format', flags: '--format <name>', help: 'force the dataset reader (isic2020, isic2019, …, folders)', shown: 'detected per folder', parse: str },
  { key: 'task', flags: '--task <task>', help: 'binary (melanoma vs other) or multiclass', shown: 'binary', parse: oneOf(['binary', 'multiclass'] as const) },
  { key: 'model', flags: '--model <name>', help: 'b0…b7, b0-64, b0-stochastic-stem, b4-stochastic-stem, b0-stochastic-skip, b0-full-split, b0-pure-stochastic, …', shown: 'b0-full-split', parse: str },
  { key: 'imgSize', flags: '--img-size <px>', help: 'low-res input side (pure-stochastic: its backbone runs at the stem output of that side, ⌈px/2⌉)', shown: `the model's (224 for b0); ${SYNTHETIC_RUN.imgSize} on the synthetic set`, parse: int(8) },
  { key: 'hrSize', flags: '--hr-size <px>', help: 'high-res input side of stochastic models', shown: `1024; ${SYNTHETIC_RUN.hrSize} on the synthetic set`, parse: int(8) },
  { key: 'widthMult', flags: '--width-mult <x>', help: 'override the width coefficient (smaller models)', shown: `the variant's; ${SYNTHETIC_RUN.widthMult} on the synthetic set`, parse: orNone(num(0, 10, true)) },
  { key: 'depthMult', flags: '--depth-mult <x>', help: 'override the depth coefficient (smaller models)', shown: `the variant's; ${SYNTHETIC_RUN.depthMult} on the synthetic set`, parse: orNone(num(0, 10, true)) },
  { key: 'bnMomentum', flags: '--bn-momentum <x>', help: 'batch-norm running-statistics momentum (PyTorch convention)', shown: `0.01 (TensorFlow's 0.99); ${SYNTHETIC_RUN.bnMomentum} on the synthetic set`, parse: orNone(num(0, 1, true)) },
  { key: 'headInit', flags: '--head-init <init>', help: "dense-layer init: zeros (logits start at 0) or efficientnet (official: ±1/√outputs, i.e. ±1 for one logit, which starts logits near ±20 and saturates a from-scratch run)", shown: 'zeros', parse: oneOf(['efficientnet', 'zeros'] as const) },
  { key: 'epochs', flags: '--epochs <n>', help: 'epochs to train', shown: `60; ${SYNTHETIC_RUN.epochs} on the synthetic set`, parse: int(1), resumable: true },
  { key: 'batchSize', flags: '--batch-size <n>', help: 'images per optimizer step', shown: `100; ${SYNTHETIC_RUN.batchSize} on the synthetic set`, parse: int(1) },
  { key: 'microBatch', flags: '--micro-batch <n>', help: 'images per forward/backward pass (gradients accumulated up to --batch-size)', shown: '20', parse: int(1) },
  { key: 'optimizer', flags: '--optimizer <name>', help: optimizerNames.join(', '), shown: `rmsprop; ${SYNTHETIC_RUN.optimizer} on the synthetic set`, parse: oneOf(optimizerNames) },
  { key: 'lr', flags: '--lr <x>', help: 'base learning rate', shown: '0.001', parse: num(0, Infinity, true) },
  { key: 'weightDecay', flags: '--weight-decay <x>', help: 'L2 penalty (AdamW: decoupled decay)', shown: '0 (AdamW: 0.01)', parse: num(0) },
  { key: 'momentum', flags: '--momentum <x>', help: 'momentum (RMSprop, SGD)', shown: '0 (SGD: 0.9)', parse: num(0, 1) },
  { key: 'alpha', flags: '--alpha <x>', help: 'RMSprop smoothing constant', shown: '0.99', parse: num(0, 1) },
  { key: 'eps', flags: '--eps <x>', help: 'optimizer epsilon (added outside the square root)', shown: '1e-8', parse: num(0) },
  { key: 'nesterov', flags: '--nesterov', help: 'Nesterov momentum (SGD)', shown: 'off', parse: bool, boolean: true },
  { key: 'schedule', flags: '--schedule <name>', help: scheduleNames.join(', '), shown: `exponential; ${SYNTHETIC_RUN.schedule} on the synthetic set`, parse: oneOf(scheduleNames) },
  { key: 'warmupEpochs', flags: '--warmup-epochs <n>', help: 'exponential: epochs at the base rate before decaying; cosine: linear warm-up epochs', shown: `15; ${SYNTHETIC_RUN.warmupEpochs} on the synthetic set`, parse: num(0) },
  { key: 'decay', flags: '--decay <x>', help: 'exponential: learning-rate factor per epoch after the warm-up', shown: '0.9', parse: num(0, 1, true) },
  { key: 'clip', flags: '--clip <norm>', help: 'clip gradients to this global norm (none: off)', shown: 'none', parse: orNone(num(0, Infinity, true)) },
  { key: 'loss', flags: '--loss <name>', help: 'bce (binary), focal (binary or multiclass), ce (multiclass)', shown: 'bce (multiclass: ce)', parse: oneOf(['bce', 'focal', 'ce'] as const) },
  { key: 'focalGamma', flags: '--focal-gamma <x>', help: 'focal loss exponent', shown: '2', parse: num(0) },
  { key: 'posWeight', flags: '--pos-weight <auto|x>', help: 'weight of the positive class in the loss (auto: negatives/positives; multiclass: inverse-frequency class weights)', shown: '1', parse: (s) => (s === 'auto' ? 'auto' : num(0, Infinity, true)(s)) },
  { key: 'tta', flags: '--tta <n>', help: 'stochastic passes averaged at validation (stochastic models)', shown: '1', parse: int(1), resumable: true },
  { key: 'patience', flags: '--patience <n>', help: 'stop after n epochs without a better validation AUC (none: never)', shown: 'none', parse: orNone(int(1)), resumable: true },
  { key: 'seed', flags: '--seed <n>', help: 'the seed every random choice derives from (split, init, order, augmentation, windows)', shown: '1337', parse: int(0) },
  { key: 'valFraction', flags: '--val-fraction <x>', help: 'fraction of each class held out for validation', shown: '0.2', parse: num(0, 1, true) },
  { key: 'valCsv', flags: '--val-csv <file>', help: 'CSV listing the validation images (overrides --val-fraction)', shown: 'none', parse: str },
  { key: 'minResolution', flags: '--min-resolution <px>', help: 'drop images whose shorter side is smaller (the paper: 1000)', shown: 'none', parse: orNone(int(1)) },
  { key: 'augment', flags: '--no-augment', help: 'turn off training augmentation (crop, flips, rotation)', shown: 'on; off on the synthetic set (turn it on there with "augment": true in --config)', parse: bool, boolean: true },
  { key: 'limit', flags: '--limit <n>', help: 'use only the first n images of the dataset (quick runs)', shown: 'all', parse: orNone(int(2)) },
  { key: 'syntheticCount', flags: '--synthetic-count <n>', help: 'images in the built-in synthetic set', shown: String(SYNTHETIC_RUN.syntheticCount), parse: int(4) },
  { key: 'syntheticSize', flags: '--synthetic-size <px>', help: 'side of the synthetic images', shown: String(SYNTHETIC_RUN.syntheticSize), parse: int(16) },
  { key: 'baseline', flags: '--baseline <model>', help: 'after the run, train this model on the same data, split, epochs and optimizer (into <run folder>/baseline-<model>) and print both validation AUCs (none: off)', shown: `none; ${SYNTHETIC_RUN.baseline} on the synthetic set when --model is not given`, parse: orNone(str) },
  { key: 'workers', flags: '--workers <n>', help: 'image-decoding worker threads (0: main thread)', shown: '1', parse: int(0), resumable: true },
  { key: 'backend', flags: '--backend <name>', help: 'cpu or gpu (WebGPU where an adapter is present, else gpu.js; STOCHCONV_GPU_MODE forces a mode)', shown: 'cpu', parse: oneOf(['cpu', 'gpu'] as const), resumable: true },
  { key: 'out', flags: '--out <dir>', help: 'run folder', shown: 'runs/<model>-<timestamp>', parse: str },
  { key: 'resume', flags: '--resume <dir>', help: 'continue the run in this folder exactly where it stopped', shown: 'none', parse: str, resumable: true },
  { key: 'initWeights', flags: '--init-weights <file>', help: 'start from these weights (safetensors: a checkpoint of ours or torchvision names)', shown: 'none', parse: str },
  { key: 'preset', flags: '--preset <name>', help: 'paper: RMSprop 1e-3 (α 0.99, ε 1e-8), exponential 0.9/epoch after 15, BCE, 60 epochs, batch 100, 80/20 split, seed 1337, 224 and 1024 px', shown: 'none', parse: oneOf(['paper'] as const) },
  { key: 'config', flags: '--config <file.json>', help: 'read settings from a JSON file with the same keys (flags override it)', shown: 'none', parse: str },
  { key: 'quiet', flags: '--quiet', help: 'no progress bar: one line per epoch (for logs)', shown: 'off', parse: bool, boolean: true, resumable: true },
];

/** Defaults (any data); `null` means "derived" (from the model, the task or the optimizer). */
export const DEFAULTS: TrainConfig = {
  data: [],
  format: null,
  task: 'binary',
  model: 'b0-full-split',
  imgSize: null,
  hrSize: null,
  widthMult: null,
  depthMult: null,
  bnMomentum: null,
  headInit: 'zeros',
  epochs: 60,
  batchSize: 100,
  microBatch: 20,
  optimizer: 'rmsprop',
  lr: 1e-3,
  weightDecay: 0,
  momentum: 0,
  alpha: 0.99,
  eps: 1e-8,
  nesterov: false,
  schedule: 'exponential',
  warmupEpochs: 15,
  decay: 0.9,
  clip: null,
  loss: 'bce',
  focalGamma: 2,
  posWeight: 1,
  tta: 1,
  patience: null,
  seed: 1337,
  valFraction: 0.2,
  valCsv: null,
  minResolution: null,
  augment: true,
  limit: null,
  syntheticCount: SYNTHETIC_RUN.syntheticCount,
  syntheticSize: SYNTHETIC_RUN.syntheticSize,
  baseline: null,
  workers: 1,
  backend: 'cpu',
  out: null,
  resume: null,
  initWeights: null,
  preset: null,
  config: null,
  quiet: false,
};

/** The paper's recipe (PAPER.md, "Data and training recipe"). */
export const PAPER_PRESET: Partial<TrainConfig> = {
  optimizer: 'rmsprop',
  lr: 1e-3,
  alpha: 0.99,
  eps: 1e-8,
  momentum: 0,
  weightDecay: 0,
  schedule: 'exponential',
  warmupEpochs: 15,
  decay: 0.9,
  loss: 'bce',
  posWeight: 1,
  epochs: 60,
  batchSize: 100,
  valFraction: 0.2,
  seed: 1337,
  imgSize: 224,
  hrSize: 1024,
};

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const flagName = (f: Flag) => f.flags.split(' ')[0];
const byKey = new Map<string, Flag>(FLAGS.map((f) => [f.key, f]));
/** Config-file keys: camelCase or the flag's kebab-case. */
const byFileKey = new Map<string, Flag>(FLAGS.flatMap((f) => [[f.key, f], [kebab(f.key), f]] as [string, Flag][]));

/** Parses one raw value for a key; a usage error names the flag and the value. */
export function parseValue(key: Key, raw: string, where = ''): E.Either<UsageError, unknown> {
  const f = byKey.get(key)!;
  try {
    return E.right(f.parse(raw));
  } catch (e) {
    if (e instanceof ParseError) return E.left(usage(`invalid value '${raw}' for ${flagName(f).replace('--no-', '--')}${where}: ${e.message}`));
    throw e;
  }
}

/** Reads and validates a JSON config file into a partial config. */
export function readConfigFile(file: string): E.Either<UsageError, Partial<TrainConfig>> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return E.left(usage(err.code === 'ENOENT' ? `config file not found: ${file}` : `cannot read config file ${file}: ${err.message}`));
  }
  return parseConfigObject(json, `config file ${file}`);
}

/**
 * Validates a parsed JSON object of config keys (camelCase or kebab-case) into a partial config;
 * `where` names its origin in messages (e.g. "config file run.json").
 */
export function parseConfigObject(json: unknown, where: string): E.Either<UsageError, Partial<TrainConfig>> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return E.left(usage(`${where} must hold a JSON object`));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(json)) {
    const r = parseConfigEntry(k, v, where);
    if (E.isLeft(r)) return r;
    out[r.right[0]] = r.right[1];
  }
  return E.right(out as Partial<TrainConfig>);
}

/** One key and JSON value of a config object, validated: the canonical key and the parsed value. */
export function parseConfigEntry(k: string, v: unknown, where: string): E.Either<UsageError, [Key, unknown]> {
  const f = byFileKey.get(k);
  if (!f || f.key === 'config' || f.key === 'resume') return E.left(usage(`${f ? `'${k}' cannot be set in a config file (use the flag)` : `unknown key '${k}'`} in ${where}`));
  const at = ` in ${where}`;
  if (f.repeatable) {
    const list = Array.isArray(v) ? v : [v];
    const vals: unknown[] = [];
    for (const item of list) {
      const r = parseValue(f.key, String(item), at);
      if (E.isLeft(r)) return r;
      vals.push(r.right);
    }
    return E.right([f.key, vals]);
  }
  if (v === null) return E.map((x: unknown): [Key, unknown] => [f.key, x])(parseValue(f.key, 'none', at));
  if (typeof v === 'object') return E.left(usage(`invalid value for '${k}'${at}: expected a ${f.boolean ? 'boolean' : 'number or string'}`));
  return E.map((x: unknown): [Key, unknown] => [f.key, x])(parseValue(f.key, String(v), at));
}

/**
 * Merges the layers into a full config and applies the rules that depend on several settings:
 * synthetic-run defaults when no data is given, task-dependent loss, optimizer-dependent defaults.
 */
export function resolveConfig(cli: Partial<TrainConfig>): E.Either<UsageError, TrainConfig> {
  const fileCfg = cli.config ? readConfigFile(cli.config) : E.right<UsageError, Partial<TrainConfig>>({});
  if (E.isLeft(fileCfg)) return fileCfg;
  const preset = cli.preset ?? fileCfg.right.preset ?? null;
  const given: Partial<TrainConfig> = { ...(preset === 'paper' ? PAPER_PRESET : {}), ...fileCfg.right, ...cli };
  const synthetic = (given.data ?? []).length === 0;
  const base: TrainConfig = {
    ...DEFAULTS,
    ...(synthetic && preset !== 'paper'
      ? {
          imgSize: SYNTHETIC_RUN.imgSize,
          hrSize: SYNTHETIC_RUN.hrSize,
          widthMult: SYNTHETIC_RUN.widthMult,
          depthMult: SYNTHETIC_RUN.depthMult,
          bnMomentum: SYNTHETIC_RUN.bnMomentum,
          optimizer: SYNTHETIC_RUN.optimizer,
          epochs: SYNTHETIC_RUN.epochs,
          batchSize: SYNTHETIC_RUN.batchSize,
          microBatch: SYNTHETIC_RUN.microBatch,
          schedule: SYNTHETIC_RUN.schedule,
          warmupEpochs: SYNTHETIC_RUN.warmupEpochs,
          augment: SYNTHETIC_RUN.augment,
          ...(given.model === undefined ? { baseline: SYNTHETIC_RUN.baseline } : {}),
        }
      : {}),
    ...(given.task === 'multiclass' ? { loss: 'ce' as const } : {}),
    ...(given.optimizer === 'adamw' ? { weightDecay: 1e-2 } : {}),
    ...(given.optimizer === 'sgd' ? { momentum: 0.9 } : {}),
  };
  // On the synthetic set the reduced width/depth apply only to the default model.
  if (synthetic && given.model !== undefined && given.model !== SYNTHETIC_RUN.model) {
    Object.assign(base, { widthMult: null, depthMult: null });
  }
  const cfg: TrainConfig = { ...base, ...given, preset };
  if (cfg.task === 'binary' && cfg.loss === 'ce') return E.left(usage(`--loss ce needs --task multiclass (use bce or focal for the binary task)`));
  if (cfg.task === 'multiclass' && cfg.loss === 'bce') return E.left(usage(`--loss bce is for the binary task (use ce or focal with --task multiclass)`));
  if (cfg.nesterov && cfg.optimizer !== 'sgd') return E.left(usage(`--nesterov applies to --optimizer sgd only`));
  if (cfg.nesterov && !(cfg.momentum > 0)) return E.left(usage(`--nesterov needs --momentum > 0`));
  if (cfg.imgSize !== null && cfg.hrSize !== null && cfg.hrSize < cfg.imgSize) {
    return E.left(usage(`invalid value '${cfg.hrSize}' for --hr-size: must be ≥ --img-size (${cfg.imgSize})`));
  }
  return E.right({ ...cfg, microBatch: Math.min(cfg.microBatch, cfg.batchSize) });
}

/** The keys a resumed run may change; others must stay as the run was started. */
export const RESUMABLE_KEYS: readonly Key[] = FLAGS.filter((f) => f.resumable).map((f) => f.key);

/** The flag spelling of a key (for messages). */
export const flagOf = (k: Key): string => flagName(byKey.get(k)!).replace('--no-', '--');
