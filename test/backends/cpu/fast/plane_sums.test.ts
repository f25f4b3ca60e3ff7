/**
 * The sums over each output plane that the CPU conv kernels write beside their output (`Kernel.writesSums`, the
 * numerator of squeeze-excite's global average pool): the depthwise lane kernels add up the values in registers as
 * they store them (error bound in src/backends/cpu/fast/dwlanes.ts: |error| ≤ 2u·Σ|y| + u·|Σy|, u = 2⁻²⁴; measured
 * worst 7.0e-8·Σ|y| on these cases, the bound ~1.8e-7·Σ|y|) and are checked against that bound from the float64 sum
 * of the very values they stored, and against eager's `sum` of them; every other
 * path (the row kernels, dense and 1×1 convs, float64) runs the `sum` kernel after the conv and must equal it bit
 * for bit.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../../../src/index.ts';
import type { TypedArray } from '../../../../src/backends/backend.ts';
import { convKernels } from '../../../../src/backends/cpu/conv.ts';
import { sumImpl } from '../../../../src/backends/cpu/reduce.ts';
import { convSimdAvailable } from '../../../../src/backends/cpu/fast/convsimd.ts';
import { type DepthwiseGeom, depthwiseForwardF32, depthwiseUsesLanes } from '../../../../src/backends/cpu/fast/dwconv.ts';
import { wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { randF32 } from '../../../helpers/random.ts';

const U = 2 ** -24;

/** A depthwise geometry: N images of C channels (multiplier m), H×H planes, k×k kernel, stride s, TF 'same' padding. */
function geom(N: number, C: number, H: number, k: number, s: number, m = 1): DepthwiseGeom {
  const OH = Math.ceil(H / s), total = Math.max((OH - 1) * s + k - H, 0), lo = total >> 1;
  return { N, C, H, W: H, O: C * m, OH, OW: OH, kh: k, kw: k, stride: [s, s], dilation: [1, 1], padding: [lo, total - lo, lo, total - lo] };
}

/** Per plane: the float64 sum of y's values, and the sum of their magnitudes. */
function exactSums(y: ArrayLike<number>, planes: number, P: number): { sum: Float64Array; abs: Float64Array } {
  const sum = new Float64Array(planes), abs = new Float64Array(planes);
  for (let q = 0; q < planes; q++) {
    for (let i = q * P; i < (q + 1) * P; i++) {
      sum[q] += y[i];
      abs[q] += Math.abs(y[i]);
    }
  }
  return { sum, abs };
}

/** Eager's `sum` over axes [2, 3] of an NCHW output. */
const eagerSums = (y: Float32Array, shape: number[]) => E.dataSync(E.sum(E.fromArray(y, shape), [2, 3]));

describe.skipIf(!convSimdAvailable())('sums over the output planes written by the depthwise lane kernels', () => {
  // [N, C, H, k, stride, multiplier]: C not a multiple of 4, planes 4×4 to 64×64, 3×3 and 5×5, strides 1 and 2.
  const cases: [number, number, number, number, number, number][] = [
    [2, 5, 4, 5, 1, 1],
    [3, 7, 4, 3, 2, 1],
    [2, 6, 8, 3, 2, 1],
    [1, 13, 16, 5, 1, 1],
    [2, 9, 17, 3, 1, 2],
    [2, 3, 32, 5, 2, 1],
    [2, 11, 64, 3, 1, 1],
    [1, 6, 64, 5, 2, 1],
  ];
  const epis = ['none', 'affine', 'silu'] as const;

  it.each(cases)('N %i, C %i, %i² planes, kernel %i, stride %i, multiplier %i: every epilogue', (N, C, H, k, s, m) => {
    const d = geom(N, C, H, k, s, m);
    expect(depthwiseUsesLanes(d)).toBe(true);
    const h = wasmHeap()!;
    const P = d.OH * d.OW, planes = N * d.O;
    const x = randF32(N * 100 + C, N * C * H * H), w = randF32(k + 7, d.O * k * k);
    // Scale around 1 and shifts that leave SiLU outputs of both signs.
    const sc = randF32(3, d.O, 0.5, 1.5), sf = randF32(4, d.O, -0.5, 0.5);
    for (const epiKind of epis) {
      const ps = h.alloc(d.O * 4), pb = h.alloc(d.O * 4);
      try {
        h.view(ps, d.O).set(sc);
        h.view(pb, d.O).set(sf);
        const epi = epiKind === 'none' ? undefined : { scale: ps, shift: pb, act: epiKind === 'silu' ? ('silu' as const) : undefined };
        const sums = new Float32Array(planes).fill(Number.NaN);
        const y = depthwiseForwardF32(x, w, d, undefined, undefined, epi, sums);
        // The values themselves are the kernel's without sums.
        const plain = depthwiseForwardF32(x, w, d, undefined, undefined, epi);
        expect(y.every((v, i) => Object.is(v, plain[i])), 'the same values as without sums').toBe(true);
        const { sum, abs } = exactSums(y, planes, P);
        const eager = eagerSums(y, [N, d.O, d.OH, d.OW]);
        for (let q = 0; q < planes; q++) {
          const err = Math.abs(sums[q] - sum[q]);
          expect(err, `${epiKind} plane ${q}: ${sums[q]} vs ${sum[q]}`).toBeLessThanOrEqual(2 * U * abs[q] + U * Math.abs(sum[q]));
          // Eager rounds the float64 sum once: the two differ by our error and its rounding.
          expect(Math.abs(sums[q] - eager[q]), `${epiKind} plane ${q} vs eager`).toBeLessThanOrEqual(2 * U * abs[q] + 2 * U * Math.abs(sum[q]));
        }
      } finally {
        h.release(ps);
        h.release(pb);
      }
    }
  });

});

