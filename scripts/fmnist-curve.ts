/**
 * The accuracy curve of a Fashion-MNIST run as a PNG, from the JSON lines that
 * `examples/04-fashion-mnist.ts --log FILE` writes: accuracy on the first 1,000 test images every
 * `--eval-every` steps, and the full 10,000-image test accuracy at the end of each epoch.
 * A run resumed from a checkpoint (`--checkpoint`) re-measures the points of its interrupted
 * epoch; the last measurement at each position counts.
 * It also prints the run in a few lines for BENCHMARKS.md: test accuracy per epoch, the wall time,
 * and the last epoch's per-class accuracy.
 * Run: npx tsx scripts/fmnist-curve.ts runs/fmnist/run.jsonl docs/fmnist-curve.png ["title"]
 */
import { readFileSync } from 'node:fs';
import { FASHION_MNIST_CLASSES } from '../src/data/idx.ts';
import { lineChartSvg, writePng } from '../src/train/plots.ts';

const [input, output, title] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: npx tsx scripts/fmnist-curve.ts RUN.jsonl OUT.png ["title"]');
  process.exit(2);
}
const lines = readFileSync(input, 'utf8').trim().split('\n').map((l, i) => {
  try {
    return JSON.parse(l) as Record<string, number>;
  } catch {
    throw new Error(`${input} line ${i + 1}: not JSON`);
  }
});
const head = lines[0];
const lastAt = (key: string) => [...new Map(lines.filter((l) => key in l).map((l) => [l.epoch, l])).values()].sort((a, b) => a.epoch - b.epoch);
const probe = lastAt('probeAccuracy');
const full = lastAt('testAccuracy');
const seen = (epoch: number) => (epoch * head.train) / 1000;
await writePng(output, lineChartSvg({
  title: title ?? `dwsnet, ${head.params} parameters: Fashion-MNIST test accuracy`,
  xLabel: `Training images seen, thousands (${head.epochs} one-cycle epoch${head.epochs === 1 ? '' : 's'} of ${head.train}, batch ${head.batchSize}, peak lr ${head.lr})`,
  yLabel: 'Test accuracy',
  yRange: [0, 1],
  xRange: [0, seen(head.epochs)],
  series: [
    { name: 'first 1,000 test images', xs: probe.map((l) => seen(l.epoch)), ys: probe.map((l) => l.probeAccuracy), color: '#1f77b4', markers: true },
    { name: 'all 10,000 test images', xs: full.map((l) => seen(l.epoch)), ys: full.map((l) => l.testAccuracy), color: '#d62728', markers: true },
  ],
}));
console.log(`wrote ${output}: ${probe.length} probe points, ${full.length} full evaluations`);
const last = full.at(-1) as unknown as { epoch: number; testAccuracy: number; testLoss: number; wallSeconds: number; perClass: number[] } | undefined;
if (last) {
  const done = last.epoch === head.epochs ? 'complete' : `NOT complete: ${last.epoch} of ${head.epochs} epochs`;
  console.log(`run (${done}): ${head.params} parameters, ${head.train} training / ${head.test} test images, batch ${head.batchSize}, peak lr ${head.lr}, pad-crop ${head.padCrop ?? 2}, seed ${head.seed ?? 0}`);
  console.log(`test accuracy per epoch: ${full.map((l) => `${l.epoch}: ${l.testAccuracy.toFixed(4)}`).join(', ')}`);
  console.log(`after epoch ${last.epoch}: test accuracy ${last.testAccuracy.toFixed(4)}, test loss ${last.testLoss.toFixed(4)}; wall ${last.wallSeconds.toFixed(0)} s (${(last.wallSeconds / 3600).toFixed(2)} h) of training and evaluation`);
  console.log(`per class: ${last.perClass.map((a, i) => `${FASHION_MNIST_CLASSES[i]} ${a.toFixed(3)}`).join(', ')}`);
}
