/**
 * fma.ts: the kernels' multiply-adds are fused (f32x4.relaxed_madd) on this engine unless STOCHCONV_FMA=0, which
 * Node 20 allows once the flag is set. `madd` then computes a·b + c with one rounding where the CPU fuses it (x64
 * with FMA3), and the direct conv and the stochastic conv (uint8 image: forward and filter gradient) are generated
 * with it: their outputs differ from the unfused kernels' in the last bits only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fmaEnabled, madd, setFma } from '../../../../src/backends/cpu/fast/fma.ts';
import { Fn, T, assemble, get, load, wasmApi } from '../../../../src/backends/cpu/fast/wasm.ts';
import { wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { convGeometry } from '../../../../src/backends/cpu/conv_geom.ts';
import { directConvForwardF32 } from '../../../../src/backends/cpu/fast/directconv.ts';
import { type StochasticGeom, stochasticForwardF32, stochasticGradFilterF32 } from '../../../../src/backends/cpu/fast/stochconv.ts';
import { imagenetDecode } from '../../../../src/data/imagenet.ts';
import { randF32 } from '../../../helpers/random.ts';

const E2 = 2 ** -13;
/** (1 + 2⁻¹³)(1 − 2⁻¹³) − 1 through `madd` in a module generated now: −2⁻²⁶ fused, 0 unfused. */
function maddProbe(): number {
  const f = new Fn('probe', [T.i32]);
  const [p] = f.params;
  f.store('v128', get(p), madd(load('v128', get(p)), load('v128', get(p), 16), load('v128', get(p), 32)), 48);
  const memory = new wasmApi!.Memory({ initial: 1, maximum: 1 });
  const run = new wasmApi!.Instance(new wasmApi!.Module(assemble({ functions: [f], memory: { initial: 1, maximum: 1, shared: false } })), { env: { mem: memory } }).exports.probe as (p: number) => void;
  const m = new Float32Array(memory.buffer);
  m.set([1 + E2, 1 + E2, 1 + E2, 1 + E2, 1 - E2, 1 - E2, 1 - E2, 1 - E2, -1, -1, -1, -1]);
  run(0);
  return m[12];
}

/** Largest |a − b| / (1 + |b|), and whether any element differs. */
function compare(a: Float32Array, b: Float32Array): { rel: number; differs: boolean } {
  let rel = 0, differs = false;
  for (let i = 0; i < a.length; i++) {
    rel = Math.max(rel, Math.abs(a[i] - b[i]) / (1 + Math.abs(b[i])));
    differs ||= a[i] !== b[i];
  }
  return { rel, differs };
}

/** f() with the kernels generated fused (as the engine offers) and unfused. */
function both<R>(f: () => R): { fused: R; unfused: R } {
  const fused = f();
  setFma(false);
  try {
    return { fused, unfused: f() };
  } finally {
    setFma(undefined);
  }
}

describe.skipIf(!wasmHeap())('fused multiply-add', () => {
  afterEach(() => setFma(undefined));
  const wanted = process.env.STOCHCONV_FMA !== '0';
  const fused = maddProbe() !== 0;

  it(`is ${wanted ? 'on (relaxed SIMD, behind a flag on Node 20)' : 'off (STOCHCONV_FMA=0)'}`, () => {
    expect(fmaEnabled()).toBe(wanted);
  });

  it('madd rounds once where the CPU fuses, twice when turned off', () => {
    expect([0, -(E2 * E2)]).toContain(maddProbe());
    setFma(false);
    expect(fmaEnabled()).toBe(false);
    expect(maddProbe()).toBe(0);
  });

  it('the direct conv and the stochastic conv use it: last bits differ, nothing else', () => {
    const g = convGeometry([2, 3, 33, 29], [8, 3, 3, 3], [2, 8, 16, 14], { stride: [2, 2], padding: [0, 0, 0, 0], dilation: [1, 1], groups: 1 });
    const x = randF32(1, 2 * 3 * 33 * 29), w = randF32(2, 8 * 27);
    const direct = both(() => directConvForwardF32(x, w, g));
    const N = 2, C = 3, H = 40, W = 37, O = 4, OH = 9, OW = 11;
    const x8 = Uint8Array.from(randF32(3, N * C * H * W), (v) => Math.floor((v + 1) * 127.9));
    const s: StochasticGeom = {
      N, C, H, W, O, kh: 3, kw: 3, stride: [2, 2], outSize: [OH, OW], perImage: true,
      windows: Int32Array.from({ length: 2 * N * O }, (_, i) => (i % 2 ? (i * 7) % (W - 2 * OW) : (i * 5) % (H - 2 * OH))),
    };
    const ws = randF32(4, O * C * 9), gs = randF32(5, N * O * OH * OW);
    const fwd = both(() => stochasticForwardF32(x8, ws, s, undefined, imagenetDecode));
    const gw = both(() => stochasticGradFilterF32(x8, gs, s, undefined, imagenetDecode));
    for (const [name, r, tol] of [['direct conv', direct, 4e-6], ['stochastic forward', fwd, 2e-5], ['stochastic filter gradient', gw, 2e-5]] as const) {
      const c = compare(r.fused, r.unfused);
      expect(c.rel, name).toBeLessThan(tol);
      if (wanted && fused) expect(c.differs, `${name}: the fused kernel's output equals the unfused one's`).toBe(true);
    }
  });
});
