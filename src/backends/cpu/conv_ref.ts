/**
 * Reference kernels of the convolution family: the definitions written as plain loops, one output
 * (or one gradient entry) at a time, accumulated in float64. Slow and obviously correct; the fast
 * kernels in conv.ts (and every other backend) are tested against these.
 */
import type { Kernel, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import type {
  Conv2dAffineAttrs,
  Conv2dAttrs,
  Conv2dGradFilterAttrs,
  Conv2dGradInputAttrs,
  Pool2dAttrs,
  Pool2dGradAttrs,
  StochasticConv2dAttrs,
  StochasticConv2dGradFilterAttrs,
  StochasticConv2dGradInputAttrs,
} from '../../autograd/conv.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { stochasticGeometry, windowOf } from './conv_geom.ts';
import { outputFor, zeroedOutputFor } from './layout.ts';
import { elementwiseExprs, elementwiseKernel } from './elementwise.ts';

type Arg = KernelArg<TypedArray>;

/** y[n, o, i, j] = Σ_{c ∈ group(o), ky, kx} x[n, c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] · w[o, c − g·Cg, ky, kx] */
export function conv2dRefImpl([x, w]: readonly Arg[], a: Conv2dAttrs, out: OutSpec): TypedArray {
  const [N, C, H, W] = x.shape;
  const [O, Cg, kh, kw] = w.shape;
  const [, , OH, OW] = out.shape;
  const [sh, sw] = a.stride;
  const [dh, dw] = a.dilation;
  const [pt, , pl] = a.padding;
  const Og = O / a.groups;
  const X = x.storage;
  const Wt = w.storage;
  const y = outputFor(out);
  let p = 0;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const c0 = Math.floor(o / Og) * Cg;
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          let s = 0;
          for (let c = 0; c < Cg; c++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = i * sh - pt + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = j * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                s += X[((n * C + c0 + c) * H + iy) * W + ix] * Wt[((o * Cg + c) * kh + ky) * kw + kx];
              }
            }
          }
          y[p++] = s;
        }
      }
    }
  }
  return y;
}

const affineLoop = elementwiseKernel('affine', 3, elementwiseExprs.affine[1]);
const siluLoop = elementwiseKernel('silu', 1, elementwiseExprs.silu[1]);

/**
 * conv2dAffine by its definition: the conv kernel `conv`, then act(y·a + b) as the elementwise loops of affine and
 * SiLU, in place in the conv's output.
 */
export function convThenAffine(conv: Kernel<TypedArray, Conv2dAttrs>): Kernel<TypedArray, Conv2dAffineAttrs> {
  return ([x, w, a, b], attrs, out) => {
    const y = conv([x, w], attrs, out);
    const z = affineLoop([{ storage: y, shape: out.shape, dtype: out.dtype }, a, b], {}, { ...out, into: y });
    return attrs.act === 'silu' ? siluLoop([{ storage: z, shape: out.shape, dtype: out.dtype }], {}, { ...out, into: z }) : z;
  };
}

/** y = act(conv2d(x, w)·a + b), a and b per output channel: the reference conv, then the affine. */
export const conv2dAffineRefImpl = convThenAffine(conv2dRefImpl);

/** x̄[n, c, iy, ix] = Σ over the outputs that read (iy, ix) of ȳ · w (the scatter form of the adjoint). */
export function conv2dGradInputRefImpl([ct, w]: readonly Arg[], a: Conv2dGradInputAttrs, out: OutSpec): TypedArray {
  const [N, C, H, W] = a.inputShape;
  const [O, Cg, kh, kw] = w.shape;
  const [, , OH, OW] = ct.shape;
  const [sh, sw] = a.stride;
  const [dh, dw] = a.dilation;
  const [pt, , pl] = a.padding;
  const Og = O / a.groups;
  const G = ct.storage;
  const Wt = w.storage;
  const acc = new Float64Array(N * C * H * W);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const c0 = Math.floor(o / Og) * Cg;
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          const g = G[((n * O + o) * OH + i) * OW + j];
          for (let c = 0; c < Cg; c++) {
            for (let ky = 0; ky < kh; ky++) {
              const iy = i * sh - pt + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let kx = 0; kx < kw; kx++) {
                const ix = j * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                acc[((n * C + c0 + c) * H + iy) * W + ix] += g * Wt[((o * Cg + c) * kh + ky) * kw + kx];
              }
            }
          }
        }
      }
    }
  }
  const y = outputFor(out);
  y.set(acc);
  return y;
}

