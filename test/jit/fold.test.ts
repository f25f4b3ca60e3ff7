/**
 * jit folds eval-mode batch norm into the conv before it (src/jit/fold.ts): a conv2d whose only reader is a
 * per-output-channel affine becomes one conv2dAffine step. B0 inference folds 40 of its 49 BNs (the 9 before a
 * residual add run inside the add's fused loop instead; all 49 fold with fusion off) and matches eager;
 * a training step folds none (BN reads the conv output for its statistics); a pair whose conv output has another
 * reader (a graph output, or the affine's own gradient) is left alone; gradients through a folded pair are exact;
 * the folded conv's result gets no storage.
 *
 * float64: ≤ 1e-12·(1 + max|eager|) (the reference kernels compute conv, then affine, in the same order; measured 0).
 * float32: ≤ 5e-6·(1 + max|eager|) on B0's logits: the folded kernels compute exactly what the unfolded ones do
 * (test/backends/cpu/conv_affine.test.ts); what remains is jit's fused loops vs eager's ops elsewhere in the net
 * (measured 5.1e-7; 4.1e-7 with folding off).
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { treeMapWithPath, keystr } from '../../src/autograd/pytree.ts';
import { withRecorder } from '../../src/autograd/trace.ts';
import { Tracer } from '../../src/jit/graph.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { foldConvAffine } from '../../src/jit/fold.ts';
import { schedule } from '../../src/jit/fuse.ts';
import { planMemory } from '../../src/jit/plan.ts';
import { trainStep, worstRel } from '../helpers/jit.ts';

const key = E.random.key(21);
const u = (i: number, shape: readonly number[], lo: number, hi: number, dtype: E.DType) => E.cast(E.random.uniform(E.random.foldIn(key, i), [...shape], lo, hi), dtype);

/** A B0 whose BN statistics and affine parameters differ per channel (fresh ones are all 0 and 1) and whose logits are O(1). */
function b0(dtype: E.DType) {
  const model = E.nn.createModel('b0', { key, lowSize: 32, dtype });
  let i = 100;
  const params = treeMapWithPath((p, t) => {
    const k = keystr(p);
    if (k.endsWith('bn.scale')) return u(i++, t.shape, 0.5, 1.5, dtype);
    if (k.endsWith('bn.bias')) return u(i++, t.shape, -0.3, 0.3, dtype);
    if (k.startsWith('fc.')) return u(i++, t.shape, -1, 1, dtype);
    return t;
  }, model.params);
  const state = treeMapWithPath((p, t) => (keystr(p).endsWith('var') ? u(i++, t.shape, 0.5, 2, dtype) : u(i++, t.shape, -0.3, 0.3, dtype)), model.state);
  return { model, params, state, x: u(1, [2, 3, 32, 32], -2, 2, dtype) };
}

