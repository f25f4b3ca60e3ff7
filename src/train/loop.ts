/**
 * The training loop as a fold over epochs: `epochStep(env, state) → state | outcome`, starting
 * from the state a run starts or resumes with. The state record (`LoopState`) is everything that
 * changes — weights, optimizer, position, the epoch's accumulators, the best epoch so far — and the
 * pure functions `afterBatch`, `closeEpoch` and `shouldStopEarly` are the only places it changes.
 * Effects go through two objects: the RunLog (every table and plot) and the Checkpointer (last/
 * and best/). Validation follows every epoch; checkpoints every epoch end (and a stop mid-epoch).
 *
 * Randomness: every key is folded from the run's root key by position — (epoch, step,
 * micro-batch) in training, (batch, pass, chunk) in validation — and the data loader derives its
 * order and augmentations from (seed, epoch, position). Nothing depends on what ran before, so a
 * run resumed from a checkpoint at step s of epoch e continues bit for bit.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { keyData } from '../tensor/random.ts';
import type { ModelConfig, Params, State } from '../nn/efficientnet.ts';
import { createLoader, createPool, type Batch, type Loader, type WorkerPool } from '../data/loader.ts';
import { createImageCache } from '../data/imagecache.ts';
import type { Item } from '../data/readers.ts';
import { skippedRecord } from '../data/split.ts';
import { parseCsv, csvRecord } from '../data/csv.ts';
import { type Checkpoint, type PartialEpoch, type TrainerState, renderCheckpointError, saveCheckpoint } from './checkpoint.ts';
import type { TrainConfig } from './config.ts';
import { type LossSpec, hostLosses, probabilities } from './losses.ts';
import { createOptimizer, type OptState, type Optimizer } from './optim.ts';
import { learningRate, type ScheduleConfig } from './schedule.ts';
import type { Reporter } from './report.ts';
import { type RunLog, type SkipRow, epochRow } from './runlog.ts';
import { MICRO_BATCH_BUDGET_BYTES, type Predictions, type StepResult, fitMicroBatch, highBytes, microStepArenaBytes, predictAll, rootKey, trainKey, trainStep } from './step.ts';

export { evalKey, initKey, rootKey, trainKey } from './step.ts';

// ---- the state and its pure transitions ----------------------------------------------------------

/** What the epoch in progress has accumulated (a mid-epoch checkpoint stores it as `partial`). */
export interface EpochAcc {
  readonly lossSum: number;
  readonly count: number;
  readonly labels: readonly number[];
  /** Row-major scores ([count] for one output, [count, classes] otherwise). */
  readonly scores: readonly number[];
  readonly skipped: readonly SkipRow[];
  /** Images trained on by this process in this epoch (for the images/s figure; not checkpointed). */
  readonly images: number;
}

export interface LoopState {
  readonly params: Params;
  readonly state: State;
  readonly opt: OptState;
  /** Epochs finished; the epoch in progress is `epoch` (0-based). */
  readonly epoch: number;
  /** Batches of the epoch in progress that are done. */
  readonly step: number;
  /** Optimizer steps since the start of the run. */
  readonly globalStep: number;
  readonly acc: EpochAcc;
  readonly bestAuc: number | null;
  readonly bestEpoch: number | null;
  /** The validation AUC of the last epoch this process finished. */
  readonly lastAuc: number | null;
  /** Wall time of each epoch this process finished. */
  readonly epochSeconds: readonly number[];
}

export const emptyAcc: EpochAcc = { lossSum: 0, count: 0, labels: [], scores: [], skipped: [], images: 0 };

/** A skipped-image record as a checkpoint's `partial.skipped` keeps it: one CSV record. */
const skipToText = (r: SkipRow): string => csvRecord(r).replace(/\n$/, '');
const skipFromText = (t: string): SkipRow => {
  const r = parseCsv('trainer.json', t, { header: false, trim: false });
  const f = E.isRight(r) ? (r.right.rows[0] ?? []) : [t];
  return [f[0] ?? '', f[1] ?? '', f.slice(2).join(',')];
};

