/**
 * Public convolution and pooling ops (NCHW inputs, OIHW filters, PyTorch layouts). Each validates
 * and normalises its options, then binds a primitive of src/autograd/conv.ts; all are
 * differentiable in the input and the filter.
 */
import {
  type Pair,
  type Quad,
  conv2dPrim,
  sliceLength,
  stochasticConv2dPrim,
  type ImageDecode,
} from '../autograd/conv.ts';
import { bind } from '../autograd/trace.ts';
import { type Key, drawFrom, randint, split } from './random.ts';
import { fmt } from './shape.ts';
import type { Tensor } from './tensor.ts';
import { mean, reshape } from './ops.ts';

export type Padding = 'valid' | 'same' | number | readonly [number, number, number, number];

export interface Conv2dOptions {
  /** One stride for both axes or [sh, sw] (default 1). */
  readonly stride?: number | readonly [number, number];
  /** Default 'valid'. A number pads all four sides; a 4-tuple is [top, bottom, left, right]. */
  readonly padding?: Padding;
  readonly dilation?: number | readonly [number, number];
  /** Channel groups: 1 = dense, C_in = depthwise (any channel multiplier). */
  readonly groups?: number;
}

const toPair = (op: string, name: string, v: number | readonly number[] | undefined, dflt: number): Pair => {
  const p: number[] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [...v];
  if (p.length !== 2 || p.some((d) => !Number.isInteger(d) || d < 1)) {
    throw new Error(`${op}: ${name} must be a positive integer or a pair of them, got ${JSON.stringify(v)}`);
  }
  return p as Pair;
};

/**
 * TensorFlow's static 'same' padding along one axis (the one the official EfficientNet uses):
 * total = max((⌈n/s⌉ − 1)·s + (k − 1)·d + 1 − n, 0), split floor(total/2) before, the rest after.
 */
