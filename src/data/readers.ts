/**
 * Dataset readers: ISIC 2016–2020, HAM10000, the seed project's CSV and folder-per-class, auto-detected
 * from the label file's header (or named by `format`), merged across folders with duplicates dropped.
 */
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import sharp from 'sharp';
import { type Csv, column, parseCsv, readCsvHeader } from './csv.ts';
import { type DataError, DataErrors } from './errors.ts';

export const FORMATS = ['isic2020', 'isic2019', 'isic2018', 'ham10000', 'isic2017', 'isic2016', 'seed', 'folders'] as const;
export type DatasetFormat = (typeof FORMATS)[number];
export type Task = 'binary' | 'multiclass';

export interface Item {
  /** Absolute path of the image file. */
  readonly path: string;
  /** Image name without extension (e.g. ISIC_0000002); unique within a Dataset. */
  readonly name: string;
  /** 0/1 for the binary task, else an index into `classes`. */
  readonly label: number;
  /** The folder it was read from (as given). */
  readonly source: string;
}

export interface Skipped {
  readonly name: string;
  readonly path: string;
  readonly error: DataError;
}

export interface Dataset {
  readonly items: readonly Item[];
  /** Binary: ['other', 'melanoma']; multiclass: the datasets' own classes (union, in order of appearance). */
  readonly classes: readonly string[];
  /** Names that appeared more than once (in one label file or across folders); the first is kept. */
  readonly duplicates: readonly string[];
  /** Rows dropped: missing or unreadable images, images under `minResolution`. */
  readonly skipped: readonly Skipped[];
}

export interface Detected {
  readonly dir: string;
  readonly format: DatasetFormat;
  /** The label file (null for folder-per-class). */
  readonly labelFile: string | null;
}

const IMAGE_EXT = new Set(['.jpg', '.jpeg', '.png']);
const isImage = (f: string) => IMAGE_EXT.has(extname(f).toLowerCase());
const stripExt = (f: string) => (isImage(f) ? f.slice(0, -extname(f).length) : f);

/** Header-based recognisers, in priority order (filenames are hints in the messages only). */
const RECOGNISERS: readonly { format: DatasetFormat; hint: string; test: (header: string[], file: string) => boolean }[] = [
  { format: 'isic2019', hint: 'ISIC_2019_Training_GroundTruth.csv', test: (h) => ['image', 'mel', 'nv', 'ak', 'scc'].every((c) => h.includes(c)) },
  { format: 'isic2018', hint: 'ISIC2018_Task3_Training_GroundTruth.csv', test: (h) => ['image', 'mel', 'nv', 'akiec'].every((c) => h.includes(c)) },
  { format: 'ham10000', hint: 'HAM10000_metadata.csv', test: (h) => h.includes('image_id') && h.includes('dx') },
  { format: 'isic2017', hint: 'ISIC-2017_Training_Part3_GroundTruth.csv', test: (h) => h.includes('image_id') && h.includes('melanoma') },
  { format: 'isic2016', hint: 'ISBI2016_ISIC_Part3_Training_GroundTruth.csv', test: (h, f) => h.length === 2 && /^ISIC_\d+/i.test(h[0]) && /^(benign|malignant|[01](\.0+)?)$/i.test(h[1]) || /ISBI2016.*Part3.*GroundTruth/i.test(f) },
  { format: 'isic2020', hint: 'train.csv or labels.csv (image_name,target)', test: (h) => h.includes('image_name') && h.includes('target') },
  { format: 'seed', hint: 'a CSV with filename,target', test: (h) => h.includes('filename') && h.includes('target') },
];

