/**
 * The wasm SIMD depthwise and stochastic conv kernels (src/backends/cpu/fast/dwconv.ts, stochconv.ts) and the
 * batched 1×1 convs over small planes (pointwise.ts) against the
 * reference loops of conv_ref.ts, computed in float64 on the same float32 values: random shapes, column strides
 * 1–2 (the kernels' range) and row strides 1–3, kernels 1–5, dilations, paddings (TF 'same' asymmetric included),
 * channel multipliers, per-batch and per-image windows, bands of 1–7 rows; forward and both gradients.
 */
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../../../src/index.ts';
import type { Conv2dAttrs, StochasticConv2dAttrs } from '../../../../src/autograd/conv.ts';
import type { KernelArg, TypedArray } from '../../../../src/backends/backend.ts';
import * as R from '../../../../src/backends/cpu/conv_ref.ts';
import { convSimdAvailable } from '../../../../src/backends/cpu/fast/convsimd.ts';
import { convKernels } from '../../../../src/backends/cpu/conv.ts';
import { im2col } from '../../../../src/backends/cpu/conv_gemm.ts';
import { convGeometry } from '../../../../src/backends/cpu/conv_geom.ts';
import { OWNED_MIN_FLOATS, wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { im2colPtr } from '../../../../src/backends/cpu/fast/im2col.ts';
import { sgemm } from '../../../../src/backends/cpu/fast/sgemm.ts';
import { type DepthwiseGeom, depthwiseForwardF32, depthwiseGradFilterF32, depthwiseGradInputF32, depthwiseGradInputUsesLanes, depthwiseLanes, depthwiseUsesLanes, gradInputAsForward, laneGeom as laneGeomOf } from '../../../../src/backends/cpu/fast/dwconv.ts';
import { type LaneGeom, columnTaps, rowRuns, rowShift } from '../../../../src/backends/cpu/fast/dwlanes.ts';
import { pointwiseBatchedOk, pointwiseForwardF32, pointwiseGradFilterF32, pointwiseGradInputF32 } from '../../../../src/backends/cpu/fast/pointwise.ts';
import { type StochasticGeom, setStochasticBandRows, stochasticForwardF32, stochasticGradFilterF32, stochasticGradInputF32 } from '../../../../src/backends/cpu/fast/stochconv.ts';
import { randF32 } from '../../../helpers/random.ts';

const rand = (seed: number, n: number): Float32Array => randF32(seed, n);
const f64 = (a: Float32Array): Float64Array => Float64Array.from(a);
const abs64 = (a: Float32Array): Float64Array => Float64Array.from(a, Math.abs);
const arg = (storage: TypedArray, shape: number[]): KernelArg<TypedArray> => ({ storage, shape, dtype: 'float64' });
const out = (shape: number[]) => ({ shape, dtype: 'float64' as const });

/** |got − want| ≤ tol·(1 + scale), scale = the largest |want| (sums of many float32 products). */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tol = 2e-5): void {
  expect(got.length, what).toBe(want.length);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    if (!(e <= worst)) [worst, at] = [e, i];
  }
  expect(worst, `${what}: worst error at ${at}: got ${got[at]}, want ${want[at]} (scale ${scale})`).toBeLessThanOrEqual(tol * (1 + scale));
}

/**
 * |got − want| ≤ tol·(1 + bound) per element, bound ≥ the sum of the magnitudes of the element's terms: a sum whose
 * terms cancel is only as exact as the largest of them allows, whatever its own size.
 */
function expectWithinTerms(got: ArrayLike<number>, want: ArrayLike<number>, bound: ArrayLike<number>, what: string, tol: number): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const r = Math.abs(got[i] - want[i]) / (1 + bound[i]);
    if (!(r <= worst)) [worst, at] = [r, i];
  }
  expect(worst, `${what}: worst error at ${at}: got ${got[at]}, want ${want[at]} (terms' magnitudes ${bound[at]})`).toBeLessThanOrEqual(tol);
}

const sameSplit = (n: number, k: number, s: number, d: number): [number, number] => {
  const total = Math.max((Math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
};

describe.skipIf(!convSimdAvailable())('wasm SIMD depthwise conv', () => {
  it('matches the reference: forward, input and filter gradients', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 5 }),
          // images stacked per kernel call (undefined: the default, as many as fit)
          planes: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
          c: fc.integer({ min: 1, max: 3 }),
          m: fc.integer({ min: 1, max: 2 }),
          h: fc.integer({ min: 1, max: 19 }),
          w: fc.integer({ min: 1, max: 23 }),
          k: fc.constantFrom(1, 3, 5),
          kw2: fc.option(fc.constantFrom(1, 3, 5), { nil: undefined }),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 2 }),
          dh: fc.constantFrom(1, 1, 2),
          dw: fc.constantFrom(1, 1, 2),
          pad: fc.oneof(fc.constant<'same'>('same'), fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3))),
          seed: fc.nat(10000),
        }),
        (p) => {
          const kh = p.k, kw = p.kw2 ?? p.k;
          const padding: [number, number, number, number] = p.pad === 'same'
            ? [...sameSplit(p.h, kh, p.sh, p.dh), ...sameSplit(p.w, kw, p.sw, p.dw)]
            : p.pad;
          const OH = Math.floor((p.h + padding[0] + padding[1] - p.dh * (kh - 1) - 1) / p.sh) + 1;
          const OW = Math.floor((p.w + padding[2] + padding[3] - p.dw * (kw - 1) - 1) / p.sw) + 1;
          fc.pre(OH >= 1 && OW >= 1);
          const O = p.c * p.m;
          const d: DepthwiseGeom = { N: p.n, C: p.c, H: p.h, W: p.w, O, OH, OW, kh, kw, stride: [p.sh, p.sw], dilation: [p.dh, p.dw], padding };
          const a: Conv2dAttrs = { stride: [p.sh, p.sw], padding, dilation: [p.dh, p.dw], groups: p.c };
          const xs = [p.n, p.c, p.h, p.w], ws = [O, 1, kh, kw], ys = [p.n, O, OH, OW];
          const x = rand(p.seed, p.n * p.c * p.h * p.w), w = rand(p.seed + 1, O * kh * kw), g = rand(p.seed + 2, p.n * O * OH * OW);
          const planes = p.planes === undefined ? undefined : Math.min(p.planes, p.n);
          expectClose(depthwiseForwardF32(x, w, d, undefined, planes), R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), 'forward');
          expectClose(depthwiseGradInputF32(g, w, d, undefined, planes), R.conv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), 'input gradient');
          expectClose(depthwiseGradFilterF32(x, g, d, undefined, planes), R.conv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient');
        },
      ),
      { numRuns: 150 },
    );
  });
});

