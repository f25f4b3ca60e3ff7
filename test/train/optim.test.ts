import { describe, expect, it, vi } from 'vitest';
import { dataSync, tensor } from '../../src/index.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { adam, adamw, clipByGlobalNorm, compiledUpdate, createOptimizer, globalNorm, rmsprop, sgd, type Optimizer } from '../../src/train/optim.ts';
import { treeMap } from '../../src/autograd/pytree.ts';
import { key, normal } from '../../src/tensor/random.ts';

const f64 = (xs: number[]) => tensor(new Float64Array(xs));
const vals = (t: Tensor) => Array.from(dataSync(t));

/**
 * Scalar transcriptions of the pseudo-code in PyTorch's documentation of each optimizer
 * (torch.optim.RMSprop / Adam / AdamW / SGD), applied element by element.
 */
type Ref = (p: number[], g: number[], st: Record<string, number[]>, t: number, lr: number) => number[];
const torchRmsprop = (alpha: number, eps: number, wd: number, mom: number, centered: boolean): Ref => (p, g, st, _t, lr) =>
  p.map((x, i) => {
    let gi = g[i] + wd * x;
    st.v ??= p.map(() => 0);
    st.b ??= p.map(() => 0);
    st.ga ??= p.map(() => 0);
    st.v[i] = alpha * st.v[i] + (1 - alpha) * gi * gi;
    let vt = st.v[i];
    if (centered) {
      st.ga[i] = alpha * st.ga[i] + (1 - alpha) * gi;
      vt -= st.ga[i] * st.ga[i];
    }
    const den = Math.sqrt(vt) + eps;
    if (mom > 0) {
      st.b[i] = mom * st.b[i] + gi / den;
      return x - lr * st.b[i];
    }
    return x - (lr * gi) / den;
  });
const torchAdam = (b1: number, b2: number, eps: number, wd: number, decoupled: boolean): Ref => (p, g, st, t, lr) =>
  p.map((x, i) => {
    st.m ??= p.map(() => 0);
    st.v ??= p.map(() => 0);
    let gi = g[i];
    if (decoupled) x *= 1 - lr * wd;
    else gi += wd * x;
    st.m[i] = b1 * st.m[i] + (1 - b1) * gi;
    st.v[i] = b2 * st.v[i] + (1 - b2) * gi * gi;
    const mh = st.m[i] / (1 - b1 ** t);
    const vh = st.v[i] / (1 - b2 ** t);
    return x - (lr * mh) / (Math.sqrt(vh) + eps);
  });
const torchSgd = (mom: number, damp: number, wd: number, nesterov: boolean): Ref => (p, g, st, t, lr) =>
  p.map((x, i) => {
    let gi = g[i] + wd * x;
    if (mom !== 0) {
      st.b ??= p.map(() => 0);
      st.b[i] = t > 1 ? mom * st.b[i] + (1 - damp) * gi : gi;
      gi = nesterov ? gi + mom * st.b[i] : st.b[i];
    }
    return x - lr * gi;
  });

function compare(opt: Optimizer, ref: Ref, steps = 5, update: Optimizer['update'] = opt.update) {
  const p0 = [1, -2, 0.5, 3];
  let params = { w: f64(p0), b: [f64([0.25])] };
  let state = opt.init(params);
  let refW = [...p0];
  let refB = [0.25];
  const stW = {};
  const stB = {};
  for (let t = 1; t <= steps; t++) {
    const gw = refW.map((x, i) => Math.sin(3 * t + i) * (1 + x * 0.1));
    const gb = [Math.cos(t) * 0.3];
    const lr = 0.01 * (1 + 0.1 * t);
    [params, state] = update({ w: f64(gw), b: [f64(gb)] }, state, params, lr);
    refW = ref(refW, gw, stW, t, lr);
    refB = ref(refB, gb, stB, t, lr);
    vals(params.w).forEach((v, i) => expect(v).toBeCloseTo(refW[i], 12));
    expect(vals(params.b[0])[0]).toBeCloseTo(refB[0], 12);
    expect(state.step).toBe(t);
  }
}

