/**
 * The training loop. One optimizer step = one batch, split into micro-batches whose gradients
 * (of the summed loss / batch size) are added up, with the batch-norm state threaded through them;
 * validation after every epoch; checkpoints at every epoch end (and on SIGINT mid-epoch).
 *
 * Randomness: every key is folded from the run's root key by position — (epoch, step,
 * micro-batch) in training, (batch, pass, chunk) in validation — and the data loader derives its
 * order and augmentations from (seed, epoch, position). Nothing depends on what ran before, so a
 * run resumed from a checkpoint at step s of epoch e continues bit for bit.
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import type { Tensor } from '../tensor/tensor.ts';
import { data } from '../tensor/tensor.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, key as makeKey, keyData } from '../tensor/random.ts';
import { treeMap } from '../autograd/pytree.ts';
import { valueAndGrad } from '../autograd/transforms.ts';
import { type Jitted, jit, shapeOnly } from '../jit/jit.ts';
import { apply } from '../nn/model.ts';
import type { Input, ModelConfig, Params, State } from '../nn/efficientnet.ts';
import { createLoader, createPool, type Batch, type Loader } from '../data/loader.ts';
import type { Item } from '../data/readers.ts';
import { renderDataError } from '../data/errors.ts';
import { type Checkpoint, type PartialEpoch, type TrainerState, renderCheckpointError, saveCheckpoint } from './checkpoint.ts';
import type { TrainConfig } from './config.ts';
import { type LossSpec, type TargetLossFn, hostLosses, makeTargetLoss, probabilities, targetsFor } from './losses.ts';
import { binaryMetrics, flatBinaryMetrics, multiclassMetrics, rocAuc } from './metrics.ts';
import { clipByGlobalNorm, createOptimizer, type OptState, type Optimizer } from './optim.ts';
import { learningRate, type ScheduleConfig } from './schedule.ts';
import type { Reporter } from './report.ts';
import { type RunFiles, writePlots } from './outputs.ts';

// ---- keys ----------------------------------------------------------------------------------------

/** Streams of the run's root key, kept apart from the data loader's (which folds the epoch in first). */
const STREAM = { init: 0xe0000001, train: 0xe0000002, val: 0xe0000003 } as const;
export const rootKey = (seed: number): Key => makeKey(seed);
export const initKey = (seed: number): Key => foldIn(rootKey(seed), STREAM.init);
export const trainKey = (seed: number, epoch: number, step: number, micro: number): Key =>
  foldIn(foldIn(foldIn(foldIn(rootKey(seed), STREAM.train), epoch), step), micro);
/** Validation keys do not depend on the epoch: every epoch is scored with the same windows. */
export const evalKey = (seed: number, batch: number, pass: number, chunk: number): Key =>
  foldIn(foldIn(foldIn(foldIn(rootKey(seed), STREAM.val), batch), pass), chunk);

// ---- one step ------------------------------------------------------------------------------------

/** The model's input from a batch (rows [from, from + n)). */
export function batchInput(mc: ModelConfig, b: Batch, from = 0, n = b.labels.length): Input {
  const take = (x: Tensor) => (from === 0 && n === x.shape[0] ? x : o.slice(x, [from, 0, 0, 0], [n, x.shape[1], x.shape[2], x.shape[3]]));
  if (mc.highSize === null) return take(b.low);
  if (!b.high) throw new Error(`${mc.name}: the loader gave no high-res images`);
  return { low: take(b.low), high: take(b.high) };
}

export interface StepResult {
  readonly params: Params;
  readonly state: State;
  readonly opt: OptState;
  /** Sum of the per-image losses of the batch. */
  readonly lossSum: number;
  /** Host logits, row-major [B, classes]. */
  readonly logits: Float32Array;
  readonly gradNorm: number | null;
}

/**
 * Micro-batch sizes for a batch of B: `micro` each, except that a trailing single image joins
 * the previous micro-batch (batch norm in training mode needs more than one value per channel,
 * and the last feature maps of small inputs are 1 × 1).
 */
export function microBatches(B: number, micro: number): number[] {
  const out: number[] = [];
  for (let from = 0; from < B; from += micro) out.push(Math.min(micro, B - from));
  if (out.length > 1 && out[out.length - 1] === 1) {
    out.pop();
    out[out.length - 1] += 1;
  }
  return out;
}

/** What one micro-batch's forward and backward pass returns. */
interface MicroResult {
  readonly loss: Tensor;
  readonly state: State;
  readonly logits: Tensor;
  readonly grads: Params;
}

