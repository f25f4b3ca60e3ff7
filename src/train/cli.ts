/**
 * `npm run train -- [flags]`: trains a model and writes a run folder (see --help).
 * Exit codes: 0 done (or stopped early), 1 the run failed (e.g. the loss became NaN),
 * 2 usage error, 130 interrupted (a resumable checkpoint was saved).
 */
import * as E from 'fp-ts/lib/Either.js';
import { DEFAULTS, FLAGS, type Key, SYNTHETIC_DEFAULTS, TRAIN_OPTIONS, type TrainConfig, helpLine, resolveConfig } from './config.ts';
import { EXIT, UsageExit, printUsage, runIfMain } from '../cli/program.ts';
import { type CommandSpec, command, parseOptions } from '../cli/options.ts';
import { baselineConfig, baselineIntro, checkBaseline, comparisonLine, trainLeg } from './baseline.ts';
import { type Reporter, consoleReporter } from './report.ts';
import { type RunResult, type TrainError, resumeConfig, runFolder, train } from './run.ts';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isIdxFolder } from '../data/idx.ts';
import { runIdx } from './idxrun.ts';

const S = { ...DEFAULTS, ...SYNTHETIC_DEFAULTS };
const DEFAULT_RUN = `
With no arguments: shows the paper's thesis. Trains ${S.model} at a reduced size (width ×${S.widthMult}, depth ×${S.depthMult};
${S.imgSize} px low-res + ${S.hrSize} px high-res) on the built-in synthetic set (${S.syntheticCount} images of ${S.syntheticSize} px, ${Math.round((1 - S.valFraction) * 100)}/${Math.round(S.valFraction * 100)} split,
the class only in a texture the ${S.imgSize} px view has lost) for ${S.epochs} epochs, batch ${S.batchSize}, ${S.optimizer} lr ${S.lr} with ${S.schedule} decay,
BN momentum ${S.bnMomentum}, ${S.augment ? 'with' : 'no'} augmentation; then the baseline ${S.baseline} (the ${S.imgSize} px view only) with the same budget, and prints both
validation AUCs (BENCHMARKS.md has the measured time and AUCs).
With --data, the defaults are the paper's recipe (${DEFAULTS.optimizer}, batch ${DEFAULTS.batchSize}, ${DEFAULTS.epochs} epochs) at the model's sizes.
With an MNIST-style IDX folder as --data (e.g. Fashion-MNIST), trains dwsnet (nn.dwsNet(), 75,850 parameters),
multiclass, Adam + one-cycle (peak --lr 0.005), batch 128, 10 epochs, flips and pad-2 crops, seed 0; takes
--epochs, --batch-size, --lr, --seed, --no-augment, --limit, --out; writes log.jsonl and checkpoint/ (the same command resumes).

Outputs (run folder): per_epoch.csv, per_batch.csv, timing.csv, config.json, split.csv,
predictions.csv (best epoch), skipped.csv (if any), loss.png, auc.png, roc.png, checkpoints last/ and best/.
Exit codes: 0 done, 1 run failed (e.g. NaN loss), 2 usage error, 130 interrupted (resume with --resume DIR).

Examples:
  npm run train
  npm run train -- --data ../shared/data/isic-sample --model b0-full-split --epochs 2 --img-size 64 --hr-size 256
  npm run train -- --preset paper --data /data/isic --model b0-full-split --tta 3
  npm run train -- --resume runs/b0-full-split-20250101-120000
  npm run train -- --data /usr/share/datasets/fashion-mnist --epochs 6 --out runs/fmnist`;

/** The command: flags from the table in config.ts, each with its default in the help. */
export const TRAIN_COMMAND: CommandSpec<typeof TRAIN_OPTIONS> = {
  name: 'train',
  description: 'Train an EfficientNet / stochastic-convolution model on skin-lesion images.',
  options: TRAIN_OPTIONS,
  after: DEFAULT_RUN,
  helpLine: (o) => helpLine(o as (typeof FLAGS)[number]),
};
export const trainCommand = () => command(TRAIN_COMMAND);

/** Flags given on the command line, parsed and validated (usage errors thrown as UsageExit). */
export function cliValues(argv: readonly string[]): { values: Partial<TrainConfig>; explicit: Set<Key> } | null {
  const p = parseOptions(TRAIN_COMMAND, argv);
  return p && { values: p.given as Partial<TrainConfig>, explicit: new Set(Object.keys(p.given) as Key[]) };
}

export async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof cliValues>;
  try {
    parsed = cliValues(argv);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('train', e.message);
    throw e;
  }
  if (!parsed) return EXIT.ok;
  const { values, explicit } = parsed;
  const idx = values.data?.find(isIdxFolder);
  if (idx) return trainIdxFolder(idx, values, explicit);
  const cfgE = values.resume ? resumeConfig(values.resume, values, explicit) : resolveConfig(values);
  if (E.isLeft(cfgE)) return printUsage('train', cfgE.left.message);
  const cfg = cfgE.right;

  const reporter = consoleReporter({ quiet: cfg.quiet });
  let stop = false;
  const onSigint = () => {
    if (stop) {
      process.stderr.write('\nsecond interrupt: exiting now (checkpoints on disk are intact)\n');
      process.exit(EXIT.interrupted);
    }
    stop = true;
    reporter.stop();
    process.stderr.write('\ninterrupt: finishing the current step, then saving a resumable checkpoint (Ctrl-C again to quit at once)\n');
  };
  process.on('SIGINT', onSigint);
  try {
    const io = { reporter, stopRequested: () => stop, explicit, argv };
    const outDir = runFolder(cfg);
    const run = { ...cfg, out: outDir };
    const resuming = cfg.resume !== null;
    if (run.baseline !== null) {
      const bad = checkBaseline(run);
      if (E.isLeft(bad)) return printUsage('train', `--baseline: ${bad.left.message}`);
      for (const l of baselineIntro(run, outDir)) reporter.line(l);
    }
    // Only a run with a baseline reads back a finished run (its baseline may be what is unfinished).
    const r = run.baseline !== null ? await trainLeg(run, io, resuming) : await train(run, io);
    const code = finish(r, reporter, outDir);
    if (code !== EXIT.ok || run.baseline === null || E.isLeft(r)) return code;
    const b = await trainLeg(baselineConfig(run, outDir), io, resuming);
    const bcode = finish(b, reporter, outDir);
    if (bcode === EXIT.ok && E.isRight(b)) reporter.line(comparisonLine(run.model, r.right.outcome, run.baseline, b.right.outcome));
    return bcode;
  } finally {
    process.off('SIGINT', onSigint);
    reporter.stop();
  }
}

