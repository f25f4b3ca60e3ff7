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
import { type Predictions, predictAll } from './step.ts';
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

/** The options as given and the numbers parsed from them; a usage error as the message to print. */
function readOptions(argv: string[]): { o: Record<string, unknown>; tta: number; batchSize: number; microBatch: number; workers: number; limit: number } | null | string {
  try {
    const cmd = parseArgs(evaluateCommand(), argv);
    if (!cmd) return null;
    const o = cmd.opts() as Record<string, unknown>;
    if (!o.data) throw new UsageExit(`required option '--data <dir>' not specified`);
    if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'gpu') throw new UsageExit(`invalid value '${o.backend}' for --backend: must be one of cpu, gpu`);
    return { o, tta: num('tta', o.tta, 1), batchSize: num('batchSize', o.batchSize, 16), microBatch: num('microBatch', o.microBatch, 16), workers: num('workers', o.workers, 1), limit: num('limit', o.limit, Infinity) };
  } catch (e) {
    if (e instanceof UsageExit) return e.message;
    throw e;
  }
}

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

export async function main(argv: string[]): Promise<number> {
  const opts = readOptions(argv);
  if (opts === null) return EXIT.ok;
  if (typeof opts === 'string') return printUsage('evaluate', opts);
  const { o, tta, batchSize, microBatch, workers, limit } = opts;
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
  if (C > 1 && ds.right.classes.length !== C) return printUsage('evaluate', `the data has ${ds.right.classes.length} classes but the model was trained on ${C}`);
  const items: Item[] = ds.right.items.slice(0, limit);
  const reporter = consoleReporter({ quiet: Boolean(o.quiet) });
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
  const out = path.resolve(String(o.out ?? path.join(path.dirname(m.dir), `eval-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')}`)));
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
}

runIfMain(import.meta.url, main, 'evaluate');
