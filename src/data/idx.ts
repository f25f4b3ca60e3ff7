/**
 * The IDX format of MNIST and Fashion-MNIST (LeCun's "THE MNIST DATABASE" page): a 4-byte magic
 * number `0x00 0x00 <type> <rank>`, `rank` big-endian uint32 dimensions, then the values in
 * row-major order, big-endian. Files may be gzipped (detected by content, not by name). Every check
 * fails with a `BadIdx` error naming the file, what was checked, and the expected and actual values.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as E from 'fp-ts/lib/Either.js';
import { type Key, permutation, randint, uniformArray } from '../tensor/random.ts';
import { type Tensor, tensor } from '../tensor/tensor.ts';
import { type DataError, DataErrors } from './errors.ts';

/** The IDX element types by their magic-number byte. */
const IDX_TYPES = {
  0x08: { name: 'uint8', bytes: 1 },
  0x09: { name: 'int8', bytes: 1 },
  0x0b: { name: 'int16', bytes: 2 },
  0x0c: { name: 'int32', bytes: 4 },
  0x0d: { name: 'float32', bytes: 4 },
  0x0e: { name: 'float64', bytes: 8 },
} as const;
export type IdxType = (typeof IDX_TYPES)[keyof typeof IDX_TYPES]['name'];

export interface IdxArray {
  readonly file: string;
  readonly type: IdxType;
  readonly shape: readonly number[];
  /** Values in row-major order (uint8 files: a Uint8Array view; wider types are converted from big-endian). */
  readonly data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
}

