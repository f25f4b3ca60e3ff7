/**
 * A whole train step jitted vs eager: B0 (small image, reduced width/depth so the suite stays
 * fast) and b0-full-split with per-image stochastic windows drawn from the key inside the step.
 * Values, new BN state and every gradient are compared, and every BN layer's backward has its
 * Σ ct·x̂ fused with the product (no stored product).
 *
 * float64: ≤ 1e-12·(1 + max|eager|) per tensor (the same kernels and the same expression order).
 * Two keys per case: the second call must draw new windows and drop-connect masks from its key.
 * float32: ≤ TOL32·(1 + max|eager|): fused loops keep double intermediates and use Math.exp where
 * eager's SiLU/sigmoid use the wasm SIMD exp; the differences grow through ~40 layers and back.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { treeLeaves } from '../../src/autograd/pytree.ts';
import { apply } from '../../src/nn/model.ts';
import type { Input, Params, State } from '../../src/nn/efficientnet.ts';

// Measured worst: 2.5e-4 (b0) and 2.9e-4 (b0-full-split), on the gradients of the first layers.
const TOL32 = 1e-3;

function relErr(got: E.Tensor, want: E.Tensor): number {
  const g = E.dataSync(got);
  const w = E.dataSync(want);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < w.length; i++) {
    scale = Math.max(scale, Math.abs(w[i]));
    err = Math.max(err, Math.abs(g[i] - w[i]));
  }
  return Number.isNaN(err) ? Infinity : err / (1 + scale);
}

const worstOver = (a: unknown, b: unknown) => {
  const [xs, ys] = [treeLeaves(a), treeLeaves(b)];
  expect(xs.length).toBe(ys.length);
  return Math.max(...xs.map((x, i) => relErr(x, ys[i])));
};

/** The step the trainer compiles: loss, logits, new BN state, gradients. */
function makeStep(model: E.nn.Model) {
  const mc = model.config;
  return (params: Params, state: State, input: Input, y: E.Tensor, key: E.random.Key) => {
    const [[loss, aux], grads] = E.valueAndGrad(
      (p: Params) => {
        const [lg, ns] = apply(mc, p, state, input, { training: true, key });
        return [E.binaryCrossEntropyWithLogits(lg, y, { reduction: 'mean' }), { state: ns, logits: lg }] as [E.Tensor, { state: State; logits: E.Tensor }];
      },
      { hasAux: true },
    )(params);
    return { loss, state: aux.state, logits: aux.logits, grads };
  };
}

const cases = [
  { name: 'b0', opts: { lowSize: 32 } },
  { name: 'b0-full-split', opts: { lowSize: 32, highSize: 64, perImage: true } },
] as const;

describe.each(cases)('$name train step: jit vs eager', ({ name, opts }) => {
  it.each(['float64', 'float32'] as const)('%s', (dtype) => {
    const key = E.random.key(5);
    const model = E.nn.createModel(name, { key, widthMult: 0.25, depthMult: 0.25, dtype, ...opts });
    const N = 3;
    const mk = (k: number, s: number) => E.random.uniform(E.random.key(k), [N, 3, s, s], 0, 1, { dtype });
    const input: Input = model.config.sides.high ? { low: mk(1, 32), high: mk(2, model.config.sides.high) } : mk(1, 32);
    const y = E.tensor(dtype === 'float64' ? new Float64Array([1, 0, 1]) : new Float32Array([1, 0, 1]), [N, 1]);
    const step = makeStep(model);
    const jstep = E.jit(step);
    const tol = dtype === 'float64' ? 1e-12 : TOL32;
    for (const k of [E.random.key(11), E.random.key(12)]) {
      const want = step(model.params, model.state, input, y, k);
      const got = jstep(model.params, model.state, input, y, k);
      const err = worstOver(got, want);
      expect(err, `${name} ${dtype}: worst relative error ${err}`).toBeLessThanOrEqual(tol);
    }
    expect(jstep.compiles).toBe(1);
    const lowered = jstep.lower(model.params, model.state, input, y, E.random.key(0));
    expect(lowered.stats.fusedLoops).toBeGreaterThan(0);
    // Every BN layer's backward sums Σ ct·x̂ over the product of the two, which only that sum reads: fused.
    const bnLayers = treeLeaves(model.state).length / 2;
    expect(lowered.stats.fusedReductions).toBeGreaterThanOrEqual(bnLayers);
    expect(lowered.stats.ownOutputOps).toEqual([]);
    expect(lowered.memory.arenaBytes).toBeLessThan(lowered.memory.unplannedBytes / 2);
  });
});

// The high-res view as the trainer's loader gives it (highBytes): uint8, normalised inside the stochastic stem.
describe('b0-full-split train step on a uint8 high-res image', () => {
  it.each(['float64', 'float32'] as const)('%s: equals the step on the ImageNet-normalised floats, eager and jitted', (dtype) => {
    const model = E.nn.createModel('b0-full-split', { key: E.random.key(5), widthMult: 0.25, depthMult: 0.25, dtype, lowSize: 32, highSize: 64, perImage: true });
    const N = 3, shape = [N, 3, 64, 64];
    const bytes = Uint8Array.from(E.dataSync(E.random.uniform(E.random.key(2), shape)), (v) => Math.floor(v * 256));
    const { IMAGENET_MEAN: mean, IMAGENET_STD: std } = E.datasets;
    const floats = Float64Array.from(bytes, (v, i) => { const c = Math.floor(i / (64 * 64)) % 3; return (v / 255 - mean[c]) / std[c]; });
    const low = E.random.uniform(E.random.key(1), [N, 3, 32, 32], 0, 1, { dtype });
    const onBytes: Input = { low, high: E.tensor(bytes, shape) };
    const onFloats: Input = { low, high: E.tensor(dtype === 'float64' ? floats : Float32Array.from(floats), shape) };
    const y = E.tensor(dtype === 'float64' ? new Float64Array([1, 0, 1]) : new Float32Array([1, 0, 1]), [N, 1]);
    const step = makeStep(model), jstep = E.jit(step);
    const k = E.random.key(11);
    const want = step(model.params, model.state, onFloats, y, k);
    // The decode (v·scale + shift) rounds otherwise than (v/255 − mean)/std, and ~40 layers of batch norm amplify it:
    // measured worst 1.9e-12 (float64) and 1.1e-3 (float32), on the first layers' gradients.
    const tol = dtype === 'float64' ? 2e-11 : 1e-2;
    expect(worstOver(step(model.params, model.state, onBytes, y, k), want)).toBeLessThanOrEqual(tol);
    expect(worstOver(jstep(model.params, model.state, onBytes, y, k), want)).toBeLessThanOrEqual(tol);
  });
});