const listDir = (dir: string): TE.TaskEither<DataError, { name: string; isDir: boolean }[]> =>
  TE.tryCatch(
    async () => (await readdir(dir, { withFileTypes: true })).map((d) => ({ name: d.name, isDir: d.isDirectory() })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    (e) => ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR' ? DataErrors.missingFolder(dir) : DataErrors.io(dir, 'list', e)),
  );

/** Which reader a folder needs: from its label file's header, or sub-folders of images. */
export function detectDataset(dir: string, opts: { format?: DatasetFormat | string } = {}): TE.TaskEither<DataError, Detected> {
  const abs = resolve(dir);
  if (opts.format !== undefined && !(FORMATS as readonly string[]).includes(opts.format)) {
    return TE.left(DataErrors.unknownFormat(opts.format, FORMATS));
  }
  const want = opts.format as DatasetFormat | undefined;
  return pipe(
    listDir(abs),
    TE.chainW((entries) =>
      TE.tryCatch(async (): Promise<E.Either<DataError, Detected>> => {
        const csvs = entries.filter((e) => !e.isDir && extname(e.name).toLowerCase() === '.csv' && !/submission/i.test(e.name)).map((e) => e.name);
        const order = (n: string) => (n === 'train.csv' ? 0 : n === 'labels.csv' ? 1 : 2);
        csvs.sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
        if (want !== 'folders') {
          const headers = await Promise.all(csvs.map(async (f) => ({ f, h: await readCsvHeader(join(abs, f)) })));
          for (const r of RECOGNISERS) {
            if (want && r.format !== want) continue;
            for (const { f, h } of headers) {
              const lower = r.format === 'isic2016' ? h : h.map((c) => c.toLowerCase());
              if (r.test(lower, f)) return E.right({ dir: abs, format: r.format, labelFile: join(abs, f) });
            }
          }
        }
        if (!want || want === 'folders') {
          for (const e of entries.filter((x) => x.isDir)) {
            const inner = await readdir(join(abs, e.name));
            if (inner.some(isImage)) return E.right({ dir: abs, format: 'folders', labelFile: null });
          }
        }
        const looked = RECOGNISERS.filter((r) => !want || r.format === want).map((r) => r.hint);
        return E.left(DataErrors.noLabelFile(abs, want === 'folders' ? ['sub-folders of images'] : looked));
      }, (e) => DataErrors.io(abs, 'read', e)),
    ),
    TE.chainEitherKW((x) => x),
  );
}

/** Image files by name (without extension): the usual ISIC places first, then any folder two levels down. */
async function indexImages(dir: string): Promise<{ index: Map<string, string>; looked: string[] }> {
  const preferred = ['train', join('jpeg', 'train'), 'images', 'ISIC_2019_Training_Input', 'ISIC2018_Task3_Training_Input', '.'];
  const all: string[] = [];
  const walk = async (rel: string, depth: number) => {
    all.push(rel);
    if (depth === 0) return;
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries.filter((x) => x.isDirectory()).map((x) => x.name).sort()) await walk(rel === '.' ? e : join(rel, e), depth - 1);
  };
  await walk('.', 2);
  const rank = (r: string) => {
    const i = preferred.indexOf(r);
    return i < 0 ? preferred.length : i;
  };
  const dirs = all.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
  const index = new Map<string, string>();
  for (const rel of dirs) {
    let files: string[];
    try {
      files = (await readdir(join(dir, rel))).sort();
    } catch {
      continue;
    }
    for (const f of files) if (isImage(f) && !index.has(stripExt(f))) index.set(stripExt(f), join(dir, rel, f));
  }
  return { index, looked: dirs.slice(0, 4).map((d) => join(dir, d)) };
}

/** A row as read: the image name and its class name (binary: '0' or '1'). */
interface RawRow {
  readonly name: string;
  readonly cls: string;
  readonly line: number;
}
interface RawSet {
  readonly classes: readonly string[];
  readonly rows: readonly RawRow[];
}

const BINARY_CLASSES = ['other', 'melanoma'] as const;
const num01 = (v: string): 0 | 1 | null => (/^0(\.0+)?$/.test(v) ? 0 : /^1(\.0+)?$/.test(v) ? 1 : null);

/** ISIC 2020 `diagnosis` strings → the ISIC 2019 class names (the usual mapping when merging). */
const DIAGNOSIS: Record<string, string> = {
  melanoma: 'MEL', nevus: 'NV', 'seborrheic keratosis': 'BKL', 'lentigo nos': 'BKL', 'lichenoid keratosis': 'BKL', 'solar lentigo': 'BKL',
  'basal cell carcinoma': 'BCC', 'squamous cell carcinoma': 'SCC', 'actinic keratosis': 'AK', dermatofibroma: 'DF', 'vascular lesion': 'VASC',
  'cafe-au-lait macule': 'UNK', 'atypical melanocytic proliferation': 'UNK', unknown: 'UNK',
};

