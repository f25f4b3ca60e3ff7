/**
 * The convolution family in WGSL: the gpu.js kernels of gpu/conv.ts (same constants, same
 * gather-style gradients: each x̄ or w̄ element sums what it contributed to, so nothing scatters and
 * no atomics are needed), written with i32 indices. NCHW / OIHW; `win` holds the stochastic
 * windows' top-left corners (row, col), window of (n, o) = n·perImage·O + o.
 */
import type { Conv2dAttrs, Conv2dGradFilterAttrs, Conv2dGradInputAttrs, Pool2dAttrs, Pool2dGradAttrs, StochasticConv2dAttrs } from '../../autograd/conv.ts';
import type { Kernel, KernelArg, OutSpec } from '../backend.ts';
import { convConstants, poolConstants, stochConstants } from '../gpu/conv.ts';
import { sizeOf } from '../gpu/strides.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { compute } from './shader.ts';

type Arg = KernelArg<WebGpuBuffer>;
type Dev = () => WebGpuDevice;

/** Output coordinates (n, o, i, j) of flat index i over (N, O, OH, OW). */
const nchwOut = '  let j = i % OW;\n  let oy = coord(i, OW, OH);\n  let o = coord(i, OW * OH, O);\n  let n = i / (O * OH * OW);';
/** Input coordinates (n, c, iy, ix) over (N, C, H, W). */
const nchwIn = '  let ix = i % W;\n  let iy = coord(i, W, H);\n  let c = coord(i, W * H, C);\n  let n = i / (C * H * W);';