/** w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, g·Cg + c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] */
export function conv2dGradFilterRefImpl([x, ct]: readonly Arg[], a: Conv2dGradFilterAttrs, out: OutSpec): TypedArray {
  const [N, C, H, W] = x.shape;
  const [O, Cg, kh, kw] = a.filterShape;
  const [, , OH, OW] = ct.shape;
  const [sh, sw] = a.stride;
  const [dh, dw] = a.dilation;
  const [pt, , pl] = a.padding;
  const Og = O / a.groups;
  const X = x.storage;
  const G = ct.storage;
  const y = outputFor(out);
  let p = 0;
  for (let o = 0; o < O; o++) {
    const c0 = Math.floor(o / Og) * Cg;
    for (let c = 0; c < Cg; c++) {
      for (let ky = 0; ky < kh; ky++) {
        for (let kx = 0; kx < kw; kx++) {
          let s = 0;
          for (let n = 0; n < N; n++) {
            for (let i = 0; i < OH; i++) {
              const iy = i * sh - pt + ky * dh;
              if (iy < 0 || iy >= H) continue;
              for (let j = 0; j < OW; j++) {
                const ix = j * sw - pl + kx * dw;
                if (ix < 0 || ix >= W) continue;
                s += G[((n * O + o) * OH + i) * OW + j] * X[((n * C + c0 + c) * H + iy) * W + ix];
              }
            }
          }
          y[p++] = s;
        }
      }
    }
  }
  return y;
}


/** y[n, o, i, j] = Σ_{c, ky, kx} x[n, c, r + i·sh + ky, q + j·sw + kx] · w[o, c, ky, kx], (r, q) = window of (n, o). */
/** Channel c's scale and shift of the image's decode (1 and 0 without one). */
const decodeOf = (a: StochasticConv2dAttrs, C: number): [number[], number[]] =>
  [Array.from({ length: C }, (_, c) => a.decode?.scale[c] ?? 1), Array.from({ length: C }, (_, c) => a.decode?.shift[c] ?? 0)];

export function stochasticConv2dRefImpl([x, w]: readonly Arg[], a: StochasticConv2dAttrs, out: OutSpec): TypedArray {
  const geo = stochasticGeometry(x.shape, w.shape, a);
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = w.shape;
  const [OH, OW] = a.outSize;
  const [sh, sw] = a.stride;
  const X = x.storage;
  const Wt = w.storage;
  const [sc, sf] = decodeOf(a, C);
  const y = outputFor(out);
  let p = 0;
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(geo, n, o);
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          let s = 0;
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                s += (X[((n * C + c) * H + r + i * sh + ky) * W + q + j * sw + kx] * sc[c] + sf[c]) * Wt[((o * C + c) * kh + ky) * kw + kx];
              }
            }
          }
          y[p++] = s;
        }
      }
    }
  }
  return y;
}

/** x̄: every output scatters ȳ·w back into its channel's window; overlapping windows accumulate. */
export function stochasticConv2dGradInputRefImpl([ct, w]: readonly Arg[], a: StochasticConv2dGradInputAttrs, out: OutSpec): TypedArray {
  const geo = stochasticGeometry(a.inputShape, w.shape, a);
  const [N, C, H, W] = a.inputShape;
  const [O, , kh, kw] = w.shape;
  const [OH, OW] = a.outSize;
  const [sh, sw] = a.stride;
  const G = ct.storage;
  const Wt = w.storage;
  const acc = new Float64Array(N * C * H * W);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(geo, n, o);
      for (let i = 0; i < OH; i++) {
        for (let j = 0; j < OW; j++) {
          const g = G[((n * O + o) * OH + i) * OW + j];
          for (let c = 0; c < C; c++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                acc[((n * C + c) * H + r + i * sh + ky) * W + q + j * sw + kx] += g * Wt[((o * C + c) * kh + ky) * kw + kx];
              }
            }
          }
        }
      }
    }
  }
  const y = outputFor(out);
  y.set(acc);
  return y;
}

/** w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, c, r + i·sh + ky, q + j·sw + kx] */
export function stochasticConv2dGradFilterRefImpl([x, ct]: readonly Arg[], a: StochasticConv2dGradFilterAttrs, out: OutSpec): TypedArray {
  const geo = stochasticGeometry(x.shape, a.filterShape, a);
  const [N, C, H, W] = x.shape;
  const [O, , kh, kw] = a.filterShape;
  const [OH, OW] = a.outSize;
  const [sh, sw] = a.stride;
  const X = x.storage;
  const G = ct.storage;
  const [sc, sf] = decodeOf(a, C);
  const acc = new Float64Array(sizeOf(out.shape));
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(geo, n, o);
      for (let c = 0; c < C; c++) {
        for (let ky = 0; ky < kh; ky++) {
          for (let kx = 0; kx < kw; kx++) {
            let s = 0;
            for (let i = 0; i < OH; i++) {
              for (let j = 0; j < OW; j++) {
                s += G[((n * O + o) * OH + i) * OW + j] * (X[((n * C + c) * H + r + i * sh + ky) * W + q + j * sw + kx] * sc[c] + sf[c]);
              }
            }
            acc[((o * C + c) * kh + ky) * kw + kx] += s;
          }
        }
      }
    }
  }
  const y = outputFor(out);
  y.set(acc);
  return y;
}

