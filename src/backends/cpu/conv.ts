/**
 * The CPU kernels of the convolution family, keyed by primitive name (spread into the CPU
 * backend's kernel map in ./index.ts). Paths, chosen per call:
 *   - depthwise (one input channel per group): float32 with column stride 1–2 on the generated wasm SIMD
 *     window kernels of fast/dwconv.ts; otherwise the TS window kernels of conv_window.ts, weights in locals;
 *   - everything else: per image and group, im2col + the blocked GEMM of conv_gemm.ts, where a
 *     1×1 stride-1 unpadded (pointwise) conv skips im2col and multiplies the input planes directly;
 *   - stochastic conv: direct window kernels at each channel's (image's) window, all C input
 *     planes of a channel in one unrolled pass: the same cost per output as a direct conv, with no
 *     per-channel copy of the window (float32, column stride 1–2: wasm SIMD in fast/stochconv.ts,
 *     in L2-sized bands of input rows; else conv_window.ts).
 * The plain loops of conv_ref.ts stay as the reference these are tested against.
 */
import type { Kernel, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import type {
  Conv2dAttrs,
  Conv2dGradFilterAttrs,
  Conv2dGradInputAttrs,
  StochasticConv2dAttrs,
  StochasticConv2dGradFilterAttrs,
  StochasticConv2dGradInputAttrs,
} from '../../autograd/conv.ts';
import { arrayFor } from '../../tensor/tensor.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { type ConvGeom, col2im, gemm, im2col } from './conv_gemm.ts';
import * as R from './conv_ref.ts';
import { type Window, channelChunk, windowForward, windowGradFilter, windowGradInput } from './conv_window.ts';
import { type DepthwiseGeom, depthwiseForwardF32, depthwiseGradFilterF32, depthwiseGradInputF32, depthwiseSimdOk } from './fast/dwconv.ts';
import { type StochasticGeom, stochasticForwardF32, stochasticGradFilterF32, stochasticGradInputF32, stochasticSimdOk } from './fast/stochconv.ts';

type Arg = KernelArg<TypedArray>;

interface Plan {
  N: number; C: number; H: number; W: number;
  O: number; Cg: number; kh: number; kw: number;
  OH: number; OW: number; groups: number; Og: number;
  depthwise: boolean;
  /** 1×1, stride 1, no padding: the input planes are the im2col matrix. */
  pointwise: boolean;
  geom: ConvGeom;
}

function plan(x: readonly number[], w: readonly number[], y: readonly number[], a: Conv2dAttrs): Plan {
  const [N, C, H, W] = x;
  const [O, Cg, kh, kw] = w;
  const [, , OH, OW] = y;
  const [sh, sw] = a.stride;
  const [dh, dw] = a.dilation;
  const [pt, pb, pl, pr] = a.padding;
  const pointwise = kh === 1 && kw === 1 && sh === 1 && sw === 1 && pt + pb + pl + pr === 0;
  return {
    N, C, H, W, O, Cg, kh, kw, OH, OW, groups: a.groups, Og: O / a.groups,
    depthwise: Cg === 1 && a.groups === C && a.groups > 1 && !pointwise,
    pointwise,
    geom: { C: Cg, H, W, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW },
  };
}

/** The float32 wasm SIMD depthwise path (fast/dwconv.ts) when it applies, else null. */
function depthwiseSimd(p: Plan, a: Conv2dAttrs, dtype: string): DepthwiseGeom | null {
  if (dtype !== 'float32') return null;
  const d: DepthwiseGeom = {
    N: p.N, C: p.C, H: p.H, W: p.W, O: p.O, OH: p.OH, OW: p.OW, kh: p.kh, kw: p.kw,
    stride: a.stride, dilation: a.dilation, padding: a.padding,
  };
  return depthwiseSimdOk(d) ? d : null;
}

/** The window of output channel o (image n) of a depthwise conv. */
function depthwiseWindow(p: Plan, a: Conv2dAttrs, n: number, o: number): Window {
  const c = Math.floor(o / p.Og);
  return {
    xOff: (n * p.C + c) * p.H * p.W, cn: 1, H: p.H, W: p.W, kh: p.kh, kw: p.kw,
    sh: a.stride[0], sw: a.stride[1], dh: a.dilation[0], dw: a.dilation[1],
    oy0: -a.padding[0], ox0: -a.padding[2],
    yOff: (n * p.O + o) * p.OH * p.OW, OH: p.OH, OW: p.OW, wOff: o * p.kh * p.kw,
  };
}

export function conv2dImpl([x, w]: readonly Arg[], a: Conv2dAttrs, out: OutSpec): TypedArray {
  const p = plan(x.shape, w.shape, out.shape, a);
  const d = p.depthwise ? depthwiseSimd(p, a, out.dtype) : null;
  if (d) return depthwiseForwardF32(x.storage as Float32Array, w.storage as Float32Array, d);
  const Y = arrayFor(out.dtype, sizeOf(out.shape));
  const X = x.storage;
  const Wt = w.storage;
  if (p.depthwise) {
    for (let n = 0; n < p.N; n++) for (let o = 0; o < p.O; o++) windowForward(X, Wt, Y, depthwiseWindow(p, a, n, o), false);
    return Y;
  }
  const K = p.Cg * p.kh * p.kw;
  const P = p.OH * p.OW;
  const HW = p.H * p.W;
  const col = p.pointwise ? X : arrayFor(out.dtype, K * P);
  for (let n = 0; n < p.N; n++) {
    for (let g = 0; g < p.groups; g++) {
      const xOff = (n * p.C + g * p.Cg) * HW;
      if (!p.pointwise) im2col(X, xOff, p.geom, col);
      // Y[n, g·Og + o, :] = W[g·Og + o, :] · col
      gemm(p.Og, P, K, Wt, g * p.Og * K, K, 1, col, p.pointwise ? xOff : 0, P, 1, Y, (n * p.O + g * p.Og) * P, P, false);
    }
  }
  return Y;
}

export function conv2dGradInputImpl([ct, w]: readonly Arg[], a: Conv2dGradInputAttrs, out: OutSpec): TypedArray {
  const p = plan(a.inputShape, w.shape, ct.shape, a);
  const d = p.depthwise ? depthwiseSimd(p, a, out.dtype) : null;
  if (d) return depthwiseGradInputF32(ct.storage as Float32Array, w.storage as Float32Array, d);
  const DX = arrayFor(out.dtype, sizeOf(out.shape));
  const G = ct.storage;
  const Wt = w.storage;
  if (p.depthwise) {
    for (let n = 0; n < p.N; n++) for (let o = 0; o < p.O; o++) windowGradInput(DX, Wt, G, depthwiseWindow(p, a, n, o));
    return DX;
  }
  const K = p.Cg * p.kh * p.kw;
  const P = p.OH * p.OW;
  const HW = p.H * p.W;
  const col = p.pointwise ? DX : arrayFor(out.dtype, K * P);
  for (let n = 0; n < p.N; n++) {
    for (let g = 0; g < p.groups; g++) {
      const xOff = (n * p.C + g * p.Cg) * HW;
      // col[t, :] = Σ_o W[g·Og + o, t] · G[n, g·Og + o, :]  (Wᵀ read through strides)
      gemm(K, P, p.Og, Wt, g * p.Og * K, 1, K, G, (n * p.O + g * p.Og) * P, P, 1, col, p.pointwise ? xOff : 0, P, false);
      if (!p.pointwise) col2im(col, p.geom, DX, xOff);
    }
  }
  return DX;
}

export function conv2dGradFilterImpl([x, ct]: readonly Arg[], a: Conv2dGradFilterAttrs, out: OutSpec): TypedArray {
  const p = plan(x.shape, a.filterShape, ct.shape, a);
  const X = x.storage;
  const G = ct.storage;
  const d = p.depthwise ? depthwiseSimd(p, a, out.dtype) : null;
  if (d) return depthwiseGradFilterF32(X as Float32Array, G as Float32Array, d);
  const DW = arrayFor(out.dtype, sizeOf(out.shape));
  if (p.depthwise) {
    for (let n = 0; n < p.N; n++) for (let o = 0; o < p.O; o++) windowGradFilter(X, G, DW, depthwiseWindow(p, a, n, o));
    return DW;
  }
  const K = p.Cg * p.kh * p.kw;
  const P = p.OH * p.OW;
  const HW = p.H * p.W;
  const col = p.pointwise ? X : arrayFor(out.dtype, K * P);
  for (let n = 0; n < p.N; n++) {
    for (let g = 0; g < p.groups; g++) {
      const xOff = (n * p.C + g * p.Cg) * HW;
      if (!p.pointwise) im2col(X, xOff, p.geom, col);
      // DW[g·Og + o, t] += Σ_p G[n, g·Og + o, p] · col[t, p]  (colᵀ read through strides)
      gemm(p.Og, K, P, G, (n * p.O + g * p.Og) * P, P, 1, col, p.pointwise ? xOff : 0, 1, P, DW, g * p.Og * K, K, true);
    }
  }
  return DW;
}

// ---- stochastic conv ---------------------------------------------------------------------------

/** Calls f(window) for each image, output channel and chunk of input planes, at that channel's window. */
function eachStochasticWindow(
  xShape: readonly number[], wShape: readonly number[], a: StochasticConv2dAttrs,
  f: (g: Window, first: boolean) => void,
): void {
  const [N, C, H, W] = xShape;
  const [O, , kh, kw] = wShape;
  const [OH, OW] = a.outSize;
  const cu = channelChunk(C, kh, kw);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const i = a.perImage ? n * O + o : o;
      const r = a.windows[2 * i];
      const q = a.windows[2 * i + 1];
      for (let c0 = 0; c0 < C; c0 += cu) {
        f({
          xOff: (n * C + c0) * H * W, cn: Math.min(cu, C - c0), H, W, kh, kw,
          sh: a.stride[0], sw: a.stride[1], dh: 1, dw: 1, oy0: r, ox0: q,
          yOff: (n * O + o) * OH * OW, OH, OW, wOff: (o * C + c0) * kh * kw,
        }, c0 === 0);
      }
    }
  }
}