const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/** Decodes IDX bytes (gzip or plain). `file` is only used in errors. */
export function decodeIdx(raw: Uint8Array, file: string): E.Either<DataError, IdxArray> {
  const bad = (what: string, expected: string, actual: string) => E.left(DataErrors.badIdx(file, what, expected, actual));
  let bytes = raw;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      bytes = gunzipSync(raw);
    } catch (e) {
      return bad('gzip stream', 'a complete gzip stream', (e as Error).message);
    }
  }
  if (bytes.length < 4) return bad('header', 'at least 4 bytes (magic number)', `${bytes.length} bytes`);
  if (bytes[0] !== 0 || bytes[1] !== 0) return bad('magic number', '0x00 0x00 <type> <rank>', [...bytes.subarray(0, 4)].map(hex).join(' '));
  const type = IDX_TYPES[bytes[2] as keyof typeof IDX_TYPES];
  if (!type) return bad('type byte', Object.keys(IDX_TYPES).map((k) => hex(Number(k))).join('/'), hex(bytes[2]));
  const rank = bytes[3];
  if (rank < 1) return bad('rank', '≥ 1', String(rank));
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) return bad('header', `${headerBytes} bytes for ${rank} dimensions`, `${bytes.length} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const expected = headerBytes + count * type.bytes;
  if (bytes.length !== expected) {
    return bad('size', `${expected} bytes (header ${headerBytes} + ${shape.join('×')} × ${type.bytes})`, `${bytes.length} bytes${bytes.length < expected ? ' (truncated)' : ''}`);
  }
  const body = bytes.subarray(headerBytes);
  const read = <T extends Int16Array | Int32Array | Float32Array | Float64Array>(out: T, get: (o: number) => number): T => {
    for (let i = 0; i < count; i++) out[i] = get(headerBytes + i * type.bytes);
    return out;
  };
  const data =
    type.name === 'uint8' ? body
      : type.name === 'int8' ? new Int8Array(body.buffer, body.byteOffset, count)
        : type.name === 'int16' ? read(new Int16Array(count), (o) => view.getInt16(o, false))
          : type.name === 'int32' ? read(new Int32Array(count), (o) => view.getInt32(o, false))
            : type.name === 'float32' ? read(new Float32Array(count), (o) => view.getFloat32(o, false))
              : read(new Float64Array(count), (o) => view.getFloat64(o, false));
  return E.right({ file, type: type.name, shape, data });
}

/** Reads one IDX file (gzip or plain). */
export function readIdx(file: string): E.Either<DataError, IdxArray> {
  let raw: Uint8Array;
  try {
    raw = readFileSync(file);
  } catch (e) {
    return E.left(DataErrors.io(file, 'read', e));
  }
  return decodeIdx(raw, file);
}

/** Images (N, H, W) uint8 and their labels (N) uint8, as in MNIST and Fashion-MNIST. */
export interface IdxImageSet {
  readonly images: Uint8Array;
  readonly labels: Uint8Array;
  readonly count: number;
  readonly rows: number;
  readonly cols: number;
}

/** Reads an images file and a labels file and checks that they describe the same N uint8 images. */
export function readIdxImages(imagesFile: string, labelsFile: string): E.Either<DataError, IdxImageSet> {
  const im = readIdx(imagesFile);
  if (E.isLeft(im)) return im;
  const lb = readIdx(labelsFile);
  if (E.isLeft(lb)) return lb;
  const [i, l] = [im.right, lb.right];
  if (i.type !== 'uint8' || i.shape.length !== 3) return E.left(DataErrors.badIdx(imagesFile, 'images', 'uint8 (N, rows, cols), magic 0x00000803', `${i.type} (${i.shape.join(', ')})`));
  if (l.type !== 'uint8' || l.shape.length !== 1) return E.left(DataErrors.badIdx(labelsFile, 'labels', 'uint8 (N), magic 0x00000801', `${l.type} (${l.shape.join(', ')})`));
  if (l.shape[0] !== i.shape[0]) return E.left(DataErrors.badIdx(labelsFile, 'label count', `${i.shape[0]} (the images in ${imagesFile})`, String(l.shape[0])));
  return E.right({ images: i.data as Uint8Array, labels: l.data as Uint8Array, count: i.shape[0], rows: i.shape[1], cols: i.shape[2] });
}

/** Where Debian's `dataset-fashion-mnist` package puts the files. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';
/** Fashion-MNIST's classes, by label. */
export const FASHION_MNIST_CLASSES: readonly string[] = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];

const IDX_SPLITS = { train: 'train', test: 't10k' } as const;
const idxFiles = (dir: string, prefix: string) => ({
  images: [`${prefix}-images-idx3-ubyte.gz`, `${prefix}-images-idx3-ubyte`, `${prefix}-images.idx3-ubyte`].map((f) => join(dir, f)),
  labels: [`${prefix}-labels-idx1-ubyte.gz`, `${prefix}-labels-idx1-ubyte`, `${prefix}-labels.idx1-ubyte`].map((f) => join(dir, f)),
});

/** True when `dir` holds an MNIST-style IDX dataset (train-images-idx3-ubyte[.gz] and its labels). */
export const isIdxFolder = (dir: string): boolean => {
  const f = idxFiles(resolve(dir), 'train');
  return f.images.some(existsSync) && f.labels.some(existsSync);
};

/** One split ('train' = train-*, 'test' = t10k-*) of an MNIST-style folder, gzip or plain. */
export function loadIdxSplit(dir: string, split: keyof typeof IDX_SPLITS): E.Either<DataError, IdxImageSet> {
  const abs = resolve(dir);
  if (!existsSync(abs)) return E.left(DataErrors.missingFolder(abs));
  const f = idxFiles(abs, IDX_SPLITS[split]);
  const images = f.images.find(existsSync);
  const labels = f.labels.find(existsSync);
  if (!images || !labels) return E.left(DataErrors.noLabelFile(abs, [...(images ? [] : f.images), ...(labels ? [] : f.labels)].map((p) => p.slice(abs.length + 1))));
  return readIdxImages(images, labels);
}

/** The first `n` images of a set (all when n ≥ count). */
export const takeIdx = (set: IdxImageSet, n: number): IdxImageSet => {
  const m = Math.min(n, set.count);
  const px = set.rows * set.cols;
  return { ...set, count: m, images: set.images.subarray(0, m * px), labels: set.labels.subarray(0, m) };
};

export interface IdxBatchOptions {
  /** Per-pixel normalisation after scaling to [0, 1]: (x − mean) / std (default 0 and 1). */
  readonly mean?: number;
  readonly std?: number;
  /** Random horizontal flips with probability ½ (needs `key`). */
  readonly flip?: boolean;
  /** Random crops after zero-padding by this many pixels on each side (0 = none; needs `key`). */
  readonly padCrop?: number;
  readonly key?: Key;
}

/**
 * Images `indices` of a set as an (N, 1, rows, cols) float32 tensor and their labels, with optional
 * light augmentation (flip, pad-and-crop) drawn from `key`.
 */
export function idxBatch(set: IdxImageSet, indices: ArrayLike<number>, opts: IdxBatchOptions = {}): { x: Tensor; labels: Int32Array } {
  const { rows: H, cols: W } = set;
  const n = indices.length;
  const pad = opts.padCrop ?? 0;
  if ((opts.flip || pad > 0) && !opts.key) throw new Error('idxBatch: augmentation (flip, padCrop) needs a random key');
  const flips = opts.flip ? uniformArray(opts.key!, n) : null;
  const dy = pad > 0 ? randint(opts.key!, n, -pad, pad + 1) : null;
  const dx = pad > 0 ? randint(opts.key!, 2 * n, -pad, pad + 1).subarray(n) : null;
  const [mean, inv] = [opts.mean ?? 0, 1 / (opts.std ?? 1)];
  const zero = (0 - mean) * inv;
  const out = new Float32Array(n * H * W);
  const labels = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    const idx = indices[b];
    if (!(idx >= 0 && idx < set.count)) throw new Error(`idxBatch: index ${idx} is outside the set of ${set.count} images`);
    labels[b] = set.labels[idx];
    const src = idx * H * W;
    const [oy, ox, flip] = [dy ? dy[b] : 0, dx ? dx[b] : 0, flips ? flips[b] < 0.5 : false];
    for (let y = 0; y < H; y++) {
      const sy = y + oy;
      for (let x = 0; x < W; x++) {
        const sx = (flip ? W - 1 - x : x) + ox;
        out[(b * H + y) * W + x] = sy >= 0 && sy < H && sx >= 0 && sx < W ? (set.images[src + sy * W + sx] / 255 - mean) * inv : zero;
      }
    }
  }
  return { x: tensor(out, [n, 1, H, W]), labels };
}

/** Batches of indices for one epoch: a permutation from `key` (or in order without one), the last batch possibly smaller. */
export function idxBatches(count: number, batchSize: number, key?: Key): Int32Array[] {
  const order = key ? permutation(key, count) : Int32Array.from({ length: count }, (_, i) => i);
  const out: Int32Array[] = [];
  for (let i = 0; i < count; i += batchSize) out.push(order.subarray(i, Math.min(count, i + batchSize)));
  return out;
}