/** act(y·a + b) in float64, a and b per channel of NCHW planes of `P` floats (SiLU: z·σ(z)). */
function affineRef(y: ArrayLike<number>, a: Float32Array, b: Float32Array, P: number, silu: boolean): Float64Array {
  return Float64Array.from(y, (v, i) => {
    const c = Math.floor(i / P) % a.length, z = v * a[c] + b[c];
    return silu ? z / (1 + Math.exp(-z)) : z;
  });
}

/** A depthwise case for the lane kernels: channels (× multiplier m), plane, kernel (uneven widths too), strides, dilation, padding. */
const laneCase = (maxC: number) =>
  fc.record({
    n: fc.integer({ min: 1, max: 3 }),
    c: fc.integer({ min: 1, max: maxC }),
    m: fc.constantFrom(1, 1, 2),
    h: fc.integer({ min: 1, max: 13 }),
    // wide enough for interior column groups run as a loop (two or more, stride 2 included)
    w: fc.integer({ min: 1, max: 27 }),
    k: fc.constantFrom(3, 5),
    kw2: fc.option(fc.constantFrom(1, 3, 5), { nil: undefined }),
    sh: fc.integer({ min: 1, max: 2 }),
    sw: fc.integer({ min: 1, max: 2 }),
    dil: fc.constantFrom(1, 1, 2),
    pad: fc.oneof(fc.constant<'same'>('same'), fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3))),
    seed: fc.nat(10000),
  });
type LaneCase = typeof laneCase extends (n: number) => fc.Arbitrary<infer T> ? T : never;

/** The case's geometry and conv attributes (fc.pre rejects an empty output). */
function laneGeom(p: LaneCase): { d: DepthwiseGeom; a: Conv2dAttrs } {
  const kh = p.k, kw = p.kw2 ?? p.k;
  const padding: [number, number, number, number] = p.pad === 'same' ? [...sameSplit(p.h, kh, p.sh, p.dil), ...sameSplit(p.w, kw, p.sw, p.dil)] : p.pad;
  const OH = Math.floor((p.h + padding[0] + padding[1] - p.dil * (kh - 1) - 1) / p.sh) + 1;
  const OW = Math.floor((p.w + padding[2] + padding[3] - p.dil * (kw - 1) - 1) / p.sw) + 1;
  fc.pre(OH >= 1 && OW >= 1);
  const stride: [number, number] = [p.sh, p.sw], dilation: [number, number] = [p.dil, p.dil];
  return {
    d: { N: p.n, C: p.c, H: p.h, W: p.w, O: p.c * p.m, OH, OW, kh, kw, stride, dilation, padding },
    a: { stride, padding, dilation, groups: p.c },
  };
}

/**
 * Whether every address the lane kernels form stays inside the input plane: each output row's base row (rowShift)
 * and each tap's pixel from it. A base under the plane can wrap below address 0 where the scratch lies low.
 */
function laneAddressesInPlane(g: LaneGeom): boolean {
  return rowRuns(g).every(({ r0, r1, kys }) =>
    Array.from({ length: r1 - r0 }, (_, i) => r0 + i).every((oi) => {
      const row = oi * g.sh + rowShift(g, kys);
      return row >= 0 && Array.from({ length: g.OW }, (_, oj) => oj).every((oj) => columnTaps(g, oj, kys).every((t) => row * g.W + t.off >= 0 && row * g.W + t.off < g.H * g.W));
    }),
  );
}

