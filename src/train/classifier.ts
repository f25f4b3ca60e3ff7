/**
 * Training a network of your own (`nn.layers`) on an in-memory image set (an IDX dataset such as
 * Fashion-MNIST): a pure `trainStep` over an explicit state, folded over the batches of an epoch,
 * then an evaluation with accuracy, confusion matrix and per-class accuracy. Softmax cross-entropy,
 * an optimizer from optim.ts and a schedule from schedule.ts (one-cycle by default).
 */
import { type IdxImageSet, idxBatch, idxBatches } from '../data/idx.ts';
import { valueAndGrad } from '../autograd/transforms.ts';
import type { Network } from '../nn/combinators.ts';
import { crossEntropy } from '../tensor/losses.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, key as makeKey } from '../tensor/random.ts';
import { type Tensor, dataSync, item, tensor } from '../tensor/tensor.ts';
import { jit } from '../jit/jit.ts';
import * as Ei from 'fp-ts/lib/Either.js';
import { TRAINER_FILE, type TrainerState, loadCheckpoint, renderCheckpointError, resolveCheckpointDir, saveCheckpoint } from './checkpoint.ts';
import { multiclassMetrics } from './metrics.ts';
import { type OptState, type Optimizer, adam } from './optim.ts';
import { type ScheduleConfig, learningRate } from './schedule.ts';

/** What a training step threads through: parameters, BN state and optimizer state. */
export interface TrainState<P = unknown, S = unknown> {
  readonly params: P;
  readonly state: S;
  readonly opt: OptState;
}

/** One optimisation step on a batch: (train state, images, labels, lr, key) → [new train state, loss]. */
export type Step = (ts: TrainState, x: Tensor, labels: Int32Array, lr: number, key: Key) => [TrainState, number];

/** What the forward and backward pass of a batch returns: mean loss, new BN state, gradients. */
export interface GradResult {
  readonly loss: Tensor;
  readonly state: unknown;
  readonly grads: unknown;
}

/**
 * The forward and backward pass of `net` on a batch, as a function of tensors and a key only
 * (parameters, BN state, images, one-hot targets [N, C], dropout key) — the unit `jit` compiles:
 * one entry per batch shape, reused across steps and epochs. Mean softmax cross-entropy.
 */
export function gradStep(net: Network): (params: unknown, state: unknown, x: Tensor, targets: Tensor, key: Key) => GradResult {
  return (params, state, x, targets, key) => {
    const [[loss, ns], grads] = valueAndGrad(
      (p: unknown) => {
        const [logits, s] = net.layer.apply(p, state, x, { training: true, key });
        return [crossEntropy(logits, targets), s] as [Tensor, unknown];
      },
      { hasAux: true },
    )(params);
    return { loss, state: ns, grads };
  };
}

/** Class indices as one-hot rows [N, classes] (float32), checked against the class count. */
export function oneHot(labels: Int32Array, classes: number): Tensor {
  const out = new Float32Array(labels.length * classes);
  labels.forEach((k, i) => {
    if (!(Number.isInteger(k) && k >= 0 && k < classes)) throw new Error(`classifier: label ${k} of image ${i} is out of range for ${classes} classes`);
    out[i * classes + k] = 1;
  });
  return tensor(out, [labels.length, classes]);
}

/**
 * The training step of `net` under `optimizer`: `gradStep` (compiled with `jit` unless
 * `jit: false`; both give the same numbers), then one eager optimizer update (`compiledUpdate`
 * would be faster but rounds its fused loops' float32 arithmetic an ulp apart from eager's).
 */
export function makeStep(net: Network, optimizer: Optimizer, opts: { jit?: boolean; classes?: number } = {}): Step {
  const grad = opts.jit === false ? gradStep(net) : jit(gradStep(net));
  const classes = opts.classes ?? 10;
  return (ts, x, labels, lr, key) => {
    const r = grad(ts.params, ts.state, x, oneHot(labels, classes), key);
    const [params, opt] = optimizer.update(r.grads, ts.opt, ts.params, lr);
    return [{ params, state: r.state, opt }, item(r.loss)];
  };
}

export interface Evaluation {
  readonly accuracy: number;
  /** counts[truth][prediction]. */
  readonly confusion: number[][];
  /** Recall of each class (the diagonal over the row sums). */
  readonly perClass: number[];
  readonly loss: number;
}