export function samePadding(n: number, k: number, s: number, d = 1): [number, number] {
  const total = Math.max((Math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0);
  const lo = Math.floor(total / 2);
  return [lo, total - lo];
}

/** [top, bottom, left, right] for a padding option, input size and (dilated, strided) kernel. */
export function resolvePadding(op: string, padding: Padding | undefined, hw: readonly number[], k: readonly number[], s: Pair, d: Pair): Quad {
  if (padding === undefined || padding === 'valid') return [0, 0, 0, 0];
  if (padding === 'same') return [...samePadding(hw[0], k[0], s[0], d[0]), ...samePadding(hw[1], k[1], s[1], d[1])] as Quad;
  const q = typeof padding === 'number' ? [padding, padding, padding, padding] : [...(padding as readonly number[])];
  if (q.length !== 4 || q.some((p) => !Number.isInteger(p) || p < 0)) {
    throw new Error(`${op}: padding must be 'valid', 'same', a non-negative integer or [top, bottom, left, right], got ${JSON.stringify(padding)}`);
  }
  return q as Quad;
}

function rank4(op: string, what: string, x: Tensor): void {
  if (x.rank !== 4) throw new Error(`${op}: ${what} must be 4-D (${what === 'input' ? 'N, C, H, W' : 'O, C/groups, kh, kw'}), got shape ${fmt(x.shape)}`);
}

/**
 * 2-D convolution (cross-correlation, as in PyTorch) of x (N, C, H, W) with w (O, C/groups, kh, kw)
 * → (N, O, OH, OW). Depthwise (groups = C) and 1×1 convolutions take dedicated fast paths.
 * Bias is a separate broadcast add.
 * @example conv2d(x, w, { stride: 2, padding: 'same' })
 */
export function conv2d(x: Tensor, w: Tensor, opts: Conv2dOptions = {}): Tensor {
  rank4('conv2d', 'input', x);
  rank4('conv2d', 'filter', w);
  const stride = toPair('conv2d', 'stride', opts.stride, 1);
  const dilation = toPair('conv2d', 'dilation', opts.dilation, 1);
  const padding = resolvePadding('conv2d', opts.padding, x.shape.slice(2), w.shape.slice(2), stride, dilation);
  return conv2dPrim(x, w, { stride, padding, dilation, groups: opts.groups ?? 1 });
}

/** Depthwise convolution: w is (C·multiplier, 1, kh, kw). */
export const depthwiseConv2d = (x: Tensor, w: Tensor, opts: Omit<Conv2dOptions, 'groups'> = {}): Tensor =>
  conv2d(x, w, { ...opts, groups: x.shape[1] });

export interface StochasticConv2dOptions {
  readonly stride?: number | readonly [number, number];
  /** Output size [oh, ow]; each channel reads a window of (oh − 1)·s + kh by (ow − 1)·s + kw. */
  readonly outSize: readonly [number, number];
  /**
   * (row, col) top-left corners: length C_out·2 → one window per output channel shared by the
   * batch; length N·C_out·2 → one per image and channel (index n·C_out + k). See sampleWindows.
   */
  readonly windows: Int32Array;
  /**
   * For a uint8 image (decoded pixels): channel c's value v is read as v·scale[c] + shift[c], e.g.
   * `imagenetDecode` for ImageNet normalisation. The image then stays in bytes (a quarter of float32's memory and
   * bandwidth) and has no gradient. Without it a uint8 image is read as its values.
   */
  readonly decode?: ImageDecode;
}

/**
 * The paper's stochastic convolution: output channel k of image n is the valid convolution of w[k]
 * with the window of x at windows[k] (or windows[n·C_out + k]), giving (N, C_out, oh, ow).
 * @example stochasticConv2d(x, w, { stride: 2, outSize: [112, 112], windows: sampleWindows(k, {...}) })
 */
export function stochasticConv2d(x: Tensor, w: Tensor, opts: StochasticConv2dOptions): Tensor {
  rank4('stochasticConv2d', 'input', x);
  rank4('stochasticConv2d', 'filter', w);
  const stride = toPair('stochasticConv2d', 'stride', opts.stride, 1);
  const outSize = toPair('stochasticConv2d', 'outSize', opts.outSize, 1);
  const [N] = x.shape;
  const [O] = w.shape;
  const len = opts.windows?.length;
  let perImage: boolean;
  if (len === 2 * O) perImage = false;
  else if (len === 2 * N * O) perImage = true;
  else {
    throw new Error(
      `stochasticConv2d: windows has length ${len}, expected C_out·2 = ${2 * O} (per batch) or N·C_out·2 = ${2 * N * O} (per image) for input ${fmt(x.shape)} and filter ${fmt(w.shape)}`,
    );
  }
  return stochasticConv2dPrim(x, w, { stride, outSize, windows: opts.windows, perImage, ...(opts.decode ? { decode: opts.decode } : {}) });
}

export interface SampleWindowsOptions {
  /** Batch size N (needed when perImage). */
  readonly batch?: number;
  /** Output channels C_out (one window per channel). */
  readonly channels: number;
  readonly inputSize: readonly [number, number];
  readonly sliceSize: readonly [number, number];
  /** One window per image and channel (the paper's form) instead of one per channel for the batch. */
  readonly perImage: boolean;
}

/**
 * Window corners for stochasticConv2d: rows and columns are drawn independently and uniformly
 * over every valid start 0 … H − sh and 0 … W − sw (inclusive). Deterministic in the key.
 * @example sampleWindows(key(0), { batch: 8, channels: 32, inputSize: [1024, 1024], sliceSize: [225, 225], perImage: true })
 */
export function sampleWindows(k: Key, opts: SampleWindowsOptions): Int32Array {
  const { channels, inputSize, sliceSize, perImage } = opts;
  const [H, W] = inputSize;
  const [sh, sw] = sliceSize;
  const n = perImage ? opts.batch : 1;
  if (perImage && (n === undefined || !Number.isInteger(n) || n < 1)) {
    throw new Error(`sampleWindows: perImage needs a positive integer batch size, got ${opts.batch}`);
  }
  if (!Number.isInteger(channels) || channels < 1) throw new Error(`sampleWindows: channels must be a positive integer, got ${channels}`);
  if (sh > H || sw > W || sh < 1 || sw < 1) {
    throw new Error(`sampleWindows: input ${H}×${W} is smaller than the slice ${sh}×${sw}`);
  }
  const count = (n ?? 1) * channels;
  // One draw for the whole array, so jit recomputes the windows from each call's key.
  return drawFrom(k, (kk) => windowCorners(kk, count, H - sh + 1, W - sw + 1));
}

function windowCorners(k: Key, count: number, rowStarts: number, colStarts: number): Int32Array {
  const [kr, kc] = split(k, 2);
  const rows = randint(kr, count, 0, rowStarts);
  const cols = randint(kc, count, 0, colStarts);
  const out = new Int32Array(2 * count);
  for (let i = 0; i < count; i++) {
    out[2 * i] = rows[i];
    out[2 * i + 1] = cols[i];
  }
  return out;
}

/** The input slice size a stochastic conv with this output, kernel and stride reads. */
export const stochasticSliceSize = (outSize: readonly [number, number], kernel: readonly [number, number], stride: number | readonly [number, number] = 1): [number, number] => {
  const s = toPair('stochasticSliceSize', 'stride', stride, 1);
  return [sliceLength(outSize[0], kernel[0], s[0]), sliceLength(outSize[1], kernel[1], s[1])];
};

export interface Pool2dOptions {
  readonly kernel: number | readonly [number, number];
  /** Default: the kernel size. */
  readonly stride?: number | readonly [number, number];
  /** Default 'valid'; 'same' uses TensorFlow's static same padding. */
  readonly padding?: Padding;
}

function poolAttrs(op: string, x: Tensor, opts: Pool2dOptions) {
  rank4(op, 'input', x);
  const kernel = toPair(op, 'kernel', opts.kernel, 1);
  const stride = toPair(op, 'stride', opts.stride ?? kernel, 1);
  const padding = resolvePadding(op, opts.padding, x.shape.slice(2), kernel, stride, [1, 1]);
  return { kernel, stride, padding };
}

/** Average pooling; padded cells are excluded from each window's count. */
export const avgPool2d = (x: Tensor, opts: Pool2dOptions): Tensor => bind('avgPool2d', [x], poolAttrs('avgPool2d', x, opts));
/** Max pooling; the gradient goes to the first maximum of each window. */
export const maxPool2d = (x: Tensor, opts: Pool2dOptions): Tensor => bind('maxPool2d', [x], poolAttrs('maxPool2d', x, opts));

/** Mean over H and W: (N, C, H, W) → (N, C, 1, 1), or (N, C) with keepdims: false. */
export function globalAvgPool2d(x: Tensor, opts: { keepdims?: boolean } = {}): Tensor {
  rank4('globalAvgPool2d', 'input', x);
  const m = mean(reshape(x, [x.shape[0], x.shape[1], -1]), 2);
  return opts.keepdims === false ? m : reshape(m, [x.shape[0], x.shape[1], 1, 1]);
}