describe.skipIf(!convSimdAvailable())('wasm SIMD depthwise conv, four channels per vector (lane kernels)', () => {
  it('matches the reference with and without the affine / SiLU epilogue, for any channel count, and writes nothing else', () => {
    const h = wasmHeap()!;
    fc.assert(
      fc.property(
        laneCase(11),
        fc.constantFrom('none', 'affine', 'silu'),
        (p, epiKind) => {
          const { d, a } = laneGeom(p);
          const { O, OH, OW, kh, kw } = d, P = OH * OW, ny = p.n * O * P;
          expect(depthwiseUsesLanes(d)).toBe(true);
          expect(laneAddressesInPlane(laneGeomOf(d)), 'addresses inside the plane').toBe(true);
          const xs = [p.n, p.c, p.h, p.w], ws = [O, 1, kh, kw];
          const x = rand(p.seed, p.n * p.c * p.h * p.w), w = rand(p.seed + 1, O * kh * kw);
          const sc = Float32Array.from(rand(p.seed + 2, O), (v) => 1 + v / 2), sf = rand(p.seed + 3, O);
          // The output between guard bands of NaN: the spare lanes of the last group of channels must not reach them.
          const G = 64;
          const px = h.alloc(x.length * 4), pw = h.alloc(w.length * 4), ps = h.alloc(O * 4), pb = h.alloc(O * 4), py = h.alloc((ny + 2 * G) * 4);
          try {
            h.view(px, x.length).set(x);
            h.view(pw, w.length).set(w);
            h.view(ps, O).set(sc);
            h.view(pb, O).set(sf);
            h.view(py, ny + 2 * G).fill(Number.NaN);
            const epi = epiKind === 'none' ? undefined : { scale: ps, shift: pb, act: epiKind === 'silu' ? ('silu' as const) : undefined };
            depthwiseLanes(px, pw, py + 4 * G, d, epi);
            const all = h.view(py, ny + 2 * G);
            expect(all.subarray(0, G).every(Number.isNaN) && all.subarray(G + ny).every(Number.isNaN), 'guard bands').toBe(true);
            const conv = R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out([p.n, O, OH, OW]));
            const want = epiKind === 'none' ? conv : affineRef(conv, sc, sf, P, epiKind === 'silu');
            // Sums of ≤ 25 products of size ≤ 1, scaled by ≤ 1.5: measured worst 2.3e-7 relative (400 runs).
            expectClose(all.slice(G, G + ny), want, epiKind, 2e-6);
          } finally {
            for (const q of [px, pw, ps, pb, py]) h.release(q);
          }
        },
      ),
      { numRuns: 120 },
    );
  });

  it('give the input gradient at stride 1 (ȳ convolved with the kernel turned by 180°), paddings past the kernel included', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 9 }),
          h: fc.integer({ min: 1, max: 13 }),
          w: fc.integer({ min: 1, max: 23 }),
          k: fc.constantFrom(3, 5),
          kw2: fc.option(fc.constantFrom(1, 3, 5), { nil: undefined }),
          dil: fc.constantFrom(1, 1, 2),
          pad: fc.oneof(fc.constant<'same'>('same'), fc.tuple(fc.nat(5), fc.nat(5), fc.nat(5), fc.nat(5))),
          seed: fc.nat(10000),
        }),
        (p) => {
          const kh = p.k, kw = p.kw2 ?? p.k;
          const padding: [number, number, number, number] = p.pad === 'same' ? [...sameSplit(p.h, kh, 1, p.dil), ...sameSplit(p.w, kw, 1, p.dil)] : p.pad;
          const OH = p.h + padding[0] + padding[1] - p.dil * (kh - 1), OW = p.w + padding[2] + padding[3] - p.dil * (kw - 1);
          fc.pre(OH >= 1 && OW >= 1);
          const d: DepthwiseGeom = { N: p.n, C: p.c, H: p.h, W: p.w, O: p.c, OH, OW, kh, kw, stride: [1, 1], dilation: [p.dil, p.dil], padding };
          expect(depthwiseGradInputUsesLanes(d)).toBe(true);
          expect(laneAddressesInPlane(laneGeomOf(gradInputAsForward(d)!)), 'addresses inside the plane').toBe(true);
          const a: Conv2dAttrs = { stride: [1, 1], padding, dilation: [p.dil, p.dil], groups: p.c };
          const xs = [p.n, p.c, p.h, p.w], ws = [p.c, 1, kh, kw], ys = [p.n, p.c, OH, OW];
          const w = rand(p.seed + 1, p.c * kh * kw), g = rand(p.seed + 2, p.n * p.c * OH * OW);
          // Sums of ≤ 25 products of size ≤ 1: the forward's error, measured worst 2.3e-7 relative.
          expectClose(depthwiseGradInputF32(g, w, d), R.conv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), 'input gradient', 2e-6);
        },
      ),
      // The first: (k − 1)·d = 8 padding rows above the turned kernel; it trapped where the scratch lay low.
      { numRuns: 80, examples: [[{ n: 1, c: 1, h: 2, w: 21, k: 5, kw2: 1, dil: 2, pad: [2, 5, 2, 4], seed: 0 }]] },
    );
    // Stride 2 and channel multipliers keep the gather kernels.
    const base: DepthwiseGeom = { N: 2, C: 4, H: 8, W: 8, O: 4, OH: 8, OW: 8, kh: 3, kw: 3, stride: [1, 1], dilation: [1, 1], padding: [1, 1, 1, 1] };
    expect(depthwiseGradInputUsesLanes({ ...base, stride: [2, 2], OH: 4, OW: 4 })).toBe(false);
    expect(depthwiseGradInputUsesLanes({ ...base, O: 8 })).toBe(false);
  });

  it('give the filter gradient (sums over every image and pixel, lanes = channels), any channel count, multiplier and stride', () => {
    fc.assert(
      fc.property(
        laneCase(9),
        (p) => {
          const { d, a } = laneGeom(p);
          const { O, OH, OW, kh, kw } = d;
          expect(depthwiseUsesLanes(d)).toBe(true);
          const xs = [p.n, p.c, p.h, p.w], ws = [O, 1, kh, kw], ys = [p.n, O, OH, OW];
          const x = rand(p.seed, p.n * p.c * p.h * p.w), g = rand(p.seed + 2, p.n * O * OH * OW);
          // Sums of up to 3·13·27 products of size ≤ 1 in float32: measured worst 9.9e-7 relative (300 runs).
          expectClose(depthwiseGradFilterF32(x, g, d), R.conv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient', 1e-5);
        },
      ),
      { numRuns: 80 },
    );
  });

  it("takes every depthwise layer of EfficientNet-B0 (4×4 to 112×112) and leaves larger planes or code to the row kernels", () => {
    const geom = (H: number, k: number, s: number): DepthwiseGeom => {
      const p = (k - 1) >> 1, OH = Math.floor((H + 2 * p - k) / s) + 1;
      return { N: 8, C: 96, H, W: H, O: 96, OH, OW: OH, kh: k, kw: k, stride: [s, s], dilation: [1, 1], padding: [p, p, p, p] };
    };
    const b0 = [[4, 5, 1], [4, 3, 1], [7, 5, 1], [7, 3, 1], [8, 5, 1], [8, 3, 1], [8, 5, 2], [14, 5, 1], [14, 5, 2], [14, 3, 1], [16, 5, 1], [16, 3, 2], [28, 5, 1], [28, 3, 2], [32, 3, 1], [32, 5, 2], [56, 3, 1], [56, 5, 2], [64, 3, 1], [64, 3, 2], [112, 3, 1], [112, 3, 2]];
    for (const [H, k, s] of b0) expect(depthwiseUsesLanes(geom(H, k, s)), `${H}×${H} k${k}/${s}`).toBe(true);
    // A plane beyond 128×128; code beyond the size limit (a 9×9 kernel).
    for (const [H, k, s] of [[150, 3, 2], [32, 9, 1]]) expect(depthwiseUsesLanes(geom(H, k, s)), `${H}×${H} k${k}/${s}`).toBe(false);
  });
});

