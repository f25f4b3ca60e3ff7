/**
 * The image pipeline: sharp decodes (JPEG/PNG; grayscale, CMYK and alpha → sRGB RGB; EXIF
 * orientation applied) and resizes; the training augmentation is one inverse-affine bilinear warp
 * in TypeScript, and for two-input models the low-res view is a sharp resize of the augmented
 * high-res view, so both share one geometry (the paper: training fails otherwise).
 *
 * Kernels: downscaling on decode and every resize use `kernel` (default lanczos3, libvips' reduce,
 * which antialiases); the augmentation warp samples bilinearly.
 *
 * This module has no tensor dependency, so worker threads can run it; outputs are planar
 * (CHW) float32 arrays normalised with the ImageNet mean/std.
 */
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import sharp from 'sharp';
import { type Key, foldIn, keyFrom, uniformArray } from '../tensor/random.ts';
import { type DataError, DataErrors } from './errors.ts';

export type Kernel = 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3';

/** 8-bit interleaved RGB. */
export interface RawImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

import { IMAGENET_MEAN, IMAGENET_STD } from './imagenet.ts';

export { IMAGENET_MEAN, IMAGENET_STD, imagenetDecode } from './imagenet.ts';

export interface DecodeOptions {
  /** Shrink (never enlarge) so the shorter side is this many pixels, keeping the aspect ratio. */
  readonly shortSide?: number;
  /** Resize to exactly size×size (squash, enlarging if needed); overrides shortSide. */
  readonly square?: number;
  /** Left(ImageTooSmall) when the decoded image's shorter side is below this. */
  readonly minSize?: number;
  readonly kernel?: Kernel;
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e)).split('\n')[0];

/**
 * Decodes an image file to 8-bit RGB. Truncated or corrupt files, and files that are not images,
 * give Left(CorruptImage) naming the file.
 * @example const img = await decodeImage('a.jpg', { shortSide: 1024 })();
 */
export function decodeImage(path: string, opts: DecodeOptions = {}): TE.TaskEither<DataError, RawImage> {
  return pipe(
    TE.tryCatch(async () => {
      // failOn 'truncated': a cut-off JPEG/PNG is an error, harmless encoder warnings are not.
      let img = sharp(path, { failOn: 'truncated' }).rotate();
      const meta = opts.minSize !== undefined ? await sharp(path, { failOn: 'truncated' }).metadata() : null;
      img = img.flatten({ background: { r: 0, g: 0, b: 0 } }).toColourspace('srgb');
      if (opts.square !== undefined) img = img.resize(opts.square, opts.square, { fit: 'fill', kernel: opts.kernel ?? 'lanczos3' });
      else if (opts.shortSide !== undefined) img = img.resize(opts.shortSide, opts.shortSide, { fit: 'outside', withoutEnlargement: true, kernel: opts.kernel ?? 'lanczos3' });
      const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
      return { data, info, meta };
    }, (e) => DataErrors.corruptImage(path, message(e))),
    TE.chainEitherK(({ data, info, meta }) => {
      if (meta && opts.minSize !== undefined) {
        const w = meta.autoOrient?.width ?? meta.width ?? 0;
        const h = meta.autoOrient?.height ?? meta.height ?? 0;
        if (Math.min(w, h) < opts.minSize) return E.left(DataErrors.imageTooSmall(path, w, h, opts.minSize));
      }
      if (info.channels !== 3) return E.left(DataErrors.corruptImage(path, `decoded to ${info.channels} channels, expected 3`));
      return E.right({ data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height });
    }),
  );
}

/**
 * Resizes 8-bit RGB to w×h (squash) with sharp. When shrinking by more than 1.5×, a Gaussian
 * prefilter (σ = 0.5 × factor) runs first: libvips' reduce box-shrinks before its kernel, which
 * lets fine periodic texture alias into visible moiré; with the prefilter the resize is
 * antialiased like PIL's (what torchvision's Resize uses).
 */