/** The eval-mode forward pass of `net`, compiled with `jit` once per network (one entry per batch shape). */
const compiledForwards = new WeakMap<Network, (params: unknown, state: unknown, x: Tensor) => Tensor>();
function evalForward(net: Network, compiled: boolean): (params: unknown, state: unknown, x: Tensor) => Tensor {
  const f = (params: unknown, state: unknown, x: Tensor) => net.layer.apply(params, state, x, { training: false })[0];
  if (!compiled) return f;
  let g = compiledForwards.get(net);
  if (!g) compiledForwards.set(net, (g = jit(f)));
  return g;
}

/** Eval-mode accuracy, mean cross-entropy, confusion matrix and per-class accuracy over a whole set. */
export function evaluate(net: Network, params: unknown, state: unknown, set: IdxImageSet, opts: { batchSize?: number; classes?: number; mean?: number; std?: number; jit?: boolean } = {}): Evaluation {
  const classes = opts.classes ?? 10;
  const forward = evalForward(net, opts.jit !== false);
  const probs = new Float32Array(set.count * classes);
  let lossSum = 0;
  let from = 0;
  for (const idx of idxBatches(set.count, opts.batchSize ?? 250)) {
    const { x, labels } = idxBatch(set, idx, { mean: opts.mean, std: opts.std });
    const logits = forward(params, state, x);
    lossSum += item(crossEntropy(logits, labels, { reduction: 'sum' }));
    probs.set(dataSync(o.softmax(logits, -1)), from * classes);
    from += idx.length;
  }
  const m = multiclassMetrics(set.labels, probs, classes);
  const perClass = m.confusion.map((r, c) => r[c] / Math.max(1, r.reduce((a, b) => a + b, 0)));
  return { accuracy: m.accuracy, confusion: m.confusion, perClass, loss: lossSum / set.count };
}

export interface FitOptions {
  readonly epochs: number;
  readonly batchSize: number;
  /** Peak learning rate of the schedule. */
  readonly lr: number;
  /** Default: one-cycle over all the steps (PyTorch's OneCycleLR defaults). */
  readonly schedule?: Omit<ScheduleConfig, 'lr' | 'epochs' | 'stepsPerEpoch'>;
  /** Default: Adam (PyTorch defaults). */
  readonly optimizer?: Optimizer;
  /** Light augmentation: horizontal flips and pad-then-crop by this many pixels (0 = none). */
  readonly flip?: boolean;
  readonly padCrop?: number;
  /** Input normalisation (x/255 − mean)/std. */
  readonly mean?: number;
  readonly std?: number;
  readonly seed?: number;
  readonly classes?: number;
  /** Compile the forward and backward pass with `jit` (default true; false runs it eagerly, same numbers). */
  readonly jit?: boolean;
  /** Called after each step with its position (0-based epoch and step of `steps`), loss and the new train state. */
  readonly onStep?: (info: { readonly epoch: number; readonly step: number; readonly steps: number; readonly loss: number; readonly ts: TrainState }) => void;
  /** Called after each epoch with its result and the train state after it (to checkpoint it). */
  readonly onEpoch?: (r: EpochResult, ts: TrainState) => void;
  /** Continue a run: the train state after `epoch` epochs (as `onEpoch` gave it); training resumes at epoch `epoch` + 1. */
  readonly resume?: { readonly ts: TrainState; readonly epoch: number };
}

export interface EpochResult {
  readonly epoch: number;
  readonly trainLoss: number;
  readonly seconds: number;
  readonly lr: number;
  readonly test: Evaluation;
}

/**
 * Trains `net` on `train`, evaluating on `test` after each epoch; returns the trained state and the
 * history (of the epochs trained by this call). Every random draw is folded from the seed by
 * (epoch, step), so a run resumed from the state after an epoch continues exactly as it would have.
 */
