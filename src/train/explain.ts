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
import { type Explanation, explainInput, explanationPng, loadImageInput } from '../inspect/explain.ts';
import { spatialLayers } from '../inspect/attribution.ts';
import type { Model } from '../nn/model.ts';
import { EXIT, runIfMain, usageExit } from '../cli/program.ts';
import { commandMain, defineCommand, int, oneOf, str } from '../cli/options.ts';
import { BACKEND, CHECKPOINT, IMAGES, OUT, SEED, TTA, existingImages } from '../cli/shared.ts';
import { type Cell, csvText } from '../data/csv.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { restoreFromFlags } from './restore.ts';

export const EXPLAIN_COMMAND = defineCommand({
  name: 'explain',
  description: 'Show what a trained model looks at: Grad-CAM or integrated gradients per image, and window maps of stochastic models.',
  args: [IMAGES],
  options: {
    checkpoint: CHECKPOINT,
    out: { ...OUT, derived: 'explain-<timestamp> beside the checkpoint' },
    method: { flags: '--method <name>', help: 'gradcam or ig (integrated gradients)', parse: oneOf(['gradcam', 'ig'] as const), default: 'gradcam' },
    layer: { flags: '--layer <name>', help: 'Grad-CAM layer, a row name of nn.summary', parse: str, default: null, derived: 'the last layer aligned with the image: head, or low.head for full-split' },
    tta: { ...TTA, help: 'stochastic window draws averaged (probability and maps)' },
    steps: { flags: '--steps <n>', help: 'integrated-gradients steps', parse: int(1), default: 32 },
    seed: SEED,
    backend: BACKEND,
  },
});

export const main = commandMain(EXPLAIN_COMMAND, async (parsed) => {
  const { method, layer, tta, steps, out: outFlag } = parsed.values;
  if (layer !== null && method === 'ig') usageExit(`--layer is a Grad-CAM option; integrated gradients attribute to the input pixels`);
  const images = existingImages(parsed.args);
  const m = await restoreFromFlags(parsed.values);
  const model: Model = { config: m.mc, params: m.params, state: m.state };
  const seed = m.seed;
  if (layer !== null) {
    const names = spatialLayers(m.mc).map((l) => l.name);
    if (!names.includes(layer)) usageExit(`--layer: no layer '${layer}' in ${m.mc.name}; layers: ${names.join(', ')}`);
  }
  const out = path.resolve(outFlag ?? path.join(path.dirname(m.dir), `explain-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`));
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
    const e: Explanation = explainInput(model, img.right, { method, layer: layer ?? undefined, tta, seed, steps });
    const className = m.classes && C > 1 ? m.classes[e.classIndex] : C === 1 ? (m.classes?.[1] ?? 'melanoma') : `class ${e.classIndex}`;
    const png = path.join(out, `${name}.png`);
    fs.writeFileSync(png, await explanationPng(e, { title: name, className }));
    rows.push([name, e.probability, className, method, e.layer ?? '', e.passes, path.basename(png)]);
    process.stdout.write(`${name}: p(${className}) = ${e.probability.toFixed(4)} → ${png}\n`);
  }
  writeFileAtomic(path.join(out, 'explain.csv'), csvText(rows));
  process.stdout.write(`outputs in ${out}\n`);
  return failed ? EXIT.failure : EXIT.ok;
});

runIfMain(import.meta.url, main, 'explain');
