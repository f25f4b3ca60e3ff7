/**
 * `npm run predict -- --checkpoint DIR IMAGE…`: probabilities for images as CSV (stdout, or --out
 * FILE); with --tta N, N stochastic passes are averaged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { createLoader } from '../data/loader.ts';
import type { Item } from '../data/readers.ts';
import { EXIT, UsageExit, parseArgs, printUsage, program, runIfMain } from './cliutil.ts';
import { parseValue } from './config.ts';
import { predictAll } from './step.ts';
import { predictionsCsv } from './runlog.ts';
import { restore } from './restore.ts';

export function predictCommand() {
  return program('predict', 'Predict melanoma probabilities (or class probabilities) for images with a trained checkpoint.')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder, or a run folder (its best/ is used)')
    .argument('<images...>', 'image files (JPEG or PNG)')
    .option('--tta <n>', 'stochastic passes averaged per image (default: 1)')
    .option('--seed <n>', "seed of the stochastic windows (default: the training run's)")
    .option('--batch-size <n>', 'images per forward pass (default: 8)')
    .option('--backend <name>', 'cpu or gpu (default: cpu)')
    .option('--out <file>', 'write the CSV here (default: standard output)');
}

export async function main(argv: string[]): Promise<number> {
  let o: Record<string, unknown>;
  let images: string[];
  let tta: number;
  let batch: number;
  try {
    const cmd = parseArgs(predictCommand(), argv);
    if (!cmd) return EXIT.ok;
    o = cmd.opts();
    images = cmd.args;
    const get = (k: 'tta' | 'batchSize', raw: unknown, d: number) => {
      if (raw === undefined) return d;
      const r = parseValue(k, String(raw));
      if (E.isLeft(r)) throw new UsageExit(r.left.message);
      return r.right as number;
    };
    tta = get('tta', o.tta, 1);
    batch = get('batchSize', o.batchSize, 8);
    if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'gpu') throw new UsageExit(`invalid value '${o.backend}' for --backend: must be one of cpu, gpu`);
    for (const f of images) if (!fs.existsSync(f) || !fs.statSync(f).isFile()) throw new UsageExit(`image not found: ${f}`);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('predict', e.message);
    throw e;
  }
  const r = await restore(String(o.checkpoint), (o.backend as 'cpu' | 'gpu') ?? 'cpu');
  if (E.isLeft(r)) return printUsage('predict', r.left.message);
  const m = r.right;
  let seed = m.seed;
  if (o.seed !== undefined) {
    const s = parseValue('seed', String(o.seed));
    if (E.isLeft(s)) return printUsage('predict', s.left.message);
    seed = s.right as number;
  }
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
  if (o.out) fs.writeFileSync(String(o.out), csv);
  else process.stdout.write(csv);
  for (const s of p!.skipped) process.stderr.write(`predict: skipped ${s.path}: ${s.reason}\n`);
  return p!.skipped.length ? EXIT.failure : EXIT.ok;
}

runIfMain(import.meta.url, main, 'predict');
