/**
 * The one CSV reader and writer of the engine (RFC 4180 through csv-parse and csv-stringify):
 * label files, split.csv, skipped.csv and every file of a run folder. Reading accepts a BOM, CRLF,
 * LF or CR line ends, quoted fields with `""` escapes and line breaks; writing quotes a field that
 * holds a comma, a quote, `\n` or `\r`, so whatever is written reads back unchanged.
 */
import * as fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import { CsvError, parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { type DataError, DataErrors } from './errors.ts';

export interface Csv {
  readonly file: string;
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** 1-based line number where each row starts in the file (for messages). */
  readonly lines: readonly number[];
}

export interface CsvOptions {
  /** The first record is the header (default true; false keeps it as a row: ISIC 2016 ground truth). */
  readonly header?: boolean;
  /** Trim whitespace around every field (default true: hand-edited label files; run files keep fields exact). */
  readonly trim?: boolean;
}

/** A cell to write: numbers in JavaScript's shortest round-trip form (NaN, Infinity spelled out); null is empty. */
export type Cell = string | number | null;

/** Line breaks inside a field as csv-parse counts them (each \r and each \n). */
const lineBreaks = (s: string): number => s.match(/[\r\n]/g)?.length ?? 0;

const syntaxReason = (e: CsvError): string =>
  e.code === 'INVALID_OPENING_QUOTE' ? 'quote inside an unquoted field' : e.code === 'CSV_QUOTE_NOT_CLOSED' ? 'unterminated quoted field' : e.message;

/** Parses CSV text; blank lines are skipped. */
export function parseCsv(file: string, text: string, opts: CsvOptions = {}): E.Either<DataError, Csv> {
  const trim = opts.trim ?? true;
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { bom: true, info: true, relax_column_count: true, skip_empty_lines: true, ltrim: trim, rtrim: trim, record_delimiter: ['\r\n', '\n', '\r'] }) as unknown as typeof records;
  } catch (e) {
    if (e instanceof CsvError) return E.left(DataErrors.csvSyntax(file, (e as CsvError & { lines?: number }).lines ?? 1, syntaxReason(e)));
    throw e;
  }
  const kept = records
    .map(({ record, info }) => ({ row: trim ? record.map((f) => f.trim()) : record, line: info.lines - record.reduce((n, f) => n + lineBreaks(f), 0) }))
    .filter(({ row }) => !(row.length === 1 && row[0].trim() === ''));
  const rows = kept.map((k) => k.row);
  const lines = kept.map((k) => k.line);
  if (opts.header === false) return E.right({ file, header: [], rows, lines });
  if (rows.length === 0) return E.left(DataErrors.csvSyntax(file, 1, 'empty file (no header)'));
  return E.right({ file, header: rows[0], rows: rows.slice(1), lines: lines.slice(1) });
}

export const readCsv = (file: string, opts: CsvOptions = {}): TE.TaskEither<DataError, Csv> =>
  pipe(
    TE.tryCatch(() => readFile(file, 'utf8'), (e) => DataErrors.io(file, 'read', e)),
    TE.chainEitherK((text) => parseCsv(file, text, opts)),
  );

/** Reads a CSV file synchronously (run-folder files, read back on resume and for plots). */
export function readCsvSync(file: string, opts: CsvOptions = {}): E.Either<DataError, Csv> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    return E.left(DataErrors.io(file, 'read', e));
  }
  return parseCsv(file, text, opts);
}

/** The header of a CSV file, from its first 64 KiB (enough for any header; used to recognise formats). */
export async function readCsvHeader(file: string): Promise<string[]> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const first = parse(text, { bom: true, to_line: 1, relax_column_count: true, relax_quotes: true, trim: true, record_delimiter: ['\r\n', '\n', '\r'] }) as string[][];
    return first[0] ?? [];
  } finally {
    await fh.close();
  }
}

/** CSV text of `records`, every record ending in `\n`. */
export const csvText = (records: readonly (readonly Cell[])[]): string =>
  records.length === 0 ? '' : stringify(records as Cell[][], { record_delimiter: '\n', quoted_match: /\r/ });

/** One record as a CSV line with its `\n`. */
export const csvRecord = (cells: readonly Cell[]): string => csvText([cells]);

/** Index of `column` (case-insensitive), or a MissingColumn error. */
export function column(csv: Csv, ...names: string[]): E.Either<DataError, number> {
  const lower = csv.header.map((h) => h.toLowerCase());
  for (const n of names) {
    const i = lower.indexOf(n.toLowerCase());
    if (i >= 0) return E.right(i);
  }
  return E.left(DataErrors.missingColumn(csv.file, names.join("' or '")));
}