export function fit(net: Network, train: IdxImageSet, test: IdxImageSet, opts: FitOptions): { ts: TrainState; history: EpochResult[] } {
  const optimizer = opts.optimizer ?? adam();
  const steps = Math.ceil(train.count / opts.batchSize);
  const sched: ScheduleConfig = { name: 'onecycle', ...opts.schedule, lr: opts.lr, epochs: opts.epochs, stepsPerEpoch: steps };
  const step = makeStep(net, optimizer, { jit: opts.jit, classes: opts.classes });
  const root = makeKey(opts.seed ?? 0);
  const norm = { mean: opts.mean, std: opts.std };
  const start = opts.resume?.epoch ?? 0;
  if (!(Number.isInteger(start) && start >= 0 && start <= opts.epochs)) throw new Error(`classifier.fit: resume.epoch must be an integer in [0, ${opts.epochs}], got ${start}`);
  let ts: TrainState = opts.resume?.ts ?? { params: net.params, state: net.state, opt: optimizer.init(net.params) };
  const history: EpochResult[] = [];
  for (let epoch = start; epoch < opts.epochs; epoch++) {
    const t0 = performance.now();
    const ek = foldIn(root, epoch);
    const batches = idxBatches(train.count, opts.batchSize, foldIn(ek, 0));
    let lossSum = 0;
    batches.forEach((idx, i) => {
      const bk = foldIn(foldIn(ek, 1), i);
      const { x, labels } = idxBatch(train, idx, { ...norm, flip: opts.flip, padCrop: opts.padCrop, key: foldIn(bk, 0) });
      const [next, loss] = step(ts, x, labels, learningRate(sched, epoch, i), foldIn(bk, 1));
      ts = next;
      lossSum += loss * idx.length;
      opts.onStep?.({ epoch, step: i, steps, loss, ts });
    });
    const seconds = (performance.now() - t0) / 1000;
    const result: EpochResult = { epoch: epoch + 1, trainLoss: lossSum / train.count, seconds, lr: learningRate(sched, epoch, steps - 1), test: evaluate(net, ts.params, ts.state, test, { ...norm, classes: opts.classes, jit: opts.jit }) };
    history.push(result);
    opts.onEpoch?.(result, ts);
  }
  return { ts, history };
}

/** The optimizers and schedules `fit` takes, for callers outside the package. */
export { type Optimizer, adam, adamw, createOptimizer, rmsprop, sgd } from './optim.ts';
export { type ScheduleConfig, learningRate } from './schedule.ts';

/** What `saveRun` stores beside the train state: the epochs done, the run's settings, wall time so far and the last evaluation. */
export interface RunCheckpoint {
  readonly ts: TrainState;
  /** Epochs completed. */
  readonly epoch: number;
  readonly wallSeconds: number;
  /** The settings of the run (epochs, batch, lr, seed…): a resume under other settings is refused. */
  readonly settings: Readonly<Record<string, unknown>>;
  readonly last: Evaluation;
}

/** Saves the train state after an epoch as a checkpoint folder (train/checkpoint.ts, replaced atomically). */
export function saveRun(dir: string, r: RunCheckpoint): void {
  const trainer: TrainerState = {
    version: 1, epoch: r.epoch, stepInEpoch: 0, globalStep: r.ts.opt.step, rngKey: [0, 0], bestMetric: null, bestEpoch: null,
    weightsEpoch: r.epoch, partial: null, model: { name: 'classifier', options: {} },
    extra: { settings: r.settings, wallSeconds: r.wallSeconds, last: r.last },
  };
  const w = saveCheckpoint(dir, { params: r.ts.params, state: r.ts.state, opt: r.ts.opt, trainer });
  if (Ei.isLeft(w)) throw new Error(renderCheckpointError(w.left));
}

/**
 * The run saved in `dir` by `saveRun`, filled into `net`'s and `optimizer`'s structure, or null when
 * `dir` holds no checkpoint. Errors name the folder: an unreadable or mismatched checkpoint, or
 * one saved under other settings (naming the setting).
 */
export function loadRun(dir: string, net: Network, optimizer: Optimizer, settings: Readonly<Record<string, unknown>>): Omit<RunCheckpoint, 'settings'> | null {
  if (resolveCheckpointDir(dir) === null) return null;
  const ck = loadCheckpoint(dir, { params: net.params, state: net.state, opt: optimizer.init(net.params) });
  if (Ei.isLeft(ck)) throw new Error(renderCheckpointError(ck.left));
  const extra = ck.right.trainer.extra as Partial<Omit<RunCheckpoint, 'ts' | 'epoch'>>;
  const saved = extra.settings ?? {};
  for (const k of new Set([...Object.keys(saved), ...Object.keys(settings)])) {
    if (JSON.stringify(saved[k]) !== JSON.stringify(settings[k])) {
      throw new Error(`checkpoint ${dir}: saved with ${k} = ${JSON.stringify(saved[k])}, but this run has ${k} = ${JSON.stringify(settings[k])} (use another folder, or the same settings to resume)`);
    }
  }
  if (!extra.last) throw new Error(`checkpoint ${dir}: ${TRAINER_FILE} holds no evaluation (not written by classifier.saveRun)`);
  const { params, state, opt } = ck.right;
  return { ts: { params, state, opt }, epoch: ck.right.trainer.epoch, wallSeconds: extra.wallSeconds ?? 0, last: extra.last };
}
/** A whole run of the dws net on an IDX set, as the example and the train CLI run it. */
export { type IdxRunOptions, FASHION_MNIST_NORM, formatEvaluation, runIdx } from './idxrun.ts';
