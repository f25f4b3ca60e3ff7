/** Stratified, seeded train/validation split, written to the run folder so a run can be reproduced. */
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { foldIn, key, permutation } from '../tensor/random.ts';
import { type Cell, column, csvText, readCsv, readCsvSync } from './csv.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { type DataError, DataErrors, renderDataError } from './errors.ts';
import type { Dataset, Item, Skipped } from './readers.ts';

export interface Split {
  readonly train: readonly Item[];
  readonly val: readonly Item[];
}

export interface SplitOptions {
  /** Fraction of each class held out (default 0.2, like the paper). */
  readonly valFraction?: number;
  /** Default 1337 (the paper's random_state). */
  readonly seed?: number;
  /** A CSV whose first name-like column (image_name, image, image_id, filename, name) lists the validation images. */
  readonly valCsv?: string;
}

/**
 * Per class: a seeded permutation, the first round(n · valFraction) go to validation. Items keep
 * the dataset's order inside each part, so the split depends only on (names, labels, seed).
 */
export function splitDataset(ds: Pick<Dataset, 'items'>, opts: SplitOptions = {}): E.Either<DataError, Split> {
  if (opts.valCsv !== undefined) {
    const file = opts.valCsv;
    return pipe(
      readCsvSync(file),
      E.chain((csv) => pipe(column(csv, 'image_name', 'image', 'image_id', 'filename', 'name'), E.map((i) => csv.rows.map((r) => (r[i] ?? '').replace(/\.(jpe?g|png)$/i, ''))))),
      E.chain((names) => {
        const want = new Set(names);
        const known = new Set(ds.items.map((it) => it.name));
        const unknown = names.filter((n) => !known.has(n));
        if (unknown.length) return E.left(DataErrors.unknownImages(file, unknown));
        return E.right({ train: ds.items.filter((it) => !want.has(it.name)), val: ds.items.filter((it) => want.has(it.name)) });
      }),
    );
  }
  const frac = opts.valFraction ?? 0.2;
  if (!(frac >= 0 && frac < 1)) throw new Error(`splitDataset: valFraction must be in [0, 1), got ${frac}`);
  const k = key(opts.seed ?? 1337);
  const byClass = new Map<number, number[]>();
  ds.items.forEach((it, i) => {
    const l = byClass.get(it.label) ?? [];
    l.push(i);
    byClass.set(it.label, l);
  });
  const inVal = new Uint8Array(ds.items.length);
  for (const [label, idx] of byClass) {
    const p = permutation(foldIn(k, label), idx.length);
    const nVal = Math.round(idx.length * frac);
    for (let j = 0; j < nVal; j++) inVal[idx[p[j]]] = 1;
  }
  return E.right({ train: ds.items.filter((_, i) => !inVal[i]), val: ds.items.filter((_, i) => inVal[i]) });
}

export const SPLIT_FILE = 'split.csv';

/** Writes `<dir>/split.csv` (set,image_name,label,source,path); returns its path. */
export function writeSplit(dir: string, split: Split): TE.TaskEither<DataError, string> {
  const rows: Cell[][] = [['set', 'image_name', 'label', 'source', 'path']];
  for (const [set, items] of [['train', split.train], ['val', split.val]] as const) {
    for (const it of items) rows.push([set, it.name, it.label, it.source, it.path]);
  }
  return writeCsvFile(join(dir, SPLIT_FILE), rows);
}

/** Writes a CSV file atomically (creating its folder); returns its path. */
export function writeCsvFile(file: string, rows: readonly (readonly Cell[])[]): TE.TaskEither<DataError, string> {
  return TE.tryCatch(async () => {
    await mkdir(dirname(file), { recursive: true });
    writeFileAtomic(file, csvText(rows));
    return file;
  }, (e) => DataErrors.io(file, 'write', e));
}

/** Reads back a split written by `writeSplit` (from the run folder or the file itself). */
export function readSplit(dirOrFile: string): TE.TaskEither<DataError, Split> {
  const file = dirOrFile.endsWith('.csv') ? dirOrFile : join(dirOrFile, SPLIT_FILE);
  return pipe(
    readCsv(file, { trim: false }),
    TE.chainEitherK((csv) =>
      pipe(
        E.Do,
        E.bind('si', () => column(csv, 'set')),
        E.bind('ni', () => column(csv, 'image_name')),
        E.bind('li', () => column(csv, 'label')),
        E.bind('oi', () => column(csv, 'source')),
        E.bind('pi', () => column(csv, 'path')),
        E.chain(({ si, ni, li, oi, pi }) => {
          const train: Item[] = [];
          const val: Item[] = [];
          for (let r = 0; r < csv.rows.length; r++) {
            const row = csv.rows[r];
            const label = Number(row[li]);
            if (!Number.isInteger(label) || label < 0) return E.left(DataErrors.badLabel(file, csv.lines[r], 'label', row[li] ?? '', 'a class index'));
            const set = row[si];
            if (set !== 'train' && set !== 'val') return E.left(DataErrors.badLabel(file, csv.lines[r], 'set', set ?? '', "'train' or 'val'"));
            (set === 'train' ? train : val).push({ name: row[ni], label, source: row[oi], path: row[pi] });
          }
          return E.right({ train, val });
        }),
      ),
    ),
  );
}

/** The columns of a skipped-image list: the image, its file and why it was skipped. */
export const SKIPPED_HEADER = ['image_name', 'path', 'error'] as const;

/** One skipped image as a record of a skipped-image list. */
export const skippedRecord = (s: { name: string; path?: string; error: DataError }): [string, string, string] => [s.name, s.path ?? '', renderDataError(s.error)];

/** Lists skipped images in `<dir>/skipped.csv` (image_name,path,error); returns its path. */
export function writeSkipped(dir: string, skipped: readonly { name: string; path?: string; error: DataError }[]): TE.TaskEither<DataError, string> {
  return writeCsvFile(join(dir, 'skipped.csv'), [SKIPPED_HEADER, ...skipped.map(skippedRecord)]);
}

export type { Skipped };
