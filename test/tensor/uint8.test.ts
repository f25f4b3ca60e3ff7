/**
 * uint8 tensors: images as decoded, which only `cast` and the stochastic conv's image (through its `decode`) take.
 * The stochastic conv of a uint8 image with decode (scale, shift) must equal the conv of the float image
 * v·scale + shift: exactly up to float64 rounding on the reference, within float32 sums on the SIMD kernels,
 * eager and jitted, forward and weight gradient.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { imagenetDecode } from '../../src/data/imagenet.ts';
import { createGpuBackend } from '../../src/backends/gpu/index.ts';
import { randF32 } from '../helpers/random.ts';

const [N, C, H, W, O, OUT, K, S] = [2, 3, 41, 38, 5, 9, 3, 2];
const bytes = Uint8Array.from(randF32(7, N * C * H * W), (v) => Math.floor((v + 1) * 127.99));
const decode = imagenetDecode;
/** The float image the decode reads, computed in float64. */
const decoded = (dtype: 'float32' | 'float64') => {
  const f = new Float64Array(bytes.length);
  for (let i = 0; i < f.length; i++) {
    const c = Math.floor(i / (H * W)) % C;
    f[i] = bytes[i] * decode.scale[c] + decode.shift[c];
  }
  return E.tensor(dtype === 'float64' ? f : Float32Array.from(f), [N, C, H, W]);
};
const windows = (perImage: boolean) =>
  E.sampleWindows(E.random.key(5), { batch: N, channels: O, inputSize: [H, W], sliceSize: E.stochasticSliceSize([OUT, OUT], [K, K], S), perImage });
const filter = (dtype: 'float32' | 'float64') => E.tensor(dtype === 'float64' ? Float64Array.from(randF32(8, O * C * K * K)) : randF32(8, O * C * K * K), [O, C, K, K]);

function maxDiff(a: E.Tensor, b: E.Tensor): number {
  const [x, y] = [E.dataSync(a), E.dataSync(b)];
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
}

/** The loss sum(y²) and its gradient in w, for image x. */
const lossAndGrad = (x: E.Tensor, w: E.Tensor, ws: Int32Array, withDecode: boolean) =>
  E.valueAndGrad((w: E.Tensor) => {
    const y = E.stochasticConv2d(x, w, { stride: S, outSize: [OUT, OUT], windows: ws, ...(withDecode ? { decode } : {}) });
    return E.sum(E.mul(y, y));
  })(w);