describe.skipIf(!convSimdAvailable())('wasm SIMD stochastic conv', () => {
  it('matches the reference: forward, input and filter gradients, per batch and per image', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 4 }),
          o: fc.integer({ min: 1, max: 4 }),
          k: fc.constantFrom(1, 3, 5),
          kw2: fc.option(fc.constantFrom(1, 2, 3, 5), { nil: undefined }),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 2 }),
          oh: fc.integer({ min: 1, max: 9 }),
          ow: fc.integer({ min: 1, max: 13 }),
          extraH: fc.nat(9),
          extraW: fc.nat(9),
          perImage: fc.boolean(),
          // input rows per band (undefined: the default, one band for these sizes)
          band: fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined }),
          seed: fc.nat(10000),
        }),
        (p) => {
          setStochasticBandRows(p.band);
          const kh = p.k, kw = p.kw2 ?? p.k;
          const Hs = (p.oh - 1) * p.sh + kh, Ws = (p.ow - 1) * p.sw + kw;
          const H = Hs + p.extraH, W = Ws + p.extraW;
          const nw = p.perImage ? p.n * p.o : p.o;
          const rw = rand(p.seed + 3, 2 * nw);
          const windows = Int32Array.from(rw, (v, i) => Math.floor(((v + 1) / 2) * ((i % 2 ? p.extraW : p.extraH) + 1)));
          const s: StochasticGeom = { N: p.n, C: p.c, H, W, O: p.o, kh, kw, stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage };
          const a: StochasticConv2dAttrs = { stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage };
          const xs = [p.n, p.c, H, W], ws = [p.o, p.c, kh, kw], ys = [p.n, p.o, p.oh, p.ow];
          const x = rand(p.seed, p.n * p.c * H * W), w = rand(p.seed + 1, p.o * p.c * kh * kw), g = rand(p.seed + 2, p.n * p.o * p.oh * p.ow);
          try {
            expectClose(stochasticForwardF32(x, w, s), R.stochasticConv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), 'forward');
            expectClose(stochasticGradInputF32(g, w, s), R.stochasticConv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), 'input gradient');
            expectClose(stochasticGradFilterF32(x, g, s), R.stochasticConv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient');
          } finally {
            setStochasticBandRows(undefined);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('reads a uint8 image through its decode: forward and filter gradient against the reference, per batch and per image', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 4 }),
          o: fc.integer({ min: 1, max: 4 }),
          k: fc.constantFrom(1, 2, 3, 5),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 2 }),
          oh: fc.integer({ min: 1, max: 9 }),
          ow: fc.integer({ min: 1, max: 19 }),
          extraH: fc.nat(9),
          extraW: fc.nat(9),
          perImage: fc.boolean(),
          identity: fc.boolean(),
          band: fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined }),
          seed: fc.nat(10000),
        }),
        (p) => {
          setStochasticBandRows(p.band);
          const kh = p.k, kw = p.k;
          const H = (p.oh - 1) * p.sh + kh + p.extraH, W = (p.ow - 1) * p.sw + kw + p.extraW;
          const nw = p.perImage ? p.n * p.o : p.o;
          const rw = rand(p.seed + 3, 2 * nw);
          const windows = Int32Array.from(rw, (v, i) => Math.floor(((v + 1) / 2) * ((i % 2 ? p.extraW : p.extraH) + 1)));
          const s: StochasticGeom = { N: p.n, C: p.c, H, W, O: p.o, kh, kw, stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage };
          const r = rand(p.seed + 4, 2 * p.c);
          const decode = p.identity
            ? { scale: new Array<number>(p.c).fill(1), shift: new Array<number>(p.c).fill(0) }
            : { scale: Array.from(r.subarray(0, p.c), (v) => 0.01 + 0.02 * Math.abs(v)), shift: Array.from(r.subarray(p.c), (v) => 3 * v) };
          const a: StochasticConv2dAttrs = { stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage, decode };
          const xs = [p.n, p.c, H, W], ws = [p.o, p.c, kh, kw], ys = [p.n, p.o, p.oh, p.ow];
          const x = Uint8Array.from(rand(p.seed, p.n * p.c * H * W), (v) => Math.floor((v + 1) * 127.99));
          const w = rand(p.seed + 1, p.o * p.c * kh * kw), g = rand(p.seed + 2, p.n * p.o * p.oh * p.ow);
          const xArg = { storage: x, shape: xs, dtype: 'uint8' as const };
          // Sums of float32 products of values up to 255 (identity) or ~6 (decoded), which may cancel: each output's
          // error against the sum of its terms' magnitudes, Σ|w|·(scale·x + |shift|) (and the same with |g|). Worst
          // seen in 1200 cases, fused or not: 2.6e-7 of it (forward: its weights times scales are float32 too), 1.3e-7.
          const absA: StochasticConv2dAttrs = { ...a, decode: { scale: decode.scale, shift: decode.shift.map(Math.abs) } };
          try {
            const y = stochasticForwardF32(x, w, s, undefined, decode);
            expectWithinTerms(y, R.stochasticConv2dRefImpl([xArg, arg(f64(w), ws)], a, out(ys)), R.stochasticConv2dRefImpl([xArg, arg(abs64(w), ws)], absA, out(ys)), 'forward', 2e-6);
            const dw = stochasticGradFilterF32(x, g, s, undefined, decode);
            const gw = (h: Float64Array, at: StochasticConv2dAttrs) => R.stochasticConv2dGradFilterRefImpl([xArg, arg(h, ys)], { ...at, filterShape: ws }, out(ws));
            expectWithinTerms(dw, gw(f64(g), a), gw(abs64(g), absA), 'filter gradient', 1e-6);
          } finally {
            setStochasticBandRows(undefined);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  /** A stochastic conv over windows that fit with up to 12 spare rows / columns, each coordinate pinned per `place`. */
  const windowCase = fc.record({
    n: fc.integer({ min: 1, max: 3 }),
    c: fc.integer({ min: 1, max: 4 }),
    o: fc.integer({ min: 1, max: 3 }),
    k: fc.constantFrom(1, 2, 3, 5),
    sh: fc.integer({ min: 1, max: 2 }),
    sw: fc.integer({ min: 1, max: 2 }),
    oh: fc.integer({ min: 1, max: 23 }),
    ow: fc.integer({ min: 1, max: 29 }),
    extraH: fc.nat(12),
    extraW: fc.nat(12),
    perImage: fc.boolean(),
    // per window coordinate: 0 = top / left border, 1 = bottom / right border, 2 = anywhere
    place: fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 36, maxLength: 36 }),
    seed: fc.nat(10000),
  });
  /** The geometry, the windows (from `place` and the seed) and the operand shapes of a `windowCase`. */
  const windowProblem = (p: typeof windowCase extends fc.Arbitrary<infer T> ? T : never) => {
    const kh = p.k, kw = p.k;
    const Hs = (p.oh - 1) * p.sh + kh, Ws = (p.ow - 1) * p.sw + kw;
    const H = Hs + p.extraH, W = Ws + p.extraW;
    const nw = p.perImage ? p.n * p.o : p.o;
    const rw = rand(p.seed + 3, 2 * nw);
    const windows = Int32Array.from(rw, (v, i) => {
      const room = i % 2 ? p.extraW : p.extraH;
      return [0, room, Math.floor(((v + 1) / 2) * (room + 1))][p.place[i]];
    });
    const s: StochasticGeom = { N: p.n, C: p.c, H, W, O: p.o, kh, kw, stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage };
    const a: StochasticConv2dAttrs = { stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows, perImage: p.perImage };
    const xs = [p.n, p.c, H, W], ws = [p.o, p.c, kh, kw], ys = [p.n, p.o, p.oh, p.ow];
    return { kh, kw, Hs, Ws, H, W, windows, s, a, xs, ws, ys };
  };

  // The forward and filter-gradient kernels (stochsimd.ts) block rows in pairs and columns in fours and read past
  // a window's right edge: planes of several blocks and odd row counts, windows pinned to the image's borders, and
  // NaN everywhere no window covers (a lane past the row that reached a sum would show). Measured worst errors over
  // 300 such cases: 3.9e-7 (forward) and 1.3e-6 (filter gradient) of 1 + the largest |value|.
  it('forward and filter gradient over larger planes: windows on the borders, NaN outside every window', () => {
    fc.assert(
      fc.property(
        windowCase,
        (p) => {
          const { kh, kw, Hs, Ws, H, W, windows, s, a, xs, ws, ys } = windowProblem(p);
          const x = rand(p.seed, p.n * p.c * H * W), w = rand(p.seed + 1, p.o * p.c * kh * kw), g = rand(p.seed + 2, p.n * p.o * p.oh * p.ow);
          const covered = new Uint8Array(p.n * H * W);
          for (let n = 0; n < p.n; n++) {
            for (let o = 0; o < p.o; o++) {
              const wi = p.perImage ? n * p.o + o : o;
              for (let r = 0; r < Hs; r++) covered.fill(1, (n * H + windows[2 * wi] + r) * W + windows[2 * wi + 1], (n * H + windows[2 * wi] + r) * W + windows[2 * wi + 1] + Ws);
            }
          }
          for (let i = 0; i < x.length; i++) if (!covered[Math.floor(i / (p.c * H * W)) * H * W + (i % (H * W))]) x[i] = NaN;
          expectClose(stochasticForwardF32(x, w, s), R.stochasticConv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), 'forward', 4e-6);
          expectClose(stochasticGradFilterF32(x, g, s), R.stochasticConv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient', 1.5e-5);
        },
      ),
      { numRuns: 150 },
    );
  });

  // The input gradient adds into x̄ in place, each thread into its own images (or runs of bands): every value of
  // the output is written (it starts as NaN here), and nothing outside it, which guards of signalling-NaN bits
  // around it check bit for bit (an add of 0 written back would quiet them). Bands of 1–7 rows or the default,
  // windows pinned to the borders (the right one ends the gather's ragged block at the image's edge). Measured
  // worst error over 300 such cases: 1.5e-7 of 1 + the largest |value|.
  it('input gradient in place over larger planes: every value written, nothing outside x̄', () => {
    const h = wasmHeap()!;
    const GUARD = 64, SNAN = 0x7f800001;
    fc.assert(
      fc.property(
        fc.tuple(windowCase, fc.option(fc.integer({ min: 1, max: 7 }), { nil: undefined })),
        ([p, band]) => {
          const { kh, kw, H, W, s, a, xs, ws, ys } = windowProblem(p);
          const w = rand(p.seed + 1, p.o * p.c * kh * kw), g = rand(p.seed + 2, p.n * p.o * p.oh * p.ow);
          const nx = p.n * p.c * H * W;
          const region = h.reserve((nx + 2 * GUARD) * 4);
          setStochasticBandRows(band);
          try {
            const bits = () => new Int32Array(h.buffer(), region.ptr, nx + 2 * GUARD);
            bits().fill(SNAN);
            const dx = h.view(region.ptr + GUARD * 4, nx);
            dx.fill(NaN);
            expect(stochasticGradInputF32(g, w, s, dx)).toBe(dx);
            expectClose(dx, R.stochasticConv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), 'input gradient', 1e-6);
            const b = bits();
            for (const i of [...Array(GUARD).keys(), ...Array.from({ length: GUARD }, (_, j) => GUARD + nx + j)]) expect(b[i], `guard word ${i}`).toBe(SNAN);
          } finally {
            setStochasticBandRows(undefined);
            region.release();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe.skipIf(!convSimdAvailable())('batched 1×1 conv over small planes', () => {
  it('matches the reference: forward, input and filter gradients', () => {
    fc.assert(
      fc.property(
        fc.record({ n: fc.integer({ min: 2, max: 5 }), c: fc.integer({ min: 1, max: 40 }), o: fc.integer({ min: 1, max: 40 }), h: fc.integer({ min: 1, max: 9 }), w: fc.integer({ min: 1, max: 9 }), seed: fc.nat(10000) }),
        (p) => {
          const d = { N: p.n, C: p.c, O: p.o, OH: p.h, OW: p.w, pointwise: true, groups: 1 };
          expect(pointwiseBatchedOk(d)).toBe(true);
          const a: Conv2dAttrs = { stride: [1, 1], padding: [0, 0, 0, 0], dilation: [1, 1], groups: 1 };
          const xs = [p.n, p.c, p.h, p.w], ws = [p.o, p.c, 1, 1], ys = [p.n, p.o, p.h, p.w];
          const x = rand(p.seed, p.n * p.c * p.h * p.w), w = rand(p.seed + 1, p.o * p.c), g = rand(p.seed + 2, p.n * p.o * p.h * p.w);
          expectClose(pointwiseForwardF32(x, w, d), R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), 'forward');
          expectClose(pointwiseGradInputF32(g, w, d), R.conv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), 'input gradient');
          expectClose(pointwiseGradFilterF32(x, g, d), R.conv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient');
        },
      ),
      { numRuns: 60 },
    );
  });
  it('gives the bits of one sgemm on the channel-major copy, in place (planes of whole panels) or relaid (7×7, 5×3)', () => {
    const h = wasmHeap()!;
    /** [A, B, P] → [B, A, P]. */
    const swap = (x: Float32Array, A: number, B: number, P: number): Float32Array => {
      const y = new Float32Array(x.length);
      for (let a = 0; a < A; a++) for (let b = 0; b < B; b++) y.set(x.subarray((a * B + b) * P, (a * B + b + 1) * P), (b * A + a) * P);
      return y;
    };
    /** The first index where a and b differ in bits (a loop: toEqual is slow on 10⁵ floats), or −1. */
    const firstDiff = (a: Float32Array, b: Float32Array): number => (a.length !== b.length ? 0 : a.findIndex((v, i) => !Object.is(v, b[i])));
    // [N, C, O, OH, OW]: B0's 4×4 and 8×8 planes (expand with SiLU, project), ragged channel counts, and planes that are not whole panels.
    const shapes: [number, number, number, number, number][] = [[16, 192, 1152, 4, 4], [3, 37, 13, 8, 8], [5, 21, 30, 4, 4], [4, 19, 11, 7, 7], [3, 9, 17, 5, 3]];
    for (const [N, C, O, OH, OW] of shapes) {
      const P = OH * OW, d = { N, C, O, OH, OW, pointwise: true, groups: 1 };
      const x = rand(N + C, N * C * P), w = rand(O, O * C), g = rand(N + O, N * O * P), sc = rand(1, O), sh = rand(2, O);
      h.withF32(sc, (ps) => h.withF32(sh, (pb) => {
        for (const epi of [undefined, { scale: ps, shift: pb }, { scale: ps, shift: pb, act: 'silu' as const }]) {
          const want = new Float32Array(O * N * P);
          sgemm(false, false, O, N * P, C, 1, w, 0, C, swap(x, N, C, P), 0, N * P, 0, want, 0, N * P, epi);
          expect(firstDiff(pointwiseForwardF32(x, w, d, undefined, epi), swap(want, O, N, P)), `forward ${[N, C, O, OH, OW]} ${epi?.act ?? (epi ? 'affine' : '')}`).toBe(-1);
        }
      }));
      const wantDx = new Float32Array(C * N * P);
      sgemm(true, false, C, N * P, O, 1, w, 0, C, swap(g, N, O, P), 0, N * P, 0, wantDx, 0, N * P);
      expect(firstDiff(pointwiseGradInputF32(g, w, d), swap(wantDx, C, N, P)), `input gradient ${[N, C, O, OH, OW]}`).toBe(-1);
    }
  });
  it('takes only 1×1 stride-1 unpadded single-group convs of more than one image with small planes', () => {
    const d = { N: 2, C: 8, O: 8, OH: 4, OW: 4, pointwise: true, groups: 1 };
    expect(pointwiseBatchedOk(d)).toBe(true);
    expect(pointwiseBatchedOk({ ...d, N: 1 })).toBe(false);
    expect(pointwiseBatchedOk({ ...d, groups: 2 })).toBe(false);
    expect(pointwiseBatchedOk({ ...d, pointwise: false })).toBe(false);
    expect(pointwiseBatchedOk({ ...d, OH: 16, OW: 16 })).toBe(false);
  });
});

describe.skipIf(!convSimdAvailable())('im2col on the pool', () => {
  it('writes the TypeScript im2col matrices exactly, for column strides 1, 2 (vector gathers) and 3, groups and images', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }), groups: fc.integer({ min: 1, max: 2 }), cg: fc.integer({ min: 1, max: 3 }), h: fc.integer({ min: 1, max: 23 }), w: fc.integer({ min: 1, max: 23 }),
          kh: fc.integer({ min: 1, max: 4 }), kw: fc.integer({ min: 1, max: 4 }), sh: fc.integer({ min: 1, max: 3 }), sw: fc.integer({ min: 1, max: 3 }), dh: fc.integer({ min: 1, max: 2 }), dw: fc.integer({ min: 1, max: 2 }),
          pad: fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3)), seed: fc.nat(10000), per: fc.integer({ min: 1, max: 3 }),
        }),
        (q) => {
          const C = q.groups * q.cg, O = q.groups * 2;
          const OH = Math.floor((q.h + q.pad[0] + q.pad[1] - (q.kh - 1) * q.dh - 1) / q.sh) + 1;
          const OW = Math.floor((q.w + q.pad[2] + q.pad[3] - (q.kw - 1) * q.dw - 1) / q.sw) + 1;
          fc.pre(OH > 0 && OW > 0);
          const p = convGeometry([q.n, C, q.h, q.w], [O, q.cg, q.kh, q.kw], [q.n, O, OH, OW], { stride: [q.sh, q.sw], padding: q.pad, dilation: [q.dh, q.dw], groups: q.groups });
          const h = wasmHeap()!;
          const KP = q.cg * q.kh * q.kw * OH * OW;
          const x = h.reserve(q.n * C * q.h * q.w * 4), col = h.reserve(q.n * q.groups * KP * 4);
          try {
            x.f32().set(rand(q.seed, q.n * C * q.h * q.w));
            col.f32().fill(NaN);
            const n1 = Math.min(q.n, q.per);
            im2colPtr(x.ptr, p, 0, n1, col.ptr);
            const want = new Float32Array(KP);
            for (let n = 0; n < n1; n++)
              for (let g = 0; g < q.groups; g++) {
                im2col(x.f32(), (n * C + g * q.cg) * q.h * q.w, p, want);
                expect(col.f32().subarray((n * q.groups + g) * KP, (n * q.groups + g + 1) * KP)).toEqual(want);
              }
          } finally {
            x.release();
            col.release();
          }
        },
      ),
      { numRuns: 150 },
    );
  });
  it('the conv-as-GEMM kernels that use it match the reference: forward and filter gradient, stride 2 with TF same padding', () => {
    const xs = [3, 3, 29, 26], ws = [8, 3, 3, 3], a: Conv2dAttrs = { stride: [2, 2], padding: [0, 1, 0, 1], dilation: [1, 1], groups: 1 };
    const ys = [3, 8, 15, 13];
    const x = rand(5, 3 * 3 * 29 * 26), w = rand(6, 8 * 27), g = rand(7, 3 * 8 * 15 * 13);
    const f = (t: Float32Array, shape: number[]) => ({ storage: t, shape, dtype: 'float32' as const });
    const got = convKernels.conv2d([f(x, xs), f(w, ws)], a, { shape: ys, dtype: 'float32' }) as Float32Array;
    expectClose(got, R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), 'forward');
    const gw = convKernels.conv2dGradFilter([f(x, xs), f(g, ys)], { ...a, filterShape: ws }, { shape: ws, dtype: 'float32' }) as Float32Array;
    expectClose(gw, R.conv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), 'filter gradient');
  });
});