describe('sums over the output planes on the paths that run the sum kernel after the conv', () => {
  const run = (prim: string, args: { storage: TypedArray; shape: number[] }[], attrs: object, shape: number[], dtype: E.DType) => {
    const ins = args.map((a) => ({ ...a, dtype }));
    const sums = dtype === 'float32' ? new Float32Array(shape[0] * shape[1]) : new Float64Array(shape[0] * shape[1]);
    const y = convKernels[prim](ins, { ...attrs, sums }, { shape, dtype });
    const want = sumImpl([{ storage: y, shape, dtype }], { axes: [2, 3], keepdims: false }, { shape: shape.slice(0, 2), dtype });
    return { sums, want, y };
  };
  const f64 = (a: Float32Array) => Float64Array.from(a);

  /** The lane kernels' sums (float32 depthwise) are within their bound of the sum kernel's; every other path's equal them. */
  const check = (got: TypedArray, want: TypedArray, y: TypedArray, P: number, lanes: boolean, what: string) => {
    if (!lanes) return expect(got, what).toEqual(want);
    const { abs } = exactSums(y, got.length, P);
    got.forEach((v, q) => expect(Math.abs(v - want[q]), `${what} plane ${q}`).toBeLessThanOrEqual(2 * U * abs[q] + 2 * U * Math.abs(want[q])));
  };

  it.each(['float32', 'float64'] as const)('dense, 1×1 and depthwise conv2d / conv2dAffine (%s): the sum kernel on the output', (dtype) => {
    const cast = (a: Float32Array) => (dtype === 'float32' ? a : f64(a));
    const x = randF32(1, 2 * 6 * 9 * 9);
    // [weight shape, groups, stride, padding]
    const convs: [number[], number, number, number][] = [
      [[4, 6, 3, 3], 1, 1, 1],
      [[5, 6, 1, 1], 1, 1, 0],
      [[6, 1, 3, 3], 6, 2, 1],
    ];
    for (const [ws, groups, s, p] of convs) {
      const OH = Math.floor((9 + 2 * p - ws[2]) / s) + 1, shape = [2, ws[0], OH, OH];
      const attrs = { stride: [s, s], padding: [p, p, p, p], dilation: [1, 1], groups };
      const args = [{ storage: cast(x), shape: [2, 6, 9, 9] }, { storage: cast(randF32(2, ws[0] * ws[1] * ws[2] * ws[3])), shape: ws }];
      const lanes = groups > 1 && dtype === 'float32' && convSimdAvailable();
      const plain = run('conv2d', args, attrs, shape, dtype);
      check(plain.sums, plain.want, plain.y, OH * OH, lanes, `conv2d ${ws}`);
      const ab = [randF32(3, ws[0], 0.5, 1.5), randF32(4, ws[0], -0.5, 0.5)].map((v) => ({ storage: cast(v), shape: [1, ws[0], 1, 1] }));
      const affine = run('conv2dAffine', [...args, ...ab], { ...attrs, act: 'silu' }, shape, dtype);
      check(affine.sums, affine.want, affine.y, OH * OH, lanes, `conv2dAffine ${ws}`);
    }
  });

  it.skipIf(!convSimdAvailable())('the row kernels (planes past the lane kernels): the sum kernel after them', () => {
    const d = geom(2, 5, 130, 3, 1);
    expect(depthwiseUsesLanes(d)).toBe(false);
    const x = randF32(5, 2 * 5 * 130 * 130), w = randF32(6, 5 * 9);
    const sums = new Float32Array(10);
    const y = depthwiseForwardF32(x, w, d, undefined, undefined, undefined, sums);
    expect(sums).toEqual(eagerSums(y, [2, 5, 130, 130]));
    // Stacked planes (the row kernels at a lane-sized plane) too.
    const d2 = geom(3, 6, 12, 5, 2);
    const sums2 = new Float32Array(18);
    const y2 = depthwiseForwardF32(randF32(7, 3 * 6 * 144), randF32(8, 6 * 25), d2, undefined, 2, undefined, sums2);
    expect(sums2).toEqual(eagerSums(y2, [3, 6, 6, 6]));
  });
});