function targetRows(csv: Csv, nameCols: string[], task: Task): E.Either<DataError, RawSet> {
  return pipe(
    E.Do,
    E.bind('ni', () => column(csv, ...nameCols)),
    E.bind('ti', () => column(csv, 'target')),
    E.chain(({ ni, ti }) => {
      const di = task === 'multiclass' ? csv.header.findIndex((h) => h.toLowerCase() === 'diagnosis') : -1;
      const rows: RawRow[] = [];
      const seen: string[] = [];
      for (let r = 0; r < csv.rows.length; r++) {
        const row = csv.rows[r];
        const t = num01(row[ti] ?? '');
        if (t === null) return E.left(DataErrors.badLabel(csv.file, csv.lines[r], csv.header[ti], row[ti] ?? '', '0 or 1'));
        let cls: string = String(t);
        if (di >= 0) {
          const d = (row[di] ?? '').toLowerCase();
          cls = DIAGNOSIS[d] ?? d.toUpperCase();
          if (!seen.includes(cls)) seen.push(cls);
        }
        rows.push({ name: stripExt(row[ni] ?? ''), cls, line: csv.lines[r] });
      }
      const classes = task === 'binary' ? ['0', '1'] : di >= 0 ? seen : ['0', '1'];
      return E.right({ classes, rows });
    }),
  );
}

function oneHotRows(csv: Csv, classes: readonly string[], task: Task): E.Either<DataError, RawSet> {
  return pipe(
    column(csv, 'image'),
    E.chain((ni) => {
      const idx: number[] = [];
      for (const c of classes) {
        const i = csv.header.findIndex((h) => h.toUpperCase() === c);
        if (i < 0) {
          if (c === 'UNK') continue; // older 2019 copies lack the (all-zero) UNK column
          return E.left(DataErrors.missingColumn(csv.file, c));
        }
        idx.push(i);
      }
      const present = classes.filter((c) => csv.header.some((h) => h.toUpperCase() === c));
      const rows: RawRow[] = [];
      for (let r = 0; r < csv.rows.length; r++) {
        const row = csv.rows[r];
        let hot = -1;
        for (let k = 0; k < idx.length; k++) {
          const v = num01(row[idx[k]] ?? '');
          if (v === null) return E.left(DataErrors.badLabel(csv.file, csv.lines[r], csv.header[idx[k]], row[idx[k]] ?? '', '0 or 1'));
          if (v === 1) {
            if (hot >= 0) return E.left(DataErrors.badLabel(csv.file, csv.lines[r], present.join('|'), `${present[hot]} and ${present[k]}`, 'one-hot'));
            hot = k;
          }
        }
        if (hot < 0) return E.left(DataErrors.badLabel(csv.file, csv.lines[r], present.join('|'), 'all zero', 'one-hot'));
        const cls = task === 'binary' ? (present[hot] === 'MEL' ? '1' : '0') : present[hot];
        rows.push({ name: stripExt(row[ni] ?? ''), cls, line: csv.lines[r] });
      }
      return E.right({ classes: task === 'binary' ? ['0', '1'] : present, rows });
    }),
  );
}

const HAM_ORDER = ['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC'];