describe('optimizers match PyTorch’s formulas', () => {
  it('RMSprop, one step by hand', () => {
    const opt = rmsprop({ alpha: 0.99, eps: 1e-8 });
    const p = { w: f64([1]) };
    const [np, st] = opt.update({ w: f64([0.5]) }, opt.init(p), p, 0.01);
    // v = 0.01·0.25 = 0.0025; p − lr·g/(√v + ε) = 1 − 0.01·0.5/(0.05 + 1e-8)
    expect(vals(np.w)[0]).toBeCloseTo(1 - (0.01 * 0.5) / (0.05 + 1e-8), 15);
    expect(vals((st.slots.square_avg as { w: Tensor }).w)[0]).toBeCloseTo(0.0025, 15);
  });
  it('RMSprop (plain, momentum, centred, weight decay)', () => {
    compare(rmsprop({ alpha: 0.99, eps: 1e-8 }), torchRmsprop(0.99, 1e-8, 0, 0, false));
    compare(rmsprop({ alpha: 0.9, eps: 1e-6, momentum: 0.9, weightDecay: 1e-2 }), torchRmsprop(0.9, 1e-6, 1e-2, 0.9, false));
    compare(rmsprop({ alpha: 0.95, centered: true, momentum: 0.5 }), torchRmsprop(0.95, 1e-8, 0, 0.5, true));
  });
  it('Adam and AdamW', () => {
    compare(adam(), torchAdam(0.9, 0.999, 1e-8, 0, false));
    compare(adam({ weightDecay: 0.1, betas: [0.8, 0.99] }), torchAdam(0.8, 0.99, 1e-8, 0.1, false));
    compare(adamw({ weightDecay: 0.05 }), torchAdam(0.9, 0.999, 1e-8, 0.05, true));
  });
  it('SGD (plain, momentum, Nesterov, dampening)', () => {
    compare(sgd(), torchSgd(0, 0, 0, false));
    compare(sgd({ momentum: 0.9, weightDecay: 1e-3 }), torchSgd(0.9, 0, 1e-3, false));
    compare(sgd({ momentum: 0.9, nesterov: true }), torchSgd(0.9, 0, 0, true));
    compare(sgd({ momentum: 0.5, dampening: 0.2 }), torchSgd(0.5, 0.2, 0, false));
  });
  it('state is plain data and the inputs are not mutated', () => {
    const opt = createOptimizer({ name: 'adam' });
    const p = { w: f64([1, 2]) };
    const s0 = opt.init(p);
    const [np, s1] = opt.update({ w: f64([1, 1]) }, s0, p, 0.1);
    expect(vals(p.w)).toEqual([1, 2]);
    expect(s0.step).toBe(0);
    expect(vals((s0.slots.exp_avg as { w: Tensor }).w)).toEqual([0, 0]);
    expect(s1.name).toBe('adam');
    expect(vals(np.w)[0]).toBeCloseTo(0.9, 6);
  });
  it('rejects invalid settings and mismatched trees', () => {
    expect(() => sgd({ nesterov: true })).toThrow(/Nesterov/);
    expect(() => rmsprop({ alpha: 1 })).toThrow(/alpha/);
    const opt = sgd();
    expect(() => opt.update({ a: f64([1]) }, opt.init({ a: f64([1, 2]) }), { a: f64([1, 2]) }, 0.1)).toThrow(/shape/);
  });
});

describe('the compiled update (compiledUpdate)', () => {
  const cases: [Optimizer, Ref][] = [
    [rmsprop({ alpha: 0.9, eps: 1e-6, momentum: 0.9, weightDecay: 1e-2 }), torchRmsprop(0.9, 1e-6, 1e-2, 0.9, false)],
    [rmsprop({ alpha: 0.95, centered: true }), torchRmsprop(0.95, 1e-8, 0, 0, true)],
    [adam({ weightDecay: 0.1, betas: [0.8, 0.99] }), torchAdam(0.8, 0.99, 1e-8, 0.1, false)],
    [adamw({ weightDecay: 0.05 }), torchAdam(0.9, 0.999, 1e-8, 0.05, true)],
    [sgd({ momentum: 0.5, dampening: 0.2, weightDecay: 1e-3 }), torchSgd(0.5, 0.2, 1e-3, false)],
  ];

  it('matches PyTorch’s formulas in float64 as the eager update does, compiling once per tree (SGD: once more for its first step)', () => {
    for (const [opt, ref] of cases) {
      const update = compiledUpdate(opt);
      compare(opt, ref, 5, update);
      // Five steps at five learning rates: the step count and the rate are inputs, not constants.
      expect(update.compiles).toBe(opt.config.name === 'sgd' ? 2 : 1);
      expect(compiledUpdate(opt)).toBe(update);
    }
  });

  it('float32: within 1e-6 of the eager update (measured 1.2e-7, an ulp at the parameters’ scale)', () => {
    let i = 0;
    const p0 = { w: normal(key(1), [64, 48]), b: [normal(key(2), [48])] };
    const grads = () => treeMap((p: Tensor) => normal(key(10 + i++), p.shape), p0);
    for (const opt of [rmsprop(), adam()]) {
      const update = compiledUpdate(opt);
      let [pe, se] = [p0, opt.init(p0)];
      let [pc, sc] = [p0, opt.init(p0)];
      for (let t = 0; t < 3; t++) {
        const g = grads();
        [pe, se] = opt.update(g, se, pe, 1e-3 * (t + 1));
        [pc, sc] = update(g, sc, pc, 1e-3 * (t + 1));
      }
      for (const [a, b] of [[pe.w, pc.w], [pe.b[0], pc.b[0]]]) {
        const [x, y] = [vals(a), vals(b)];
        expect(Math.max(...x.map((v, k) => Math.abs(v - y[k])))).toBeLessThan(1e-6);
      }
      expect(sc.step).toBe(3);
    }
  });
});

describe('gradient clipping by global norm', () => {
  it('scales down to the max norm and leaves small gradients alone', async () => {
    const g = { a: f64([3]), b: f64([4]) };
    expect(globalNorm(g)).toBe(5);
    const [c, n] = await clipByGlobalNorm(g, 1);
    expect(n).toBe(5);
    expect(vals(c.a)[0]).toBeCloseTo(3 / (5 + 1e-6), 12);
    expect(vals(c.b)[0]).toBeCloseTo(4 / (5 + 1e-6), 12);
    const [same, n2] = await clipByGlobalNorm(g, 10);
    expect([vals(same.a), vals(same.b), n2]).toEqual([[3], [4], 5]);
  });

  it('reads back only the norm, not the gradients', async () => {
    const cpu = findBackend('cpu');
    const g = { w: tensor(Float32Array.from({ length: 64 }, (_, i) => i / 8 - 4), [8, 8]), b: tensor(new Float32Array(8).fill(2)) };
    const sizes: number[] = [];
    const read = cpu.download.bind(cpu);
    const spy = vi.spyOn(cpu, 'download').mockImplementation((st, dt, size) => (sizes.push(size), read(st, dt, size)));
    try {
      await clipByGlobalNorm(g, 1);
    } finally {
      spy.mockRestore();
    }
    expect(sizes).toEqual([1]);
  });
});