// ---- pooling -----------------------------------------------------------------------------------

/** Calls f(plane, i, j, y0, y1, x0, x1) for every output with its in-bounds window [y0, y1) × [x0, x1). */
function eachWindow(
  shape: readonly number[],
  outShape: readonly number[],
  a: Pool2dAttrs,
  f: (plane: number, o: number, y0: number, y1: number, x0: number, x1: number) => void,
): void {
  const [N, C, H, W] = shape;
  const [, , OH, OW] = outShape;
  const [kh, kw] = a.kernel;
  const [sh, sw] = a.stride;
  const [pt, , pl] = a.padding;
  let o = 0;
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < OH; i++) {
      const ys = i * sh - pt;
      const y0 = Math.max(ys, 0);
      const y1 = Math.min(ys + kh, H);
      for (let j = 0; j < OW; j++) {
        const xs = j * sw - pl;
        f(p, o++, y0, y1, Math.max(xs, 0), Math.min(xs + kw, W));
      }
    }
  }
}

/** Average over the in-bounds cells (padding excluded from the count). */
export function avgPool2dImpl([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec): TypedArray {
  const [, , H, W] = x.shape;
  const X = x.storage;
  const y = outputFor(out);
  eachWindow(x.shape, out.shape, a, (p, o, y0, y1, x0, x1) => {
    let s = 0;
    for (let r = y0; r < y1; r++) for (let c = x0; c < x1; c++) s += X[(p * H + r) * W + c];
    y[o] = s / ((y1 - y0) * (x1 - x0));
  });
  return y;
}

export function avgPool2dGradImpl([ct]: readonly Arg[], a: Pool2dGradAttrs, out: OutSpec): TypedArray {
  const [, , H, W] = a.inputShape;
  const G = ct.storage;
  const acc = new Float64Array(sizeOf(out.shape));
  eachWindow(a.inputShape, ct.shape, a, (p, o, y0, y1, x0, x1) => {
    const g = G[o] / ((y1 - y0) * (x1 - x0));
    for (let r = y0; r < y1; r++) for (let c = x0; c < x1; c++) acc[(p * H + r) * W + c] += g;
  });
  const y = outputFor(out);
  y.set(acc);
  return y;
}

/** Flat index into x of the first maximum of each window. */
function argmaxes(x: Arg, outShape: readonly number[], a: Pool2dAttrs): Int32Array {
  const [, , H, W] = x.shape;
  const X = x.storage;
  const idx = new Int32Array(sizeOf(outShape));
  eachWindow(x.shape, outShape, a, (p, o, y0, y1, x0, x1) => {
    let best = -Infinity;
    let at = (p * H + y0) * W + x0;
    for (let r = y0; r < y1; r++) {
      for (let c = x0; c < x1; c++) {
        const v = X[(p * H + r) * W + c];
        // The first maximum wins; a NaN propagates like PyTorch (the first NaN sticks).
        if (v > best || (v !== v && best === best)) {
          best = v;
          at = (p * H + r) * W + c;
        }
      }
    }
    idx[o] = at;
  });
  return idx;
}

export function maxPool2dImpl([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec): TypedArray {
  const idx = argmaxes(x, out.shape, a);
  const y = outputFor(out);
  for (let o = 0; o < idx.length; o++) y[o] = x.storage[idx[o]];
  return y;
}

export function maxPool2dGradImpl([x, ct]: readonly Arg[], a: Pool2dAttrs, out: OutSpec): TypedArray {
  const idx = argmaxes(x, ct.shape, a);
  const y = zeroedOutputFor(out);
  for (let o = 0; o < idx.length; o++) y[idx[o]] += ct.storage[o];
  return y;
}

export function maxPool2dSelectImpl([x, g]: readonly Arg[], a: Pool2dAttrs, out: OutSpec): TypedArray {
  const idx = argmaxes(x, out.shape, a);
  const y = outputFor(out);
  for (let o = 0; o < idx.length; o++) y[o] = g.storage[idx[o]];
  return y;
}
