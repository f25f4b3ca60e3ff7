/**
 * The geometry records of the CPU conv family, built once per conv (per call in eager mode, once per graph node
 * when compiled) and shared by every kernel of it: the float64 references (conv_ref.ts), the im2col + sgemm path
 * (conv.ts, conv_gemm.ts) and the wasm SIMD window kernels (fast/dwconv.ts, fast/stochconv.ts).
 */
import type { Conv2dAttrs, StochasticConv2dAttrs } from '../../autograd/conv.ts';

/** A conv2d (any groups) in NCHW / OIHW. */
export interface ConvGeometry {
  readonly N: number; readonly C: number; readonly H: number; readonly W: number;
  /** Output channels, input channels per group, kernel size. */
  readonly O: number; readonly Cg: number; readonly kh: number; readonly kw: number;
  readonly OH: number; readonly OW: number;
  readonly groups: number;
  /** Output channels per group. */
  readonly Og: number;
  readonly stride: readonly [number, number];
  readonly dilation: readonly [number, number];
  /** [top, bottom, left, right] */
  readonly padding: readonly [number, number, number, number];
  /** One input channel per group (and not pointwise): the window kernels' case. */
  readonly depthwise: boolean;
  /** 1×1, stride 1, no padding: the input planes are the im2col matrix. */
  readonly pointwise: boolean;
}

export function convGeometry(x: readonly number[], w: readonly number[], y: readonly number[], a: Conv2dAttrs): ConvGeometry {
  // Indexed reads, not destructuring: compiled graphs call this for every conv step, and unoptimised
  // destructuring allocates an iterator per pattern.
  const C = x[1], O = w[0], Cg = w[1], kh = w[2], kw = w[3], p = a.padding;
  const pointwise = kh === 1 && kw === 1 && a.stride[0] === 1 && a.stride[1] === 1 && p[0] + p[1] + p[2] + p[3] === 0;
  return {
    N: x[0], C, H: x[2], W: x[3], O, Cg, kh, kw, OH: y[2], OW: y[3], groups: a.groups, Og: O / a.groups,
    stride: a.stride, dilation: a.dilation, padding: a.padding,
    depthwise: Cg === 1 && a.groups === C && a.groups > 1 && !pointwise,
    pointwise,
  };
}

/** A stochastic conv: output channel o of image n is a valid conv of its window of all C planes. */
export interface StochasticGeometry {
  readonly N: number; readonly C: number; readonly H: number; readonly W: number;
  readonly O: number; readonly kh: number; readonly kw: number;
  readonly stride: readonly [number, number];
  readonly outSize: readonly [number, number];
  /** Top-left corners (row, col): per channel, or per (image, channel) when perImage. */
  readonly windows: Int32Array;
  readonly perImage: boolean;
}

export function stochasticGeometry(x: readonly number[], w: readonly number[], a: StochasticConv2dAttrs): StochasticGeometry {
  const [N, C, H, W] = x;
  const [O, , kh, kw] = w;
  return { N, C, H, W, O, kh, kw, stride: a.stride, outSize: a.outSize, windows: a.windows, perImage: a.perImage };
}

/** Index of the window of image n, output channel o: its corner is (windows[2i], windows[2i + 1]). */
export const windowIndex = (s: StochasticGeometry, n: number, o: number): number => (s.perImage ? n * s.O + o : o);

/** Top-left corner (row, col) of the window of image n, output channel o. */
export function windowOf(s: StochasticGeometry, n: number, o: number): [number, number] {
  const i = windowIndex(s, n, o);
  return [s.windows[2 * i], s.windows[2 * i + 1]];
}