describe('uint8 tensors', () => {
  it('are made from a Uint8Array or checked byte values, and cast to floats', () => {
    const t = E.tensor(new Uint8Array([0, 7, 255]), [3]);
    expect(t.dtype).toBe('uint8');
    expect(Array.from(E.dataSync(E.cast(t, 'float32')))).toEqual([0, 7, 255]);
    expect(E.tensor([1, 2], [2], 'uint8').dtype).toBe('uint8');
    expect(() => E.tensor([1, 256], [2], 'uint8')).toThrow(/uint8 values must be integers in \[0, 255\]; value 1 is 256/);
    expect(() => E.tensor([0.5], [1], 'uint8')).toThrow(/value 0 is 0.5/);
    expect(() => E.cast(E.tensor([1.5], [1]), 'uint8')).toThrow(/cast: to uint8 is not supported/);
  });

  it('are an error naming the op and the input anywhere but cast and the stochastic conv image', () => {
    const t = E.tensor(new Uint8Array([1, 2]), [2]);
    expect(() => E.add(E.tensor([1, 2]), t)).toThrow(/add: input 1 \(shape \[2\]\) is uint8, which this op does not take; cast it/);
    expect(() => E.stochasticConv2d(decoded('float32'), filter('float32'), { stride: S, outSize: [OUT, OUT], windows: windows(false), decode }))
      .toThrow(/stochasticConv2d: decode reads a uint8 image, but the image \[2,3,41,38\] is float32/);
    expect(() => E.stochasticConv2d(E.tensor(bytes, [N, C, H, W]), filter('float32'), { stride: S, outSize: [OUT, OUT], windows: windows(false), decode: { scale: [1, 2], shift: [0, 0] } }))
      .toThrow(/decode.scale must be 3 finite numbers/);
  });

  it('have no gradient: differentiating with respect to one names it', () => {
    const x = E.tensor(bytes, [N, C, H, W]);
    expect(() => E.grad((x: E.Tensor) => E.sum(E.stochasticConv2d(x, filter('float32'), { stride: S, outSize: [OUT, OUT], windows: windows(false), decode })))(x))
      .toThrow(/input 0 of the differentiated tree \(shape \[2, 3, 41, 38\]\) is uint8/);
  });

  it('live on the host under the gpu backend (gpu.js webasm), where the stochastic conv runs on the CPU kernels', () => {
    const gpu = createGpuBackend({ name: 'gpu-uint8-test', mode: 'webasm' });
    E.registerBackend(gpu);
    const prev = E.getBackend();
    try {
      const ws = windows(true), w = filter('float32');
      E.setBackend(prev.name);
      const want = E.dataSync(E.stochasticConv2d(E.tensor(bytes, [N, C, H, W]), w, { stride: S, outSize: [OUT, OUT], windows: ws, decode }));
      E.setBackend(gpu.name);
      const x8 = E.tensor(bytes, [N, C, H, W]);
      expect(x8.backend.name).toBe(gpu.name);
      expect(Array.from(E.dataSync(x8))).toEqual(Array.from(bytes));
      const got = E.stochasticConv2d(x8, E.tensor(E.dataSync(w) as Float32Array, [O, C, K, K]), { stride: S, outSize: [OUT, OUT], windows: ws, decode });
      expect(Array.from(E.dataSync(got))).toEqual(Array.from(want));
    } finally {
      E.setBackend(prev.name);
      gpu.destroy();
    }
  });

  for (const perImage of [false, true]) {
    const form = perImage ? 'per image' : 'per batch';
    it(`stochastic conv, ${form}, float64 filter (reference kernels): the decoded float image's value and weight gradient to 1e-12`, () => {
      const ws = windows(perImage);
      const [l8, g8] = lossAndGrad(E.tensor(bytes, [N, C, H, W]), filter('float64'), ws, true);
      const [lf, gf] = lossAndGrad(decoded('float64'), filter('float64'), ws, false);
      expect(l8.dtype).toBe('float64');
      expect(Math.abs(E.item(l8) - E.item(lf)) / Math.abs(E.item(lf))).toBeLessThan(1e-12);
      expect(maxDiff(g8, gf) / Math.max(...Array.from(E.dataSync(gf), Math.abs))).toBeLessThan(1e-12);
    });

    it(`stochastic conv, ${form}, float32 (SIMD kernels), eager and jitted: the decoded image's value and weight gradient`, () => {
      const ws = windows(perImage);
      const x8 = E.tensor(bytes, [N, C, H, W]), w = filter('float32');
      const [lf, gf] = lossAndGrad(decoded('float32'), w, ws, false);
      const [l8, g8] = lossAndGrad(x8, w, ws, true);
      const step = E.jit((x: E.Tensor, w: E.Tensor) => lossAndGrad(x, w, ws, x.dtype === 'uint8'));
      const [lj, gj] = step(x8, w);
      const scale = Math.max(...Array.from(E.dataSync(gf), Math.abs));
      // float32: measured ≤ 2e-7 relative on these sizes
      for (const [l, g] of [[l8, g8], [lj, gj]]) {
        expect(l.dtype).toBe('float32');
        expect(Math.abs(E.item(l) - E.item(lf)) / E.item(lf)).toBeLessThan(2e-6);
        expect(maxDiff(g, gf) / scale).toBeLessThan(2e-6);
      }
      // A float32 image of the same shape is another signature, with the same result.
      const [lj2] = step(decoded('float32'), w);
      expect(step.compiles).toBe(2);
      expect(Math.abs(E.item(lj2) - E.item(lf)) / E.item(lf)).toBeLessThan(1e-6);
    });
  }
});
