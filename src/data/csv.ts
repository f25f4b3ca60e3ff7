/** A small RFC 4180 CSV reader (quoted fields, "" escapes, CRLF, BOM) — label files only. */
import * as E from 'fp-ts/lib/Either.js';
import { readFile } from 'node:fs/promises';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import { type DataError, DataErrors } from './errors.ts';

export interface Csv {
  readonly file: string;
  readonly header: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** 1-based line number of each row in the file (for messages). */
  readonly lines: readonly number[];
}

/** Parses CSV text; `hasHeader: false` keeps the first line as a row (ISIC 2016 ground truth). */
export function parseCsv(file: string, text: string, hasHeader = true): E.Either<DataError, Csv> {
  const records: string[][] = [];
  const lines: number[] = [];
  let field = '';
  let rec: string[] = [];
  let quoted = false;
  let line = 1;
  let recLine = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRecord = () => {
    rec.push(field);
    field = '';
    if (!(rec.length === 1 && rec[0].trim() === '')) {
      records.push(rec);
      lines.push(recLine);
    }
    rec = [];
  };
  for (; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (c === '\n') line++;
        field += c;
      }
    } else if (c === '"') {
      if (field.trim() !== '') return E.left(DataErrors.csvSyntax(file, line, 'quote inside an unquoted field'));
      field = '';
      quoted = true;
    } else if (c === ',') {
      rec.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
      line++;
      recLine = line;
    } else field += c;
  }
  if (quoted) return E.left(DataErrors.csvSyntax(file, recLine, 'unterminated quoted field'));
  if (field !== '' || rec.length > 0) endRecord();
  const trimmed = records.map((r) => r.map((f) => f.trim()));
  if (!hasHeader) return E.right({ file, header: [], rows: trimmed, lines });
  if (trimmed.length === 0) return E.left(DataErrors.csvSyntax(file, 1, 'empty file (no header)'));
  return E.right({ file, header: trimmed[0], rows: trimmed.slice(1), lines: lines.slice(1) });
}

export const readCsv = (file: string, hasHeader = true): TE.TaskEither<DataError, Csv> =>
  pipe(
    TE.tryCatch(() => readFile(file, 'utf8'), (e) => DataErrors.io(file, 'read', e)),
    TE.chainEitherK((text) => parseCsv(file, text, hasHeader)),
  );

/** Index of `column` (case-insensitive), or a MissingColumn error. */
export function column(csv: Csv, ...names: string[]): E.Either<DataError, number> {
  const lower = csv.header.map((h) => h.toLowerCase());
  for (const n of names) {
    const i = lower.indexOf(n.toLowerCase());
    if (i >= 0) return E.right(i);
  }
  return E.left(DataErrors.missingColumn(csv.file, names.join("' or '")));
}

/** Quotes a field when needed (writing split files). */
export const csvField = (s: string | number): string => {
  const t = String(s);
  return /[",\r\n]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
};