/**
 * One micro-batch's loss (scaled by `scale`, 1 / batch size), logits, new BN state and gradients,
 * as a function of tensors and a key only — the unit `jit` compiles: one entry per micro-batch
 * shape (a smaller last micro-batch compiles once more), reused across steps and epochs.
 */
function microStep(mc: ModelConfig, loss: TargetLossFn) {
  return (params: Params, state: State, input: Input, targets: Tensor, scale: Tensor, key: Key): MicroResult => {
    const [[lossT, aux], grads] = valueAndGrad(
      (p: Params) => {
        const [lg, ns] = apply(mc, p, state, input, { training: true, key });
        return [o.mul(loss(lg, targets), scale), { state: ns, logits: lg }] as [Tensor, { state: State; logits: Tensor }];
      },
      { hasAux: true },
    )(params);
    return { loss: lossT, state: aux.state, logits: aux.logits, grads };
  };
}

/** The compiled micro-step of a model and loss, made once and kept while both live. */
type MicroStep = ReturnType<typeof microStep>;
const compiledSteps = new WeakMap<ModelConfig, WeakMap<LossSpec, Jitted<Parameters<MicroStep>, MicroResult>>>();
function compiledStep(mc: ModelConfig, spec: LossSpec): Jitted<Parameters<MicroStep>, MicroResult> {
  let byLoss = compiledSteps.get(mc);
  if (!byLoss) compiledSteps.set(mc, (byLoss = new WeakMap()));
  let f = byLoss.get(spec);
  if (!f) byLoss.set(spec, (f = jit(microStep(mc, makeTargetLoss(spec)))));
  return f;
}

/**
 * The bytes a compiled micro-step may keep in wasm32 linear memory (which ends at 4 GiB on Node 20
 * without memory64): its arena of intermediates, with 256 MiB left for the kernels' own buffers.
 * Inputs (the 1024² images too), parameters and outputs live outside the arena.
 */
export const MICRO_BATCH_BUDGET_BYTES = 4 * 2 ** 30 - 256 * 2 ** 20;

/** Live intermediate bytes of the compiled train micro-step at micro-batch `n` (traced on shapes only; the entry is kept for the run). */
export function microStepArenaBytes(mc: ModelConfig, spec: LossSpec, params: Params, state: State, n: number): number {
  const img = (s: number) => shapeOnly([n, 3, s, s], mc.dtype);
  const input: Input = mc.highSize === null ? img(mc.lowSize) : { low: img(mc.lowSize), high: img(mc.highSize) };
  const targets = shapeOnly([n, spec.numClasses === 1 ? 1 : spec.numClasses], mc.dtype);
  return compiledStep(mc, spec).lower(params, state, input, targets, shapeOnly([], mc.dtype), makeKey(0)).memory.intermediateBytes;
}

/**
 * The largest micro-batch ≤ `micro` whose step fits `budget` bytes (`bytesAt(n)`): intermediates
 * grow linearly with the batch, so each try scales n by budget / bytes (and at least one less).
 * At least 2 (batch norm needs two values per channel); throws if even 2 does not fit.
 */
export function fitMicroBatch(bytesAt: (n: number) => number, micro: number, budget = MICRO_BATCH_BUDGET_BYTES): number {
  for (let n = micro; ; ) {
    const b = bytesAt(n);
    if (b <= budget) return n;
    if (n <= 2) throw new Error(`micro-batch: even 2 images need ${(b / 2 ** 30).toFixed(2)} GiB of intermediates, over the ${(budget / 2 ** 30).toFixed(2)} GiB budget; lower --img-size or --hr-size`);
    n = Math.max(2, Math.min(n - 1, Math.floor((n * budget) / b)));
  }
}

/**
 * One optimizer step over a batch with gradient accumulation over micro-batches. Each
 * micro-batch's forward and backward pass runs compiled (`jit`, unless `jit: false`); the
 * accumulation, clipping and the optimizer update run eagerly (they take host numbers: the
 * learning rate, the step count, the global norm). The logits and the loss are read back
 * asynchronously (`data`), so a device backend does not block the thread.
 */
