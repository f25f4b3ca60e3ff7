/**
 * Per-epoch result tables: this project's `per_epoch.csv` and the seed paper's published CSVs, read
 * as they are. The seed's files have two quirks (../shared/data/seed-results/SOURCES.md): the header
 * names five columns but every row has six (pandas wrote its unnamed index first), and the first
 * data row is all zeros (a placeholder, not an epoch); their `Epoch` counts from 0. Both are
 * normalised here: epochs count from 1, as in this project's files.
 */
import * as E from 'fp-ts/lib/Either.js';
import { readCsvSync } from '../data/csv.ts';
import { renderDataError } from '../data/errors.ts';

export interface EpochTable {
  readonly file: string;
  /** 1-based epoch numbers. */
  readonly epochs: readonly number[];
  /** Every numeric column but Epoch, by header name ('Train Loss', 'Val RoC', …). */
  readonly columns: ReadonlyMap<string, readonly number[]>;
  /** The seed quirks found and undone (for the report). */
  readonly quirks: readonly ('index column' | 'placeholder row' | 'epochs from 0')[];
}

export interface TableError {
  readonly _tag: 'TableError';
  readonly file: string;
  readonly message: string;
}
const tableError = (file: string, message: string): TableError => ({ _tag: 'TableError', file, message });
export const renderTableError = (e: TableError): string => `${e.file}: ${e.message}`;

/** The columns every table must have: the seed's five. */
export const REQUIRED = ['Epoch', 'Train Loss', 'Val Loss', 'Train RoC', 'Val RoC'] as const;

export function readEpochTable(file: string): E.Either<TableError, EpochTable> {
  const csv = readCsvSync(file);
  if (E.isLeft(csv)) {
    const e = csv.left;
    if (e._tag !== 'CsvSyntax') return E.left(tableError(file, renderDataError(e)));
    return E.left(tableError(file, e.line === 1 && e.reason.startsWith('empty file') ? 'empty file (expected a header and one row per epoch)' : `line ${e.line}: ${e.reason}`));
  }
  const { header, lines } = csv.right;
  const rows = [header, ...csv.right.rows];
  for (const c of REQUIRED) if (!header.includes(c)) return E.left(tableError(file, `missing column '${c}' (header: ${header.join(',')})`));
  const quirks: EpochTable['quirks'][number][] = [];
  let data = rows.slice(1);
  if (data.length && data.every((r) => r.length === header.length + 1)) {
    quirks.push('index column');
    data = data.map((r) => r.slice(1));
  }
  const bad = data.findIndex((r) => r.length !== header.length);
  if (bad >= 0) return E.left(tableError(file, `line ${lines[bad]} has ${data[bad].length} fields, the header ${header.length}`));
  const values: number[][] = [];
  for (let i = 0; i < data.length; i++) {
    const row = data[i].map(Number);
    const j = row.findIndex((v, k) => Number.isNaN(v) && data[i][k] !== 'NaN');
    if (j >= 0) return E.left(tableError(file, `line ${lines[i]}, column '${header[j]}': not a number: '${data[i][j]}'`));
    values.push(row);
  }
  if (values.length && values[0].every((v) => v === 0)) {
    quirks.push('placeholder row');
    values.shift();
  }
  if (values.length === 0) return E.left(tableError(file, 'no epochs'));
  const ei = header.indexOf('Epoch');
  let epochs = values.map((r) => r[ei]);
  if (epochs[0] === 0) {
    quirks.push('epochs from 0');
    epochs = epochs.map((e) => e + 1);
  }
  const columns = new Map<string, number[]>();
  header.forEach((h, k) => {
    if (k !== ei) columns.set(h, values.map((r) => r[k]));
  });
  return E.right({ file, epochs, columns, quirks });
}

/** Best and last-epoch validation AUC of a table (the best over epochs, NaN epochs ignored). */
export function aucSummary(t: EpochTable): { epochs: number; bestAuc: number; bestEpoch: number; lastAuc: number } {
  const auc = t.columns.get('Val RoC')!;
  let best = -Infinity;
  let bestEpoch = 0;
  auc.forEach((v, i) => {
    if (v > best) [best, bestEpoch] = [v, t.epochs[i]];
  });
  return { epochs: t.epochs.length, bestAuc: best === -Infinity ? NaN : best, bestEpoch, lastAuc: auc[auc.length - 1] };
}
