/** wasm SIMD SiLU / sigmoid against float64 formulas (the reference kernels' expressions). */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fastActivationKernel, sigmoidF32, siluF32 } from '../../../../src/backends/cpu/fast/index.ts';
import { siluGradF32 } from '../../../../src/backends/cpu/fast/activations.ts';
import { elementwiseExprs, elementwiseKernel } from '../../../../src/backends/cpu/elementwise.ts';

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

function check(x: Float32Array): void {
  const s = sigmoidF32(x);
  const y = siluF32(x);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const ws = sigmoid(v);
    // The bound at `sig`/`siluV` (relative ≤ 1.7e−7·(1 + |x|)) with margin, and absolute 1e−37 where exp underflows (x < −87).
    const close = (got: number, want: number, abs: number) => got === want || (Number.isNaN(got) && Number.isNaN(want)) || Math.abs(got - want) <= 4e-7 * (1 + Math.abs(v)) * Math.abs(want) + abs;
    if (!close(s[i], ws, 1e-37)) throw new Error(`sigmoid(${v}) = ${s[i]}, want ${ws}`);
    if (!close(y[i], v * ws, 1e-35)) throw new Error(`silu(${v}) = ${y[i]}, want ${v * ws}`);
  }
}

describe('siluF32 / sigmoidF32', () => {
  it('match the float64 formulas on random arrays of any length (chunks, tails)', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ min: -120, max: 120, noNaN: true }), { minLength: 0, maxLength: 40 }), fc.integer({ min: 0, max: 3 }), (xs, big) => {
        // big = 3 makes one array longer than a 16 Ki-float window.
        const x = big === 3 ? Float32Array.from({ length: 16384 + 13 }, (_, i) => xs[i % Math.max(1, xs.length)] ?? (i % 200) / 10 - 10) : Float32Array.from(xs);
        check(x);
      }),
      { numRuns: 200 },
    );
  });

  it('handles the edges: ±0, ±∞, NaN, huge and tiny values, in place', () => {
    const x = new Float32Array([0, -0, Infinity, -Infinity, NaN, 88, -88, 89, -89, 1e-30, -1e-30, 3.4e38, -3.4e38, 20, -20, 0.5]);
    check(x);
    const s = sigmoidF32(x);
    expect(s[2]).toBe(1);
    expect(s[3]).toBeLessThan(1e-37);
    const y = x.slice();
    siluF32(y, y);
    expect(y).toEqual(siluF32(x));
    expect(y[2]).toBe(Infinity);
  });
});

describe('the error bounds documented at `sig` and `siluV` (vmath.ts)', () => {
  // Measured over every float32 in [−90, 90]: relative error / (1 + |x|) ≤ 1.44e−7 (σ) and 1.67e−7 (silu) where the
  // result is a normal float and x ≥ −87.3; elsewhere absolute 4.2e−39 (σ) and 3.7e−37 (silu); silu' 2.51e−7 absolute.
  // Tolerances 2–3× those.
  it('hold on a dense sweep of [−90, 90] (every 2048th float32, both signs)', () => {
    const top = new Uint32Array(new Float32Array([90]).buffer)[0];
    const bits = new Uint32Array(2 * Math.floor(top / 2048) + 2);
    let m = 0;
    for (const sign of [0, 0x80000000]) for (let b = 0; b <= top; b += 2048) bits[m++] = (b | sign) >>> 0;
    const x = new Float32Array(bits.buffer, 0, m);
    const s = sigmoidF32(x), y = siluF32(x), g = siluGradF32(x, new Float32Array(m).fill(1));
    let sRel = 0, yRel = 0, sLow = 0, yLow = 0, gAbs = 0;
    for (let i = 0; i < m; i++) {
      const v = x[i], ws = sigmoid(v), wy = v * ws;
      if (v >= -87.3) sRel = Math.max(sRel, Math.abs(s[i] - ws) / ws / (1 + Math.abs(v)));
      else sLow = Math.max(sLow, Math.abs(s[i] - ws));
      if (v >= -87.3 && Math.abs(wy) >= 1.1754944e-38) yRel = Math.max(yRel, Math.abs(y[i] - wy) / Math.abs(wy) / (1 + Math.abs(v)));
      else yLow = Math.max(yLow, Math.abs(y[i] - wy));
      gAbs = Math.max(gAbs, Math.abs(g[i] - ws * (1 + v * (1 - ws))));
    }
    expect(sRel).toBeLessThanOrEqual(4e-7);
    expect(yRel).toBeLessThanOrEqual(4e-7);
    expect(sLow).toBeLessThanOrEqual(1.2e-38);
    expect(yLow).toBeLessThanOrEqual(1.2e-36);
    expect(gAbs).toBeLessThanOrEqual(5e-7);
  });

  it('gives the limits at ±∞ and propagates NaN', () => {
    const x = new Float32Array([Infinity, -Infinity, NaN, 0, -0]);
    expect(Array.from(sigmoidF32(x))).toEqual([1, 0, NaN, 0.5, 0.5]);
    // silu(−∞) = −∞·σ(−∞) = −∞·0: NaN, as the float64 reference computes it.
    expect(Array.from(siluF32(x))).toEqual([Infinity, NaN, NaN, 0, -0]);
    // silu' at ±∞ is NaN as in the reference (∞·0); finite inputs past the exp's range give its limits 1 and 0.
    const big = new Float32Array([Infinity, -Infinity, NaN, 0, 88.5, -88.5, 3.4e38, -3.4e38]);
    const g = siluGradF32(big, new Float32Array(big.length).fill(1));
    expect(Array.from(g, (v) => (v === 0 ? 0 : v))).toEqual([NaN, NaN, NaN, 0.5, 1, 0, 1, 0]);
  });
});

describe('fastActivationKernel', () => {
  it('runs float32 on the SIMD path (close to the reference kernel) and passes float64 to the reference', () => {
    for (const name of ['silu', 'sigmoid'] as const) {
      const ref = elementwiseKernel(name, 1, elementwiseExprs[name][1]);
      const k = fastActivationKernel(name, ref);
      const shape = [2, 3, 5, 7];
      const x32 = Float32Array.from({ length: 210 }, (_, i) => (i - 105) / 7);
      const got = k([{ shape, dtype: 'float32', storage: x32 }], {}, { shape, dtype: 'float32' });
      const want = ref([{ shape, dtype: 'float32', storage: x32 }], {}, { shape, dtype: 'float32' });
      expect(got).toBeInstanceOf(Float32Array);
      for (let i = 0; i < 210; i++) expect(Math.abs(got[i] - want[i])).toBeLessThanOrEqual(4e-7 * (1 + Math.abs(x32[i])) * Math.abs(want[i]) + 1e-30);
      const x64 = Float64Array.from(x32);
      const g64 = k([{ shape, dtype: 'float64', storage: x64 }], {}, { shape, dtype: 'float64' });
      expect(g64).toEqual(ref([{ shape, dtype: 'float64', storage: x64 }], {}, { shape, dtype: 'float64' }));
    }
  });
});
