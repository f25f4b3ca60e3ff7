/**
 * Data errors are values: readers and the image pipeline return fp-ts `Either` / `TaskEither`
 * with one of these tagged records, and the CLI prints `renderDataError(e)` as one line.
 */

export type DataError =
  | { readonly _tag: 'MissingFolder'; readonly path: string }
  | { readonly _tag: 'NoLabelFile'; readonly dir: string; readonly looked: readonly string[] }
  | { readonly _tag: 'UnknownFormat'; readonly format: string; readonly known: readonly string[] }
  | { readonly _tag: 'MissingColumn'; readonly file: string; readonly column: string }
  | { readonly _tag: 'CsvSyntax'; readonly file: string; readonly line: number; readonly reason: string }
  | { readonly _tag: 'BadLabel'; readonly file: string; readonly line: number; readonly column: string; readonly value: string; readonly expected: string }
  | { readonly _tag: 'MissingImage'; readonly file: string; readonly name: string; readonly looked: readonly string[] }
  | { readonly _tag: 'CorruptImage'; readonly file: string; readonly reason: string }
  | { readonly _tag: 'ImageTooSmall'; readonly file: string; readonly width: number; readonly height: number; readonly min: number }
  | { readonly _tag: 'EmptyDataset'; readonly dirs: readonly string[]; readonly reason: string }
  | { readonly _tag: 'UnknownImages'; readonly file: string; readonly names: readonly string[] }
  | { readonly _tag: 'IoError'; readonly file: string; readonly op: 'read' | 'write' | 'list'; readonly reason: string }
  | { readonly _tag: 'BadIdx'; readonly file: string; readonly what: string; readonly expected: string; readonly actual: string };

export const DataErrors = {
  missingFolder: (path: string): DataError => ({ _tag: 'MissingFolder', path }),
  noLabelFile: (dir: string, looked: readonly string[]): DataError => ({ _tag: 'NoLabelFile', dir, looked }),
  unknownFormat: (format: string, known: readonly string[]): DataError => ({ _tag: 'UnknownFormat', format, known }),
  missingColumn: (file: string, column: string): DataError => ({ _tag: 'MissingColumn', file, column }),
  csvSyntax: (file: string, line: number, reason: string): DataError => ({ _tag: 'CsvSyntax', file, line, reason }),
  badLabel: (file: string, line: number, column: string, value: string, expected: string): DataError =>
    ({ _tag: 'BadLabel', file, line, column, value, expected }),
  missingImage: (file: string, name: string, looked: readonly string[]): DataError => ({ _tag: 'MissingImage', file, name, looked }),
  corruptImage: (file: string, reason: string): DataError => ({ _tag: 'CorruptImage', file, reason }),
  imageTooSmall: (file: string, width: number, height: number, min: number): DataError => ({ _tag: 'ImageTooSmall', file, width, height, min }),
  emptyDataset: (dirs: readonly string[], reason: string): DataError => ({ _tag: 'EmptyDataset', dirs, reason }),
  unknownImages: (file: string, names: readonly string[]): DataError => ({ _tag: 'UnknownImages', file, names }),
  io: (file: string, op: 'read' | 'write' | 'list', reason: unknown): DataError =>
    ({ _tag: 'IoError', file, op, reason: reason instanceof Error ? reason.message : String(reason) }),
  badIdx: (file: string, what: string, expected: string, actual: string): DataError => ({ _tag: 'BadIdx', file, what, expected, actual }),
} as const;

const list = (xs: readonly string[], n = 5) => (xs.length > n ? `${xs.slice(0, n).join(', ')}, … (${xs.length} in all)` : xs.join(', '));

/** One line for the CLI, naming the file (and column or size). */
export function renderDataError(e: DataError): string {
  switch (e._tag) {
    case 'MissingFolder':
      return `data: folder not found: ${e.path}`;
    case 'NoLabelFile':
      return `data: no recognisable label file in ${e.dir} (looked for ${list(e.looked, 12)}, or one sub-folder per class)`;
    case 'UnknownFormat':
      return `data: unknown dataset format '${e.format}' (known: ${e.known.join(', ')})`;
    case 'MissingColumn':
      return `data: ${e.file} has no column '${e.column}'`;
    case 'CsvSyntax':
      return `data: ${e.file} line ${e.line}: ${e.reason}`;
    case 'BadLabel':
      return `data: ${e.file} line ${e.line}, column '${e.column}': label '${e.value}' is not ${e.expected}`;
    case 'MissingImage':
      return `data: image '${e.name}' listed in ${e.file} not found (looked in ${list(e.looked, 3)})`;
    case 'CorruptImage':
      return `data: cannot decode ${e.file}: ${e.reason}`;
    case 'ImageTooSmall':
      return `data: ${e.file} is ${e.width}×${e.height}, smaller than the required ${e.min}×${e.min}`;
    case 'EmptyDataset':
      return `data: no images in ${e.dirs.join(', ')}: ${e.reason}`;
    case 'UnknownImages':
      return `data: ${e.file} names images that are not in the dataset: ${list(e.names)}`;
    case 'IoError':
      return `data: cannot ${e.op} ${e.file}: ${e.reason}`;
    case 'BadIdx':
      return `data: ${e.file} is not a valid IDX file: ${e.what}: expected ${e.expected}, got ${e.actual}`;
  }
}

/** A data error thrown out of an async iterator (the loader in strict mode): carries the value. */
export class DataErrorException extends Error {
  constructor(readonly dataError: DataError) {
    super(renderDataError(dataError));
    this.name = 'DataErrorException';
  }
}
