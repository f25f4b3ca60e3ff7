/**
 * The training configuration: one table of flags (name, value syntax, help, parser, default) from
 * which the command-line parser, the `--config FILE.json` reader and `--help` are all made, so the
 * three cannot drift apart. Layers, lowest first: defaults → `--preset paper` → config file → flags.
 * Every error here is a usage error: a value, not an exception.
 */
import * as E from 'fp-ts/lib/Either.js';
import { optimizerNames, type OptimizerName } from './optim.ts';
import { scheduleNames, type ScheduleName } from './schedule.ts';
import { modelNames } from '../nn/archs.ts';
import { SYNTHETIC_TRAIN_DEFAULTS } from '../data/synthetic.ts';
import { readJsonFile, renderJsonFileError } from '../io/json.ts';
import { type Option, bool, flagName, helpLine as optionHelpLine, int, num, oneOf, orNone, parseOption, showValue, shownDefault as optionDefault, str } from '../cli/options.ts';
import { BACKEND, BATCH_SIZE, DATA, FORMAT, LIMIT, MICRO_BATCH, OUT, QUIET, SEED, TTA, WORKERS } from '../cli/shared.ts';

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
  /** MiB of decoded images kept in memory between epochs (0: off). */
  readonly imageCache: number;
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

/**
 * One training option: a command-line option (flag, help, parser, default; src/cli/options.ts) with
 * what the config-file reader and the presets know of it. The key is the config key.
 */
export interface Flag<K extends Key = Key> extends Option {
  readonly key: K;
  /** The value when nothing sets it; `null` for a setting derived elsewhere (then `derived` says from what). */
  readonly default: TrainConfig[K];
  /** A default that depends on another setting: `{ on: 'optimizer', values: { sgd: 0.9 } }`. */
  readonly dependsOn?: { readonly on: Key; readonly values: Readonly<Record<string, TrainConfig[K]>> };
  /** The default of the no-data run on the built-in synthetic set, where it differs. */
  readonly synthetic?: TrainConfig[K];
  /** Pinned by `--preset paper`: to the default (true) or to this value. */
  readonly paper?: true | TrainConfig[K];
  /** Words after the default in --help (after a comma). */
  readonly note?: string;
  /** Can be changed when resuming a run. */
  readonly resumable?: boolean;
}

/** A table entry, its values type-checked against its key's type. */
const flag = <K extends Key>(f: Flag<K>): Flag => f as unknown as Flag;

/**
 * The option table. The no-data run (the `synthetic` values) trains b0-full-split at a reduced
 * size on 960 synthetic images of 256 px (low-res view 32 px, 8× smaller: the class texture is
 * gone from it) and compares it with the low-res baseline b0, both inside 10 minutes on 2 CPU
 * cores (BENCHMARKS.md). 960 images rather than fewer: a 192-image validation set puts the AUC's
 * standard error near 0.025 (0.04 for a model at chance), so the result holds across seeds, and
 * 768 training images keep b0-full-split from overfitting the texture's nuisances; 6 epochs of 48
 * steps suffice (it passes 0.85 in the first two). No augmentation there: the set already draws
 * every nuisance at random, and cosine decay to 0 leaves a settled model at the last epoch, whose
 * AUC the run reports.
 */
