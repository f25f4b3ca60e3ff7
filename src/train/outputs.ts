/**
 * The run folder: per_epoch.csv, per_batch.csv, timing.csv, predictions.csv, skipped.csv,
 * config.json, split.csv, the checkpoints last/ and best/, and the plots (PNG). CSV numbers are
 * written with JavaScript's shortest round-trip form, so a resumed run writes the same bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { rocAuc, rocCurve } from './metrics.ts';
import { aucSvg, lossSvg, rocSvg, writePng } from './plots.ts';

const fmtNum = (v: number | string): string => (typeof v === 'string' ? v : Number.isFinite(v) ? String(v) : Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity');
const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

export const csvLine = (cells: readonly (number | string)[]): string => cells.map((c) => quote(fmtNum(c))).join(',');

/** A minimal CSV reader for the files written here (quoted fields allowed). */
export function readCsvRows(file: string): { header: string[]; rows: string[][] } | null {
  if (!fs.existsSync(file)) return null;
  const text = fs.readFileSync(file, 'utf8');
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (q) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') q = false;
      else cell += ch;
    } else if (ch === '"') q = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else if (ch !== '\r') cell += ch;
  }
  if (cell !== '' || row.length) {
    row.push(cell);
    rows.push(row);
  }
  if (!rows.length) return null;
  return { header: rows[0], rows: rows.slice(1) };
}

/** Writes a file through a temporary name and a rename, so readers never see it half written. */
export const writeAtomic = (file: string, text: string): void => {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
};

export class RunFiles {
  readonly perEpoch: string;
  readonly perBatch: string;
  readonly timing: string;
  readonly predictions: string;
  readonly skipped: string;
  readonly config: string;
  readonly last: string;
  readonly best: string;
  readonly lossPng: string;
  readonly aucPng: string;
  readonly rocPng: string;
  private header: string[] | null = null;
  private rows: string[][] = [];
  private skippedSet = new Set<string>();

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
    const f = (n: string) => path.join(dir, n);
    this.perEpoch = f('per_epoch.csv');
    this.perBatch = f('per_batch.csv');
    this.timing = f('timing.csv');
    this.predictions = f('predictions.csv');
    this.skipped = f('skipped.csv');
    this.config = f('config.json');
    this.last = f('last');
    this.best = f('best');
    this.lossPng = f('loss.png');
    this.aucPng = f('auc.png');
    this.rocPng = f('roc.png');
  }

  /** A fresh run: removes outputs of an earlier run in the same folder. */
  reset(): void {
    for (const p of [this.perEpoch, this.perBatch, this.timing, this.predictions, this.skipped, this.lossPng, this.aucPng, this.rocPng]) fs.rmSync(p, { force: true });
    for (const p of [this.last, this.best]) fs.rmSync(p, { recursive: true, force: true });
  }

  /**
   * Resuming at the start of epoch `epochsDone + 1` after `globalStep` steps: keep exactly the rows
   * written before the checkpoint (a crash after a CSV write but before the checkpoint would
   * otherwise leave a row that is about to be written again).
   */
  truncateForResume(epochsDone: number, globalStep: number): void {
    const pe = readCsvRows(this.perEpoch);
    if (pe) {
      this.header = pe.header;
      this.rows = pe.rows.filter((r) => Number(r[0]) <= epochsDone);
      this.flushEpochs();
    }
    const keep = (file: string, header: string, maxKey: number) => {
      const c = readCsvRows(file);
      if (!c) return;
      const rows = c.rows.filter((r) => Number(r[0]) <= maxKey);
      writeAtomic(file, [header, ...rows.map((r) => csvLine(r))].join('\n') + '\n');
    };
    keep(this.perBatch, 'Batch,Train Loss', globalStep);
    keep(this.timing, TIMING_HEADER, epochsDone);
    const sk = readCsvRows(this.skipped);
    if (sk) for (const r of sk.rows) this.skippedSet.add(csvLine(r));
  }

  appendBatch(step: number, loss: number): void {
    if (!fs.existsSync(this.perBatch)) fs.writeFileSync(this.perBatch, 'Batch,Train Loss\n');
    fs.appendFileSync(this.perBatch, `${csvLine([step, loss])}\n`);
  }

  appendTiming(epoch: number, secs: number, trainSecs: number, valSecs: number, imgsPerSec: number): void {
    if (!fs.existsSync(this.timing)) fs.writeFileSync(this.timing, `${TIMING_HEADER}\n`);
    const r = (x: number) => Number(x.toFixed(3));
    fs.appendFileSync(this.timing, `${csvLine([epoch, r(secs), r(trainSecs), r(valSecs), r(imgsPerSec)])}\n`);
  }

  writeEpoch(row: Record<string, number>): void {
    const keys = Object.keys(row);
    if (!this.header) this.header = keys;
    this.rows = this.rows.filter((r) => Number(r[0]) < row.Epoch);
    this.rows.push(this.header.map((k) => fmtNum(row[k] ?? NaN)));
    this.flushEpochs();
  }

  private flushEpochs(): void {
    if (!this.header) return;
    writeAtomic(this.perEpoch, [csvLine(this.header), ...this.rows.map((r) => csvLine(r))].join('\n') + '\n');
  }

  /** Skipped-image lines ('name,path,reason'), deduplicated over epochs. */
  addSkipped(lines: readonly string[]): void {
    let added = false;
    for (const l of lines) {
      if (!this.skippedSet.has(l)) {
        this.skippedSet.add(l);
        added = true;
      }
    }
    if (added) writeAtomic(this.skipped, ['image_name,path,reason', ...this.skippedSet].join('\n') + '\n');
  }

  writePredictions(p: { names: readonly string[]; labels: readonly number[]; probs: ArrayLike<number> }, classes: readonly string[], C: number): void {
    writeAtomic(this.predictions, predictionsCsv(p, classes, C));
  }

  /** The epoch curves read back from per_epoch.csv. */
  curves(): { epochs: number[]; trainLoss: number[]; valLoss: number[]; trainAuc: number[]; valAuc: number[] } | null {
    const c = readCsvRows(this.perEpoch);
    if (!c || !c.rows.length) return null;
    const col = (name: string) => {
      const i = c.header.indexOf(name);
      return c.rows.map((r) => Number(r[i]));
    };
    return { epochs: col('Epoch'), trainLoss: col('Train Loss'), valLoss: col('Val Loss'), trainAuc: col('Train RoC'), valAuc: col('Val RoC') };
  }
}

