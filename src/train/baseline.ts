/**
 * A run with its same-budget comparison (--baseline): the configured model first, then the
 * baseline model on the same data, split, epochs, batch, optimizer and seed, in
 * `<run folder>/baseline-<model>`. Resuming the run folder finishes whichever of the two is
 * unfinished; a finished one is read back from its folder instead of being trained again.
 */
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { stochSlice } from '../nn/efficientnet.ts';
import { readTrainerState } from './checkpoint.ts';
import { RESUMABLE_KEYS, type TrainConfig } from './config.ts';
import type { Outcome } from './loop.ts';
import { RunLog } from './runlog.ts';
import { type RunIo, type RunResult, type TrainError, checkModel, modelSpecFor, resumeConfig, train } from './run.ts';

export const baselineFolder = (outDir: string, model: string): string => path.join(outDir, `baseline-${model}`);

/** The baseline's configuration: the run's, with the baseline model and its own folder. */
export function baselineConfig(cfg: TrainConfig, outDir: string): TrainConfig {
  if (cfg.baseline === null) throw new Error('baselineConfig: the configuration has no baseline');
  return { ...cfg, model: cfg.baseline, baseline: null, out: baselineFolder(outDir, cfg.baseline), resume: null };
}

/** The outcome of a run folder whose `last/` checkpoint has finished all `epochs`, or null. */
export function finishedOutcome(dir: string, epochs: number): Outcome | null {
  const ts = readTrainerState(path.join(dir, 'last'));
  if (E.isLeft(ts) || ts.right.epoch < epochs) return null;
  const curves = new RunLog(dir).curves();
  const lastAuc = curves?.valAuc.at(-1);
  return {
    kind: 'completed',
    epochs: ts.right.epoch,
    bestAuc: ts.right.bestMetric,
    bestEpoch: ts.right.bestEpoch,
    lastAuc: lastAuc !== undefined && Number.isFinite(lastAuc) ? lastAuc : null,
    epochSeconds: [],
  };
}

/**
 * Trains one leg of the comparison (`cfg.out` set). Without `resume`: afresh. With it: a leg
 * that finished is read back, one with a `last/` checkpoint continues (taking the resumable
 * flags given on the command line), one never started starts.
 */
export async function trainLeg(cfg: TrainConfig, io: RunIo, resume: boolean): Promise<E.Either<TrainError, RunResult>> {
  const dir = path.resolve(cfg.out!);
  if (!resume) return train({ ...cfg, resume: null }, io);
  const done = finishedOutcome(dir, cfg.epochs);
  if (done) {
    io.reporter.line(`${cfg.model}: already trained for ${cfg.epochs} epochs in ${dir}; reading its results`);
    return E.right({ outDir: dir, outcome: done });
  }
  if (cfg.resume !== null && path.resolve(cfg.resume) === dir) return train(cfg, io);
  if (E.isLeft(readTrainerState(path.join(dir, 'last')))) return train({ ...cfg, resume: null }, io);
  const saved = resumeConfig(dir, cfg, new Set([...io.explicit].filter((k) => RESUMABLE_KEYS.includes(k))));
  return E.isLeft(saved) ? saved : train(saved.right, io);
}

/** Checks the baseline's model name and sizes before any training starts. */
export const checkBaseline = (cfg: TrainConfig): E.Either<TrainError, unknown> =>
  cfg.baseline === null ? E.right(null) : checkModel(modelSpecFor({ ...cfg, model: cfg.baseline }, cfg.task === 'binary' ? 1 : 2));

/** The opening lines of a run with a baseline: what it shows, in plain words, and where it writes. */
export function baselineIntro(cfg: TrainConfig, outDir: string): string[] {
  const base = cfg.baseline!;
  const folder = `run folder: ${outDir} (the baseline in ${baselineFolder(outDir, base)})`;
  const mc = checkModel(modelSpecFor(cfg, 1));
  const bc = checkModel(modelSpecFor({ ...cfg, model: base }, 1));
  const lowResBaseline = E.isRight(bc) && bc.right.sides.high === null;
  if (cfg.data.length > 0 || !lowResBaseline || E.isLeft(mc) || mc.right.sides.low === null || mc.right.sides.high === null) {
    return [`This run trains ${cfg.model}, then the baseline ${base} on the same data, split, epochs and optimizer, and compares their validation AUC.`, folder];
  }
  const m = mc.right;
  const window = stochSlice(m);
  const { low, high } = m.sides;
  return [
    `This run shows the paper's thesis on the built-in synthetic set, whose two classes differ only in a fine texture (period 3–5 px): ` +
      `the ${cfg.syntheticSize}-px images show it, their ${low}-px low-resolution view has lost it.`,
    `It trains ${cfg.model}, which adds stochastic convolutions over ${window}-px windows of the ${high}-px image to the ${low}-px view, ` +
      `then the baseline ${base}, which sees only the ${low}-px view, with the same data, epochs and optimizer: ` +
      `${cfg.model} should separate the classes, ${base}, with no texture to see, should stay well below it.`,
    folder,
  ];
}

const auc = (x: number | null) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(4));

/** The closing line: both models' validation AUC at the last epoch (and their best). */
export function comparisonLine(model: string, main: Outcome, base: string, baseline: Outcome): string {
  const last = (o: Outcome) => ('lastAuc' in o ? o.lastAuc : null);
  const best = (o: Outcome) => ('bestAuc' in o ? o.bestAuc : null);
  return (
    `result: validation AUC ${auc(last(main))} for ${model} vs ${auc(last(baseline))} for the baseline ${base} at the last epoch ` +
    `(best ${auc(best(main))} vs ${auc(best(baseline))}), same data, split and training budget`
  );
}