function readRows(det: Detected, csv: Csv | null, task: Task): E.Either<DataError, RawSet> {
  switch (det.format) {
    case 'isic2020':
      return targetRows(csv!, ['image_name'], task);
    case 'seed':
      return targetRows(csv!, ['filename'], task);
    case 'isic2019':
      return oneHotRows(csv!, ['MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC', 'UNK'], task);
    case 'isic2018':
      return oneHotRows(csv!, HAM_ORDER, task);
    case 'ham10000':
      return pipe(
        E.Do,
        E.bind('ni', () => column(csv!, 'image_id')),
        E.bind('di', () => column(csv!, 'dx')),
        E.map(({ ni, di }) => {
          const rows = csv!.rows.map((row, r) => {
            const dx = (row[di] ?? '').toUpperCase();
            return { name: stripExt(row[ni] ?? ''), cls: task === 'binary' ? (dx === 'MEL' ? '1' : '0') : dx, line: csv!.lines[r] };
          });
          const seen = [...new Set(rows.map((r) => r.cls))];
          const classes = task === 'binary' ? ['0', '1'] : [...HAM_ORDER.filter((c) => seen.includes(c)), ...seen.filter((c) => !HAM_ORDER.includes(c))];
          return { classes, rows };
        }),
      );
    case 'isic2017':
      return pipe(
        E.Do,
        E.bind('ni', () => column(csv!, 'image_id')),
        E.bind('mi', () => column(csv!, 'melanoma')),
        E.chain(({ ni, mi }) => {
          const si = csv!.header.findIndex((h) => h.toLowerCase() === 'seborrheic_keratosis');
          const rows: RawRow[] = [];
          for (let r = 0; r < csv!.rows.length; r++) {
            const row = csv!.rows[r];
            const m = num01(row[mi] ?? '');
            if (m === null) return E.left(DataErrors.badLabel(csv!.file, csv!.lines[r], 'melanoma', row[mi] ?? '', '0 or 1'));
            const s = si >= 0 ? num01(row[si] ?? '') : 0;
            if (s === null) return E.left(DataErrors.badLabel(csv!.file, csv!.lines[r], 'seborrheic_keratosis', row[si] ?? '', '0 or 1'));
            const cls = task === 'binary' ? String(m) : m ? 'MEL' : s ? 'SK' : 'NV';
            rows.push({ name: stripExt(row[ni] ?? ''), cls, line: csv!.lines[r] });
          }
          return E.right({ classes: task === 'binary' ? ['0', '1'] : ['MEL', 'NV', ...(si >= 0 ? ['SK'] : [])], rows });
        }),
      );
    case 'isic2016': {
      const rows: RawRow[] = [];
      for (let r = 0; r < csv!.rows.length; r++) {
        const [name, v] = csv!.rows[r];
        const lv = (v ?? '').toLowerCase();
        const m = lv === 'malignant' ? 1 : lv === 'benign' ? 0 : num01(lv);
        if (m === null) return E.left(DataErrors.badLabel(csv!.file, csv!.lines[r], 'column 2', v ?? '', "'benign', 'malignant', 0 or 1"));
        rows.push({ name: stripExt(name ?? ''), cls: task === 'binary' ? String(m) : m ? 'MEL' : 'BENIGN', line: csv!.lines[r] });
      }
      return E.right({ classes: task === 'binary' ? ['0', '1'] : ['MEL', 'BENIGN'], rows });
    }
    case 'folders':
      throw new Error('readRows: folders are read from the directory listing');
  }
}

const POSITIVE_FOLDER = /^(1|mel|melanoma|malignant)$/i;

async function folderRows(dir: string, task: Task): Promise<E.Either<DataError, RawSet & { paths: Map<string, string> }>> {
  const classes = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const rows: RawRow[] = [];
  const paths = new Map<string, string>();
  const used: string[] = [];
  for (const c of classes) {
    const files = (await readdir(join(dir, c))).filter(isImage).sort();
    if (files.length === 0) continue;
    used.push(c);
    for (const f of files) {
      const name = stripExt(f);
      rows.push({ name, cls: task === 'binary' ? (POSITIVE_FOLDER.test(c) ? '1' : '0') : c, line: 0 });
      if (!paths.has(name)) paths.set(name, join(dir, c, f));
    }
  }
  if (task === 'binary' && !used.some((c) => POSITIVE_FOLDER.test(c))) {
    return E.left(DataErrors.badLabel(dir, 0, 'folder', used.join(', '), 'a positive class folder for the binary task (1, mel, melanoma or malignant)'));
  }
  return E.right({ classes: task === 'binary' ? ['0', '1'] : used, rows, paths });
}

export interface LoadOptions {
  readonly task: Task;
  /** Drop images whose shorter side is below this (the paper: 1000). Reads each image's header. */
  readonly minResolution?: number;
  /** Force a reader for every folder (default: detect each). */
  readonly format?: DatasetFormat | string;
  /** Missing or unreadable images become a Left instead of `skipped` entries. */
  readonly strict?: boolean;
}

interface Pending {
  readonly name: string;
  readonly cls: string;
  readonly path: string | null;
  readonly source: string;
  readonly file: string;
  readonly looked: readonly string[];
}

/** Reads one folder into pending rows (class names still per folder). */
function readOne(dir: string, task: Task, format: string | undefined): TE.TaskEither<DataError, { classes: readonly string[]; rows: Pending[] }> {
  return pipe(
    detectDataset(dir, { format }),
    TE.chain((det) =>
      TE.tryCatch(async (): Promise<E.Either<DataError, { classes: readonly string[]; rows: Pending[] }>> => {
        if (det.format === 'folders') {
          const fr = await folderRows(det.dir, task);
          return E.map((f: RawSet & { paths: Map<string, string> }) => ({
            classes: f.classes,
            rows: f.rows.map((r) => ({ name: r.name, cls: r.cls, path: f.paths.get(r.name) ?? null, source: dir, file: det.dir, looked: [det.dir] })),
          }))(fr);
        }
        const file = det.labelFile!;
        const text = await readFile(file, 'utf8');
        const parsed = parseCsv(file, text, { header: det.format !== 'isic2016' });
        if (E.isLeft(parsed)) return parsed;
        const raw = readRows(det, parsed.right, task);
        if (E.isLeft(raw)) return raw;
        const { index, looked } = await indexImages(det.dir);
        return E.right({
          classes: raw.right.classes,
          rows: raw.right.rows.map((r) => ({ name: r.name, cls: r.cls, path: index.get(r.name) ?? null, source: dir, file, looked })),
        });
      }, (e) => DataErrors.io(dir, 'read', e)),
    ),
    TE.chainEitherK((x) => x),
  );
}

