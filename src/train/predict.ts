/**
 * `npm run predict -- --checkpoint DIR IMAGE…`: probabilities for images as CSV (stdout, or --out
 * FILE); with --tta N, N stochastic passes are averaged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLoader } from '../data/loader.ts';
import type { Item } from '../data/readers.ts';
import { EXIT, runIfMain } from '../cli/program.ts';
import { commandMain, defineCommand, str } from '../cli/options.ts';
import { BACKEND, BATCH_SIZE, CHECKPOINT, IMAGES, SEED, TTA, existingImages } from '../cli/shared.ts';
import { predictAll } from './step.ts';
import { predictionsCsv } from './runlog.ts';
import { restoreFromFlags } from './restore.ts';

export const PREDICT_COMMAND = defineCommand({
  name: 'predict',
  description: 'Predict melanoma probabilities (or class probabilities) for images with a trained checkpoint.',
  args: [IMAGES],
  options: {
    checkpoint: CHECKPOINT,
    tta: TTA,
    seed: SEED,
    batchSize: { ...BATCH_SIZE, help: 'images per forward pass', default: 8 },
    backend: BACKEND,
    out: { flags: '--out <file>', help: 'write the CSV here', parse: str, default: null, derived: 'standard output' },
  },
});

export const main = commandMain(PREDICT_COMMAND, async (parsed) => {
  const { tta, batchSize: batch, out } = parsed.values;
  const images = existingImages(parsed.args);
  const m = await restoreFromFlags(parsed.values);
  const seed = m.seed;
  const names = images.map((f) => path.basename(f).replace(/\.(jpe?g|png)$/i, ''));
  const items: Item[] = images.map((f, i) => ({ path: path.resolve(f), name: names[i], label: 0, source: path.dirname(path.resolve(f)) }));
  const loader = createLoader(items, { batchSize: batch, sides: m.mc.sides, augment: false, seed, workers: 0, shuffle: false });
  let p;
  try {
    p = await predictAll({ mc: m.mc, params: m.params, state: m.state, loader, tta, microBatch: batch, seed });
  } finally {
    await loader.close();
  }
  const C = m.mc.numClasses;
  const classes = m.classes ?? Array.from({ length: Math.max(C, 2) }, (_, i) => String(i));
  const csv = predictionsCsv({ names: p!.names, labels: null, probs: p!.probs }, classes, C);
  if (out) fs.writeFileSync(out, csv);
  else process.stdout.write(csv);
  for (const s of p!.skipped) process.stderr.write(`predict: skipped ${s.path}: ${s.reason}\n`);
  return p!.skipped.length ? EXIT.failure : EXIT.ok;
});

runIfMain(import.meta.url, main, 'predict');