describe('eval-mode batch norm folded into its conv', () => {
  it.each([
    ['float64', 1e-12],
    ['float32', 5e-6],
  ] as const)('B0 inference (%s): 40 of 49 BNs fold (49 unfused), and the logits match eager', (dtype, tol) => {
    const { model, params, state, x } = b0(dtype);
    const infer = (p: E.nn.Params, s: E.nn.State, xx: E.Tensor) => E.nn.apply(model.config, p, s, xx, { training: false, key })[0];
    const want = E.dataSync(infer(params, state, x));
    const jf = E.jit(infer);
    const unfolded = E.jit(infer, { fold: false });
    const stats = jf.lower(params, state, x).stats;
    expect(stats.foldedAffines).toBe(40);
    // float32 also folds the 16 squeeze-excite gates (one mul each) into their convs (below).
    expect(stats.foldedScales).toBe(dtype === 'float32' ? 16 : 0);
    expect(unfolded.lower(params, state, x).stats).toMatchObject({ foldedAffines: 0, eqns: stats.eqns + 40 + stats.foldedScales });
    expect(E.jit(infer, { fuse: false }).lower(params, state, x).stats.foldedAffines).toBe(49);
    expect(Math.max(...Array.from(want, Math.abs))).toBeGreaterThan(0.1);
    expect(worstRel(E.dataSync(jf(params, state, x)), want)).toBeLessThanOrEqual(tol);
    expect(worstRel(E.dataSync(unfolded(params, state, x)), want)).toBeLessThanOrEqual(tol);
  });

  it('a B0 training step folds none', () => {
    const { model, params, state, x } = b0('float32');
    const step = E.jit(trainStep(model));
    expect(step.lower(params, state, x, E.zeros([2, 1]), key).stats).toMatchObject({ foldedAffines: 0, foldedScales: 0 });
  });

  const conv = (x: E.Tensor, w: E.Tensor) => E.conv2d(x, w, { padding: 'same' });
  const x = u(2, [2, 3, 6, 6], -1, 1, 'float64');
  const w = u(3, [4, 3, 3, 3], -1, 1, 'float64');
  const a = u(4, [1, 4, 1, 1], 0.5, 1.5, 'float64');
  const b = u(5, [1, 4, 1, 1], -0.5, 0.5, 'float64');

  it('leaves a pair alone when the conv output has another reader', () => {
    const both = E.jit((xx: E.Tensor, ww: E.Tensor) => {
      const y = conv(xx, ww);
      return [y, E.affine(y, a, b, { act: 'silu' })];
    });
    expect(both.lower(x, w).stats.foldedAffines).toBe(0);
    // A gradient through the affine's scale reads the conv output again.
    const gradScale = E.jit((aa: E.Tensor) => E.grad((q: E.Tensor) => E.sum(E.affine(conv(x, w), q, b)))(aa));
    expect(gradScale.lower(a).stats.foldedAffines).toBe(0);
    const fullShift = E.jit((xx: E.Tensor) => E.affine(conv(xx, w), a, E.zeros([2, 4, 6, 6], 'float64')));
    expect(fullShift.lower(x).stats.foldedAffines).toBe(0);
  });

  it.each([false, true])('gradients through a folded pair are exact (SiLU %s)', (silu) => {
    // Only the filter is differentiated: the affine's pullback needs its scale, not the conv output, so the pair
    // folds — unless it carries the SiLU, whose pullback recomputes the affine from the conv output.
    const f = (ww: E.Tensor, xx: E.Tensor) => E.valueAndGrad((q: E.Tensor) => E.sum(E.square(E.affine(conv(xx, q), a, b, silu ? { act: 'silu' } : {}))))(ww);
    const jf = E.jit(f);
    expect(jf.lower(w, x).stats.foldedAffines).toBe(silu ? 0 : 1);
    const [l0, g0] = f(w, x);
    const [l1, g1] = jf(w, x);
    expect(worstRel(E.dataSync(l1), E.dataSync(l0))).toBeLessThanOrEqual(1e-12);
    expect(worstRel(E.dataSync(g1), E.dataSync(g0))).toBeLessThanOrEqual(1e-12);
  });

  it("gives the folded conv's result no storage", () => {
    const tracer = new Tracer();
    const [tx, tw] = [tracer.input(x, 0), tracer.input(w, 1)];
    tracer.graph.outputs = [{ v: tracer.varOf(withRecorder(tracer, () => E.affine(conv(tx, tw), a, b))) }];
    const { graph, folded } = foldConvAffine(tracer.graph, true);
    expect(folded).toBe(1);
    expect(graph.eqns.map((e) => e.prim)).toEqual(['conv2dAffine']);
    const { steps } = schedule(graph, null);
    const plan = planMemory(graph, steps, [false, false], () => true);
    const convOut = graph.vars.findIndex((v) => v.src.kind === 'eqn' && v.src.eqn < 0);
    expect(plan.placement[convOut]).toEqual({ kind: 'none' });
  });
});

/**
 * jit folds squeeze-excite's gate into the 1×1 conv after it (src/jit/fold.ts `foldInputScale`): conv(x·s) with s
 * per image and channel runs as one conv whose kernel scales its input as it reads it. The kernels multiply the same
 * float32 values the mul would have stored, so the result is bit-identical to eager.
 */