async function mapPool<T, R>(xs: readonly T[], n: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(xs.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, xs.length) }, async () => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await f(xs[i]);
    }
  }));
  return out;
}

/**
 * Reads and merges datasets. Duplicate names (within or across folders) keep their first
 * occurrence and are listed in `duplicates`; missing/unreadable/too-small images go to `skipped`
 * (or fail the whole load with `strict`).
 */
export function loadDataset(dirs: readonly string[], opts: LoadOptions): TE.TaskEither<DataError, Dataset> {
  if (dirs.length === 0) return TE.left(DataErrors.emptyDataset([], 'no folder given'));
  return pipe(
    dirs.map((d) => readOne(d, opts.task, opts.format)),
    TE.sequenceSeqArray,
    TE.chain((parts) =>
      TE.tryCatch(async (): Promise<E.Either<DataError, Dataset>> => {
        const classes: string[] = opts.task === 'binary' ? [...BINARY_CLASSES] : [];
        if (opts.task === 'multiclass') for (const p of parts) for (const c of p.classes) if (!classes.includes(c)) classes.push(c);
        const seen = new Set<string>();
        const duplicates: string[] = [];
        const kept: Pending[] = [];
        for (const p of parts) {
          for (const r of p.rows) {
            if (seen.has(r.name)) {
              if (!duplicates.includes(r.name)) duplicates.push(r.name);
              continue;
            }
            seen.add(r.name);
            kept.push(r);
          }
        }
        const skipped: Skipped[] = [];
        const items: Item[] = [];
        const checks = await mapPool(kept, 8, async (r): Promise<DataError | null> => {
          if (r.path === null) return DataErrors.missingImage(r.file, r.name, r.looked);
          if (opts.minResolution === undefined) return null;
          try {
            const m = await sharp(r.path).metadata();
            const w = m.width ?? 0;
            const h = m.height ?? 0;
            return Math.min(w, h) < opts.minResolution ? DataErrors.imageTooSmall(r.path, w, h, opts.minResolution) : null;
          } catch (e) {
            return DataErrors.corruptImage(r.path, e instanceof Error ? e.message : String(e));
          }
        });
        for (let i = 0; i < kept.length; i++) {
          const r = kept[i];
          const err = checks[i];
          if (err) {
            if (opts.strict && err._tag !== 'ImageTooSmall') return E.left(err);
            skipped.push({ name: r.name, path: r.path ?? '', error: err });
            continue;
          }
          const label = opts.task === 'binary' ? Number(r.cls) : classes.indexOf(r.cls);
          items.push({ path: r.path!, name: r.name, label, source: r.source });
        }
        if (items.length === 0) return E.left(DataErrors.emptyDataset(dirs, skipped.length ? `all ${skipped.length} listed images were skipped` : 'the label files list no images'));
        return E.right({ items, classes, duplicates, skipped });
      }, (e) => DataErrors.io(dirs.join(', '), 'read', e)),
    ),
    TE.chainEitherK((x) => x),
  );
}

/** Images per class (index = label). */
export function classCounts(items: readonly { label: number }[], numClasses?: number): number[] {
  const n = numClasses ?? items.reduce((m, it) => Math.max(m, it.label + 1), 2);
  const c = new Array<number>(n).fill(0);
  for (const it of items) c[it.label]++;
  return c;
}

/** BCE `pos_weight` for the binary task: negatives / positives (1 when either is absent). */
export function posWeight(items: readonly { label: number }[]): number {
  const [neg, pos] = classCounts(items, 2);
  return neg > 0 && pos > 0 ? neg / pos : 1;
}

/** Inverse-frequency class weights normalised to mean 1 over the present classes (multiclass CE). */
export function classWeights(items: readonly { label: number }[], numClasses?: number): number[] {
  const c = classCounts(items, numClasses);
  const present = c.filter((x) => x > 0).length;
  const total = items.length;
  return c.map((x) => (x > 0 ? total / (present * x) : 0));
}