export const FLAGS: readonly Flag[] = [
  flag({ key: 'data', ...DATA, derived: 'the built-in synthetic set' }),
  flag({ key: 'format', ...FORMAT }),
  flag({ key: 'task', flags: '--task <task>', help: 'binary (melanoma vs other) or multiclass', default: 'binary', parse: oneOf(['binary', 'multiclass'] as const) }),
  flag({ key: 'model', flags: '--model <name>', help: `${modelNames.join(', ')}, or bN (N = 0…7) with any of their suffixes`, default: 'b0-full-split', parse: str }),
  flag({ key: 'imgSize', flags: '--img-size <px>', help: 'low-res input side (pure-stochastic: its backbone runs at the stem output of that side, ⌈px/2⌉)', default: null, derived: "the model's, 224 for b0", synthetic: SYNTHETIC_TRAIN_DEFAULTS.lowSize, paper: 224, parse: int(8) }),
  flag({ key: 'hrSize', flags: '--hr-size <px>', help: 'high-res input side of stochastic models', default: null, derived: "the model's, 1024", synthetic: SYNTHETIC_TRAIN_DEFAULTS.highSize, paper: 1024, parse: int(8) }),
  flag({ key: 'widthMult', flags: '--width-mult <x>', help: 'override the width coefficient (smaller models)', default: null, derived: "the variant's", synthetic: 0.5, note: 'for the default model only', parse: orNone(num(0, 10, true)) }),
  flag({ key: 'depthMult', flags: '--depth-mult <x>', help: 'override the depth coefficient (smaller models)', default: null, derived: "the variant's", synthetic: 0.34, note: 'for the default model only', parse: orNone(num(0, 10, true)) }),
  flag({ key: 'bnMomentum', flags: '--bn-momentum <x>', help: 'batch-norm running-statistics momentum (PyTorch convention)', default: null, derived: "the model's, 0.01 (TensorFlow's 0.99)", synthetic: 0.1, parse: orNone(num(0, 1, true)) }),
  flag({ key: 'headInit', flags: '--head-init <init>', help: 'dense-layer init: zeros (logits start at 0) or efficientnet (official: ±1/√outputs, i.e. ±1 for one logit, which starts logits near ±20 and saturates a from-scratch run)', default: 'zeros', parse: oneOf(['efficientnet', 'zeros'] as const) }),
  flag({ key: 'epochs', flags: '--epochs <n>', help: 'epochs to train', default: 60, synthetic: 6, paper: true, parse: int(1), resumable: true }),
  flag({ key: 'batchSize', ...BATCH_SIZE, help: 'images per optimizer step', default: 100, synthetic: 16, paper: true }),
  flag({ key: 'microBatch', ...MICRO_BATCH, help: 'images per forward/backward pass (gradients accumulated up to --batch-size)', default: 20, synthetic: 16 }),
  flag({ key: 'optimizer', flags: '--optimizer <name>', help: optimizerNames.join(', '), default: 'rmsprop', synthetic: 'adam', paper: true, parse: oneOf(optimizerNames) }),
  flag({ key: 'lr', flags: '--lr <x>', help: 'base learning rate', default: 1e-3, paper: true, parse: num(0, Infinity, true) }),
  flag({ key: 'weightDecay', flags: '--weight-decay <x>', help: 'L2 penalty (AdamW: decoupled decay)', default: 0, dependsOn: { on: 'optimizer', values: { adamw: 1e-2 } }, paper: true, parse: num(0) }),
  flag({ key: 'momentum', flags: '--momentum <x>', help: 'momentum (RMSprop, SGD)', default: 0, dependsOn: { on: 'optimizer', values: { sgd: 0.9 } }, paper: true, parse: num(0, 1) }),
  flag({ key: 'alpha', flags: '--alpha <x>', help: 'RMSprop smoothing constant', default: 0.99, paper: true, parse: num(0, 1) }),
  flag({ key: 'eps', flags: '--eps <x>', help: 'optimizer epsilon (added outside the square root)', default: 1e-8, paper: true, parse: num(0) }),
  flag({ key: 'nesterov', flags: '--nesterov', help: 'Nesterov momentum (SGD)', default: false, parse: bool, boolean: true }),
  flag({ key: 'schedule', flags: '--schedule <name>', help: scheduleNames.join(', '), default: 'exponential', synthetic: 'cosine', paper: true, parse: oneOf(scheduleNames) }),
  flag({ key: 'warmupEpochs', flags: '--warmup-epochs <n>', help: 'exponential: epochs at the base rate before decaying; cosine: linear warm-up epochs', default: 15, synthetic: 0, paper: true, parse: num(0) }),
  flag({ key: 'decay', flags: '--decay <x>', help: 'exponential: learning-rate factor per epoch after the warm-up', default: 0.9, paper: true, parse: num(0, 1, true) }),
  flag({ key: 'clip', flags: '--clip <norm>', help: 'clip gradients to this global norm (none: off)', default: null, parse: orNone(num(0, Infinity, true)) }),
  flag({ key: 'loss', flags: '--loss <name>', help: 'bce (binary), focal (binary or multiclass), ce (multiclass)', default: 'bce', dependsOn: { on: 'task', values: { multiclass: 'ce' } }, paper: true, parse: oneOf(['bce', 'focal', 'ce'] as const) }),
  flag({ key: 'focalGamma', flags: '--focal-gamma <x>', help: 'focal loss exponent', default: 2, parse: num(0) }),
  flag({ key: 'posWeight', flags: '--pos-weight <auto|x>', help: 'weight of the positive class in the loss (auto: negatives/positives; multiclass: inverse-frequency class weights)', default: 1, paper: true, parse: (s) => (s === 'auto' ? 'auto' : num(0, Infinity, true)(s)) }),
  flag({ key: 'tta', ...TTA, help: 'stochastic passes averaged at validation (stochastic models)', resumable: true }),
  flag({ key: 'patience', flags: '--patience <n>', help: 'stop after n epochs without a better validation AUC (none: never)', default: null, derived: 'none', parse: orNone(int(1)), resumable: true }),
  flag({ key: 'seed', ...SEED, help: 'the seed every random choice derives from (split, init, order, augmentation, windows)', default: 1337, paper: true }),
  flag({ key: 'valFraction', flags: '--val-fraction <x>', help: 'fraction of each class held out for validation', default: 0.2, paper: true, parse: num(0, 1, true) }),
  flag({ key: 'valCsv', flags: '--val-csv <file>', help: 'CSV listing the validation images (overrides --val-fraction)', default: null, parse: str }),
  flag({ key: 'minResolution', flags: '--min-resolution <px>', help: 'drop images whose shorter side is smaller (the paper: 1000)', default: null, parse: orNone(int(1)) }),
  flag({ key: 'augment', flags: '--no-augment', help: 'turn off training augmentation (crop, flips, rotation)', default: true, synthetic: false, note: 'turn it on there with "augment": true in --config', parse: bool, boolean: true }),
  flag({ key: 'limit', ...LIMIT }),
  flag({ key: 'syntheticCount', flags: '--synthetic-count <n>', help: 'images in the built-in synthetic set', default: SYNTHETIC_TRAIN_DEFAULTS.count, parse: int(4) }),
  flag({ key: 'syntheticSize', flags: '--synthetic-size <px>', help: 'side of the synthetic images', default: SYNTHETIC_TRAIN_DEFAULTS.size, parse: int(16) }),
  flag({ key: 'baseline', flags: '--baseline <model>', help: 'after the run, train this model on the same data, split, epochs and optimizer (into <run folder>/baseline-<model>) and print both validation AUCs (none: off)', default: null, synthetic: 'b0', note: 'when --model is not given', parse: orNone(str) }),
  flag({ key: 'workers', ...WORKERS, resumable: true }),
  flag({ key: 'imageCache', flags: '--image-cache <MiB>', help: 'decoded images kept in memory between epochs, shrunk to the largest input side, so later epochs only augment (0: off)', default: 512, parse: int(0), resumable: true }),
  flag({ key: 'backend', ...BACKEND, resumable: true }),
  flag({ key: 'out', ...OUT, help: 'run folder', derived: 'runs/<model>-<timestamp>' }),
  flag({ key: 'resume', flags: '--resume <dir>', help: 'continue the run in this folder exactly where it stopped', default: null, parse: str, resumable: true }),
  flag({ key: 'initWeights', flags: '--init-weights <file>', help: 'start from these weights (safetensors: a checkpoint of ours or torchvision names)', default: null, parse: str }),
  flag({ key: 'preset', flags: '--preset <name>', help: '', default: null, parse: oneOf(['paper'] as const) }),
  flag({ key: 'config', flags: '--config <file.json>', help: 'read settings from a JSON file with the same keys (flags override it)', default: null, parse: str }),
  flag({ key: 'quiet', ...QUIET, resumable: true }),
];