export async function trainStep(args: {
  mc: ModelConfig;
  params: Params;
  state: State;
  opt: OptState;
  optimizer: Optimizer;
  loss: LossSpec;
  batch: Batch;
  lr: number;
  microBatch: number;
  clip: number | null;
  keyFor: (micro: number) => Key;
  jit?: boolean;
}): Promise<StepResult> {
  const { mc, batch } = args;
  const B = batch.labels.length;
  const C = mc.numClasses;
  const step = args.jit === false ? microStep(mc, makeTargetLoss(args.loss)) : compiledStep(mc, args.loss);
  let state = args.state;
  let grads: Params | null = null;
  let lossSum = 0;
  const logits = new Float32Array(B * C);
  const chunks = microBatches(B, args.microBatch);
  for (let m = 0, from = 0; m < chunks.length; from += chunks[m], m++) {
    const n = chunks[m];
    const input = batchInput(mc, batch, from, n);
    const targets = targetsFor(args.loss, batch.labels.subarray(from, from + n), mc.dtype);
    const r = step(args.params, state, input, targets, o.full([], 1 / B, mc.dtype), args.keyFor(m));
    state = r.state;
    logits.set(await data(r.logits), from * C);
    lossSum += (await data(r.loss))[0] * B;
    grads = grads ? (treeMap((a: Tensor, b: Tensor) => o.add(a, b), grads, r.grads) as Params) : r.grads;
  }
  let gradNorm: number | null = null;
  if (args.clip !== null) [grads, gradNorm] = await clipByGlobalNorm(grads!, args.clip);
  const [params, opt] = args.optimizer.update(grads!, args.opt, args.params, args.lr);
  return { params, state, opt, lossSum, logits, gradNorm };
}

// ---- prediction over a loader --------------------------------------------------------------------

export interface Predictions {
  readonly names: string[];
  readonly labels: number[];
  /** Probabilities averaged over the passes, row-major [N, classes]. */
  readonly probs: Float64Array;
  /** With one pass, the logits (for exact losses); null otherwise. */
  readonly logits: Float64Array | null;
  readonly skipped: { name: string; path: string; reason: string }[];
}

/** The eval-mode logits as a function of tensors and a key (compiled per micro-batch shape). */
const evalForward = (mc: ModelConfig) => (params: Params, state: State, input: Input, key: Key): Tensor =>
  apply(mc, params, state, input, { training: false, key })[0];
const compiledForwards = new WeakMap<ModelConfig, ReturnType<typeof evalForward>>();
function compiledForward(mc: ModelConfig): ReturnType<typeof evalForward> {
  let f = compiledForwards.get(mc);
  if (!f) compiledForwards.set(mc, (f = jit(evalForward(mc))));
  return f;
}

/**
 * Eval-mode predictions over a loader, averaging `tta` passes with different keys (the stochastic
 * windows differ; deterministic models give identical passes). Returns null if `stop()` says so.
 */
export async function predictAll(args: {
  mc: ModelConfig;
  params: Params;
  state: State;
  loader: AsyncIterable<Batch>;
  tta: number;
  microBatch: number;
  seed: number;
  onBatch?: (done: number) => void;
  stop?: () => boolean;
  jit?: boolean;
}): Promise<Predictions | null> {
  const { mc } = args;
  const C = mc.numClasses;
  const forward = args.jit === false ? evalForward(mc) : compiledForward(mc);
  const names: string[] = [];
  const labels: number[] = [];
  const probRows: number[] = [];
  const logitRows: number[] = [];
  const skipped: Predictions['skipped'] = [];
  for await (const b of args.loader) {
    for (const s of b.skipped) skipped.push({ name: s.name, path: s.path, reason: renderDataError(s.error) });
    const B = b.labels.length;
    const sum = new Float64Array(B * C);
    for (let pass = 0; pass < args.tta; pass++) {
      for (let from = 0, chunk = 0; from < B; from += args.microBatch, chunk++) {
        const n = Math.min(args.microBatch, B - from);
        const lg = forward(args.params, args.state, batchInput(mc, b, from, n), evalKey(args.seed, b.index, pass, chunk));
        const host = await data(lg);
        if (args.tta === 1) for (const v of host) logitRows.push(v);
        const p = probabilities(host, C);
        for (let i = 0; i < p.length; i++) sum[from * C + i] += p[i] / args.tta;
      }
    }
    for (const v of sum) probRows.push(v);
    names.push(...b.names);
    for (const l of b.labels) labels.push(l);
    args.onBatch?.(names.length);
    if (args.stop?.()) return null;
  }
  return { names, labels, probs: Float64Array.from(probRows), logits: args.tta === 1 ? Float64Array.from(logitRows) : null, skipped };
}