describe("squeeze-excite's gate folded into the 1×1 conv after it", () => {
  const f32 = (i: number, shape: readonly number[], lo = -1, hi = 1) => u(i, shape, lo, hi, 'float32');
  const a = f32(50, [1, 6, 1, 1], 0.5, 1.5);
  const b = f32(51, [1, 6, 1, 1], -0.5, 0.5);
  const gated = (x: E.Tensor, s: E.Tensor, viaBroadcast: boolean) => E.mul(x, viaBroadcast ? E.broadcastTo(s, x.shape) : s);
  // Planes of 4×4, 8×8 and 14×14 (the batched small-plane product in place), 7×7 (relaid), and 16×16 / 17×17 (one
  // product per image).
  it.each([4, 7, 8, 14, 16, 17])('planes of side %i: conv2d and conv2dAffine (+SiLU) of the gated input equal eager bit for bit', (side) => {
    const x = f32(52, [3, 5, side, side]);
    const s = f32(53, [3, 5, 1, 1], 0, 1);
    const w = f32(54, [6, 5, 1, 1]);
    const plain = (xx: E.Tensor, ss: E.Tensor) => E.conv2d(gated(xx, ss, side === 8), w);
    const bn = (xx: E.Tensor, ss: E.Tensor) => E.affine(E.conv2d(gated(xx, ss, side === 8), w), a, b, { act: 'silu' });
    for (const fn of [plain, bn]) {
      const jf = E.jit(fn);
      expect(jf.lower(x, s).stats.foldedScales).toBe(1);
      expect(E.dataSync(jf(x, s))).toEqual(E.dataSync(fn(x, s)));
    }
  });

  it('folds the 16 gates of B0 inference in float32 (none in float64: its kernels are float32), and the logits match eager', () => {
    const { model, params, state, x } = b0('float32');
    const infer = (p: E.nn.Params, s: E.nn.State, xx: E.Tensor) => E.nn.apply(model.config, p, s, xx, { training: false, key })[0];
    const jf = E.jit(infer);
    const stats = jf.lower(params, state, x).stats;
    expect(stats.foldedScales).toBe(16);
    expect(E.jit(infer, { fold: false }).lower(params, state, x).stats.foldedScales).toBe(0);
    expect(worstRel(E.dataSync(jf(params, state, x)), E.dataSync(infer(params, state, x)))).toBeLessThanOrEqual(5e-6);
    const m64 = b0('float64');
    const infer64 = (p: E.nn.Params, s: E.nn.State, xx: E.Tensor) => E.nn.apply(m64.model.config, p, s, xx, { training: false, key })[0];
    expect(E.jit(infer64).lower(m64.params, m64.state, m64.x).stats.foldedScales).toBe(0);
  });

  it.each(['float32', 'float64'] as const)('the CPU conv kernels take the scale on every path (%s): conv(x·s) of the primitives, bit for bit', (dtype) => {
    const x = u(61, [2, 5, 7, 7], -1, 1, dtype), s = u(62, [2, 5, 1, 1], 0, 1, dtype), w = u(63, [6, 5, 1, 1], -1, 1, dtype);
    const sc = u(64, [1, 6, 1, 1], 0.5, 1.5, dtype), sh = u(65, [1, 6, 1, 1], -0.5, 0.5, dtype);
    const cpu = findBackend('cpu');
    const arg = (t: E.Tensor) => ({ storage: t.storage, shape: t.shape, dtype: t.dtype });
    const attrs = { stride: [1, 1], padding: [0, 0, 0, 0], dilation: [1, 1], groups: 1, inputScale: true };
    // Outputs outside the heap: the float32 calls scale into scratch first; float64 runs the reference kernels.
    const plain = cpu.kernels.get('conv2d')!([x, w, s].map(arg), attrs, { shape: [2, 6, 7, 7], dtype });
    expect(Array.from(plain as Float32Array)).toEqual(Array.from(E.dataSync(E.conv2d(E.mul(x, s), w))));
    const affine = cpu.kernels.get('conv2dAffine')!([x, w, sc, sh, s].map(arg), { ...attrs, act: 'silu' }, { shape: [2, 6, 7, 7], dtype });
    expect(Array.from(affine as Float32Array)).toEqual(Array.from(E.dataSync(E.affine(E.conv2d(E.mul(x, s), w), sc, sh, { act: 'silu' }))));
  });

  it('leaves the mul alone when it is read again, is not per image and channel, or feeds a wider conv', () => {
    const x = f32(55, [2, 5, 4, 4]);
    const s = f32(56, [2, 5, 1, 1]);
    const w = f32(57, [6, 5, 1, 1]);
    const lowered = (fn: (xx: E.Tensor) => unknown) => E.jit(fn).lower(x).stats.foldedScales;
    expect(lowered((xx) => { const g = E.mul(xx, s); return [E.conv2d(g, w), g]; })).toBe(0);
    expect(lowered((xx) => E.conv2d(E.mul(xx, f32(58, [1, 5, 1, 1])), w))).toBe(0);
    expect(lowered((xx) => E.conv2d(E.mul(xx, f32(59, [2, 5, 4, 1])), w))).toBe(0);
    expect(lowered((xx) => E.conv2d(E.mul(xx, s), f32(60, [6, 5, 3, 3]), { padding: 'same' }))).toBe(0);
    // A training step reads the gated input again for the filter gradient.
    expect(E.jit((ww: E.Tensor) => E.grad((q: E.Tensor) => E.sum(E.conv2d(E.mul(x, s), q)))(ww)).lower(w).stats.foldedScales).toBe(0);
  });
});