describe.skipIf(!convSimdAvailable())('dispatch: float32 public ops take the wasm path and agree with float64', () => {
  const grads = (f: (a: E.Tensor, b: E.Tensor) => E.Tensor, x: E.Tensor, w: E.Tensor) => {
    const [y, pullback] = E.vjp(([a, b]: E.Tensor[]) => f(a, b), [x, w]);
    const ct = E.random.normal(E.random.key(9), y.shape, 0, 1, { dtype: x.dtype });
    return [y, ...pullback(ct)].map((t) => E.dataSync(t));
  };
  const both = (f: (a: E.Tensor, b: E.Tensor) => E.Tensor, xs: number[], ws: number[]) => {
    const x = E.random.normal(E.random.key(1), xs, 0, 1, { dtype: 'float64' });
    const w = E.random.normal(E.random.key(2), ws, 0, 1, { dtype: 'float64' });
    const want = grads(f, E.cast(E.cast(x, 'float32'), 'float64'), E.cast(E.cast(w, 'float32'), 'float64'));
    const got = grads(f, E.cast(x, 'float32'), E.cast(w, 'float32'));
    ['forward', 'input gradient', 'filter gradient'].forEach((what, i) => {
      expect(got[i]).toBeInstanceOf(Float32Array);
      expectClose(got[i], want[i], what, 1e-4);
    });
  };
  it('depthwise 5×5 stride 2, TF same padding, multiplier 2', () => {
    both((a, b) => E.conv2d(a, b, { stride: 2, padding: 'same', groups: 3 }), [2, 3, 17, 14], [6, 1, 5, 5]);
  });
  it('1×1 conv over 3×3 planes of 3 images (the batched path)', () => {
    both((a, b) => E.conv2d(a, b, { stride: 1, padding: 0 }), [3, 20, 3, 3], [12, 20, 1, 1]);
  });
  it('stochastic conv per image, 3×3 stride 2', () => {
    const windows = E.sampleWindows(E.random.key(3), { batch: 2, channels: 4, inputSize: [40, 37], sliceSize: E.stochasticSliceSize([6, 7], [3, 3], 2), perImage: true });
    both((a, b) => E.stochasticConv2d(a, b, { stride: 2, outSize: [6, 7], windows }), [2, 3, 40, 37], [4, 3, 3, 3]);
  });
});