export const accToPartial = (a: EpochAcc): PartialEpoch => ({ lossSum: a.lossSum, count: a.count, labels: [...a.labels], scores: [...a.scores], skipped: a.skipped.map(skipToText) });
export const accFromPartial = (p: PartialEpoch): EpochAcc => ({ lossSum: p.lossSum, count: p.count, labels: p.labels, scores: p.scores, skipped: p.skipped.map(skipFromText), images: 0 });

/** The state a run starts with: fresh, or where a checkpoint's trainer state left it. */
export function initialState(start: LoopStart, optimizer: Optimizer): LoopState {
  const t = start.trainer;
  return {
    params: start.params,
    state: start.state,
    opt: start.opt ?? optimizer.init(start.params),
    epoch: t?.epoch ?? 0,
    step: t?.stepInEpoch ?? 0,
    globalStep: t?.globalStep ?? 0,
    acc: t?.partial ? accFromPartial(t.partial) : emptyAcc,
    bestAuc: t?.bestMetric ?? null,
    bestEpoch: t?.bestEpoch ?? null,
    lastAuc: null,
    epochSeconds: [],
  };
}

/** The state after the optimizer step `r` on batch `b` of the epoch in progress. */
export function afterBatch(s: LoopState, b: Pick<Batch, 'index' | 'labels' | 'skipped'>, r: StepResult, numClasses: number): LoopState {
  const n = b.labels.length;
  return {
    ...s,
    params: r.params,
    state: r.state,
    opt: r.opt,
    step: b.index + 1,
    globalStep: s.globalStep + 1,
    acc: {
      lossSum: s.acc.lossSum + r.lossSum,
      count: s.acc.count + n,
      labels: [...s.acc.labels, ...b.labels],
      scores: [...s.acc.scores, ...probabilities(r.logits, numClasses)],
      skipped: [...s.acc.skipped, ...b.skipped.map(skippedRecord)],
      images: s.acc.images + n,
    },
  };
}

/**
 * The state once the epoch in progress is validated with AUC `valAuc` after `seconds`, and whether
 * it is the best so far (the first epoch always is, so best/ exists even when the AUC is undefined).
 */
export function closeEpoch(s: LoopState, valAuc: number, seconds: number): { state: LoopState; improved: boolean } {
  const finite = Number.isFinite(valAuc);
  const improved = (finite && (s.bestAuc === null || valAuc > s.bestAuc)) || s.bestEpoch === null;
  const epoch = s.epoch + 1;
  const state: LoopState = {
    ...s,
    epoch,
    step: 0,
    acc: emptyAcc,
    bestAuc: improved && finite ? valAuc : s.bestAuc,
    bestEpoch: improved ? epoch : s.bestEpoch,
    lastAuc: valAuc,
    epochSeconds: [...s.epochSeconds, seconds],
  };
  return { state, improved };
}

/** Early stopping: `patience` finished epochs without a better validation AUC, before the last epoch. */
export const shouldStopEarly = (cfg: Pick<TrainConfig, 'patience' | 'epochs'>, s: LoopState): boolean =>
  cfg.patience !== null && s.bestEpoch !== null && s.epoch - s.bestEpoch >= cfg.patience && s.epoch < cfg.epochs;

/** The learning-rate schedule of a run with `stepsPerEpoch` batches per epoch. */
export const scheduleOf = (cfg: TrainConfig, stepsPerEpoch: number): ScheduleConfig => ({
  name: cfg.schedule,
  lr: cfg.lr,
  epochs: cfg.epochs,
  stepsPerEpoch,
  warmupEpochs: cfg.warmupEpochs,
  decay: cfg.decay,
});

// ---- outcomes ------------------------------------------------------------------------------------

type Scores = { readonly bestAuc: number | null; readonly bestEpoch: number | null; readonly lastAuc: number | null; readonly epochSeconds: number[] };
export type Outcome =
  | ({ readonly kind: 'completed' | 'early-stopped'; readonly epochs: number } & Scores)
  | ({ readonly kind: 'interrupted'; readonly epoch: number; readonly step: number } & Scores)
  | { readonly kind: 'diverged'; readonly epoch: number; readonly step: number; readonly lossValue: number; readonly lastGood: string | null; readonly epochSeconds: number[] }
  | { readonly kind: 'failed'; readonly message: string; readonly epochSeconds: number[] };