// ---- metrics rows --------------------------------------------------------------------------------

/** The per-epoch CSV: the seed's five columns first, then the other metrics, then the rate. */
export function epochRow(args: {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  trainLabels: ArrayLike<number>;
  trainProbs: ArrayLike<number>;
  val: Predictions;
  classes: readonly string[];
  numClasses: number;
  lr: number;
}): { row: Record<string, number>; valAuc: number } {
  const C = args.numClasses;
  if (C === 1) {
    const m = binaryMetrics(args.val.labels, args.val.probs);
    const trainAuc = rocAuc(args.trainLabels, args.trainProbs);
    return {
      valAuc: m.auc,
      row: {
        Epoch: args.epoch,
        'Train Loss': args.trainLoss,
        'Val Loss': args.valLoss,
        'Train RoC': trainAuc,
        'Val RoC': m.auc,
        ...flatBinaryMetrics(m, 'Val '),
        LR: args.lr,
      },
    };
  }
  const m = multiclassMetrics(args.val.labels, args.val.probs, C);
  const t = multiclassMetrics(args.trainLabels, args.trainProbs, C);
  return {
    valAuc: m.macroAuc,
    row: {
      Epoch: args.epoch,
      'Train Loss': args.trainLoss,
      'Val Loss': args.valLoss,
      'Train RoC': t.macroAuc,
      'Val RoC': m.macroAuc,
      'Val Accuracy': m.accuracy,
      'Val Balanced Accuracy': m.balancedAccuracy,
      'Val Kappa': m.kappa,
      ...Object.fromEntries(m.aucPerClass.map((a, i) => [`Val RoC ${args.classes[i] ?? i}`, a])),
      LR: args.lr,
    },
  };
}

// ---- the loop ------------------------------------------------------------------------------------