const bodies: Record<string, string> = {
  // y[n, o, i, j] = Σ_{c < Cg, ky, kx} x[n, g·Cg + c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] · w[o, c, ky, kx], g = ⌊o / Og⌋
  conv2d: `${nchwOut}
  let c0 = (o / Og) * Cg;
  var acc = 0.0;
  for (var c = 0; c < Cg; c++) {
    for (var ky = 0; ky < kh; ky++) {
      let iy = oy * sh - pt + ky * dh;
      if (iy < 0 || iy >= H) { continue; }
      for (var kx = 0; kx < kw; kx++) {
        let ix = j * sw - pl + kx * dw;
        if (ix >= 0 && ix < W) { acc += x[((n * C + c0 + c) * H + iy) * W + ix] * w[((o * Cg + c) * kh + ky) * kw + kx]; }
      }
    }
  }
  return acc;`,
  // Depthwise (Cg = 1): output channel o reads input channel ⌊o / Og⌋ only.
  depthwise: `${nchwOut}
  let plane = (n * C + o / Og) * H;
  var acc = 0.0;
  for (var ky = 0; ky < kh; ky++) {
    let iy = oy * sh - pt + ky * dh;
    if (iy < 0 || iy >= H) { continue; }
    for (var kx = 0; kx < kw; kx++) {
      let ix = j * sw - pl + kx * dw;
      if (ix >= 0 && ix < W) { acc += x[(plane + iy) * W + ix] * w[(o * kh + ky) * kw + kx]; }
    }
  }
  return acc;`,
  // 1×1, stride 1, no padding, groups 1: y[n, o, p] = Σ_c x[n, c, p] · w[o, c] over the P = H·W pixels.
  pointwise: `  let p = i % P;
  let o = coord(i, P, O);
  let n = i / (O * P);
  var acc = 0.0;
  for (var c = 0; c < C; c++) { acc += x[(n * C + c) * P + p] * w[o * C + c]; }
  return acc;`,
  // x̄[n, c, iy, ix] = Σ over outputs (o in c's group, i, j) and taps (ky, kx) with i·sh = iy + pt − ky·dh.
  conv2dGradInput: `${nchwIn}
  let g = c / Cg;
  let cc = c - g * Cg;
  var acc = 0.0;
  for (var og = 0; og < Og; og++) {
    let o = g * Og + og;
    for (var ky = 0; ky < kh; ky++) {
      let ty = iy + pt - ky * dh;
      if (ty < 0 || ty % sh != 0 || ty / sh >= OH) { continue; }
      for (var kx = 0; kx < kw; kx++) {
        let tx = ix + pl - kx * dw;
        if (tx >= 0 && tx % sw == 0 && tx / sw < OW) {
          acc += ct[((n * O + o) * OH + ty / sh) * OW + tx / sw] * w[((o * Cg + cc) * kh + ky) * kw + kx];
        }
      }
    }
  }
  return acc;`,
  // w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, g·Cg + c, i·sh − pt + ky·dh, j·sw − pl + kx·dw]
  conv2dGradFilter: `  let kx = i % kw;
  let ky = coord(i, kw, kh);
  let c = coord(i, kw * kh, Cg);
  let o = i / (Cg * kh * kw);
  let xc = (o / Og) * Cg + c;
  var acc = 0.0;
  for (var n = 0; n < N; n++) {
    for (var oy = 0; oy < OH; oy++) {
      let iy = oy * sh - pt + ky * dh;
      if (iy < 0 || iy >= H) { continue; }
      for (var j = 0; j < OW; j++) {
        let ix = j * sw - pl + kx * dw;
        if (ix >= 0 && ix < W) { acc += ct[((n * O + o) * OH + oy) * OW + j] * x[((n * C + xc) * H + iy) * W + ix]; }
      }
    }
  }
  return acc;`,
  // y[n, o, i, j] = Σ_{c, ky, kx} x[n, c, r + i·sh + ky, q + j·sw + kx] · w[o, c, ky, kx], (r, q) = window of (n, o).
  stochasticConv2d: `${nchwOut}
  let wi = n * perImage * O + o;
  let r = win[2 * wi] + oy * sh;
  let q = win[2 * wi + 1] + j * sw;
  var acc = 0.0;
  for (var c = 0; c < C; c++) {
    for (var ky = 0; ky < kh; ky++) {
      for (var kx = 0; kx < kw; kx++) { acc += x[((n * C + c) * H + r + ky) * W + q + kx] * w[((o * C + c) * kh + ky) * kw + kx]; }
    }
  }
  return acc;`,
  // x̄[n, c, iy, ix] = Σ_o Σ_{ky, kx} ȳ[n, o, i, j] · w[o, c, ky, kx] where r + i·sh + ky = iy, q + j·sw + kx = ix.
  stochasticConv2dGradInput: `${nchwIn}
  var acc = 0.0;
  for (var o = 0; o < O; o++) {
    let wi = n * perImage * O + o;
    let ry = iy - win[2 * wi];
    let rx = ix - win[2 * wi + 1];
    // Most of a large input lies outside a given channel's window: skip those before the taps.
    if (ry < 0 || ry >= SH || rx < 0 || rx >= SW) { continue; }
    for (var ky = 0; ky < kh; ky++) {
      let ty = ry - ky;
      if (ty < 0 || ty % sh != 0 || ty / sh >= OH) { continue; }
      for (var kx = 0; kx < kw; kx++) {
        let tx = rx - kx;
        if (tx >= 0 && tx % sw == 0 && tx / sw < OW) {
          acc += ct[((n * O + o) * OH + ty / sh) * OW + tx / sw] * w[((o * C + c) * kh + ky) * kw + kx];
        }
      }
    }
  }
  return acc;`,
  // w̄[o, c, ky, kx] = Σ_{n, i, j} ȳ[n, o, i, j] · x[n, c, r + i·sh + ky, q + j·sw + kx]
  stochasticConv2dGradFilter: `  let kx = i % kw;
  let ky = coord(i, kw, kh);
  let c = coord(i, kw * kh, C);
  let o = i / (C * kh * kw);
  var acc = 0.0;
  for (var n = 0; n < N; n++) {
    let wi = n * perImage * O + o;
    let r = win[2 * wi] + ky;
    let q = win[2 * wi + 1] + kx;
    for (var oy = 0; oy < OH; oy++) {
      for (var j = 0; j < OW; j++) { acc += ct[((n * O + o) * OH + oy) * OW + j] * x[((n * C + c) * H + r + oy * sh) * W + q + j * sw]; }
    }
  }
  return acc;`,
  // Pooling windows start at (i·sh − pt, j·sw − pl); only in-bounds cells count (padding never wins a
  // max and is excluded from an average). Images and channels are one axis of planes p.
  avgPool2d: `  let j = i % OW;
  let oy = coord(i, OW, OH);
  let p = i / (OH * OW);
  var acc = 0.0;
  var count = 0.0;
  for (var ky = 0; ky < kh; ky++) {
    let iy = oy * sh - pt + ky;
    if (iy < 0 || iy >= H) { continue; }
    for (var kx = 0; kx < kw; kx++) {
      let ix = j * sw - pl + kx;
      if (ix >= 0 && ix < W) { acc += x[(p * H + iy) * W + ix]; count += 1.0; }
    }
  }
  return acc / count;`,
  // x̄[p, iy, ix] = Σ over the windows (i, j) containing (iy, ix) of ȳ[p, i, j] / (in-bounds size of that window).
  avgPool2dGrad: `  let ix = i % W;
  let iy = coord(i, W, H);
  let p = i / (H * W);
  var acc = 0.0;
  for (var ky = 0; ky < kh; ky++) {
    let ty = iy + pt - ky;
    if (ty < 0 || ty % sh != 0 || ty / sh >= OH) { continue; }
    let oy = ty / sh;
    let y0 = oy * sh - pt;
    let rows = min(y0 + kh, H) - max(y0, 0);
    for (var kx = 0; kx < kw; kx++) {
      let tx = ix + pl - kx;
      if (tx >= 0 && tx % sw == 0 && tx / sw < OW) {
        let x0 = (tx / sw) * sw - pl;
        let cols = min(x0 + kw, W) - max(x0, 0);
        acc += ct[(p * OH + oy) * OW + tx / sw] / f32(rows * cols);
      }
    }
  }
  return acc;`,
  maxPool2d: `  let j = i % OW;
  let oy = coord(i, OW, OH);
  let p = i / (OH * OW);
  let k = argmax(p, oy, j);
  if (k < 0) { return 0.0; }
  return x[k];`,
  // g at the arg-max of x in each window (the adjoint of maxPool2dGrad in ȳ).
  maxPool2dSelect: `  let j = i % OW;
  let oy = coord(i, OW, OH);
  let p = i / (OH * OW);
  let k = argmax(p, oy, j);
  if (k < 0) { return 0.0; }
  return g[k];`,
  // x̄[p, iy, ix] = Σ over the windows containing (iy, ix) whose arg-max is (iy, ix) of ȳ[p, i, j].
  maxPool2dGrad: `  let ix = i % W;
  let iy = coord(i, W, H);
  let p = i / (H * W);
  var acc = 0.0;
  for (var ky = 0; ky < kh; ky++) {
    let ty = iy + pt - ky;
    if (ty < 0 || ty % sh != 0 || ty / sh >= OH) { continue; }
    for (var kx = 0; kx < kw; kx++) {
      let tx = ix + pl - kx;
      if (tx >= 0 && tx % sw == 0 && tx / sw < OW && argmax(p, ty / sh, tx / sw) == i) { acc += ct[(p * OH + ty / sh) * OW + tx / sw]; }
    }
  }
  return acc;`,
};