export async function resizeRaw(src: RawImage, width: number, height: number = width, kernel: Kernel = 'lanczos3'): Promise<RawImage> {
  if (src.width === width && src.height === height) return src;
  const raw = { raw: { width: src.width, height: src.height, channels: 3 as const } };
  let input: Uint8Array = src.data;
  const factor = Math.min(src.width / width, src.height / height);
  if (factor > 1.5) {
    input = await sharp(src.data, raw).blur({ sigma: 0.5 * factor, minAmplitude: 0.01, precision: 'integer' }).raw().toBuffer();
  }
  const data = await sharp(input, raw).resize(width, height, { fit: 'fill', kernel }).raw().toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width, height };
}

export interface AugmentParams {
  /** The random-resized-crop rectangle in source pixels. */
  readonly crop: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly hflip: boolean;
  readonly vflip: boolean;
  /** Rotation in degrees (positive turns clockwise on screen; drawn symmetrically), corners black like torchvision. */
  readonly angle: number;
}

export interface AugmentOptions {
  /** Area fraction of the crop (the paper: 0.6–1.0). */
  readonly scale?: readonly [number, number];
  /** Aspect ratio range of the crop (torchvision's default 3/4–4/3). */
  readonly ratio?: readonly [number, number];
  /** Rotation drawn uniformly in ±maxRotation degrees (the paper: 180). */
  readonly maxRotation?: number;
  readonly flips?: boolean;
}

/** Identity geometry: the whole image, no flip, no rotation. */
export const identityParams = (width: number, height: number): AugmentParams => ({ crop: { x: 0, y: 0, w: width, h: height }, hflip: false, vflip: false, angle: 0 });

/** Draws augmentation parameters from a key (torchvision's RandomResizedCrop rule: 10 tries, then a centre crop). */
export function sampleAugment(k: Key, width: number, height: number, opts: AugmentOptions = {}): AugmentParams {
  const [s0, s1] = opts.scale ?? [0.6, 1.0];
  const [r0, r1] = opts.ratio ?? [3 / 4, 4 / 3];
  const u = uniformArray(k, 43);
  const area = width * height;
  let crop: AugmentParams['crop'] | null = null;
  for (let t = 0; t < 10 && !crop; t++) {
    const target = area * (s0 + (s1 - s0) * u[4 * t]);
    const ratio = Math.exp(Math.log(r0) + (Math.log(r1) - Math.log(r0)) * u[4 * t + 1]);
    const w = Math.round(Math.sqrt(target * ratio));
    const h = Math.round(Math.sqrt(target / ratio));
    if (w > 0 && h > 0 && w <= width && h <= height) {
      crop = { x: Math.floor(u[4 * t + 2] * (width - w + 1)), y: Math.floor(u[4 * t + 3] * (height - h + 1)), w, h };
    }
  }
  if (!crop) {
    // Fallback: centre crop at the nearest allowed aspect ratio.
    const ar = width / height;
    const w = ar < r0 ? width : ar > r1 ? Math.round(height * r1) : width;
    const h = ar < r0 ? Math.round(width / r0) : ar > r1 ? height : height;
    crop = { x: Math.floor((width - w) / 2), y: Math.floor((height - h) / 2), w, h };
  }
  const flips = opts.flips ?? true;
  const maxRot = opts.maxRotation ?? 180;
  return { crop, hflip: flips && u[40] < 0.5, vflip: flips && u[41] < 0.5, angle: maxRot * (2 * u[42] - 1) };
}

/**
 * out = rotate(flip(resize(crop(src), size×size))), computed as one inverse map with bilinear
 * sampling; points that rotate in from outside the square are black.
 */
