/**
 * A whole training run of `nn.dwsNet()` on an IDX image set (Fashion-MNIST, MNIST): the summary
 * and receptive field, `classifier.fit` with Adam + one-cycle and flips (+ pad-and-crop), test
 * accuracy per epoch, and at the end the confusion matrix and per-class accuracy. Optional: a
 * JSON-lines log of every measurement (scripts/fmnist-curve.ts plots it), accuracy on the first
 * 1,000 test images every `evalEvery` steps, and a checkpoint folder saved after every epoch from
 * which a rerun with the same settings resumes. Used by examples/04-fashion-mnist.ts and by the
 * train CLI when `--data` is an IDX folder.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import { renderDataError } from '../data/errors.ts';
import { FASHION_MNIST_CLASSES, type IdxImageSet, loadIdxSplit, takeIdx } from '../data/idx.ts';
import { createNetwork, networkSummary, receptiveField } from '../nn/combinators.ts';
import { parameterCount } from '../nn/model.ts';
import { dwsNet } from '../nn/dwsnet.ts';
import { key } from '../tensor/random.ts';
import { type Evaluation, adam, evaluate, fit, loadRun, saveRun } from './classifier.ts';

export interface IdxRunOptions {
  /** The folder with train-images-idx3-ubyte(.gz) etc. */
  readonly data: string;
  readonly epochs: number;
  readonly batchSize: number;
  /** Peak learning rate of the one-cycle schedule. */
  readonly lr: number;
  /** Horizontal flips (and pad-and-crop by `padCrop` px). */
  readonly flip: boolean;
  readonly padCrop: number;
  readonly seed: number;
  /** Use only the first N images of each split (0: all). */
  readonly trainLimit?: number;
  readonly testLimit?: number;
  /** Accuracy on the first 1,000 test images every that many steps (0: off). */
  readonly evalEvery?: number;
  /** JSON-lines file of every measurement (truncated at the start of a run, appended to on resume). */
  readonly log?: string;
  /** Checkpoint folder: saved after every epoch; a run finding one there resumes after its last epoch. */
  readonly checkpoint?: string;
  /** Class names for the report (default: Fashion-MNIST's). */
  readonly classNames?: readonly string[];
}

/** Input normalisation of Fashion-MNIST (mean and std of its training pixels / 255). */
export const FASHION_MNIST_NORM = { mean: 0.286, std: 0.353 } as const;

const load = (dir: string, split: 'train' | 'test', limit: number): IdxImageSet => {
  const r = loadIdxSplit(dir, split);
  if (E.isLeft(r)) throw new Error(`${renderDataError(r.left)} (Debian: apt-get install dataset-fashion-mnist)`);
  return limit > 0 ? takeIdx(r.right, limit) : r.right;
};

/** The confusion matrix (rows: truth) and per-class accuracy as text lines. */
export function formatEvaluation(e: Evaluation, names: readonly string[]): string[] {
  const label = (i: number) => `${i} ${names[i] ?? ''}`.padEnd(14);
  return [
    'confusion matrix (rows: truth, columns: prediction)',
    `${''.padStart(14)} ${e.confusion.map((_, j) => String(j).padStart(5)).join('')}`,
    ...e.confusion.map((row, i) => `${label(i)} ${row.map((c) => String(c).padStart(5)).join('')}`),
    '',
    'per-class accuracy',
    ...e.perClass.map((a, i) => `${label(i)} ${a.toFixed(4)}`),
  ];
}

/** Runs (or resumes) the training; `print` gets each report line. Returns the last evaluation and the wall seconds of the whole run. */
export function runIdx(o: IdxRunOptions, print: (line: string) => void): { last: Evaluation; wallSeconds: number; params: number } {
  const train = load(o.data, 'train', o.trainLimit ?? 0);
  const test = load(o.data, 'test', o.testLimit ?? 0);
  const probe = takeIdx(test, 1000);
  const norm = FASHION_MNIST_NORM;
  const net = createNetwork(dwsNet(), { key: key(o.seed), inputShape: [1, 1, train.rows, train.cols], name: 'dwsnet' });
  const params = parameterCount(net);
  print(networkSummary(net));
  const rf = receptiveField(net);
  print(`receptive field of the last conv: ${rf.size}×${rf.size} px, ${rf.covers ? 'covers' : 'does NOT cover'} the ${train.rows}×${train.cols} input`);
  print(`parameters: ${params}; ${train.count} training / ${test.count} test images; ${o.epochs} epochs of ${Math.ceil(train.count / o.batchSize)} steps, batch ${o.batchSize}, Adam + one-cycle (peak lr ${o.lr})${o.flip ? `, flips${o.padCrop ? ` and pad-${o.padCrop} crops` : ''}` : ''}`);

  // The run's settings, stored with each checkpoint: resuming under other settings is an error.
  const settings = { epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, padCrop: o.padCrop, seed: o.seed, train: train.count, test: test.count, ...(o.flip ? {} : { flip: false }) };
  const optimizer = adam();
  const resume = o.checkpoint ? loadRun(o.checkpoint, net, optimizer, settings) : null;
  const record = (r: Record<string, unknown>) => o.log && appendFileSync(o.log, `${JSON.stringify(r)}\n`);
  if (resume) print(`resuming from ${o.checkpoint} after epoch ${resume.epoch} of ${o.epochs}`);
  else {
    if (o.log) writeFileSync(o.log, '');
    record({ params, ...settings });
  }
  const t0 = performance.now() - (resume?.wallSeconds ?? 0) * 1000;
  const history = fit(net, train, test, {
    epochs: o.epochs, batchSize: o.batchSize, lr: o.lr, flip: o.flip, padCrop: o.padCrop, ...norm, seed: o.seed, optimizer, resume: resume ?? undefined,
    onStep({ epoch, step, steps, loss, ts }) {
      if (!o.evalEvery || (step + 1) % o.evalEvery !== 0) return;
      const at = epoch + (step + 1) / steps;
      const e = evaluate(net, ts.params, ts.state, probe, norm);
      print(`  epoch ${at.toFixed(2)}: loss ${loss.toFixed(4)}, accuracy on the first ${probe.count} test images ${e.accuracy.toFixed(4)}`);
      record({ epoch: at, loss, probeAccuracy: e.accuracy, probeImages: probe.count, wallSeconds: (performance.now() - t0) / 1000 });
    },
    onEpoch(r, ts) {
      const wallSeconds = (performance.now() - t0) / 1000;
      print(`epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)}, test loss ${r.test.loss.toFixed(4)}, test accuracy ${r.test.accuracy.toFixed(4)} (${r.seconds.toFixed(0)} s)`);
      record({ epoch: r.epoch, trainLoss: r.trainLoss, testLoss: r.test.loss, testAccuracy: r.test.accuracy, seconds: r.seconds, wallSeconds, perClass: r.test.perClass, confusion: r.test.confusion });
      if (o.checkpoint) saveRun(o.checkpoint, { ts, epoch: r.epoch, wallSeconds, settings, last: r.test });
    },
  }).history;

  const last = history.at(-1)?.test ?? resume!.last;
  const wallSeconds = (performance.now() - t0) / 1000;
  print('');
  for (const l of formatEvaluation(last, o.classNames ?? FASHION_MNIST_CLASSES)) print(l);
  print(`\ntest accuracy: ${(last.accuracy * 100).toFixed(2)}% after ${o.epochs} epoch${o.epochs === 1 ? '' : 's'}, ${wallSeconds.toFixed(0)} s of training and evaluation`);
  return { last, wallSeconds, params };
}
