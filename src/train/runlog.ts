/**
 * The run folder's log: one object owns every table and plot a run writes — per_epoch.csv,
 * per_batch.csv, timing.csv, predictions.csv, skipped.csv, config.json and the plots (PNG). The
 * checkpoints last/ and best/ belong to the Checkpointer. CSV numbers are written in JavaScript's
 * shortest round-trip form, so a resumed run writes the same bytes as an uninterrupted one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { type Cell, csvRecord, csvText, readCsvSync } from '../data/csv.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { binaryMetrics, flatBinaryMetrics, multiclassMetrics, rocAuc, rocCurve } from './metrics.ts';
import { type EpochCurves, aucSvg, lossSvg, rocSvg, writePng } from './plots.ts';

/** A skipped image as skipped.csv lists it: its name, its file and why. */
export type SkipRow = readonly [name: string, path: string, reason: string];

const TIMING_HEADER = ['Epoch', 'Seconds', 'Train Seconds', 'Val Seconds', 'Train Images/s'];
const BATCH_HEADER = ['Batch', 'Train Loss'];
const SKIPPED_HEADER = ['image_name', 'path', 'reason'];

/** A table of the run folder as header and rows of text, or null when it is not there (or unreadable). */
function readTable(file: string): { header: readonly string[]; rows: readonly (readonly string[])[] } | null {
  if (!fs.existsSync(file)) return null;
  const c = readCsvSync(file, { trim: false });
  return E.isRight(c) ? c.right : null;
}

/** Appends one record, writing the header first when the file is new. */
function appendRecord(file: string, header: readonly Cell[], cells: readonly Cell[]): void {
  if (!fs.existsSync(file)) fs.writeFileSync(file, csvRecord(header));
  fs.appendFileSync(file, csvRecord(cells));
}

/** Rows of a table whose first column (an epoch or a step) is at most `max`. */
const upTo = (rows: readonly (readonly string[])[], max: number) => rows.filter((r) => Number(r[0]) <= max);

export class RunLog {
  readonly perEpoch: string;
  readonly perBatch: string;
  readonly timing: string;
  readonly predictions: string;
  readonly skippedFile: string;
  readonly config: string;
  readonly lossPng: string;
  readonly aucPng: string;
  readonly rocPng: string;
  private header: readonly string[] | null = null;
  private rows: (readonly string[])[] = [];
  private readonly skippedRows = new Map<string, SkipRow>();

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    const f = (n: string) => path.join(dir, n);
    this.perEpoch = f('per_epoch.csv');
    this.perBatch = f('per_batch.csv');
    this.timing = f('timing.csv');
    this.predictions = f('predictions.csv');
    this.skippedFile = f('skipped.csv');
    this.config = f('config.json');
    this.lossPng = f('loss.png');
    this.aucPng = f('auc.png');
    this.rocPng = f('roc.png');
  }

  /** A fresh run: removes the tables and plots of an earlier run in the same folder. */
  reset(): void {
    for (const p of [this.perEpoch, this.perBatch, this.timing, this.predictions, this.skippedFile, this.lossPng, this.aucPng, this.rocPng]) fs.rmSync(p, { force: true });
  }

  /**
   * Resuming after `epochsDone` epochs and `globalStep` steps: keeps exactly the rows written before
   * the checkpoint (a crash after a CSV write but before the checkpoint would otherwise leave a row
   * that is about to be written again).
   */
  resumeAt(epochsDone: number, globalStep: number): void {
    const pe = readTable(this.perEpoch);
    if (pe) {
      this.header = pe.header;
      this.rows = upTo(pe.rows, epochsDone);
      this.flushEpochs();
    }
    for (const [file, header, max] of [[this.perBatch, BATCH_HEADER, globalStep], [this.timing, TIMING_HEADER, epochsDone]] as const) {
      const t = readTable(file);
      if (t) writeFileAtomic(file, csvText([header, ...upTo(t.rows, max)]));
    }
    for (const r of readTable(this.skippedFile)?.rows ?? []) this.remember([r[0] ?? '', r[1] ?? '', r[2] ?? '']);
  }

  /** One optimizer step's mean loss. */
  batch(step: number, loss: number): void {
    appendRecord(this.perBatch, BATCH_HEADER, [step, loss]);
  }

  /** One epoch's wall time (whole, training, validation; seconds) and training throughput. */
  timingRow(epoch: number, secs: number, trainSecs: number, valSecs: number, imgsPerSec: number): void {
    const r = (x: number) => Number(x.toFixed(3));
    appendRecord(this.timing, TIMING_HEADER, [epoch, r(secs), r(trainSecs), r(valSecs), r(imgsPerSec)]);
  }

  /** One epoch's metrics row; the first row fixes the columns. A row for an epoch already present replaces it. */
  epoch(row: Readonly<Record<string, number>>): void {
    const header = (this.header ??= Object.keys(row));
    this.rows = this.rows.filter((r) => Number(r[0]) < row.Epoch);
    this.rows.push(header.map((k) => String(row[k] ?? NaN)));
    this.flushEpochs();
  }

  private flushEpochs(): void {
    if (this.header) writeFileAtomic(this.perEpoch, csvText([this.header, ...this.rows]));
  }

  private remember(r: SkipRow): boolean {
    const k = JSON.stringify(r);
    if (this.skippedRows.has(k)) return false;
    this.skippedRows.set(k, r);
    return true;
  }

  /** Skipped images, listed once each however many epochs skip them. */
  skipped(rows: readonly SkipRow[]): void {
    let added = false;
    for (const r of rows) added = this.remember(r) || added;
    if (added) writeFileAtomic(this.skippedFile, skippedCsv([...this.skippedRows.values()]));
  }

  /** The best epoch's validation predictions. */
  predictionsOf(p: { names: readonly string[]; labels: readonly number[]; probs: ArrayLike<number> }, classes: readonly string[], C: number): void {
    writeFileAtomic(this.predictions, predictionsCsv(p, classes, C));
  }

  /** config.json: the resolved configuration and what the run was started with. */
  writeConfig(value: unknown): void {
    writeFileAtomic(this.config, `${JSON.stringify(value, null, 2)}\n`);
  }

  /** The epoch curves read back from per_epoch.csv. */
  curves(): EpochCurves | null {
    const c = readTable(this.perEpoch);
    if (!c || !c.rows.length) return null;
    const col = (name: string) => c.rows.map((r) => Number(r[c.header.indexOf(name)]));
    return { epochs: col('Epoch'), trainLoss: col('Train Loss'), valLoss: col('Val Loss'), trainAuc: col('Train RoC'), valAuc: col('Val RoC') };
  }

  /** Renders loss.png, auc.png and roc.png (the ROC of the best epoch's predictions). */
  async plots(bestEpoch?: number | null): Promise<void> {
    const c = this.curves();
    if (c) {
      await writePng(this.lossPng, lossSvg(c));
      await writePng(this.aucPng, aucSvg(c));
    }
    const roc = rocFromPredictions(this.predictions);
    if (roc.length) await writePng(this.rocPng, rocSvg(roc, bestEpoch ? `ROC curve (best epoch ${bestEpoch})` : 'ROC curve (best epoch)'));
  }
}