/** The flat index of the first maximum (row-major, strict >) of x in pooling window (oy, j) of plane p. */
const argmaxFn = `fn argmax(p: i32, oy: i32, j: i32) -> i32 {
  var best = 0.0;
  var at = -1;
  for (var ky = 0; ky < kh; ky++) {
    let iy = oy * sh - pt + ky;
    if (iy < 0 || iy >= H) { continue; }
    for (var kx = 0; kx < kw; kx++) {
      let ix = j * sw - pl + kx;
      if (ix < 0 || ix >= W) { continue; }
      let k = (p * H + iy) * W + ix;
      let v = x[k];
      if (at < 0 || v > best) { best = v; at = k; }
    }
  }
  return at;
}`;

function run(dev: Dev, op: string, body: string, ints: Record<string, number>, inputs: readonly (readonly [string, WebGpuBuffer, 'i32'?])[], out: OutSpec, helpers?: string): WebGpuBuffer {
  return compute(dev(), { op, size: sizeOf(out.shape), ints, inputs, body, helpers });
}

/** The windows as an i32 buffer, freed once the kernel that reads it is queued. */
function withWindows(dev: Dev, a: StochasticConv2dAttrs, f: (win: WebGpuBuffer) => WebGpuBuffer): WebGpuBuffer {
  const win = dev().upload(Int32Array.from(a.windows), 'stochastic windows');
  const y = f(win);
  dev().dispose(win);
  return y;
}

