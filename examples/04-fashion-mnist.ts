/**
 * Example 4 — a network of your own on Fashion-MNIST: depthwise-separable and dilated convolutions,
 * 75,850 parameters, Adam with a one-cycle schedule, horizontal flips and pad-2 random crops.
 * Run: npx tsx examples/04-fashion-mnist.ts [--epochs 10] [--batch 128] [--lr 0.005] [--pad-crop 2]
 *        [--train-limit N] [--test-limit N] [--eval-every STEPS] [--log FILE.jsonl] [--seed S]
 *        [--checkpoint DIR]
 *
 * Needs the IDX files (Debian: apt-get install dataset-fashion-mnist, or --data DIR). Prints the
 * summary (with the receptive field of every layer), then test accuracy per epoch, and at the end
 * the confusion matrix and per-class accuracy. `--eval-every` also measures accuracy on the first
 * 1,000 test images every that many steps (a curve within an epoch); `--log` writes every
 * measurement as a JSON line. `--checkpoint DIR` saves the train state (weights, BN state, Adam
 * state) after every epoch and, when DIR already holds one, resumes after its last epoch — with the
 * same numbers an uninterrupted run gives (appending to the --log file). The forward and backward
 * pass runs compiled (`jit`). bench/peers/torch_fmnist.py trains the same network in PyTorch.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
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
const dir = flags.data ?? E.datasets.FASHION_MNIST_DIR;
const epochs = num('epochs', 10, 1);
const batchSize = num('batch', 128, 1);
const lr = num('lr', 0.005);
const evalEvery = num('eval-every', 0);
const padCrop = num('pad-crop', 2);
const seed = num('seed', 0);
const log = flags.log;
const norm = { mean: 0.286, std: 0.353 };

const load = (split: 'train' | 'test', limit: number) => {
  const r = E.datasets.loadIdxSplit(dir, split);
  if (r._tag === 'Left') throw new Error(`${E.datasets.renderDataError(r.left)} (Debian: apt-get install dataset-fashion-mnist, or pass --data DIR)`);
  return limit > 0 ? E.datasets.takeIdx(r.right, limit) : r.right;
};
const train = load('train', num('train-limit', 0));
const test = load('test', num('test-limit', 0));
const probe = E.datasets.takeIdx(test, 1000);

// The network, as a diagram: see src/nn/dwsnet.ts (nn.layers.sequential of depthwise-separable blocks).
const net = E.nn.createNetwork(E.nn.dwsNet(), { key: E.random.key(seed), inputShape: [1, 1, 28, 28], name: 'dwsnet' });
console.log(E.nn.summary(net));
const rf = E.nn.receptiveField(net);
console.log(`receptive field of the last conv: ${rf.size}×${rf.size} px, ${rf.covers ? 'covers' : 'does NOT cover'} the 28×28 input`);
console.log(`parameters: ${E.nn.parameterCount(net)}; ${train.count} training / ${test.count} test images; ${epochs} epochs of ${Math.ceil(train.count / batchSize)} steps, batch ${batchSize}, Adam + one-cycle (peak lr ${lr}), flips${padCrop ? ` and pad-${padCrop} crops` : ''}`);

// The run's settings, stored with each checkpoint: resuming under other settings is an error.
const settings = { epochs, batchSize, lr, padCrop, seed, train: train.count, test: test.count };
const optimizer = E.classifier.adam();
const resume = flags.checkpoint ? E.classifier.loadRun(flags.checkpoint, net, optimizer, settings) : null;
const record = (o: Record<string, unknown>) => log && appendFileSync(log, `${JSON.stringify(o)}\n`);
if (resume) console.log(`resuming from ${flags.checkpoint} after epoch ${resume.epoch} of ${epochs}`);
else {
  if (log) writeFileSync(log, '');
  record({ params: E.nn.parameterCount(net), ...settings });
}
const t0 = performance.now() - (resume?.wallSeconds ?? 0) * 1000;
const history = E.classifier.fit(net, train, test, {
  epochs, batchSize, lr, flip: true, padCrop, ...norm, seed, optimizer, resume: resume ?? undefined,
  onStep({ epoch, step, steps, loss, ts }) {
    if (!evalEvery || (step + 1) % evalEvery !== 0) return;
    const at = epoch + (step + 1) / steps;
    const e = E.classifier.evaluate(net, ts.params, ts.state, probe, norm);
    console.log(`  epoch ${at.toFixed(2)}: loss ${loss.toFixed(4)}, accuracy on the first ${probe.count} test images ${e.accuracy.toFixed(4)}`);
    record({ epoch: at, loss, probeAccuracy: e.accuracy, probeImages: probe.count, wallSeconds: (performance.now() - t0) / 1000 });
  },
  onEpoch(r, ts) {
    const wallSeconds = (performance.now() - t0) / 1000;
    console.log(`epoch ${r.epoch}: train loss ${r.trainLoss.toFixed(4)}, test loss ${r.test.loss.toFixed(4)}, test accuracy ${r.test.accuracy.toFixed(4)} (${r.seconds.toFixed(0)} s)`);
    record({ epoch: r.epoch, trainLoss: r.trainLoss, testLoss: r.test.loss, testAccuracy: r.test.accuracy, seconds: r.seconds, wallSeconds, perClass: r.test.perClass, confusion: r.test.confusion });
    if (flags.checkpoint) E.classifier.saveRun(flags.checkpoint, { ts, epoch: r.epoch, wallSeconds, settings, last: r.test });
  },
}).history;

const last = history.at(-1)?.test ?? resume?.last;
if (!last) throw new Error(`04-fashion-mnist: the checkpoint in ${flags.checkpoint} is already past epoch ${epochs} and holds no evaluation`);
const names = E.datasets.FASHION_MNIST_CLASSES;
console.log('\nconfusion matrix (rows: truth, columns: prediction)');
console.log(`${''.padStart(12)} ${names.map((_, j) => String(j).padStart(5)).join('')}`);
last.confusion.forEach((row, i) => console.log(`${`${i} ${names[i]}`.padEnd(12)} ${row.map((c) => String(c).padStart(5)).join('')}`));
console.log('\nper-class accuracy');
last.perClass.forEach((a, i) => console.log(`${names[i].padEnd(12)} ${a.toFixed(4)}`));
console.log(`\ntest accuracy: ${(last.accuracy * 100).toFixed(2)}% after ${epochs} epochs, ${((performance.now() - t0) / 1000).toFixed(0)} s of training and evaluation`);