/** skipped.csv: image_name,path,reason. */
export const skippedCsv = (rows: readonly SkipRow[]): string => csvText([SKIPPED_HEADER, ...rows]);

/** The per-epoch row: the seed's five columns first, then the other metrics, then the rate. */
export function epochRow(args: {
  epoch: number;
  trainLoss: number;
  valLoss: number;
  trainLabels: ArrayLike<number>;
  trainProbs: ArrayLike<number>;
  val: { labels: readonly number[]; probs: ArrayLike<number> };
  classes: readonly string[];
  numClasses: number;
  lr: number;
}): { row: Record<string, number>; valAuc: number } {
  const seed = (trainAuc: number, valAuc: number) => ({ Epoch: args.epoch, 'Train Loss': args.trainLoss, 'Val Loss': args.valLoss, 'Train RoC': trainAuc, 'Val RoC': valAuc });
  if (args.numClasses === 1) {
    const m = binaryMetrics(args.val.labels, args.val.probs);
    return { valAuc: m.auc, row: { ...seed(rocAuc(args.trainLabels, args.trainProbs), m.auc), ...flatBinaryMetrics(m, 'Val '), LR: args.lr } };
  }
  const m = multiclassMetrics(args.val.labels, args.val.probs, args.numClasses);
  const t = multiclassMetrics(args.trainLabels, args.trainProbs, args.numClasses);
  const perClass = Object.fromEntries(m.aucPerClass.map((a, i) => [`Val RoC ${args.classes[i] ?? i}`, a]));
  return {
    valAuc: m.macroAuc,
    row: { ...seed(t.macroAuc, m.macroAuc), 'Val Accuracy': m.accuracy, 'Val Balanced Accuracy': m.balancedAccuracy, 'Val Kappa': m.kappa, ...perClass, LR: args.lr },
  };
}

/**
 * predictions.csv: image_name,label,prob (binary) or image_name,label,pred,prob_<class>…; without
 * labels (`labels: null`, images of unknown class) the label column is left out.
 */
export function predictionsCsv(p: { names: readonly string[]; labels: readonly number[] | null; probs: ArrayLike<number> }, classes: readonly string[], C: number): string {
  const label = (i: number): Cell[] => (p.labels ? [p.labels[i]] : []);
  const head = ['image_name', ...(p.labels ? ['label'] : [])];
  if (C === 1) return csvText([[...head, 'prob'], ...p.names.map((n, i) => [n, ...label(i), p.probs[i]])]);
  return csvText([
    [...head, 'pred', ...classes.map((c) => `prob_${c}`)],
    ...p.names.map((n, i) => {
      const row = Array.from({ length: C }, (_, k) => p.probs[i * C + k]);
      const pred = row.indexOf(Math.max(...row));
      return [n, ...label(i), classes[pred] ?? pred, ...row];
    }),
  ]);
}

/** ROC curves from predictions.csv (binary: one curve; multiclass: one-vs-rest per class). */
export function rocFromPredictions(file: string): { name: string; fpr: number[]; tpr: number[] }[] {
  const c = readTable(file);
  if (!c || !c.rows.length) return [];
  const li = c.header.indexOf('label');
  const labels = c.rows.map((r) => Number(r[li]));
  const curves: { name: string; fpr: number[]; tpr: number[] }[] = [];
  const probCols = c.header.map((h, i) => [h, i] as const).filter(([h]) => h === 'prob' || h.startsWith('prob_'));
  probCols.forEach(([h, i], k) => {
    const y = h === 'prob' ? labels : labels.map((l) => (l === k ? 1 : 0));
    const s = c.rows.map((r) => Number(r[i]));
    if (y.some((v) => v !== 0 && v !== 1) || !y.includes(0) || !y.includes(1)) return;
    const auc = rocAuc(y, s);
    curves.push({ name: `${h === 'prob' ? 'validation' : h.slice(5)} (AUC ${auc.toFixed(4)})`, ...rocCurve(y, s) });
  });
  return curves;
}
