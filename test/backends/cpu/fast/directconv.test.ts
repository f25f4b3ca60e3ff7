/**
 * The direct conv kernel for dense convs over few input channels (src/backends/cpu/fast/directconv.ts) against the
 * float64 reference loops of conv_ref.ts on the same float32 values: random shapes within its bounds (C 1–8 with
 * C·kh·kw ≤ 200, mostly C 1–4; kernels 1–7, odd and even; row and column strides 1–3; dilations 1–2; paddings with
 * TF 'same' asymmetric ones; odd sizes; 1–3 images), with no epilogue, the affine and the affine + SiLU. The
 * kernel's documented bound |y − y64| ≤ γ_K·Σ_t|w_t·x_t| (K = C·kh·kw) is checked per output, Σ|w·x| from the
 * reference conv of |x| and |w| (measured worst: 0.97 of it; with the epilogue, 0.42 of the bound stated there).
 * It equals im2col + sgemm bit for bit (both fuse their multiply-adds or neither does: fma.ts). Also: the output
 * slot is written and nothing around it; conv2d / conv2dAffine route the B0 stem here, eagerly, with heap operands
 * (jit's arena) and under jit; the sums over the output planes (`writesSums`) and an input scale per image and
 * channel (`inputScale`) come with it.
 */
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../../../src/index.ts';
import type { Conv2dAffineAttrs } from '../../../../src/autograd/conv.ts';
import type { KernelArg, TypedArray } from '../../../../src/backends/backend.ts';
import * as R from '../../../../src/backends/cpu/conv_ref.ts';
import { convKernels } from '../../../../src/backends/cpu/conv.ts';
import { convGeometry } from '../../../../src/backends/cpu/conv_geom.ts';
import { wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { DIRECT_MAX_CHANNELS, DIRECT_MAX_TAPS, directConvCalls, directConvForwardF32, directConvOk } from '../../../../src/backends/cpu/fast/directconv.ts';
import { im2col } from '../../../../src/backends/cpu/conv_gemm.ts';
import { sgemm } from '../../../../src/backends/cpu/fast/sgemm.ts';
import { randF32 } from '../../../helpers/random.ts';

const U = 2 ** -24;
const arg = (storage: TypedArray, shape: number[]): KernelArg<TypedArray> => ({ storage, shape, dtype: storage instanceof Float64Array ? 'float64' : 'float32' });
const f64 = (a: Float32Array) => Float64Array.from(a);
const abs64 = (a: Float32Array) => Float64Array.from(a, Math.abs);

const sameSplit = (n: number, k: number, s: number, d: number): [number, number] => {
  const total = Math.max((Math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
};

const heap = wasmHeap();

describe.skipIf(!heap)('direct conv kernel (dense, C ≤ 8, C·kh·kw ≤ 200)', () => {
  it('matches the reference within γ_K·Σ|w·x|, with no epilogue, the affine and the affine + SiLU', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: DIRECT_MAX_CHANNELS })),
          o: fc.integer({ min: 1, max: 11 }),
          h: fc.integer({ min: 1, max: 21 }),
          w: fc.integer({ min: 1, max: 27 }),
          kh: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 7 })),
          kw: fc.oneof(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 7 })),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 3 }),
          dh: fc.constantFrom(1, 1, 2),
          dw: fc.constantFrom(1, 1, 2),
          pad: fc.oneof(fc.constant<'same'>('same'), fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3))),
          epi: fc.constantFrom('none', 'affine', 'silu'),
          seed: fc.nat(10000),
        }),
        (p) => {
          fc.pre(p.c * p.kh * p.kw <= DIRECT_MAX_TAPS);
          const padding: [number, number, number, number] = p.pad === 'same' ? [...sameSplit(p.h, p.kh, p.sh, p.dh), ...sameSplit(p.w, p.kw, p.sw, p.dw)] : p.pad;
          const OH = Math.floor((p.h + padding[0] + padding[1] - p.dh * (p.kh - 1) - 1) / p.sh) + 1;
          const OW = Math.floor((p.w + padding[2] + padding[3] - p.dw * (p.kw - 1) - 1) / p.sw) + 1;
          // A pointwise conv (1×1, stride 1, unpadded) keeps the sgemm, which reads its planes in place.
          fc.pre(OH >= 1 && OW >= 1 && !(p.kh * p.kw * p.sh * p.sw === 1 && padding.every((q) => q === 0)));
          const xs = [p.n, p.c, p.h, p.w], ws = [p.o, p.c, p.kh, p.kw], ys = [p.n, p.o, OH, OW], ch = [1, p.o, 1, 1];
          const attrs: Conv2dAffineAttrs = { stride: [p.sh, p.sw], padding, dilation: [p.dh, p.dw], groups: 1, ...(p.epi === 'silu' ? { act: 'silu' as const } : {}) };
          const g = convGeometry(xs, ws, ys, attrs);
          expect(directConvOk(g)).toBe(true);
          const x = randF32(p.seed, p.n * p.c * p.h * p.w, -2, 2), w = randF32(p.seed + 1, p.o * p.c * p.kh * p.kw);
          const sc = randF32(p.seed + 2, p.o, 0.5, 1.5), sh = randF32(p.seed + 3, p.o, -0.5, 0.5);
          const out64 = { shape: ys, dtype: 'float64' as const };
          const conv64 = R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], attrs, out64) as Float64Array;
          const mag = R.conv2dRefImpl([arg(abs64(x), xs), arg(abs64(w), ws)], attrs, out64) as Float64Array;
          const K = p.c * p.kh * p.kw, gamma = (K * U) / (1 - K * U);
          const calls = directConvCalls();
          if (p.epi === 'none') {
            const got = convKernels.conv2d([arg(x, xs), arg(w, ws)], attrs, { shape: ys, dtype: 'float32' }) as Float32Array;
            for (let i = 0; i < got.length; i++) expect(Math.abs(got[i] - conv64[i]), `output ${i}`).toBeLessThanOrEqual(gamma * mag[i]);
          } else {
            const ins = [arg(x, xs), arg(w, ws), arg(sc, ch), arg(sh, ch)];
            const got = convKernels.conv2dAffine(ins, attrs, { shape: ys, dtype: 'float32' }) as Float32Array;
            const P = OH * OW;
            for (let i = 0; i < got.length; i++) {
              const o = Math.floor(i / P) % p.o;
              // The conv's bound carried through the affine (|a|·γ_K·Σ|w·x|), the affine's two roundings and SiLU's
              // 1.7e−7·(1 + |v|) (vmath.ts), with v and silu' ≤ 1.1 taken at the float64 value.
              const v = conv64[i] * sc[o] + sh[o];
              const want = p.epi === 'silu' ? v / (1 + Math.exp(-v)) : v;
              const bound = 1.1 * (sc[o] * gamma * mag[i] + 2 * U * (Math.abs(conv64[i] * sc[o]) + Math.abs(v))) + (p.epi === 'silu' ? 1.7e-7 * (1 + Math.abs(v)) : 0);
              expect(Math.abs(got[i] - want), `output ${i}`).toBeLessThanOrEqual(bound);
            }
          }
          expect(directConvCalls()).toBe(calls + 1);
        },
      ),
      { numRuns: 120 },
    );
  });

  it('equals im2col + sgemm bit for bit (the same multiply-adds, from 0 in the same order)', () => {
    // So every conv that moved from the sgemm to this kernel computes what it did before: both fuse their
    // multiply-adds or neither does (fma.ts).
    for (const [xs, ws, s, pad] of [
      [[2, 3, 19, 16], [32, 3, 3, 3], 2, [0, 1, 1, 1]],
      [[1, 8, 9, 11], [6, 8, 5, 5], 1, [2, 2, 2, 2]],
      [[3, 1, 12, 7], [5, 1, 2, 4], 3, [1, 0, 3, 0]],
    ] as [number[], number[], number, [number, number, number, number]][]) {
      const attrs = { stride: [s, s] as [number, number], padding: pad, dilation: [1, 1] as [number, number], groups: 1 };
      const OH = Math.floor((xs[2] + pad[0] + pad[1] - ws[2]) / s) + 1, OW = Math.floor((xs[3] + pad[2] + pad[3] - ws[3]) / s) + 1;
      const ys = [xs[0], ws[0], OH, OW], g = convGeometry(xs, ws, ys, attrs);
      const x = randF32(7, xs.reduce((a, b) => a * b)), w = randF32(8, ws.reduce((a, b) => a * b));
      const K = ws[1] * ws[2] * ws[3], P = OH * OW, col = new Float32Array(K * P), want = new Float32Array(xs[0] * ws[0] * P);
      for (let n = 0; n < xs[0]; n++) {
        col.fill(0);
        im2col(x, n * xs[1] * xs[2] * xs[3], g, col, 0);
        sgemm(false, false, ws[0], P, K, 1, w, 0, K, col, 0, P, 0, want, n * ws[0] * P, P);
      }
      expect(directConvForwardF32(x, w, g)).toEqual(want);
    }
  });

  it('writes its output slot in the heap and nothing around it (ragged column blocks, bands, channel blocks)', () => {
    // 3 images of 5 channels (a ragged channel block) over 13 columns (a ragged column block), many bands.
    const xs = [3, 2, 41, 25], ws = [5, 2, 3, 3];
    const attrs = { stride: [2, 2] as [number, number], padding: [1, 1, 1, 1] as [number, number, number, number], dilation: [1, 1] as [number, number], groups: 1 };
    const ys = [3, 5, 21, 13], ny = 3 * 5 * 21 * 13;
    const g = convGeometry(xs, ws, ys, attrs);
    const x = randF32(1, 3 * 2 * 41 * 25), w = randF32(2, 5 * 2 * 9);
    const want = R.conv2dRefImpl([arg(f64(x), xs), arg(f64(w), ws)], attrs, { shape: ys, dtype: 'float64' });
    const guard = 64;
    const slot = heap!.reserve((ny + 2 * guard) * 4);
    slot.f32().fill(NaN);
    const y = heap!.view(slot.ptr + 4 * guard, ny);
    expect(directConvForwardF32(x, w, g, y)).toBe(y);
    const all = slot.f32();
    for (let i = 0; i < guard; i++) expect([all[i], all[guard + ny + i]]).toEqual([NaN, NaN]);
    for (let i = 0; i < ny; i++) expect(Math.abs(y[i] - want[i])).toBeLessThan(1e-5);
    slot.release();
  });

  it('takes the B0 stem (3×3 stride 2 "same" over 3 channels): eager, with heap operands as jit calls it, and under jit', () => {
    // Eager conv2d and conv2dAffine (with the sums over the output planes, as jit asks for them).
    const xs = [2, 3, 64, 64], ws = [32, 3, 3, 3], ys = [2, 32, 32, 32];
    const attrs: Conv2dAffineAttrs = { stride: [2, 2], padding: [0, 1, 0, 1], dilation: [1, 1], groups: 1, act: 'silu' };
    expect(directConvOk(convGeometry(xs, ws, ys, attrs))).toBe(true);
    // Past the bounds (9 channels; 5 channels under 7×7), and pointwise convs, keep the sgemm.
    expect(directConvOk(convGeometry([1, 9, 8, 8], [4, 9, 3, 3], [1, 4, 8, 8], { ...attrs, stride: [1, 1], padding: [1, 1, 1, 1] }))).toBe(false);
    expect(directConvOk(convGeometry([1, 5, 8, 8], [4, 5, 7, 7], [1, 4, 8, 8], { ...attrs, stride: [1, 1], padding: [3, 3, 3, 3] }))).toBe(false);
    expect(directConvOk(convGeometry([1, 3, 8, 8], [4, 3, 1, 1], [1, 4, 8, 8], { ...attrs, stride: [1, 1], padding: [0, 0, 0, 0] }))).toBe(false);
    const x = randF32(3, 2 * 3 * 64 * 64), w = randF32(4, 32 * 27), sc = randF32(5, 32, 0.5, 1.5), sh = randF32(6, 32, -0.5, 0.5);
    const ins = [arg(x, xs), arg(w, ws), arg(sc, [1, 32, 1, 1]), arg(sh, [1, 32, 1, 1])];
    let calls = directConvCalls();
    const y = convKernels.conv2dAffine(ins, attrs, { shape: ys, dtype: 'float32' }) as Float32Array;
    convKernels.conv2d(ins.slice(0, 2), attrs, { shape: ys, dtype: 'float32' });
    expect(directConvCalls()).toBe(calls + 2);
    // With an input scale per image and channel (Kernel.inputScale): the conv of x·s, bit for bit.
    const s = randF32(9, 2 * 3, 0, 1), xsc = x.map((v, i) => v * s[Math.floor(i / (64 * 64))]);
    const scaled = convKernels.conv2dAffine([...ins, arg(s, [2, 3, 1, 1])], { ...attrs, inputScale: true }, { shape: ys, dtype: 'float32' });
    expect(scaled).toEqual(convKernels.conv2dAffine([arg(xsc, xs), ...ins.slice(1)], attrs, { shape: ys, dtype: 'float32' }));
    expect(directConvCalls()).toBe(calls + 4);
    // Operands and output in the heap (a compiled graph's arena), plane sums requested.
    const region = (a: Float32Array) => {
      const r = heap!.reserve(a.length * 4);
      r.f32().set(a);
      return r;
    };
    const rs = [x, w, sc, sh].map(region), ry = heap!.reserve(y.length * 4), rsum = heap!.reserve(2 * 32 * 4);
    const hins = rs.map((r, i) => arg(r.f32(), ins[i].shape as number[]));
    calls = directConvCalls();
    const copied = heap!.copiedBytes;
    const yh = convKernels.conv2dAffine(hins, { ...attrs, sums: rsum.f32() }, { shape: ys, dtype: 'float32', into: ry.f32() }) as Float32Array;
    expect([directConvCalls(), heap!.copiedBytes]).toEqual([calls + 1, copied]);
    expect(yh).toEqual(y);
    const sums = rsum.f32();
    for (let p = 0; p < 2 * 32; p++) {
      let s = 0, m = 0;
      for (let i = 0; i < 32 * 32; i++) [s, m] = [s + y[p * 1024 + i], m + Math.abs(y[p * 1024 + i])];
      expect(Math.abs(sums[p] - s)).toBeLessThanOrEqual(4 * U * m);
    }
    [...rs, ry, rsum].forEach((r) => r.release());
    // B0 inference under jit: its stem (the only dense conv with C·kh·kw ≤ 32) runs here, once per call.
    const model = E.nn.createModel('b0', { key: E.random.key(1), lowSize: 32 });
    const infer = E.jit((p: E.nn.Params, st: E.nn.State, xx: E.Tensor) => E.nn.apply(model.config, p, st, xx, { training: false, key: E.random.key(2) })[0]);
    const xb = E.zeros([2, 3, 32, 32]);
    infer(model.params, model.state, xb);
    calls = directConvCalls();
    E.dataSync(infer(model.params, model.state, xb));
    expect(directConvCalls()).toBe(calls + 1);
  });
});
