/**
 * Data: everything between image files on disk and batches of tensors, exported as `E.datasets`
 * (the name `E.data` is the tensor download function).
 *
 * Datasets and splits
 * - `detectDataset(dir, {format?})` → TaskEither<DataError, {dir, format, labelFile}>: ISIC 2020 /
 *   SIIM-ISIC (`train.csv` or any `image_name,target` CSV), ISIC 2019 and 2018/HAM10000 (one-hot or
 *   `dx`), ISIC 2016/2017 part 3, the seed CSV (`filename,target`), or a folder per class.
 * - `loadDataset(dirs, {task: 'binary'|'multiclass', minResolution?, format?, strict?})` →
 *   TaskEither<DataError, Dataset>, Dataset = { items: {path, name, label, source}[], classes,
 *   duplicates, skipped }. Folders are merged; duplicate names keep the first and are listed.
 * - `splitDataset(ds, {valFraction: 0.2, seed: 1337, valCsv?})` → Either<DataError, {train, val}>
 *   (stratified, seeded); `writeSplit(runDir, split)` / `readSplit(runDir)`; `writeSkipped(runDir, list)`.
 * - `classCounts(items)`, `posWeight(items)` (negatives / positives, for BCE), `classWeights(items)`.
 *
 * Built-in data
 * - `ensureSynthetic({dir?, count, size, seed})` → TaskEither<DataError, folder> (labels.csv +
 *   images/*.png) in `.cache/synthetic-<seed>-<count>-<size>`. The class is a 3–5 px texture that
 *   only the full-resolution image shows: train with the high-res side = size (SYNTHETIC_TRAIN_DEFAULTS:
 *   960 images of 256 px, high 256, low 32).
 *
 * Images and batches
 * - `decodeImage(path, {shortSide?, square?, minSize?})`, `sampleAugment(key, w, h)`,
 *   `augmentPair(src, params, {highSize, lowSize})` (low = resize of the augmented high view),
 *   `processImage(path, key, {sides: {low, high}, augment})` (one image through the pipeline), `augmentedViews(path, n, seed, opts)` (TTA),
 *   `preResize(dirIn, dirOut, {size: 1024, centerCropAbove: 3048, cropTo: 2048})`.
 * - `createLoader(items, {batchSize, sides: {low, high} (a model's config.sides; null: no such view),
 *   augment, seed, workers, prefetch, shuffle, balanced?, epoch})` → async iterable of
 *   { low? [B,3,l,l], high? [B,3,h,h], labels,
 *   names, skipped, index }, plus `loader.epoch(e)` and `close()`; `createPool(n)` shares worker threads
 *   between loaders (`pool` option); `createImageCache(maxBytes)` keeps decoded images between
 *   epochs (`cache` option; `cache.stats` counts hits and misses).
 * - Errors: `DataError` (tagged union) and `renderDataError(e)` → one line for the CLI.
 *
 * @example
 * import * as E from '@stochconv/engine';
 * const dir = await E.datasets.ensureSynthetic(E.datasets.SYNTHETIC_TRAIN_DEFAULTS)();
 * if (dir._tag === 'Left') throw new Error(E.datasets.renderDataError(dir.left));
 * const ds = await E.datasets.loadDataset([dir.right], { task: 'binary' })();
 * if (ds._tag === 'Left') throw new Error(E.datasets.renderDataError(ds.left));
 * const split = E.datasets.splitDataset(ds.right, { valFraction: 0.2, seed: 1337 });
 * if (split._tag === 'Left') throw new Error(E.datasets.renderDataError(split.left));
 * const loader = E.datasets.createLoader(split.right.train, { batchSize: 16, sides: { low: 32, high: 256 }, augment: true, seed: 1, workers: 2 });
 * for await (const b of loader.epoch(0)) console.log(b.low?.shape, b.high?.shape, b.labels);
 * await loader.close();
 */
export * from './errors.ts';
export { type Cell, type Csv, type CsvOptions, csvRecord, csvText, parseCsv, readCsv, readCsvSync } from './csv.ts';
export * from './readers.ts';
export * from './split.ts';
export * from './image.ts';
export * from './loader.ts';
export * from './imagecache.ts';
export * from './synthetic.ts';
export * from './preresize.ts';
export * from './idx.ts';