export function warp(src: RawImage, p: AugmentParams, size: number): RawImage {
  const out = new Uint8Array(size * size * 3);
  const { data, width: W, height: H } = src;
  const th = (p.angle * Math.PI) / 180;
  const cos = Math.cos(th);
  const sin = Math.sin(th);
  const c = size / 2;
  const sx = p.crop.w / size;
  const sy = p.crop.h / size;
  // Source coordinates are affine in the rotated coordinates (flip, then crop-resize), so they
  // also step by constants along a row.
  const ax = p.hflip ? -sx : sx;
  const bx = p.crop.x - 0.5 + (p.hflip ? size * sx : 0);
  const ay = p.vflip ? -sy : sy;
  const by = p.crop.y - 0.5 + (p.vflip ? size * sy : 0);
  const Wm = W - 1;
  const Hm = H - 1;
  for (let i = 0; i < size; i++) {
    const dy = i + 0.5 - c;
    // Inverse rotation of the pixel centre: (x', y') = R(−θ)(x − c) + c, linear in x along the row.
    let xr = c - c * cos + 0.5 * cos + sin * dy;
    let yr = c + c * sin - 0.5 * sin + cos * dy;
    let o = i * size * 3;
    for (let j = 0; j < size; j++, xr += cos, yr -= sin, o += 3) {
      if (xr < 0 || xr >= size || yr < 0 || yr >= size) continue;
      let fx = bx + ax * xr;
      let fy = by + ay * yr;
      fx = fx < 0 ? 0 : fx > Wm ? Wm : fx;
      fy = fy < 0 ? 0 : fy > Hm ? Hm : fy;
      const x0 = fx | 0;
      const y0 = fy | 0;
      const dx1 = x0 < Wm ? 3 : 0;
      const dy1 = y0 < Hm ? 3 * W : 0;
      const wx = fx - x0;
      const wy = fy - y0;
      const a00 = (y0 * W + x0) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const q = a00 + ch;
        const v00 = data[q];
        const v01 = data[q + dx1];
        const v10 = data[q + dy1];
        const top = v00 + wx * (v01 - v00);
        const bot = v10 + wx * (data[q + dy1 + dx1] - v10);
        out[o + ch] = top + wy * (bot - top) + 0.5; // Uint8Array store truncates: +0.5 rounds
      }
    }
  }
  return { data: out, width: size, height: size };
}

/** Byte → normalised value, per channel. */
const LUTS = [0, 1, 2].map((ch) => Float32Array.from({ length: 256 }, (_, v) => (v / 255 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]));

/** 8-bit interleaved RGB → planar float32 ((v/255 − mean)/std per channel), written at `offset`. */
export function normalise(img: RawImage, out: Float32Array = new Float32Array(3 * img.width * img.height), offset = 0): Float32Array {
  const n = img.width * img.height;
  const d = img.data;
  const [lr, lg, lb] = LUTS;
  // One pass over the interleaved bytes, three planar writes.
  for (let i = 0, q = 0, o = offset; i < n; i++, q += 3, o++) {
    out[o] = lr[d[q]];
    out[o + n] = lg[d[q + 1]];
    out[o + 2 * n] = lb[d[q + 2]];
  }
  return out;
}

/** 8-bit interleaved RGB → planar bytes (the uint8 image a stochastic stem reads through `imagenetDecode`). */
export function planarBytes(img: RawImage): Uint8Array {
  const n = img.width * img.height;
  const d = img.data, out = new Uint8Array(3 * n);
  for (let i = 0, q = 0; i < n; i++, q += 3) {
    out[i] = d[q];
    out[i + n] = d[q + 1];
    out[i + 2 * n] = d[q + 2];
  }
  return out;
}

/**
 * The paired views: high = warp(src) at highSize, low = resize(high) at lowSize, so one geometry.
 * With `params` null the high view is a plain squash-resize of the whole image.
 */
export async function augmentPair(
  src: RawImage,
  params: AugmentParams | null,
  opts: { highSize: number; lowSize: number; kernel?: Kernel },
): Promise<{ high: RawImage; low: RawImage }> {
  const high = params ? warp(src, params, opts.highSize) : await resizeRaw(src, opts.highSize, opts.highSize, opts.kernel);
  const low = await resizeRaw(high, opts.lowSize, opts.lowSize, opts.kernel);
  return { high, low };
}

/**
 * The side of each view to make (null for a view not wanted; at least one is a number). With both,
 * the low-res view is a resize of the high-res one (`augmentPair`); with one, that view is made from
 * the image directly. A model's `config.sides` is such a record.
 */
export interface ImageSides {
  readonly low: number | null;
  readonly high: number | null;
}

export interface PipelineOptions {
  readonly sides: ImageSides;
  readonly augment: boolean;
  readonly augmentOptions?: AugmentOptions;
  readonly kernel?: Kernel;
  /** Skip (ImageTooSmall) images whose shorter side is below this, e.g. the high-res window. */
  readonly minSize?: number;
  /**
   * The high view as planar bytes (`planarBytes`), not normalised: a quarter of float32's memory, for models whose
   * stochastic stem reads it through `imagenetDecode` (the same values, normalised inside the conv).
   */
  readonly highBytes?: boolean;
}