/** The float32 wasm SIMD stochastic path (fast/stochconv.ts) when it applies, else null. */
function stochasticSimd(xShape: readonly number[], wShape: readonly number[], a: StochasticConv2dAttrs, dtype: string): StochasticGeom | null {
  if (dtype !== 'float32') return null;
  const [N, C, H, W] = xShape;
  const [O, , kh, kw] = wShape;
  const s: StochasticGeom = { N, C, H, W, O, kh, kw, stride: a.stride, outSize: a.outSize, windows: a.windows, perImage: a.perImage };
  return stochasticSimdOk(s) ? s : null;
}

export function stochasticConv2dImpl([x, w]: readonly Arg[], a: StochasticConv2dAttrs, out: OutSpec): TypedArray {
  const s = stochasticSimd(x.shape, w.shape, a, out.dtype);
  if (s) return stochasticForwardF32(x.storage as Float32Array, w.storage as Float32Array, s);
  const Y = arrayFor(out.dtype, sizeOf(out.shape));
  eachStochasticWindow(x.shape, w.shape, a, (g, first) => windowForward(x.storage, w.storage, Y, g, !first));
  return Y;
}

export function stochasticConv2dGradInputImpl([ct, w]: readonly Arg[], a: StochasticConv2dGradInputAttrs, out: OutSpec): TypedArray {
  const s = stochasticSimd(a.inputShape, w.shape, a, out.dtype);
  if (s) return stochasticGradInputF32(ct.storage as Float32Array, w.storage as Float32Array, s);
  const DX = arrayFor(out.dtype, sizeOf(out.shape));
  eachStochasticWindow(a.inputShape, w.shape, a, (g) => windowGradInput(DX, w.storage, ct.storage, g));
  return DX;
}