const scores = (s: LoopState): Scores => ({ bestAuc: s.bestAuc, bestEpoch: s.bestEpoch, lastAuc: s.lastAuc, epochSeconds: [...s.epochSeconds] });
const ended = (kind: 'completed' | 'early-stopped', s: LoopState): Outcome => ({ kind, epochs: s.epoch, ...scores(s) });
const isOutcome = (x: LoopState | Outcome): x is Outcome => 'kind' in x;

// ---- checkpoints ---------------------------------------------------------------------------------

/** The run's two checkpoints: `last/` (where a resume continues) and `best/` (the best validation AUC). */
export class Checkpointer {
  readonly last: string;
  readonly best: string;

  constructor(dir: string, private readonly model: TrainerState['model'], private readonly seed: number) {
    this.last = path.join(dir, 'last');
    this.best = path.join(dir, 'best');
  }

  /** The trainer state of a loop state: mid-epoch (with its accumulators) when batches of the epoch are done. */
  trainerOf(s: LoopState): TrainerState {
    const mid = s.step > 0;
    return {
      version: 1,
      epoch: s.epoch,
      stepInEpoch: s.step,
      globalStep: s.globalStep,
      rngKey: keyData(rootKey(this.seed)),
      bestMetric: s.bestAuc,
      bestEpoch: s.bestEpoch,
      weightsEpoch: mid ? null : s.epoch,
      partial: mid ? accToPartial(s.acc) : null,
      model: this.model,
      extra: { seed: this.seed },
    };
  }

  /** Saves `s` as `which`; a failure comes back as one line. */
  save(which: 'last' | 'best', s: LoopState): E.Either<string, void> {
    const ck: Checkpoint = { params: s.params, state: s.state, opt: s.opt, trainer: this.trainerOf(s) };
    return E.mapLeft(renderCheckpointError)(saveCheckpoint(which === 'last' ? this.last : this.best, ck));
  }

  /** Removes both (a fresh run in a folder that held one). */
  clear(): void {
    for (const d of [this.last, this.best]) fs.rmSync(d, { recursive: true, force: true });
  }

  /** `last/` when it exists (what a diverged run can go back to). */
  lastGood = (): string | null => (fs.existsSync(this.last) ? this.last : null);
}

// ---- the loop ------------------------------------------------------------------------------------

export interface LoopContext {
  readonly cfg: TrainConfig;
  readonly mc: ModelConfig;
  readonly train: readonly Item[];
  readonly val: readonly Item[];
  readonly classes: readonly string[];
  readonly loss: LossSpec;
  readonly log: RunLog;
  readonly checkpoints: Checkpointer;
  readonly reporter: Reporter;
  /** Set by the SIGINT handler: finish the step, checkpoint, return. */
  readonly stopRequested: () => boolean;
}

export interface LoopStart {
  readonly params: Params;
  readonly state: State;
  /** Present when resuming. */
  readonly opt?: OptState;
  readonly trainer?: TrainerState;
}

export function optimizerFor(cfg: TrainConfig): Optimizer {
  return createOptimizer({ name: cfg.optimizer, weightDecay: cfg.weightDecay, momentum: cfg.momentum, alpha: cfg.alpha, eps: cfg.eps, nesterov: cfg.nesterov });
}

/** What stays fixed while the loop runs: the context, loaders, optimizer, schedule and micro-batch size. */
export interface LoopEnv {
  readonly ctx: LoopContext;
  readonly optimizer: Optimizer;
  readonly trainLoader: Loader;
  readonly valLoader: Loader;
  readonly steps: number;
  readonly sched: ScheduleConfig;
  readonly micro: number;
  readonly pool: WorkerPool | null;
}