export interface LoopContext {
  readonly cfg: TrainConfig;
  readonly mc: ModelConfig;
  /** createModel's name and options (without the key), stored in checkpoints. */
  readonly modelSpec: { readonly name: string; readonly options: Record<string, unknown> };
  readonly train: readonly Item[];
  readonly val: readonly Item[];
  readonly classes: readonly string[];
  readonly loss: LossSpec;
  readonly files: RunFiles;
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

export type Outcome =
  | { readonly kind: 'completed' | 'early-stopped'; readonly epochs: number; readonly bestAuc: number | null; readonly bestEpoch: number | null; readonly lastAuc: number | null; readonly epochSeconds: number[] }
  | { readonly kind: 'interrupted'; readonly epoch: number; readonly step: number; readonly bestAuc: number | null; readonly bestEpoch: number | null; readonly lastAuc: number | null; readonly epochSeconds: number[] }
  | { readonly kind: 'diverged'; readonly epoch: number; readonly step: number; readonly lossValue: number; readonly lastGood: string | null; readonly epochSeconds: number[] }
  | { readonly kind: 'failed'; readonly message: string; readonly epochSeconds: number[] };

export function optimizerFor(cfg: TrainConfig): Optimizer {
  return createOptimizer({
    name: cfg.optimizer,
    weightDecay: cfg.weightDecay,
    momentum: cfg.momentum,
    alpha: cfg.alpha,
    eps: cfg.eps,
    nesterov: cfg.nesterov,
  });
}

export async function runLoop(ctx: LoopContext, start: LoopStart): Promise<Outcome> {
  const { cfg, mc, reporter, files } = ctx;
  const optimizer = optimizerFor(cfg);
  const C = mc.numClasses;
  // One pool of decoding threads shared by the train and validation loaders (each thread costs ~1 s to start).
  const pool = cfg.workers > 0 ? createPool(cfg.workers) : null;
  const loaderOpts = { lowSize: mc.lowSize, highSize: mc.highSize, seed: cfg.seed, workers: cfg.workers, prefetch: 2, ...(pool ? { pool } : {}) };
  // A last batch of one image is dropped (batch norm cannot normalise a single 1 × 1 value).
  const trainLoader: Loader = createLoader(ctx.train, {
    ...loaderOpts,
    batchSize: cfg.batchSize,
    augment: cfg.augment,
    shuffle: true,
    dropLast: ctx.train.length % cfg.batchSize === 1,
  });
  const valLoader: Loader = createLoader(ctx.val, { ...loaderOpts, batchSize: cfg.batchSize, augment: false, shuffle: false });
  const steps = trainLoader.numBatches;
  const sched: ScheduleConfig = { name: cfg.schedule, lr: cfg.lr, epochs: cfg.epochs, stepsPerEpoch: steps, warmupEpochs: cfg.warmupEpochs, decay: cfg.decay };

  let params = start.params;
  let state = start.state;
  let opt = start.opt ?? optimizer.init(params);
  // Micro-batches whose compiled step fits the wasm32 memory (compiling the step once, up front).
  const micro = fitMicroBatch((n) => microStepArenaBytes(mc, ctx.loss, params, state, n), cfg.microBatch);
  if (micro < cfg.microBatch) reporter.warn(`--micro-batch ${cfg.microBatch} needs more than ${(MICRO_BATCH_BUDGET_BYTES / 2 ** 30).toFixed(2)} GiB of intermediates: using ${micro}`);
  const t = start.trainer;
  let epoch = t?.epoch ?? 0;
  let startStep = t?.stepInEpoch ?? 0;
  let globalStep = t?.globalStep ?? 0;
  let bestAuc = t?.bestMetric ?? null;
  let bestEpoch = t?.bestEpoch ?? null;
  let partial: PartialEpoch | null = t?.partial ?? null;
  let lastAuc: number | null = null;
  const epochSeconds: number[] = [];

  const trainerState = (over: Partial<TrainerState>): TrainerState => ({
    version: 1,
    epoch,
    stepInEpoch: 0,
    globalStep,
    rngKey: keyData(rootKey(cfg.seed)),
    bestMetric: bestAuc,
    bestEpoch,
    weightsEpoch: null,
    partial: null,
    model: ctx.modelSpec,
    extra: { seed: cfg.seed },
    ...over,
  });
  const save = (dir: string, ck: Checkpoint): string | null => {
    const r = saveCheckpoint(dir, ck);
    return E.isLeft(r) ? renderCheckpointError(r.left) : null;
  };

  try {
    for (; epoch < cfg.epochs; epoch++) {
      const t0 = performance.now();
      const lr = learningRate(sched, epoch, 0);
      // Accumulators of this epoch (restored from a mid-epoch checkpoint).
      let lossSum = partial?.lossSum ?? 0;
      let count = partial?.count ?? 0;
      const trainLabels: number[] = partial ? [...partial.labels] : [];
      const trainScores: number[] = partial ? [...partial.scores] : [];
      const skipped: string[] = partial ? [...partial.skipped] : [];
      partial = null;
      let imagesThisRun = 0;
      reporter.start(`epoch ${epoch + 1}/${cfg.epochs} train`, ctx.train.length);
      reporter.update(count, count ? lossSum / count : null);
      let step = startStep;
      let interrupted = false;
      if (startStep < steps) {
        for await (const b of trainLoader.epoch(epoch)) {
          if (b.index < startStep) continue; // done before the checkpoint
          for (const s of b.skipped) skipped.push(`${s.name},${s.path},${renderDataError(s.error).replace(/[\n,]/g, ' ')}`);
          const stepLr = learningRate(sched, epoch, b.index);
          const r = await trainStep({
            mc,
            params,
            state,
            opt,
            optimizer,
            loss: ctx.loss,
            batch: b,
            lr: stepLr,
            microBatch: micro,
            clip: cfg.clip,
            keyFor: (m) => trainKey(cfg.seed, epoch, b.index, m),
          });
          const n = b.labels.length;
          if (!Number.isFinite(r.lossSum)) {
            reporter.stop();
            return { kind: 'diverged', epoch, step: b.index, lossValue: r.lossSum / n, lastGood: fs.existsSync(files.last) ? files.last : null, epochSeconds };
          }
          params = r.params;
          state = r.state;
          opt = r.opt;
          globalStep++;
          step = b.index + 1;
          lossSum += r.lossSum;
          count += n;
          imagesThisRun += n;
          for (const l of b.labels) trainLabels.push(l);
          for (const p of probabilities(r.logits, C)) trainScores.push(p);
          files.appendBatch(globalStep, r.lossSum / n);
          reporter.update(count, lossSum / count);
          if (ctx.stopRequested() && step < steps) {
            interrupted = true;
            break;
          }
        }
      }
      startStep = 0;
      reporter.stop();
      const trainSecs = (performance.now() - t0) / 1000;
      const midEpoch = (stepInEpoch: number): Checkpoint => ({
        params,
        state,
        opt,
        trainer: trainerState({ epoch, stepInEpoch, partial: { lossSum, count, labels: trainLabels, scores: trainScores, skipped } }),
      });
      if (interrupted) {
        const err = save(files.last, midEpoch(step));
        if (err) return { kind: 'failed', message: err, epochSeconds };
        return { kind: 'interrupted', epoch, step, bestAuc, bestEpoch, lastAuc, epochSeconds };
      }

      // Validation.
      const tv = performance.now();
      reporter.start(`epoch ${epoch + 1}/${cfg.epochs} val`, ctx.val.length);
      const val = await predictAll({
        mc,
        params,
        state,
        loader: valLoader.epoch(0),
        tta: cfg.tta,
        microBatch: micro,
        seed: cfg.seed,
        onBatch: (d) => reporter.update(d, null),
        stop: ctx.stopRequested,
      });
      reporter.stop();
      if (!val) {
        // Interrupted during validation: the training part of the epoch is done; resume validates.
        const err = save(files.last, midEpoch(steps));
        if (err) return { kind: 'failed', message: err, epochSeconds };
        return { kind: 'interrupted', epoch, step: steps, bestAuc, bestEpoch, lastAuc, epochSeconds };
      }
      const valLosses = hostLosses(ctx.loss, val.labels, val.logits ?? val.probs, val.logits !== null);
      const valLoss = valLosses.reduce((a, b) => a + b, 0) / Math.max(1, valLosses.length);
      const { row, valAuc } = epochRow({
        epoch: epoch + 1,
        trainLoss: lossSum / Math.max(1, count),
        valLoss,
        trainLabels,
        trainProbs: trainScores,
        val,
        classes: ctx.classes,
        numClasses: C,
        lr,
      });
      lastAuc = valAuc;
      for (const s of val.skipped) skipped.push(`${s.name},${s.path},${s.reason.replace(/[\n,]/g, ' ')}`);
      files.addSkipped(skipped);
      files.writeEpoch(row);
      const secs = (performance.now() - t0) / 1000;
      epochSeconds.push(secs);
      files.appendTiming(epoch + 1, secs, trainSecs, (performance.now() - tv) / 1000, imagesThisRun / Math.max(trainSecs, 1e-9));

      const improved = Number.isFinite(valAuc) && (bestAuc === null || valAuc > bestAuc);
      if (improved || bestEpoch === null) {
        bestAuc = Number.isFinite(valAuc) ? valAuc : bestAuc;
        bestEpoch = epoch + 1;
        files.writePredictions(val, ctx.classes, C);
        const err = save(files.best, { params, state, opt, trainer: trainerState({ epoch: epoch + 1, weightsEpoch: epoch + 1 }) });
        if (err) return { kind: 'failed', message: err, epochSeconds };
      }
      const err = save(files.last, { params, state, opt, trainer: trainerState({ epoch: epoch + 1, weightsEpoch: epoch + 1 }) });
      if (err) return { kind: 'failed', message: err, epochSeconds };
      await writePlots(files);

      const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));
      reporter.line(
        `epoch ${epoch + 1}/${cfg.epochs}  train loss ${f(row['Train Loss'])} auc ${f(row['Train RoC'])} | val loss ${f(valLoss)} auc ${f(valAuc)}` +
          ` (best ${bestAuc === null ? '--' : f(bestAuc)} @ ${bestEpoch}) | lr ${lr.toExponential(2)} | ${secs.toFixed(1)} s, ${(imagesThisRun / Math.max(trainSecs, 1e-9)).toFixed(2)} img/s` +
          (val.skipped.length || skipped.length ? ` | ${skipped.length} skipped` : ''),
      );
      if (ctx.stopRequested()) {
        return { kind: 'interrupted', epoch: epoch + 1, step: 0, bestAuc, bestEpoch, lastAuc, epochSeconds };
      }
      if (cfg.patience !== null && bestEpoch !== null && epoch + 1 - bestEpoch >= cfg.patience && epoch + 1 < cfg.epochs) {
        reporter.line(`early stopping: no better validation AUC for ${cfg.patience} epochs (best ${f(bestAuc ?? NaN)} at epoch ${bestEpoch})`);
        return { kind: 'early-stopped', epochs: epoch + 1, bestAuc, bestEpoch, lastAuc, epochSeconds };
      }
    }
    return { kind: 'completed', epochs: epoch, bestAuc, bestEpoch, lastAuc, epochSeconds };
  } finally {
    reporter.stop();
    await trainLoader.close();
    await valLoader.close();
    await pool?.close();
  }
}

