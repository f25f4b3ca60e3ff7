/**
 * The convolution family on gpu.js (the contract is in src/autograd/conv.ts; the CPU references in
 * src/backends/cpu/conv_ref.ts). Every kernel computes one output element, found from the flat
 * row-major index `this.thread.x` with `coord` (NCHW / OIHW order), and gathers what it needs:
 * the input gradients are written gather-style (each x̄ element sums the outputs that read it), so
 * no kernel scatters and no atomics are needed. conv2d picks a depthwise or a 1×1 pointwise kernel
 * when the attributes allow.
 */
import type { Conv2dAttrs, Conv2dGradFilterAttrs, Conv2dGradInputAttrs, Pool2dAttrs, Pool2dGradAttrs, StochasticConv2dAttrs } from '../../autograd/conv.ts';
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import type { KernelThis } from './elementwise.ts';
import { GpuBuffer, type GpuRuntime } from './runtime.ts';
import { keyOf, sizeOf } from './strides.ts';

declare function coord(i: number, s: number, d: number): number;
declare function idiv(a: number, b: number): number;

type Arg = KernelArg<GpuBuffer>;
type Rt = () => GpuRuntime;

// ---- conv2d -------------------------------------------------------------------------------------

/** y[n, o, i, j] = Σ_{c < Cg, ky, kx} x[n, g·Cg + c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] · w[o, c, ky, kx], g = ⌊o / Og⌋ */
function conv2dKernel(this: KernelThis, x: Float32Array, w: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const o = coord(t, this.constants.OW * this.constants.OH, this.constants.O);
  const n = idiv(t, this.constants.O * this.constants.OH * this.constants.OW);
  const c0 = idiv(o, this.constants.Og) * this.constants.Cg;
  let acc = 0;
  for (let c = 0; c < this.constants.Cg; c++) {
    for (let ky = 0; ky < this.constants.kh; ky++) {
      const iy = i * this.constants.sh - this.constants.pt + ky * this.constants.dh;
      if (iy >= 0 && iy < this.constants.H) {
        for (let kx = 0; kx < this.constants.kw; kx++) {
          const ix = j * this.constants.sw - this.constants.pl + kx * this.constants.dw;
          if (ix >= 0 && ix < this.constants.W) {
            acc += x[((n * this.constants.C + c0 + c) * this.constants.H + iy) * this.constants.W + ix] * w[((o * this.constants.Cg + c) * this.constants.kh + ky) * this.constants.kw + kx];
          }
        }
      }
    }
  }
  return acc;
}

/** Depthwise (groups = C, Cg = 1): output channel o reads input channel ⌊o / multiplier⌋ only. */
function depthwiseConv2dKernel(this: KernelThis, x: Float32Array, w: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const o = coord(t, this.constants.OW * this.constants.OH, this.constants.O);
  const n = idiv(t, this.constants.O * this.constants.OH * this.constants.OW);
  const plane = (n * this.constants.C + idiv(o, this.constants.Og)) * this.constants.H;
  let acc = 0;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const iy = i * this.constants.sh - this.constants.pt + ky * this.constants.dh;
    if (iy >= 0 && iy < this.constants.H) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const ix = j * this.constants.sw - this.constants.pl + kx * this.constants.dw;
        if (ix >= 0 && ix < this.constants.W) {
          acc += x[(plane + iy) * this.constants.W + ix] * w[(o * this.constants.kh + ky) * this.constants.kw + kx];
        }
      }
    }
  }
  return acc;
}

/** 1×1, stride 1, no padding, groups 1: y[n, o, p] = Σ_c x[n, c, p] · w[o, c] over the P = H·W pixels. */
function pointwiseConv2dKernel(this: KernelThis, x: Float32Array, w: Float32Array): number {
  const t = this.thread.x;
  const p = coord(t, 1, this.constants.P);
  const o = coord(t, this.constants.P, this.constants.O);
  const n = idiv(t, this.constants.O * this.constants.P);
  let acc = 0;
  for (let c = 0; c < this.constants.C; c++) {
    acc += x[(n * this.constants.C + c) * this.constants.P + p] * w[o * this.constants.C + c];
  }
  return acc;
}

/**
 * x̄[n, c, iy, ix] = Σ over the outputs (o in c's group, i, j) and taps (ky, kx) that read (iy, ix):
 * i·sh = iy + pt − ky·dh must be a multiple of sh inside [0, OH·sh).
 */