function openLoop(ctx: LoopContext, start: LoopStart): LoopEnv {
  const { cfg, mc } = ctx;
  // One pool of decoding threads shared by the train and validation loaders (each thread costs ~1 s to start).
  const pool = cfg.workers > 0 ? createPool(cfg.workers) : null;
  // One cache of decoded images for both loaders (their images differ; the budget is the run's).
  const cache = cfg.imageCache > 0 ? createImageCache(cfg.imageCache * 2 ** 20) : null;
  const common = { sides: mc.sides, highBytes: highBytes(), seed: cfg.seed, workers: cfg.workers, prefetch: 2, batchSize: cfg.batchSize, ...(pool ? { pool } : {}), ...(cache ? { cache } : {}) };
  // A last batch of one image is dropped (batch norm cannot normalise a single 1 × 1 value).
  const trainLoader = createLoader(ctx.train, { ...common, augment: cfg.augment, shuffle: true, dropLast: ctx.train.length % cfg.batchSize === 1 });
  const valLoader = createLoader(ctx.val, { ...common, augment: false, shuffle: false });
  // Micro-batches whose compiled step fits the wasm32 memory (compiling the step once, up front).
  const micro = fitMicroBatch((n) => microStepArenaBytes(mc, ctx.loss, start.params, start.state, n), cfg.microBatch);
  if (micro < cfg.microBatch) ctx.reporter.warn(`--micro-batch ${cfg.microBatch} needs more than ${(MICRO_BATCH_BUDGET_BYTES / 2 ** 30).toFixed(2)} GiB of intermediates: using ${micro}`);
  const steps = trainLoader.numBatches;
  return { ctx, optimizer: optimizerFor(cfg), trainLoader, valLoader, steps, sched: scheduleOf(cfg, steps), micro, pool };
}

/** A stop: `s` saved as last/ (mid-epoch when batches of the epoch are done), or the failure to save it. */
function interrupt(env: LoopEnv, s: LoopState): Outcome {
  const saved = env.ctx.checkpoints.save('last', s);
  if (E.isLeft(saved)) return { kind: 'failed', message: saved.left, epochSeconds: [...s.epochSeconds] };
  return { kind: 'interrupted', epoch: s.epoch, step: s.step, ...scores(s) };
}

/** The training batches of the epoch in progress that are not done yet, folded with `afterBatch`. */
async function trainEpoch(env: LoopEnv, s0: LoopState): Promise<LoopState | Outcome> {
  const { ctx } = env;
  const { cfg, mc } = ctx;
  let s = s0;
  if (s.step >= env.steps) return s;
  for await (const b of env.trainLoader.epoch(s.epoch)) {
    if (b.index < s.step) continue; // done before the checkpoint
    const r = await trainStep({
      mc, params: s.params, state: s.state, opt: s.opt, optimizer: env.optimizer, loss: ctx.loss, batch: b,
      lr: learningRate(env.sched, s.epoch, b.index), microBatch: env.micro, clip: cfg.clip, keyFor: (m) => trainKey(cfg.seed, s.epoch, b.index, m),
    });
    if (!Number.isFinite(r.lossSum)) {
      return { kind: 'diverged', epoch: s.epoch, step: b.index, lossValue: r.lossSum / b.labels.length, lastGood: ctx.checkpoints.lastGood(), epochSeconds: [...s.epochSeconds] };
    }
    s = afterBatch(s, b, r, mc.numClasses);
    ctx.log.batch(s.globalStep, r.lossSum / b.labels.length);
    ctx.reporter.update(s.acc.count, s.acc.lossSum / s.acc.count);
    if (ctx.stopRequested() && s.step < env.steps) return interrupt(env, s);
  }
  return s;
}

/** Validation predictions with the state's weights, or null when a stop was requested meanwhile. */
async function validate(env: LoopEnv, s: LoopState): Promise<Predictions | null> {
  const { ctx } = env;
  ctx.reporter.start(`epoch ${s.epoch + 1}/${ctx.cfg.epochs} val`, ctx.val.length);
  const val = await predictAll({
    mc: ctx.mc, params: s.params, state: s.state, loader: env.valLoader.epoch(0), tta: ctx.cfg.tta, microBatch: env.micro, seed: ctx.cfg.seed,
    onBatch: (d) => ctx.reporter.update(d, null), stop: ctx.stopRequested,
  });
  ctx.reporter.stop();
  return val;
}

/** Seconds since `t0` (a performance.now() reading). */
const since = (t0: number): number => (performance.now() - t0) / 1000;
const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));