const pick = (want: (f: Flag) => boolean, value: (f: Flag) => unknown): Record<string, unknown> =>
  Object.fromEntries(FLAGS.filter(want).map((f) => [f.key, value(f)]));

/** Defaults (any data); `null` means "derived" (from the model, the task or the optimizer). */
export const DEFAULTS = pick(() => true, (f) => f.default) as unknown as TrainConfig;

/** The defaults of the no-data run on the built-in synthetic set, where they differ from DEFAULTS. */
export const SYNTHETIC_DEFAULTS = pick((f) => f.synthetic !== undefined, (f) => f.synthetic) as Partial<TrainConfig>;

/** The paper's recipe (PAPER.md, "Data and training recipe"): the settings `--preset paper` pins. */
export const PAPER_PRESET = pick((f) => f.paper !== undefined, (f) => (f.paper === true ? f.default : f.paper)) as Partial<TrainConfig>;

export { showValue };

/** The "(default: …)" text of an option in --help, made from its table entry: the default, then what changes it. */
export function shownDefault(f: Flag): string {
  const dep = f.dependsOn ? ` (${Object.entries(f.dependsOn.values).map(([v, d]) => `${flagOf(f.dependsOn!.on)} ${v}: ${showValue(d)}`).join('; ')})` : '';
  const syn = f.synthetic !== undefined ? `; ${showValue(f.synthetic)} on the synthetic set` : '';
  const paper = f.paper !== undefined && f.paper !== true ? `; ${showValue(f.paper)} with --preset paper` : '';
  return `${optionDefault(f)}${dep}${syn}${paper}${f.note ? `, ${f.note}` : ''}`;
}

