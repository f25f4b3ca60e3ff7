/**
 * `npm run evaluate -- --checkpoint DIR --data DIR [--data DIR…]`: scores a trained model on a
 * labelled set — every metric of training, predictions.csv, metrics.json and roc.png.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { type Item, loadDataset } from '../data/readers.ts';
import { createLoader } from '../data/loader.ts';
import { renderDataError } from '../data/errors.ts';
import { EXIT, runIfMain, usageExit } from '../cli/program.ts';
import { commandMain, defineCommand } from '../cli/options.ts';
import { BACKEND, BATCH_SIZE, CHECKPOINT, DATA, FORMAT, LIMIT, MICRO_BATCH, OUT, QUIET, SEED, TTA, WORKERS } from '../cli/shared.ts';
import { type Predictions, predictAll } from './step.ts';
import { binaryMetrics, flatBinaryMetrics, multiclassMetrics } from './metrics.ts';
import { predictionsCsv, rocFromPredictions, skippedCsv } from './runlog.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { rocSvg, writePng } from './plots.ts';
import { writeEvaluationFigures } from '../inspect/figures.ts';
import { consoleReporter } from './report.ts';
import { restoreFromFlags } from './restore.ts';

export const EVALUATE_COMMAND = defineCommand({
  name: 'evaluate',
  description: 'Evaluate a trained checkpoint on a labelled image set.',
  options: {
    checkpoint: CHECKPOINT,
    data: { ...DATA, help: 'labelled dataset folder (repeatable)', required: true },
    format: FORMAT,
    tta: TTA,
    batchSize: { ...BATCH_SIZE, help: 'images decoded per batch' },
    microBatch: MICRO_BATCH,
    workers: WORKERS,
    seed: SEED,
    limit: { ...LIMIT, help: 'use only the first n images' },
    backend: BACKEND,
    out: { ...OUT, derived: '<checkpoint>/../eval-<timestamp>' },
    quiet: { ...QUIET, help: 'no progress bar' },
  },
});

const f4 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));

/** metrics.json's metrics and the lines that report them (`what`: what was evaluated, with what, in how long). */
function summarise(p: Predictions, C: number, classes: readonly string[], what: (n: string) => string): { metrics: Record<string, unknown>; lines: string[] } {
  if (C > 1) {
    const mm = multiclassMetrics(p.labels, p.probs, C);
    return {
      metrics: { ...mm, classes },
      lines: [
        what(`${mm.n} images`),
        `macro ROC AUC ${f4(mm.macroAuc)}; accuracy ${f4(mm.accuracy)}; balanced accuracy ${f4(mm.balancedAccuracy)}; kappa ${f4(mm.kappa)}`,
        `per class: ${mm.aucPerClass.map((a, i) => `${classes[i]} ${f4(a)}`).join(', ')}`,
      ],
    };
  }
  const bm = binaryMetrics(p.labels, p.probs);
  const at = (t: typeof bm.atHalf) =>
    `accuracy ${f4(t.accuracy)} sensitivity ${f4(t.sensitivity)} specificity ${f4(t.specificity)} F1 ${f4(t.f1)} F2 ${f4(t.f2)} kappa ${f4(t.kappa)} (TP ${t.confusion.tp} FP ${t.confusion.fp} TN ${t.confusion.tn} FN ${t.confusion.fn})`;
  return {
    metrics: { auc: bm.auc, n: bm.n, positives: bm.positives, ...flatBinaryMetrics(bm) },
    lines: [what(`${bm.n} images (${bm.positives} positive)`), `ROC AUC ${f4(bm.auc)}`, `at 0.5:    ${at(bm.atHalf)}`, `at Youden (${f4(bm.atYouden.threshold)}): ${at(bm.atYouden)}`],
  };
}

export const main = commandMain(EVALUATE_COMMAND, async (parsed) => {
  const { tta, batchSize, microBatch, workers, limit, format, quiet, data: dirs, ...o } = parsed.values;
  const m = await restoreFromFlags(o);
  const seed = m.seed;
  const C = m.mc.numClasses;
  for (const d of dirs) if (!fs.existsSync(d)) return usageExit(`--data: folder not found: ${d}`);
  const ds = await loadDataset(dirs, { task: C === 1 ? 'binary' : 'multiclass', ...(format ? { format } : {}) })();
  if (E.isLeft(ds)) return usageExit(renderDataError(ds.left));
  const classes = m.classes ?? ds.right.classes;
  if (C > 1 && ds.right.classes.length !== C) return usageExit(`the data has ${ds.right.classes.length} classes but the model was trained on ${C}`);
  const items: Item[] = ds.right.items.slice(0, limit ?? undefined);
  const reporter = consoleReporter({ quiet });
  const loader = createLoader(items, { batchSize, sides: m.mc.sides, augment: false, seed, workers, shuffle: false });
  const t0 = performance.now();
  reporter.start('evaluate', items.length);
  let p: Predictions | null;
  try {
    p = await predictAll({ mc: m.mc, params: m.params, state: m.state, loader, tta, microBatch, seed, onBatch: (d) => reporter.update(d, null) });
  } finally {
    reporter.stop();
    await loader.close();
  }
  const secs = (performance.now() - t0) / 1000;
  const out = path.resolve(o.out ?? path.join(path.dirname(m.dir), `eval-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`));
  const { metrics, lines } = summarise(p!, C, classes, (n) => `evaluated ${n} in ${secs.toFixed(1)} s with ${m.mc.name} from ${m.dir}${C === 1 && tta > 1 ? `, TTA ${tta}` : ''}`);
  for (const l of lines) reporter.line(l);
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, 'predictions.csv'), predictionsCsv(p!, classes, C));
  if (p!.skipped.length) writeFileAtomic(path.join(out, 'skipped.csv'), skippedCsv(p!.skipped.map((s) => [s.name, s.path, s.reason])));
  const json = { checkpoint: m.dir, data: dirs.map((d) => path.resolve(d)), tta, seed, skipped: p!.skipped.length, metrics };
  writeFileAtomic(path.join(out, 'metrics.json'), `${JSON.stringify(json, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2)}\n`);
  const roc = rocFromPredictions(path.join(out, 'predictions.csv'));
  if (roc.length) await writePng(path.join(out, 'roc.png'), rocSvg(roc, `ROC curve (${m.mc.name})`));
  if (C === 1) await writeEvaluationFigures(out, { model: { config: m.mc, params: m.params, state: m.state }, items, predictions: p!, seed });
  if (p!.skipped.length) reporter.warn(`${p!.skipped.length} images could not be read (listed in skipped.csv)`);
  reporter.line(`outputs in ${out}`);
  return EXIT.ok;
});

runIfMain(import.meta.url, main, 'evaluate');
