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
import { type Tensor, dataSync, item } from '../tensor/tensor.ts';
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

/**
 * The training step of `net` under `optimizer`: mean softmax cross-entropy, gradients by
 * `valueAndGrad`, one optimizer update. A compiler (`jit`) can wrap the returned function whole.
 */
export function makeStep(net: Network, optimizer: Optimizer): Step {
  return (ts, x, labels, lr, key) => {
    const [[loss, state], g] = valueAndGrad(
      (p: unknown) => {
        const [logits, ns] = net.layer.apply(p, ts.state, x, { training: true, key });
        return [crossEntropy(logits, labels), ns] as [Tensor, unknown];
      },
      { hasAux: true },
    )(ts.params);
    const [params, opt] = optimizer.update(g, ts.opt, ts.params, lr);
    return [{ params, state, opt }, item(loss)];
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

/** Eval-mode accuracy, mean cross-entropy, confusion matrix and per-class accuracy over a whole set. */
export function evaluate(net: Network, params: unknown, state: unknown, set: IdxImageSet, opts: { batchSize?: number; classes?: number; mean?: number; std?: number } = {}): Evaluation {
  const classes = opts.classes ?? 10;
  const probs = new Float32Array(set.count * classes);
  let lossSum = 0;
  let from = 0;
  for (const idx of idxBatches(set.count, opts.batchSize ?? 256)) {
    const { x, labels } = idxBatch(set, idx, { mean: opts.mean, std: opts.std });
    const [logits] = net.layer.apply(params, state, x, { training: false });
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
  /** Wraps the training step before use (a compiler such as `jit`); identity by default. */
  readonly compileStep?: (step: Step) => Step;
  /** Called after each step with its position (0-based epoch and step of `steps`), loss and the new train state. */
  readonly onStep?: (info: { readonly epoch: number; readonly step: number; readonly steps: number; readonly loss: number; readonly ts: TrainState }) => void;
  readonly onEpoch?: (r: EpochResult) => void;
}

export interface EpochResult {
  readonly epoch: number;
  readonly trainLoss: number;
  readonly seconds: number;
  readonly lr: number;
  readonly test: Evaluation;
}

/** Trains `net` on `train`, evaluating on `test` after each epoch; returns the trained state and the history. */
export function fit(net: Network, train: IdxImageSet, test: IdxImageSet, opts: FitOptions): { ts: TrainState; history: EpochResult[] } {
  const optimizer = opts.optimizer ?? adam();
  const steps = Math.ceil(train.count / opts.batchSize);
  const sched: ScheduleConfig = { name: 'onecycle', ...opts.schedule, lr: opts.lr, epochs: opts.epochs, stepsPerEpoch: steps };
  const step = (opts.compileStep ?? ((s: Step) => s))(makeStep(net, optimizer));
  const root = makeKey(opts.seed ?? 0);
  const norm = { mean: opts.mean, std: opts.std };
  let ts: TrainState = { params: net.params, state: net.state, opt: optimizer.init(net.params) };
  const history: EpochResult[] = [];
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
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
    const result: EpochResult = { epoch: epoch + 1, trainLoss: lossSum / train.count, seconds, lr: learningRate(sched, epoch, steps - 1), test: evaluate(net, ts.params, ts.state, test, { ...norm, classes: opts.classes }) };
    history.push(result);
    opts.onEpoch?.(result);
  }
  return { ts, history };
}

/** The optimizers and schedules `fit` takes, for callers outside the package. */
export { type Optimizer, adam, adamw, createOptimizer, rmsprop, sgd } from './optim.ts';
export { type ScheduleConfig, learningRate } from './schedule.ts';
