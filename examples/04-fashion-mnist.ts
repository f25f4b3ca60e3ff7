/**
 * Example 4 — a network of your own on Fashion-MNIST: depthwise-separable and dilated convolutions,
 * 75,850 parameters, Adam with a one-cycle schedule, horizontal flips and pad-2 random crops.
 * Run: npx tsx examples/04-fashion-mnist.ts [--epochs 10] [--batch 128] [--lr 0.005] [--pad-crop 2]
 *        [--train-limit N] [--test-limit N] [--eval-every STEPS] [--log FILE.jsonl] [--seed S]
 *        [--checkpoint DIR] [--data DIR]
 *
 * Needs the IDX files (Debian: apt-get install dataset-fashion-mnist, or --data DIR). Prints the
 * summary (with the receptive field of every layer), then test accuracy per epoch, and at the end
 * the confusion matrix and per-class accuracy. `--eval-every` also measures accuracy on the first
 * 1,000 test images every that many steps (a curve within an epoch); `--log` writes every
 * measurement as a JSON line (scripts/fmnist-curve.ts plots it). `--checkpoint DIR` saves the train
 * state (weights, BN state, Adam state) after every epoch and, when DIR already holds one, resumes
 * after its last epoch — with the numbers an uninterrupted run gives (appending to the --log file).
 * The forward and backward pass runs compiled (`jit`). The run itself is `E.classifier.runIdx`
 * (src/train/idxrun.ts), which `npm run train -- --data DIR` also uses for an IDX folder;
 * bench/peers/torch_fmnist.py trains the same network in PyTorch.
 */
import { parseArgs } from 'node:util';
import * as E from '@stochconv/engine';

const NAMES = ['data', 'epochs', 'batch', 'lr', 'pad-crop', 'train-limit', 'test-limit', 'eval-every', 'log', 'seed', 'checkpoint'] as const;
// Unknown flags and flags without a value are errors (parseArgs is strict).
const flags = parseArgs({ options: Object.fromEntries(NAMES.map((n) => [n, { type: 'string' as const }])) }).values as Partial<Record<(typeof NAMES)[number], string>>;
const num = (name: (typeof NAMES)[number], dflt: number, min = 0): number => {
  const v = flags[name] !== undefined ? Number(flags[name]) : dflt;
  if (!Number.isFinite(v) || v < min) throw new Error(`04-fashion-mnist: --${name} must be a number ≥ ${min}, got '${flags[name]}'`);
  return v;
};

E.classifier.runIdx(
  {
    data: flags.data ?? E.datasets.FASHION_MNIST_DIR,
    epochs: num('epochs', 10, 1),
    batchSize: num('batch', 128, 1),
    lr: num('lr', 0.005),
    flip: true,
    padCrop: num('pad-crop', 2),
    seed: num('seed', 0),
    trainLimit: num('train-limit', 0),
    testLimit: num('test-limit', 0),
    evalEvery: num('eval-every', 0),
    log: flags.log,
    checkpoint: flags.checkpoint,
  },
  (line) => console.log(line),
);