/** The flags an IDX run takes (the rest configure the EfficientNet runs on image folders). */
const IDX_FLAGS: ReadonlySet<Key> = new Set<Key>(['data', 'model', 'task', 'epochs', 'batchSize', 'lr', 'seed', 'augment', 'limit', 'out', 'quiet']);
const flagName = (k: Key) => FLAGS.find((f) => f.key === k)!.flags.split(' ')[0];

/**
 * `--data` is an MNIST-style IDX folder (e.g. Fashion-MNIST): trains `nn.dwsNet()` on it, multiclass,
 * with Adam + one-cycle, flips and pad-2 crops (src/train/idxrun.ts; defaults 10 epochs, batch 128,
 * peak lr 0.005, seed 0). The run folder gets log.jsonl and checkpoint/; the same command again resumes.
 */
function trainIdxFolder(dir: string, values: Partial<TrainConfig>, explicit: ReadonlySet<Key>): number {
  const other = [...explicit].filter((k) => !IDX_FLAGS.has(k));
  if (other.length) return printUsage('train', `${dir} is an IDX folder, on which the CLI trains dwsnet and takes only ${[...IDX_FLAGS].map(flagName).join(', ')}; not ${other.map(flagName).join(', ')}`);
  if (values.data!.length > 1) return printUsage('train', `--data: ${dir} is an IDX folder; give it alone (got ${values.data!.length} folders)`);
  if (explicit.has('model') && values.model !== 'dwsnet') return printUsage('train', `--model ${values.model}: on the IDX folder ${dir} the CLI trains dwsnet (nn.dwsNet(); --model dwsnet)`);
  if (explicit.has('task') && values.task !== 'multiclass') return printUsage('train', `--task ${values.task}: IDX labels are classes; use --task multiclass (the default for an IDX folder)`);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const out = values.out ?? path.join('runs', `dwsnet-${stamp}`);
  const augment = values.augment !== false;
  try {
    fs.mkdirSync(out, { recursive: true });
    runIdx(
      {
        data: dir, epochs: values.epochs ?? 10, batchSize: values.batchSize ?? 128, lr: values.lr ?? 0.005, flip: augment, padCrop: augment ? 2 : 0,
        seed: values.seed ?? 0, trainLimit: values.limit ?? 0, testLimit: values.limit ?? 0, log: path.join(out, 'log.jsonl'), checkpoint: path.join(out, 'checkpoint'),
      },
      (line) => process.stdout.write(`${line}\n`),
    );
  } catch (e) {
    process.stderr.write(`train: ${(e as Error).message}\n`);
    return EXIT.failure;
  }
  process.stdout.write(`outputs in ${out} (log.jsonl, checkpoint/; run the same command again to resume)\n`);
  return EXIT.ok;
}

/**
 * Reports how a leg ended and returns the exit code. `resumeDir` is the folder that
 * `--resume` continues (the run's, also when the leg is its baseline).
 */
function finish(r: E.Either<TrainError, RunResult>, reporter: Reporter, resumeDir: string): number {
  if (E.isLeft(r)) {
    if (r.left._tag === 'UsageError') return printUsage('train', r.left.message);
    process.stderr.write(`train: ${r.left.message}\n`);
    return EXIT.failure;
  }
  const { outDir, outcome: o } = r.right;
  const f = (x: number | null) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(4));
  const perEpoch = o.epochSeconds.length ? ` ${(o.epochSeconds.reduce((a, b) => a + b, 0) / o.epochSeconds.length).toFixed(1)} s per epoch;` : '';
  switch (o.kind) {
    case 'completed':
    case 'early-stopped':
      reporter.line(
        `${o.kind === 'completed' ? 'done' : 'stopped early'}: validation AUC ${f(o.lastAuc)} at the last epoch, best ${f(o.bestAuc)} at epoch ${o.bestEpoch ?? '-'};${perEpoch} outputs in ${outDir}`,
      );
      return EXIT.ok;
    case 'interrupted':
      reporter.line(
        `interrupted at epoch ${o.epoch + 1}, batch ${o.step}: resumable checkpoint saved in ${outDir}/last (best validation AUC so far ${f(o.bestAuc)}); continue with: npm run train -- --resume ${resumeDir}`,
      );
      return EXIT.interrupted;
    case 'diverged':
      process.stderr.write(
        `train: the loss became ${Number.isNaN(o.lossValue) ? 'NaN' : 'infinite'} at epoch ${o.epoch + 1}, batch ${o.step + 1}; stopped without saving it. ` +
          `${o.lastGood ? `The last good checkpoint is ${o.lastGood}.` : 'No epoch had finished, so there is no checkpoint.'} Try a lower --lr or --clip 1.\n`,
      );
      return EXIT.failure;
    case 'failed':
      process.stderr.write(`train: ${o.message}\n`);
      return EXIT.failure;
  }
}

runIfMain(import.meta.url, main, 'train');