export function convWebGpuKernels(dev: Dev): Record<string, Kernel<WebGpuBuffer, any>> {
  return {
    conv2d: ([x, w]: readonly Arg[], a: Conv2dAttrs, out: OutSpec) => {
      const k = convConstants(x.shape, w.shape, out.shape, a);
      const args = [['x', x.storage], ['w', w.storage]] as const;
      const pointwise = k.kh === 1 && k.kw === 1 && k.sh === 1 && k.sw === 1 && a.padding.every((p) => p === 0) && a.groups === 1;
      if (pointwise) return run(dev, 'conv2d', bodies.pointwise, { C: k.C, O: k.O, P: k.H * k.W }, args, out);
      if (a.groups === k.C && k.Cg === 1) return run(dev, 'conv2d', bodies.depthwise, k, args, out);
      return run(dev, 'conv2d', bodies.conv2d, k, args, out);
    },
    conv2dGradInput: ([ct, w]: readonly Arg[], a: Conv2dGradInputAttrs, out: OutSpec) =>
      run(dev, 'conv2dGradInput', bodies.conv2dGradInput, convConstants(a.inputShape, w.shape, ct.shape, a), [['ct', ct.storage], ['w', w.storage]], out),
    conv2dGradFilter: ([x, ct]: readonly Arg[], a: Conv2dGradFilterAttrs, out: OutSpec) =>
      run(dev, 'conv2dGradFilter', bodies.conv2dGradFilter, convConstants(x.shape, a.filterShape, ct.shape, a), [['x', x.storage], ['ct', ct.storage]], out),
    stochasticConv2d: ([x, w]: readonly Arg[], a: StochasticConv2dAttrs, out: OutSpec) =>
      withWindows(dev, a, (win) => run(dev, 'stochasticConv2d', bodies.stochasticConv2d, stochConstants(x.shape, w.shape, a), [['x', x.storage], ['w', w.storage], ['win', win, 'i32']], out)),
    stochasticConv2dGradInput: ([ct, w]: readonly Arg[], a: StochasticConv2dAttrs & { inputShape: number[] }, out: OutSpec) =>
      withWindows(dev, a, (win) => run(dev, 'stochasticConv2dGradInput', bodies.stochasticConv2dGradInput, stochConstants(a.inputShape, w.shape, a), [['ct', ct.storage], ['w', w.storage], ['win', win, 'i32']], out)),
    stochasticConv2dGradFilter: ([x, ct]: readonly Arg[], a: StochasticConv2dAttrs & { filterShape: number[] }, out: OutSpec) =>
      withWindows(dev, a, (win) => run(dev, 'stochasticConv2dGradFilter', bodies.stochasticConv2dGradFilter, stochConstants(x.shape, a.filterShape, a), [['x', x.storage], ['ct', ct.storage], ['win', win, 'i32']], out)),
    avgPool2d: ([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      run(dev, 'avgPool2d', bodies.avgPool2d, poolConstants(x.shape, out.shape, a), [['x', x.storage]], out),
    avgPool2dGrad: ([ct]: readonly Arg[], a: Pool2dGradAttrs, out: OutSpec) =>
      run(dev, 'avgPool2dGrad', bodies.avgPool2dGrad, poolConstants(a.inputShape, ct.shape, a), [['ct', ct.storage]], out),
    maxPool2d: ([x]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      run(dev, 'maxPool2d', bodies.maxPool2d, poolConstants(x.shape, out.shape, a), [['x', x.storage]], out, argmaxFn),
    maxPool2dGrad: ([x, ct]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      run(dev, 'maxPool2dGrad', bodies.maxPool2dGrad, poolConstants(x.shape, ct.shape, a), [['x', x.storage], ['ct', ct.storage]], out, argmaxFn),
    maxPool2dSelect: ([x, g]: readonly Arg[], a: Pool2dAttrs, out: OutSpec) =>
      run(dev, 'maxPool2dSelect', bodies.maxPool2dSelect, poolConstants(x.shape, out.shape, a), [['x', x.storage], ['g', g.storage]], out, argmaxFn),
  };
}