function conv2dGradInputKernel(this: KernelThis, ct: Float32Array, w: Float32Array): number {
  const t = this.thread.x;
  const ix = coord(t, 1, this.constants.W);
  const iy = coord(t, this.constants.W, this.constants.H);
  const c = coord(t, this.constants.W * this.constants.H, this.constants.C);
  const n = idiv(t, this.constants.C * this.constants.H * this.constants.W);
  const g = idiv(c, this.constants.Cg);
  const cc = c - g * this.constants.Cg;
  let acc = 0;
  for (let og = 0; og < this.constants.Og; og++) {
    const o = g * this.constants.Og + og;
    for (let ky = 0; ky < this.constants.kh; ky++) {
      const ty = iy + this.constants.pt - ky * this.constants.dh;
      const i = idiv(ty, this.constants.sh);
      if (ty >= 0 && i * this.constants.sh == ty && i < this.constants.OH) {
        for (let kx = 0; kx < this.constants.kw; kx++) {
          const tx = ix + this.constants.pl - kx * this.constants.dw;
          const j = idiv(tx, this.constants.sw);
          if (tx >= 0 && j * this.constants.sw == tx && j < this.constants.OW) {
            acc += ct[((n * this.constants.O + o) * this.constants.OH + i) * this.constants.OW + j] * w[((o * this.constants.Cg + cc) * this.constants.kh + ky) * this.constants.kw + kx];
          }
        }
      }
    }
  }
  return acc;
}

/** w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, g·Cg + c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] */
function conv2dGradFilterKernel(this: KernelThis, x: Float32Array, ct: Float32Array): number {
  const t = this.thread.x;
  const kx = coord(t, 1, this.constants.kw);
  const ky = coord(t, this.constants.kw, this.constants.kh);
  const c = coord(t, this.constants.kw * this.constants.kh, this.constants.Cg);
  const o = idiv(t, this.constants.Cg * this.constants.kh * this.constants.kw);
  const xc = idiv(o, this.constants.Og) * this.constants.Cg + c;
  let acc = 0;
  for (let n = 0; n < this.constants.N; n++) {
    for (let i = 0; i < this.constants.OH; i++) {
      const iy = i * this.constants.sh - this.constants.pt + ky * this.constants.dh;
      if (iy >= 0 && iy < this.constants.H) {
        for (let j = 0; j < this.constants.OW; j++) {
          const ix = j * this.constants.sw - this.constants.pl + kx * this.constants.dw;
          if (ix >= 0 && ix < this.constants.W) {
            acc += ct[((n * this.constants.O + o) * this.constants.OH + i) * this.constants.OW + j] * x[((n * this.constants.C + xc) * this.constants.H + iy) * this.constants.W + ix];
          }
        }
      }
    }
  }
  return acc;
}

// ---- stochastic conv ----------------------------------------------------------------------------
// `win` holds the windows' top-left corners (row, col) as floats; window of (n, o) = n·perImage·O + o.

/** y[n, o, i, j] = Σ_{c, ky, kx} x[n, c, r + i·sh + ky, q + j·sw + kx] · w[o, c, ky, kx], (r, q) = window of (n, o). */
function stochasticConv2dKernel(this: KernelThis, x: Float32Array, w: Float32Array, win: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const o = coord(t, this.constants.OW * this.constants.OH, this.constants.O);
  const n = idiv(t, this.constants.O * this.constants.OH * this.constants.OW);
  const wi = n * this.constants.perImage * this.constants.O + o;
  const r = win[2 * wi] + i * this.constants.sh;
  const q = win[2 * wi + 1] + j * this.constants.sw;
  let acc = 0;
  for (let c = 0; c < this.constants.C; c++) {
    for (let ky = 0; ky < this.constants.kh; ky++) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        acc += x[((n * this.constants.C + c) * this.constants.H + r + ky) * this.constants.W + q + kx] * w[((o * this.constants.C + c) * this.constants.kh + ky) * this.constants.kw + kx];
      }
    }
  }
  return acc;
}