/** Whether a tensor's storage is a view of the wasm heap. */
const inHeap = (t: E.Tensor) => (wasmHeap()?.ptrOf(t.storage as Float32Array) ?? -1) >= 0;
/** Bit-for-bit equality (vitest's toEqual walks large arrays slowly). */
const sameBits = (a: ArrayBufferView, b: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
/** `run()` with the budget of owned heap arrays at 0: large eager outputs then go to the JS heap. */
function offHeap<T>(run: () => T): T {
  const h = wasmHeap()!;
  const limit = h.ownedLimit;
  h.ownedLimit = 0;
  try {
    return run();
  } finally {
    h.ownedLimit = limit;
  }
}

/**
 * Eager float32 tensors of 1 MiB or more live in the wasm heap (fast/heap.ts `owned`): uploads are copied there once
 * and the stochastic conv writes its large outputs there, so its kernels copy neither the image in nor x̄ out.
 */
describe.skipIf(!convSimdAvailable() || !wasmHeap()?.shared)('eager stochastic conv on heap storage', () => {
  const heap = wasmHeap()!;
  // x is exactly 1 MiB and y just over it; windows overlap, touch every border, and repeat across images.
  const xs = [2, 2, 256, 256], ws = [4, 2, 3, 3], outSize: [number, number] = [182, 182];
  const edge = 256 - 184;
  // The window form follows the array's length: 2·C_out per batch, 2·N·C_out per image.
  const windowsFor = (perImage: boolean) =>
    Int32Array.from(perImage ? [0, 0, edge, edge, 1, 2, 30, edge, edge, 0, 0, 0, 5, 7, edge, 1] : [0, 0, edge, edge, 1, 2, 30, edge]);
  const grads = (x: E.Tensor, w: E.Tensor, ct: E.Tensor, windows: Int32Array) => {
    const [y, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.stochasticConv2d(a, b, { stride: 1, outSize, windows }), [x, w]);
    return [y, ...pullback(ct)];
  };

  it('uploads of 1 MiB or more are copied into the heap; smaller ones are taken as they are', () => {
    const big = rand(1, OWNED_MIN_FLOATS), small = rand(2, OWNED_MIN_FLOATS - 1);
    const tb = E.tensor(big, [OWNED_MIN_FLOATS]), ts = E.tensor(small, [OWNED_MIN_FLOATS - 1]);
    expect(inHeap(tb)).toBe(true);
    expect(sameBits(E.dataSync(tb), big)).toBe(true);
    expect(inHeap(ts)).toBe(false);
  });

  for (const perImage of [false, true]) {
    it(`${perImage ? 'per-image' : 'per-batch'} windows: nothing large copied in or out, gradients equal float64's, and the same off the heap`, () => {
      const windows = windowsFor(perImage);
      const x = E.tensor(rand(3, 2 * 2 * 256 * 256), xs), w = E.tensor(rand(4, 4 * 2 * 9), ws);
      const ct = E.tensor(rand(5, 2 * 4 * 182 * 182), [2, 4, ...outSize]);
      expect([x, ct].every(inHeap)).toBe(true);
      const c0 = heap.copiedBytes;
      const got = grads(x, w, ct, windows);
      // Only the 288-byte filter is copied in (forward, input gradient) and the filter gradient out.
      expect(heap.copiedBytes - c0).toBe(3 * w.size * 4);
      expect(inHeap(got[0]) && inHeap(got[1])).toBe(true);
      const f64t = (t: E.Tensor) => E.cast(t, 'float64');
      const want = grads(f64t(x), f64t(w), f64t(ct), windows).map((t) => E.dataSync(t));
      // Measured: 1.4e-7, 1.0e-7 and 1.3e-6 (the filter gradient sums 66,248 products per tap).
      const tol = [1e-6, 1e-6, 1e-5];
      ['forward', 'input gradient', 'filter gradient'].forEach((what, i) => expectClose(E.dataSync(got[i]), want[i], what, tol[i]));
      // Past the budget the outputs go to the JS heap, with the same values.
      const off = offHeap(() => grads(x, w, ct, windows));
      expect(inHeap(off[0]) || inHeap(off[1])).toBe(false);
      off.forEach((t, i) => expect(sameBits(E.dataSync(t), E.dataSync(got[i]))).toBe(true));
    });
  }
});

/**
 * Every wasm conv path and the fused elementwise kernels write an eager output of 1 MiB or more into the heap too
 * (heap_out.ts): the next kernel reads it in place, and nothing large is copied out.
 */
describe.skipIf(!convSimdAvailable() || !wasmHeap()?.shared)('eager conv and elementwise outputs on heap storage', () => {
  const heap = wasmHeap()!;
  // Each output (and x̄) has at least OWNED_MIN_FLOATS elements.
  const cases: { name: string; x: number[]; w: number[]; opts: E.Conv2dOptions }[] = [
    { name: 'direct (3 input channels, stride 2)', x: [2, 3, 258, 258], w: [16, 3, 3, 3], opts: { stride: 2, padding: 'same' } },
    { name: 'im2col + sgemm (16 input channels)', x: [2, 16, 96, 96], w: [32, 16, 3, 3], opts: { padding: 'same' } },
    { name: 'depthwise', x: [2, 16, 128, 128], w: [16, 1, 3, 3], opts: { padding: 'same', groups: 16 } },
    { name: 'pointwise', x: [2, 16, 128, 128], w: [16, 16, 1, 1], opts: {} },
  ];
  for (const c of cases) {
    it(`${c.name}: forward and both gradients in the heap, equal to the outputs off it`, () => {
      const x = E.tensor(rand(1, c.x.reduce((a, b) => a * b)), c.x), w = E.tensor(rand(2, c.w.reduce((a, b) => a * b)), c.w);
      const run = () => {
        const [y, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.conv2d(a, b, c.opts), [x, w]);
        return [y, ...pullback(E.silu(y))];
      };
      const c0 = heap.copiedBytes;
      const got = run();
      expect(inHeap(got[0]) && inHeap(got[1])).toBe(true);
      expect(inHeap(E.silu(got[0])), 'silu of the output').toBe(true);
      // What is copied is the small operands (the filter and its gradient, sums), not an output of 1 MiB.
      expect(heap.copiedBytes - c0).toBeLessThan(OWNED_MIN_FLOATS * 4);
      const off = offHeap(run);
      expect(inHeap(off[0]) || inHeap(off[1])).toBe(false);
      off.forEach((t, i) => expect(sameBits(E.dataSync(t), E.dataSync(got[i])), `output ${i}`).toBe(true));
    });
  }
});

describe.skipIf(!wasmHeap())('sgemm convs writing into the heap (jit arena): every image in one job', () => {
  it('forward and filter gradient (im2col and 1×1 over large planes), the 1×1 input gradient: match the reference', () => {
    const h = wasmHeap()!;
    const f32 = (storage: Float32Array, shape: number[]): KernelArg<TypedArray> => ({ storage, shape, dtype: 'float32' });
    // [N, C, H, W], [O, C, k, k], stride, pad: the stem's shape (small), a 1×1 over 16×16 planes (not the small-plane path), ragged columns.
    const cases: [number[], number[], number, number][] = [[[3, 3, 17, 17], [5, 3, 3, 3], 2, 1], [[3, 7, 16, 16], [11, 7, 1, 1], 1, 0], [[2, 5, 17, 15], [9, 5, 1, 1], 1, 0]];
    for (const [xs, ws, s, pd] of cases) {
      const a: Conv2dAttrs = { stride: [s, s], padding: [pd, pd, pd, pd], dilation: [1, 1], groups: 1 };
      const OH = Math.floor((xs[2] + 2 * pd - ws[2]) / s) + 1, OW = Math.floor((xs[3] + 2 * pd - ws[3]) / s) + 1;
      const ys = [xs[0], ws[0], OH, OW];
      const x = rand(1, xs.reduce((p, d) => p * d)), w = rand(2, ws.reduce((p, d) => p * d)), g = rand(3, ys.reduce((p, d) => p * d));
      const slot = h.reserve(g.length * 4);
      const into = slot.f32();
      const y = convKernels.conv2d([f32(x, xs), f32(w, ws)], a, { shape: ys, dtype: 'float32', into });
      expect(y).toBe(into);
      expectClose(y, R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], a, out(ys)), `forward ${xs}`);
      slot.release();
      const wslot = h.reserve(w.length * 4);
      const winto = wslot.f32();
      const dw = convKernels.conv2dGradFilter([f32(x, xs), f32(g, ys)], { ...a, filterShape: ws }, { shape: ws, dtype: 'float32', into: winto });
      expect(dw).toBe(winto);
      expectClose(dw, R.conv2dGradFilterRefImpl([arg(f64(x), xs), arg(f64(g), ys)], { ...a, filterShape: ws }, out(ws)), `filter gradient ${xs}`);
      wslot.release();
      if (ws[2] !== 1) continue;
      const dslot = h.reserve(x.length * 4);
      const dinto = dslot.f32();
      const dx = convKernels.conv2dGradInput([f32(g, ys), f32(w, ws)], { ...a, inputShape: xs }, { shape: xs, dtype: 'float32', into: dinto });
      expect(dx).toBe(dinto);
      expectClose(dx, R.conv2dGradInputRefImpl([arg(f64(g), ys), arg(f64(w), ws)], { ...a, inputShape: xs }, out(xs)), `input gradient ${xs}`);
      dslot.release();
    }
  });
});