export function stochasticConv2dGradFilterImpl([x, ct]: readonly Arg[], a: StochasticConv2dGradFilterAttrs, out: OutSpec): TypedArray {
  const s = stochasticSimd(x.shape, a.filterShape, a, out.dtype);
  if (s) return stochasticGradFilterF32(x.storage as Float32Array, ct.storage as Float32Array, s);
  const DW = arrayFor(out.dtype, sizeOf(out.shape));
  eachStochasticWindow(x.shape, a.filterShape, a, (g) => windowGradFilter(x.storage, ct.storage, DW, g));
  return DW;
}

export const convKernels: Record<string, Kernel<TypedArray, any>> = {
  conv2d: conv2dImpl,
  conv2dGradInput: conv2dGradInputImpl,
  conv2dGradFilter: conv2dGradFilterImpl,
  stochasticConv2d: stochasticConv2dImpl,
  stochasticConv2dGradInput: stochasticConv2dGradInputImpl,
  stochasticConv2dGradFilter: stochasticConv2dGradFilterImpl,
  avgPool2d: R.avgPool2dImpl,
  avgPool2dGrad: R.avgPool2dGradImpl,
  maxPool2d: R.maxPool2dImpl,
  maxPool2dGrad: R.maxPool2dGradImpl,
  maxPool2dSelect: R.maxPool2dSelectImpl,
};

/** The reference kernels under the same names (tests compare the two). */
export const convReferenceKernels: Record<string, Kernel<TypedArray, any>> = {
  ...convKernels,
  conv2d: R.conv2dRefImpl,
  conv2dGradInput: R.conv2dGradInputRefImpl,
  conv2dGradFilter: R.conv2dGradFilterRefImpl,
  stochasticConv2d: R.stochasticConv2dRefImpl,
  stochasticConv2dGradInput: R.stochasticConv2dGradInputRefImpl,
  stochasticConv2dGradFilter: R.stochasticConv2dGradFilterRefImpl,
};