/** x̄[n, c, iy, ix] = Σ_o Σ_{ky, kx} ȳ[n, o, i, j] · w[o, c, ky, kx] where r + i·sh + ky = iy, q + j·sw + kx = ix (overlapping windows add up). */
function stochasticConv2dGradInputKernel(this: KernelThis, ct: Float32Array, w: Float32Array, win: Float32Array): number {
  const t = this.thread.x;
  const ix = coord(t, 1, this.constants.W);
  const iy = coord(t, this.constants.W, this.constants.H);
  const c = coord(t, this.constants.W * this.constants.H, this.constants.C);
  const n = idiv(t, this.constants.C * this.constants.H * this.constants.W);
  let acc = 0;
  for (let o = 0; o < this.constants.O; o++) {
    const wi = n * this.constants.perImage * this.constants.O + o;
    const ry = iy - win[2 * wi];
    const rx = ix - win[2 * wi + 1];
    // Most of a large input lies outside a given channel's window: skip those before the taps.
    if (ry >= 0 && ry < this.constants.SH && rx >= 0 && rx < this.constants.SW) {
      for (let ky = 0; ky < this.constants.kh; ky++) {
        const ty = ry - ky;
        const i = idiv(ty, this.constants.sh);
        if (ty >= 0 && i * this.constants.sh == ty && i < this.constants.OH) {
          for (let kx = 0; kx < this.constants.kw; kx++) {
            const tx = rx - kx;
            const j = idiv(tx, this.constants.sw);
            if (tx >= 0 && j * this.constants.sw == tx && j < this.constants.OW) {
              acc += ct[((n * this.constants.O + o) * this.constants.OH + i) * this.constants.OW + j] * w[((o * this.constants.C + c) * this.constants.kh + ky) * this.constants.kw + kx];
            }
          }
        }
      }
    }
  }
  return acc;
}

/** w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, c, r + i·sh + ky, q + j·sw + kx] */
function stochasticConv2dGradFilterKernel(this: KernelThis, x: Float32Array, ct: Float32Array, win: Float32Array): number {
  const t = this.thread.x;
  const kx = coord(t, 1, this.constants.kw);
  const ky = coord(t, this.constants.kw, this.constants.kh);
  const c = coord(t, this.constants.kw * this.constants.kh, this.constants.C);
  const o = idiv(t, this.constants.C * this.constants.kh * this.constants.kw);
  let acc = 0;
  for (let n = 0; n < this.constants.N; n++) {
    const wi = n * this.constants.perImage * this.constants.O + o;
    const r = win[2 * wi] + ky;
    const q = win[2 * wi + 1] + kx;
    for (let i = 0; i < this.constants.OH; i++) {
      for (let j = 0; j < this.constants.OW; j++) {
        acc += ct[((n * this.constants.O + o) * this.constants.OH + i) * this.constants.OW + j] * x[((n * this.constants.C + c) * this.constants.H + r + i * this.constants.sh) * this.constants.W + q + j * this.constants.sw];
      }
    }
  }
  return acc;
}

// ---- pooling ------------------------------------------------------------------------------------
// Windows start at (i·sh − pt, j·sw − pl); only in-bounds cells count (padding never wins a max
// and is excluded from an average). Images and channels are one axis of P = N·C planes.

function avgPool2dKernel(this: KernelThis, x: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const p = idiv(t, this.constants.OH * this.constants.OW);
  let acc = 0;
  let count = 0;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const iy = i * this.constants.sh - this.constants.pt + ky;
    if (iy >= 0 && iy < this.constants.H) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const ix = j * this.constants.sw - this.constants.pl + kx;
        if (ix >= 0 && ix < this.constants.W) {
          acc += x[(p * this.constants.H + iy) * this.constants.W + ix];
          count += 1;
        }
      }
    }
  }
  return acc / count;
}

/** x̄[p, iy, ix] = Σ over the windows (i, j) containing (iy, ix) of ȳ[p, i, j] / (in-bounds size of that window). */
function avgPool2dGradKernel(this: KernelThis, ct: Float32Array): number {
  const t = this.thread.x;
  const ix = coord(t, 1, this.constants.W);
  const iy = coord(t, this.constants.W, this.constants.H);
  const p = idiv(t, this.constants.H * this.constants.W);
  let acc = 0;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const ty = iy + this.constants.pt - ky;
    const i = idiv(ty, this.constants.sh);
    if (ty >= 0 && i * this.constants.sh == ty && i < this.constants.OH) {
      const y0 = i * this.constants.sh - this.constants.pt;
      const rows = Math.min(y0 + this.constants.kh, this.constants.H) - Math.max(y0, 0);
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const tx = ix + this.constants.pl - kx;
        const j = idiv(tx, this.constants.sw);
        if (tx >= 0 && j * this.constants.sw == tx && j < this.constants.OW) {
          const x0 = j * this.constants.sw - this.constants.pl;
          const cols = Math.min(x0 + this.constants.kw, this.constants.W) - Math.max(x0, 0);
          acc += ct[(p * this.constants.OH + i) * this.constants.OW + j] / (rows * cols);
        }
      }
    }
  }
  return acc;
}