/** What `--preset paper` sets, in words made from the table. */
const presetHelp = (): string =>
  `paper: the paper's recipe, ${FLAGS.filter((f) => f.paper !== undefined).map((f) => `${flagName(f)} ${showValue(PAPER_PRESET[f.key])}`).join(', ')}`;

/** The --help text of an option: its help and its default. */
export const helpLine = (f: Flag): string => optionHelpLine({ ...f, help: f.key === 'preset' ? presetHelp() : f.help }, () => shownDefault(f));

/** The table as the options of the train command, by key. */
export const TRAIN_OPTIONS: Readonly<Record<Key, Flag>> = Object.fromEntries(FLAGS.map((f) => [f.key, f])) as Record<Key, Flag>;

const kebab = (k: string) => k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const byKey = new Map<string, Flag>(FLAGS.map((f) => [f.key, f]));
/** Config-file keys: camelCase or the flag's kebab-case. */
const byFileKey = new Map<string, Flag>(FLAGS.flatMap((f) => [[f.key, f], [kebab(f.key), f]] as [string, Flag][]));

/** Parses one raw value for a key; a usage error names the flag and the value. */
export function parseValue(key: Key, raw: string, where = ''): E.Either<UsageError, unknown> {
  const r = parseOption(byKey.get(key)!, raw, where);
  return r.ok ? E.right(r.value) : E.left(usage(r.message));
}

/** Reads and validates a JSON config file into a partial config. */
export function readConfigFile(file: string): E.Either<UsageError, Partial<TrainConfig>> {
  const json = readJsonFile(file);
  if (E.isLeft(json)) return E.left(usage(renderJsonFileError(json.left, 'config file')));
  return parseConfigObject(json.right, `config file ${file}`);
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
  const { baseline, ...syntheticRest } = SYNTHETIC_DEFAULTS;
  const dependent = Object.fromEntries(
    FLAGS.flatMap((f) => (f.dependsOn && given[f.dependsOn.on] !== undefined && String(given[f.dependsOn.on]) in f.dependsOn.values ? [[f.key, f.dependsOn.values[String(given[f.dependsOn.on])]]] : [])),
  );
  const base: TrainConfig = {
    ...DEFAULTS,
    ...(synthetic && preset !== 'paper' ? { ...syntheticRest, ...(given.model === undefined ? { baseline } : {}) } : {}),
    ...dependent,
  };
  // On the synthetic set the reduced width/depth apply only to the default model.
  if (synthetic && given.model !== undefined && given.model !== DEFAULTS.model) {
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
export const flagOf = (k: Key): string => flagName(byKey.get(k)!);