/** The planar views, by the sides asked for (null where the side was null): normalised float32, the high view bytes with `highBytes`. */
export interface Processed {
  readonly low: Float32Array | null;
  readonly high: Float32Array | Uint8Array | null;
  readonly params: AugmentParams | null;
}

/** Throws naming the caller unless the sides are positive integers, at least one given, and high ≥ low. */
export function checkSides(who: string, sides: ImageSides): void {
  const ok = (s: number | null) => s === null || (Number.isInteger(s) && s >= 1);
  const { low, high } = sides;
  if (!ok(low) || !ok(high) || (low === null && high === null) || (low !== null && high !== null && high < low)) {
    throw new Error(`${who}: sides must be positive integers (or null), at least one given, high ≥ low; got low ${low}, high ${high}`);
  }
}

/** How `processImage` decodes a file for `opts`: shrunk so the shorter side is the working size (the largest view). */
export function decodeOptionsFor(opts: PipelineOptions): DecodeOptions {
  const { low, high } = opts.sides;
  return { shortSide: (high ?? low)!, minSize: opts.minSize, kernel: opts.kernel };
}

/**
 * The rest of the pipeline after decoding: augment `src` (as `decodeImage(path, decodeOptionsFor(opts))`
 * gave it) with the key (or not), make the views, normalise. `src` is only read, so a decoded image
 * kept in memory gives the same views as a fresh decode. `path` names the file in errors.
 */
export function processDecoded(path: string, src: RawImage, k: Key | readonly [number, number], opts: PipelineOptions): TE.TaskEither<DataError, Processed> {
  checkSides('processImage', opts.sides);
  const { low, high } = opts.sides;
  const work = (high ?? low)!;
  const key = Array.isArray(k) ? keyFrom(k as [number, number]) : (k as Key);
  return TE.tryCatch(async (): Promise<Processed> => {
    const params = opts.augment ? sampleAugment(key, src.width, src.height, opts.augmentOptions) : null;
    const highView = (img: RawImage) => (opts.highBytes ? planarBytes(img) : normalise(img));
    if (low === null || high === null) {
      const only = params ? warp(src, params, work) : await resizeRaw(src, work, work, opts.kernel);
      return low === null ? { low: null, high: highView(only), params } : { low: normalise(only), high: null, params };
    }
    const views = await augmentPair(src, params, { highSize: high, lowSize: low, kernel: opts.kernel });
    return { low: normalise(views.low), high: highView(views.high), params };
  }, (e) => DataErrors.corruptImage(path, message(e)));
}

/**
 * One image through the whole pipeline (what a loader worker runs): decode, shrink so the shorter
 * side is the working size (the largest view), augment with the key (or not), make the views,
 * normalise. Call it with several keys for test-time augmentation.
 */
export function processImage(path: string, k: Key | readonly [number, number], opts: PipelineOptions): TE.TaskEither<DataError, Processed> {
  return pipe(
    processWithSource(path, undefined, k, opts),
    TE.map((r) => r.processed),
  );
}

/**
 * `processImage` starting from `source` when given (a decode kept by an image cache), else from the
 * file; also gives the decoded image (what a cache keeps).
 */
export function processWithSource(path: string, source: RawImage | undefined, k: Key | readonly [number, number], opts: PipelineOptions): TE.TaskEither<DataError, { processed: Processed; source: RawImage }> {
  checkSides('processImage', opts.sides);
  return pipe(
    source ? TE.right(source) : decodeImage(path, decodeOptionsFor(opts)),
    TE.chain((src) => pipe(processDecoded(path, src, k, opts), TE.map((processed) => ({ processed, source: src })))),
  );
}

/**
 * Test-time augmentation hook: `n` augmented views of one image, view i drawn with foldIn(key(seed), i),
 * so the views are the same on every run.
 * @example const views = await augmentedViews('a.jpg', 3, 0, { sides: { low: 224, high: 1024 }, augment: true })();
 */
export function augmentedViews(path: string, n: number, seed: number, opts: PipelineOptions): TE.TaskEither<DataError, Processed[]> {
  const base = keyFrom([seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0]);
  return TE.sequenceSeqArray(Array.from({ length: n }, (_, i) => processImage(path, foldIn(base, i), opts))) as TE.TaskEither<DataError, Processed[]>;
}
