/**
 * `npm run explain -- --checkpoint DIR [--out DIR] [--layer NAME] [--method gradcam|ig] [--tta N] IMAGE…`:
 * per image a PNG (the input, the attribution overlaid in a perceptually uniform colour map with a
 * colour bar, the probability, and for stochastic models the window map over the full-resolution
 * image), plus explain.csv with the probabilities.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { renderDataError } from '../data/errors.ts';
import { type Explanation, type Method, explainInput, explanationPng, loadImageInput } from '../inspect/explain.ts';
import { spatialLayers } from '../inspect/attribution.ts';
import type { Model } from '../nn/model.ts';
import { EXIT, UsageExit, parseArgs, printUsage, program, runIfMain } from './cliutil.ts';
import { parseValue } from './config.ts';
import { type Cell, csvText } from '../data/csv.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { restore } from './restore.ts';

export function explainCommand() {
  return program('explain', 'Show what a trained model looks at: Grad-CAM or integrated gradients per image, and window maps of stochastic models.')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder, or a run folder (its best/ is used)')
    .argument('<images...>', 'image files (JPEG or PNG)')
    .option('--out <dir>', 'output folder (default: explain-<timestamp> beside the checkpoint)')
    .option('--method <name>', 'gradcam or ig (integrated gradients) (default: gradcam)')
    .option('--layer <name>', "Grad-CAM layer, a row name of nn.summary (default: the last layer aligned with the image: head, or low.head for full-split)")
    .option('--tta <n>', 'stochastic window draws averaged (probability and maps) (default: 1)')
    .option('--steps <n>', 'integrated-gradients steps (default: 32)')
    .option('--seed <n>', "seed of the stochastic windows (default: the training run's)")
    .option('--backend <name>', 'cpu or gpu (default: cpu)');
}

const count = (flag: string, raw: unknown, dflt: number): number => {
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 1) throw new UsageExit(`invalid value '${raw}' for ${flag}: must be a positive integer`);
  return v;
};

export async function main(argv: string[]): Promise<number> {
  let o: Record<string, unknown>;
  let images: string[];
  let tta: number, steps: number;
  let method: Method;
  try {
    const cmd = parseArgs(explainCommand(), argv);
    if (!cmd) return EXIT.ok;
    o = cmd.opts();
    images = cmd.args;
    tta = count('--tta', o.tta, 1);
    steps = count('--steps', o.steps, 32);
    method = (o.method ?? 'gradcam') as Method;
    if (method !== 'gradcam' && method !== 'ig') throw new UsageExit(`invalid value '${o.method}' for --method: must be one of gradcam, ig`);
    if (o.layer !== undefined && method === 'ig') throw new UsageExit(`--layer is a Grad-CAM option; integrated gradients attribute to the input pixels`);
    if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'gpu') throw new UsageExit(`invalid value '${o.backend}' for --backend: must be one of cpu, gpu`);
    for (const f of images) if (!fs.existsSync(f) || !fs.statSync(f).isFile()) throw new UsageExit(`image not found: ${f}`);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('explain', e.message);
    throw e;
  }
  const r = await restore(String(o.checkpoint), (o.backend as 'cpu' | 'gpu') ?? 'cpu');
  if (E.isLeft(r)) return printUsage('explain', r.left.message);
  const m = r.right;
  const model: Model = { config: m.mc, params: m.params, state: m.state };
  let seed = m.seed;
  if (o.seed !== undefined) {
    const s = parseValue('seed', String(o.seed));
    if (E.isLeft(s)) return printUsage('explain', s.left.message);
    seed = s.right as number;
  }
  const layer = o.layer === undefined ? undefined : String(o.layer);
  if (layer !== undefined) {
    const names = spatialLayers(m.mc).map((l) => l.name);
    if (!names.includes(layer)) return printUsage('explain', `--layer: no layer '${layer}' in ${m.mc.name}; layers: ${names.join(', ')}`);
  }
  const out = path.resolve(String(o.out ?? path.join(path.dirname(m.dir), `explain-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`)));
  fs.mkdirSync(out, { recursive: true });
  const C = m.mc.numClasses;
  const rows: Cell[][] = [['image_name', 'probability', 'class', 'method', 'layer', 'passes', 'png']];
  let failed = 0;
  for (const file of images) {
    const name = path.basename(file).replace(/\.[^.]+$/, '');
    const img = await loadImageInput(path.resolve(file), m.mc)();
    if (E.isLeft(img)) {
      process.stderr.write(`explain: skipped ${file}: ${renderDataError(img.left)}\n`);
      failed++;
      continue;
    }
    const e: Explanation = explainInput(model, img.right, { method, layer, tta, seed, steps });
    const className = m.classes && C > 1 ? m.classes[e.classIndex] : C === 1 ? (m.classes?.[1] ?? 'melanoma') : `class ${e.classIndex}`;
    const png = path.join(out, `${name}.png`);
    fs.writeFileSync(png, await explanationPng(e, { title: name, className }));
    rows.push([name, e.probability, className, method, e.layer ?? '', e.passes, path.basename(png)]);
    process.stdout.write(`${name}: p(${className}) = ${e.probability.toFixed(4)} → ${png}\n`);
  }
  writeFileAtomic(path.join(out, 'explain.csv'), csvText(rows));
  process.stdout.write(`outputs in ${out}\n`);
  return failed ? EXIT.failure : EXIT.ok;
}

runIfMain(import.meta.url, main, 'explain');