/** One epoch of the fold: train the rest of the epoch, validate, log, checkpoint; the next state or how the run ended. */
export async function epochStep(env: LoopEnv, s0: LoopState): Promise<LoopState | Outcome> {
  const { ctx } = env;
  const t0 = performance.now();
  ctx.reporter.start(`epoch ${s0.epoch + 1}/${ctx.cfg.epochs} train`, ctx.train.length);
  ctx.reporter.update(s0.acc.count, s0.acc.count ? s0.acc.lossSum / s0.acc.count : null);
  const trained = await trainEpoch(env, s0);
  ctx.reporter.stop();
  if (isOutcome(trained)) return trained;
  const trainSecs = since(t0);
  const tv = performance.now();
  const val = await validate(env, trained);
  // Stopped during validation: the training part of the epoch is done; a resume validates.
  if (!val) return interrupt(env, trained);
  return finishEpoch(env, trained, val, { t0, trainSecs, valSecs: since(tv) });
}

/** The end of an epoch: its row, timing and skipped images logged, best/ and last/ saved, the stopping rules applied. */
async function finishEpoch(env: LoopEnv, s: LoopState, val: Predictions, t: { t0: number; trainSecs: number; valSecs: number }): Promise<LoopState | Outcome> {
  const { ctx } = env;
  const { cfg, log, checkpoints } = ctx;
  const lr = learningRate(env.sched, s.epoch, 0);
  const valLosses = hostLosses(ctx.loss, val.labels, val.logits ?? val.probs, val.logits !== null);
  const valLoss = valLosses.reduce((a, b) => a + b, 0) / Math.max(1, valLosses.length);
  const trainLoss = s.acc.lossSum / Math.max(1, s.acc.count);
  const { row, valAuc } = epochRow({ epoch: s.epoch + 1, trainLoss, valLoss, trainLabels: s.acc.labels, trainProbs: s.acc.scores, val, classes: ctx.classes, numClasses: ctx.mc.numClasses, lr });
  const skipped = [...s.acc.skipped, ...val.skipped.map((k): SkipRow => [k.name, k.path, k.reason])];
  const secs = since(t.t0);
  const rate = s.acc.images / Math.max(t.trainSecs, 1e-9);
  const { state, improved } = closeEpoch(s, valAuc, secs);
  log.skipped(skipped);
  log.epoch(row);
  log.timingRow(state.epoch, secs, t.trainSecs, t.valSecs, rate);
  if (improved) log.predictionsOf(val, ctx.classes, ctx.mc.numClasses);
  for (const which of improved ? (['best', 'last'] as const) : (['last'] as const)) {
    const saved = checkpoints.save(which, state);
    if (E.isLeft(saved)) return { kind: 'failed', message: saved.left, epochSeconds: [...state.epochSeconds] };
  }
  await log.plots();
  ctx.reporter.line(
    `epoch ${state.epoch}/${cfg.epochs}  train loss ${f4(trainLoss)} auc ${f4(row['Train RoC'])} | val loss ${f4(valLoss)} auc ${f4(valAuc)}` +
      ` (best ${state.bestAuc === null ? '--' : f4(state.bestAuc)} @ ${state.bestEpoch}) | lr ${lr.toExponential(2)} | ${secs.toFixed(1)} s, ${rate.toFixed(2)} img/s` +
      (skipped.length ? ` | ${skipped.length} skipped` : ''),
  );
  if (ctx.stopRequested()) return { kind: 'interrupted', epoch: state.epoch, step: 0, ...scores(state) };
  if (shouldStopEarly(cfg, state)) {
    ctx.reporter.line(`early stopping: no better validation AUC for ${cfg.patience} epochs (best ${f4(state.bestAuc ?? NaN)} at epoch ${state.bestEpoch})`);
    return ended('early-stopped', state);
  }
  return state;
}

/** Runs the fold from `start` until the last epoch, a stop, a divergence or a failure. */
export async function runLoop(ctx: LoopContext, start: LoopStart): Promise<Outcome> {
  const env = openLoop(ctx, start);
  try {
    let s: LoopState | Outcome = initialState(start, env.optimizer);
    while (!isOutcome(s) && s.epoch < ctx.cfg.epochs) s = await epochStep(env, s);
    return isOutcome(s) ? s : ended('completed', s);
  } finally {
    ctx.reporter.stop();
    await env.trainLoader.close();
    await env.valLoader.close();
    await env.pool?.close();
  }
}