function maxPool2dKernel(this: KernelThis, x: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const p = idiv(t, this.constants.OH * this.constants.OW);
  let best = 0;
  let found = 0;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const iy = i * this.constants.sh - this.constants.pt + ky;
    if (iy >= 0 && iy < this.constants.H) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const ix = j * this.constants.sw - this.constants.pl + kx;
        if (ix >= 0 && ix < this.constants.W) {
          const v = x[(p * this.constants.H + iy) * this.constants.W + ix];
          if (found == 0 || v > best) best = v;
          found = 1;
        }
      }
    }
  }
  return best;
}

/** g at the arg-max of x in each window (maxPool2dSelect: the adjoint of maxPool2dGrad in ȳ). */
function maxPool2dSelectKernel(this: KernelThis, x: Float32Array, g: Float32Array): number {
  const t = this.thread.x;
  const j = coord(t, 1, this.constants.OW);
  const i = coord(t, this.constants.OW, this.constants.OH);
  const p = idiv(t, this.constants.OH * this.constants.OW);
  let best = 0;
  let at = -1;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const iy = i * this.constants.sh - this.constants.pt + ky;
    if (iy >= 0 && iy < this.constants.H) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const ix = j * this.constants.sw - this.constants.pl + kx;
        if (ix >= 0 && ix < this.constants.W) {
          const k = (p * this.constants.H + iy) * this.constants.W + ix;
          const v = x[k];
          if (at < 0 || v > best) {
            best = v;
            at = k;
          }
        }
      }
    }
  }
  return g[at];
}

/** x̄[p, iy, ix] = Σ over the windows containing (iy, ix) whose arg-max is (iy, ix) of ȳ[p, i, j]. */
function maxPool2dGradKernel(this: KernelThis, x: Float32Array, ct: Float32Array): number {
  const t = this.thread.x;
  const ix = coord(t, 1, this.constants.W);
  const iy = coord(t, this.constants.W, this.constants.H);
  const p = idiv(t, this.constants.H * this.constants.W);
  let acc = 0;
  for (let ky = 0; ky < this.constants.kh; ky++) {
    const ty = iy + this.constants.pt - ky;
    const i = idiv(ty, this.constants.sh);
    if (ty >= 0 && i * this.constants.sh == ty && i < this.constants.OH) {
      for (let kx = 0; kx < this.constants.kw; kx++) {
        const tx = ix + this.constants.pl - kx;
        const j = idiv(tx, this.constants.sw);
        if (tx >= 0 && j * this.constants.sw == tx && j < this.constants.OW) {
          // The arg-max of window (i, j): the first maximum in row-major order (strict >).
          let best = 0;
          let at = -1;
          for (let wy = 0; wy < this.constants.kh; wy++) {
            const yy = i * this.constants.sh - this.constants.pt + wy;
            if (yy >= 0 && yy < this.constants.H) {
              for (let wx = 0; wx < this.constants.kw; wx++) {
                const xx = j * this.constants.sw - this.constants.pl + wx;
                if (xx >= 0 && xx < this.constants.W) {
                  const k = (p * this.constants.H + yy) * this.constants.W + xx;
                  const v = x[k];
                  if (at < 0 || v > best) {
                    best = v;
                    at = k;
                  }
                }
              }
            }
          }
          if (at == t) acc += ct[(p * this.constants.OH + i) * this.constants.OW + j];
        }
      }
    }
  }
  return acc;
}

// ---- dispatch -----------------------------------------------------------------------------------

export const convConstants = (x: readonly number[], w: readonly number[], out: readonly number[], a: Conv2dAttrs): Record<string, number> => {
  const [N, C, H, W] = x;
  const [O, Cg, kh, kw] = w;
  return {
    N, C, H, W, O, Cg, kh, kw, Og: O / a.groups,
    OH: out[2], OW: out[3],
    sh: a.stride[0], sw: a.stride[1], dh: a.dilation[0], dw: a.dilation[1], pt: a.padding[0], pl: a.padding[2],
  };
};

function runConv(rt: Rt, fn: Function, name: string, constants: Record<string, number>, args: GpuBuffer[], out: OutSpec): GpuBuffer {
  const n = sizeOf(out.shape);
  return rt().run(keyOf(name, constants), () => ({ fn, output: n, constants }), args, n);
}

const windowsOf = (a: StochasticConv2dAttrs): GpuBuffer => new GpuBuffer(Float32Array.from(a.windows), a.windows.length);

