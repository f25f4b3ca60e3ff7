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
import { EXIT, UsageExit, parseArgs, printUsage, program, runIfMain } from './cliutil.ts';
import { parseValue } from './config.ts';
import { predictAll } from './step.ts';
import { binaryMetrics, flatBinaryMetrics, multiclassMetrics } from './metrics.ts';
import { predictionsCsv, rocFromPredictions, skippedCsv } from './runlog.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { rocSvg, writePng } from './plots.ts';
import { writeEvaluationFigures } from '../inspect/figures.ts';
import { consoleReporter } from './report.ts';
import { restore } from './restore.ts';

export function evaluateCommand() {
  return program('evaluate', 'Evaluate a trained checkpoint on a labelled image set.')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder, or a run folder (its best/ is used)')
    .option('--data <dir>', 'labelled dataset folder (repeatable; required)', (v: string, p: string[] | undefined) => [...(p ?? []), v])
    .option('--format <name>', 'force the dataset reader (default: detected per folder)')
    .option('--tta <n>', 'stochastic passes averaged per image (default: 1)')
    .option('--batch-size <n>', 'images decoded per batch (default: 16)')
    .option('--micro-batch <n>', 'images per forward pass (default: 16)')
    .option('--workers <n>', 'image-decoding worker threads (default: 1)')
    .option('--seed <n>', "seed of the stochastic windows (default: the training run's)")
    .option('--limit <n>', 'use only the first n images (default: all)')
    .option('--backend <name>', 'cpu or gpu (default: cpu)')
    .option('--out <dir>', 'output folder (default: <checkpoint>/../eval-<timestamp>)')
    .option('--quiet', 'no progress bar (default: off)');
}

const num = (key: 'tta' | 'batchSize' | 'microBatch' | 'workers' | 'seed' | 'limit', raw: unknown, dflt: number): number => {
  if (raw === undefined) return dflt;
  const r = parseValue(key, String(raw));
  if (E.isLeft(r) || r.right === null) throw new UsageExit(E.isLeft(r) ? r.left.message : `invalid value '${raw}'`);
  return r.right as number;
};