const TIMING_HEADER = 'Epoch,Seconds,Train Seconds,Val Seconds,Train Images/s';

/** predictions.csv: image_name,label,prob (binary) or image_name,label,pred,prob_<class>… */
export function predictionsCsv(p: { names: readonly string[]; labels: readonly (number | null)[]; probs: ArrayLike<number> }, classes: readonly string[], C: number): string {
  const lines: string[] = [];
  if (C === 1) {
    lines.push('image_name,label,prob');
    p.names.forEach((n, i) => lines.push(csvLine([n, p.labels[i] ?? '', p.probs[i]])));
  } else {
    lines.push(csvLine(['image_name', 'label', 'pred', ...classes.map((c) => `prob_${c}`)]));
    p.names.forEach((n, i) => {
      const row = Array.from({ length: C }, (_, k) => p.probs[i * C + k]);
      const pred = row.indexOf(Math.max(...row));
      lines.push(csvLine([n, p.labels[i] ?? '', classes[pred] ?? pred, ...row]));
    });
  }
  return lines.join('\n') + '\n';
}

/** ROC curves from predictions.csv (binary: one curve; multiclass: one-vs-rest per class). */
export function rocFromPredictions(file: string): { name: string; fpr: number[]; tpr: number[] }[] {
  const c = readCsvRows(file);
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

/** Renders loss.png, auc.png and roc.png (ROC of the best epoch's predictions). */
export async function writePlots(files: RunFiles, bestEpoch?: number | null): Promise<void> {
  const c = files.curves();
  if (c) {
    await writePng(files.lossPng, lossSvg(c));
    await writePng(files.aucPng, aucSvg(c));
  }
  const roc = rocFromPredictions(files.predictions);
  if (roc.length) await writePng(files.rocPng, rocSvg(roc, bestEpoch ? `ROC curve (best epoch ${bestEpoch})` : 'ROC curve (best epoch)'));
}