export const stochConstants = (x: readonly number[], w: readonly number[], a: StochasticConv2dAttrs): Record<string, number> => {
  const [N, C, H, W] = x;
  const [O, , kh, kw] = w;
  const [OH, OW] = a.outSize;
  const [sh, sw] = a.stride;
  // SH × SW: the window each output channel reads, (out − 1)·s + k.
  return { N, C, H, W, O, kh, kw, OH, OW, sh, sw, SH: (OH - 1) * sh + kh, SW: (OW - 1) * sw + kw, perImage: a.perImage ? 1 : 0 };
};

export const poolConstants = (x: readonly number[], pooled: readonly number[], a: Pool2dAttrs): Record<string, number> => ({
  H: x[2], W: x[3], OH: pooled[2], OW: pooled[3],
  kh: a.kernel[0], kw: a.kernel[1], sh: a.stride[0], sw: a.stride[1], pt: a.padding[0], pl: a.padding[2],
});

export function convGpuKernels(rt: Rt): Record<string, Kernel<GpuBuffer, any>> {
  return {
    conv2d: ([x, w]: readonly Arg[], a: Conv2dAttrs, out: OutSpec) => {
      const k = convConstants(x.shape, w.shape, out.shape, a);
      const args = [x.storage, w.storage];
      const pointwise = k.kh === 1 && k.kw === 1 && k.sh === 1 && k.sw === 1 && a.padding.every((p) => p === 0) && a.groups === 1;
      if (pointwise) return runConv(rt, pointwiseConv2dKernel, 'conv2d-pointwise', { N: k.N, C: k.C, O: k.O, P: k.H * k.W }, args, out);
      if (a.groups === k.C && k.Cg === 1) return runConv(rt, depthwiseConv2dKernel, 'conv2d-depthwise', k, args, out);
      return runConv(rt, conv2dKernel, 'conv2d', k, args, out);
    },
    conv2dGradInput: ([ct, w]: readonly Arg[], a: Conv2dGradInputAttrs, out: OutSpec) =>
      runConv(rt, conv2dGradInputKernel, 'conv2dGradInput', convConstants(a.inputShape, w.shape, ct.shape, a), [ct.storage, w.storage], out),
    conv2dGradFilter: ([x, ct]: readonly Arg[], a: Conv2dGradFilterAttrs, out: OutSpec) =>
      runConv(rt, conv2dGradFilterKernel, 'conv2dGradFilter', convConstants(x.shape, a.filterShape, ct.shape, a), [x.storage, ct.storage], out),
    stochasticConv2d: ([x, w]: readonly Arg[], a: StochasticConv2dAttrs, out: OutSpec) =>
      runConv(rt, stochasticConv2dKernel, 'stochasticConv2d', stochConstants(x.shape, w.shape, a), [x.storage, w.storage, windowsOf(a)], out),
    stochasticConv2dGradInput: ([ct, w]: readonly Arg[], a: StochasticConv2dAttrs & { inputShape: number[] }, out: OutSpec) =>
      runConv(rt, stochasticConv2dGradInputKernel, 'stochasticConv2dGradInput', stochConstants(a.inputShape, w.shape, a), [ct.storage, w.storage, windowsOf(a)], out),
    stochasticConv2dGradFilter: ([x, ct]: readonly Arg[], a: StochasticConv2dAttrs & { filterShape: number[] }, out: OutSpec) =>
      runConv(rt, stochasticConv2dGradFilterKernel, 'stochasticConv2dGradFilter', stochConstants(x.shape, a.filterShape, a), [x.storage, ct.storage, windowsOf(a)], out),
    avgPool2d: ([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      runConv(rt, avgPool2dKernel, 'avgPool2d', poolConstants(x.shape, out.shape, a), [x.storage], out),
    avgPool2dGrad: ([ct]: readonly Arg[], a: Pool2dGradAttrs, out: OutSpec) =>
      runConv(rt, avgPool2dGradKernel, 'avgPool2dGrad', poolConstants(a.inputShape, ct.shape, a), [ct.storage], out),
    maxPool2d: ([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      runConv(rt, maxPool2dKernel, 'maxPool2d', poolConstants(x.shape, out.shape, a), [x.storage], out),
    maxPool2dGrad: ([x, ct]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      runConv(rt, maxPool2dGradKernel, 'maxPool2dGrad', poolConstants(x.shape, ct.shape, a), [x.storage, ct.storage], out),
    maxPool2dSelect: ([x, g]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      runConv(rt, maxPool2dSelectKernel, 'maxPool2dSelect', poolConstants(x.shape, out.shape, a), [x.storage, g.storage], out),
  };
}