export async function main(argv: string[]): Promise<number> {
  let o: Record<string, unknown>;
  try {
    const cmd = parseArgs(evaluateCommand(), argv);
    if (!cmd) return EXIT.ok;
    o = cmd.opts();
    if (!o.data) throw new UsageExit(`required option '--data <dir>' not specified`);
    if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'gpu') throw new UsageExit(`invalid value '${o.backend}' for --backend: must be one of cpu, gpu`);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('evaluate', e.message);
    throw e;
  }
  let tta: number, batchSize: number, microBatch: number, workers: number, limit: number;
  try {
    tta = num('tta', o.tta, 1);
    batchSize = num('batchSize', o.batchSize, 16);
    microBatch = num('microBatch', o.microBatch, 16);
    workers = num('workers', o.workers, 1);
    limit = num('limit', o.limit, Infinity);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('evaluate', e.message);
    throw e;
  }
  const r = await restore(String(o.checkpoint), (o.backend as 'cpu' | 'gpu') ?? 'cpu');
  if (E.isLeft(r)) return printUsage('evaluate', r.left.message);
  const m = r.right;
  let seed: number;
  try {
    seed = num('seed', o.seed, m.seed);
  } catch (e) {
    return printUsage('evaluate', (e as Error).message);
  }
  const C = m.mc.numClasses;
  const dirs = o.data as string[];
  for (const d of dirs) if (!fs.existsSync(d)) return printUsage('evaluate', `--data: folder not found: ${d}`);
  const ds = await loadDataset(dirs, { task: C === 1 ? 'binary' : 'multiclass', ...(o.format ? { format: String(o.format) } : {}) })();
  if (E.isLeft(ds)) return printUsage('evaluate', renderDataError(ds.left));
  const classes = m.classes ?? ds.right.classes;
  if (C > 1 && ds.right.classes.length !== C) {
    return printUsage('evaluate', `the data has ${ds.right.classes.length} classes but the model was trained on ${C}`);
  }
  const items: Item[] = ds.right.items.slice(0, limit);
  const reporter = consoleReporter({ quiet: Boolean(o.quiet) });
  const loader = createLoader(items, { batchSize, lowSize: m.mc.lowSize, highSize: m.mc.highSize, augment: false, seed, workers, shuffle: false });
  const t0 = performance.now();
  reporter.start('evaluate', items.length);
  let p;
  try {
    p = await predictAll({ mc: m.mc, params: m.params, state: m.state, loader, tta, microBatch, seed, onBatch: (d) => reporter.update(d, null) });
  } finally {
    reporter.stop();
    await loader.close();
  }
  const secs = (performance.now() - t0) / 1000;
  const out = path.resolve(String(o.out ?? path.join(path.dirname(m.dir), `eval-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`)));
  fs.mkdirSync(out, { recursive: true });
  writeFileAtomic(path.join(out, 'predictions.csv'), predictionsCsv(p!, classes, C));
  if (p!.skipped.length) writeFileAtomic(path.join(out, 'skipped.csv'), skippedCsv(p!.skipped.map((s) => [s.name, s.path, s.reason])));
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : String(x));
  let metrics: Record<string, unknown>;
  if (C === 1) {
    const bm = binaryMetrics(p!.labels, p!.probs);
    metrics = { auc: bm.auc, n: bm.n, positives: bm.positives, ...flatBinaryMetrics(bm) };
    const h = bm.atHalf;
    const y = bm.atYouden;
    reporter.line(`evaluated ${bm.n} images (${bm.positives} positive) in ${secs.toFixed(1)} s with ${m.mc.name} from ${m.dir}${tta > 1 ? `, TTA ${tta}` : ''}`);
    reporter.line(`ROC AUC ${f(bm.auc)}`);
    reporter.line(
      `at 0.5:    accuracy ${f(h.accuracy)} sensitivity ${f(h.sensitivity)} specificity ${f(h.specificity)} F1 ${f(h.f1)} F2 ${f(h.f2)} kappa ${f(h.kappa)} (TP ${h.confusion.tp} FP ${h.confusion.fp} TN ${h.confusion.tn} FN ${h.confusion.fn})`,
    );
    reporter.line(
      `at Youden (${f(y.threshold)}): accuracy ${f(y.accuracy)} sensitivity ${f(y.sensitivity)} specificity ${f(y.specificity)} F1 ${f(y.f1)} F2 ${f(y.f2)} kappa ${f(y.kappa)} (TP ${y.confusion.tp} FP ${y.confusion.fp} TN ${y.confusion.tn} FN ${y.confusion.fn})`,
    );
  } else {
    const mm = multiclassMetrics(p!.labels, p!.probs, C);
    metrics = { ...mm, classes };
    reporter.line(`evaluated ${mm.n} images in ${secs.toFixed(1)} s with ${m.mc.name} from ${m.dir}`);
    reporter.line(`macro ROC AUC ${f(mm.macroAuc)}; accuracy ${f(mm.accuracy)}; balanced accuracy ${f(mm.balancedAccuracy)}; kappa ${f(mm.kappa)}`);
    reporter.line(`per class: ${mm.aucPerClass.map((a, i) => `${classes[i]} ${f(a)}`).join(', ')}`);
  }
  fs.writeFileSync(
    path.join(out, 'metrics.json'),
    `${JSON.stringify({ checkpoint: m.dir, data: dirs.map((d) => path.resolve(d)), tta, seed, skipped: p!.skipped.length, metrics }, (_, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v), 2)}\n`,
  );
  const roc = rocFromPredictions(path.join(out, 'predictions.csv'));
  if (roc.length) await writePng(path.join(out, 'roc.png'), rocSvg(roc, `ROC curve (${m.mc.name})`));
  if (C === 1) await writeEvaluationFigures(out, { model: { config: m.mc, params: m.params, state: m.state }, items, predictions: p!, seed });
  if (p!.skipped.length) reporter.warn(`${p!.skipped.length} images could not be read (listed in skipped.csv)`);
  reporter.line(`outputs in ${out}`);
  return EXIT.ok;
}

runIfMain(import.meta.url, main, 'evaluate');
