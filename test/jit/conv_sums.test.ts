/**
 * A `sum` over the planes of a depthwise conv's output (squeeze-excite's global average pool) written by the conv's
 * own step on a backend whose conv kernel declares it can (`Kernel.writesSums`, the CPU backend): the sum's step is
 * gone, its result gets arena storage (or a fresh array as an output), the profile says so, and the values match
 * eager. A backend without the flag, and jit with fusion off, keep the separate sum; a backend without an arena runs
 * the pair step by step; gradients through such a graph are unchanged.
 *
 * float64: ≤ 1e-12·(1 + max|eager|) (the reference conv, then the sum kernel, as eager; measured 1.3e-15, from the
 * fused SE chain).
 * float32: ≤ 7e-7·(1 + max|eager|): the lane kernels sum each plane within 2u·Σ|y| + u·|Σy| (u = 2⁻²⁴; see
 * src/backends/cpu/fast/dwlanes.ts) of eager's float64-accumulated sum, and the SE chain after it carries that on
 * (measured worst 6.7e-8).
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { worstRel } from '../helpers/jit.ts';

const key = E.random.key(5);
const u = (i: number, shape: number[], lo: number, hi: number, dtype: E.DType) => E.cast(E.random.uniform(E.random.foldIn(key, i), shape, lo, hi, { dtype: 'float64' }), dtype);

const tol = (dtype: E.DType) => (dtype === 'float64' ? 1e-12 : 7e-7);

/** MBConv's depthwise part: depthwise conv + BN (eval) + SiLU, then squeeze-excite (mean over the planes, two 1×1 layers, sigmoid gate). */
function seBlock(C: number, k: number, stride: number, keepdims: boolean, dtype: E.DType) {
  const p = { w: u(1, [C, 1, k, k], -0.5, 0.5, dtype), a: u(2, [1, C, 1, 1], 0.5, 1.5, dtype), b: u(3, [1, C, 1, 1], -0.5, 0.5, dtype), r: u(4, [C, 3], -1, 1, dtype), e: u(5, [3, C], -1, 1, dtype) };
  return (x: E.Tensor) => {
    const y = E.affine(E.conv2d(x, p.w, { groups: C, stride, padding: 'same' }), p.a, p.b, { act: 'silu' });
    const m = E.mean(y, [2, 3], { keepdims });
    const gate = E.sigmoid(E.matmul(E.silu(E.matmul(E.reshape(m, [x.shape[0], C]), p.r)), p.e));
    return E.mul(y, E.reshape(gate, [x.shape[0], C, 1, 1]));
  };
}

/** The CPU backend under another name, its conv kernels without `writesSums` (and, optionally, without the arena). */
function cpuWithout(name: string, arena: boolean): E.Backend<any> {
  const cpu = findBackend('cpu');
  const kernels = new Map(cpu.kernels);
  for (const prim of ['conv2d', 'conv2dAffine']) {
    const k = cpu.kernels.get(prim)!;
    kernels.set(prim, Object.assign((...a: Parameters<typeof k>) => k(...a), { writesInto: true }));
  }
  const b: E.Backend<any> = { ...cpu, name, kernels: arena ? kernels : cpu.kernels, ...(!arena && { arena: undefined, view: undefined }) };
  E.registerBackend(b);
  return b;
}

const on = (t: E.Tensor, b: E.Backend<any>) => E.fromArray(E.dataSync(t), [...t.shape], b);

describe('jit: a depthwise conv writes the sums over its output planes', () => {
  // [C, H, k, stride, keepdims]: C not a multiple of 4, 3×3 and 5×5, strides 1 and 2.
  const cases: [number, number, number, number, boolean][] = [
    [6, 16, 3, 1, true],
    [5, 9, 5, 2, false],
    [12, 32, 3, 2, true],
  ];
  describe.each(cases)('C %i, %i² planes, kernel %i, stride %i, keepdims %s', (C, H, k, s, keepdims) => {
    it.each(['float32', 'float64'] as const)('%s: the sum step is gone and the result matches eager', (dtype) => {
      const f = seBlock(C, k, s, keepdims, dtype);
      const x = u(9, [3, C, H, H], -2, 2, dtype);
      const jf = E.jit(f);
      const { stats } = jf.lower(x);
      const unfused = E.jit(f, { fuse: false }).lower(x).stats;
      expect([stats.foldedAffines, stats.convSums, unfused.convSums]).toEqual([1, 1, 0]);
      // Without the pairing the same graph runs the sum as a step of its own.
      const plain = E.jit(f, { fuse: true });
      const noFlag = cpuWithout('cpu-no-plane-sums', true);
      const xb = on(x, noFlag);
      const other = plain.lower(xb).stats;
      expect([other.backend, other.convSums, other.steps]).toEqual(['cpu-no-plane-sums', 0, stats.steps + 1]);
      const want = E.dataSync(f(x));
      expect(worstRel(E.dataSync(jf(x)), want)).toBeLessThanOrEqual(tol(dtype));
      expect(worstRel(E.dataSync(plain(xb)), want)).toBeLessThanOrEqual(tol(dtype));
    });
  });

  it("B0 inference: each SE block's pool is written by its depthwise conv", () => {
    const model = E.nn.createModel('b0', { key, lowSize: 32 });
    const infer = E.jit((p: E.nn.Params, st: E.nn.State, x: E.Tensor) => E.nn.apply(model.config, p, st, x, { training: false, key })[0]);
    expect(infer.lower(model.params, model.state, E.zeros([2, 3, 32, 32])).stats.convSums).toBe(16);
  });

  it('the sums as an output: a fresh array per call; inside: arena storage; the profile labels the conv "→ sum"', () => {
    const C = 7, w = u(1, [C, 1, 3, 3], -0.5, 0.5, 'float32');
    const f = (x: E.Tensor) => {
      const y = E.conv2d(x, w, { groups: C, padding: 'same' });
      return [E.sum(y, [2, 3]), E.neg(E.sum(y, [2, 3], { keepdims: true })), E.mul(y, 2)];
    };
    const x = u(2, [2, C, 10, 10], -1, 1, 'float32');
    const jf = E.jit(f);
    // The first sum pairs with the conv (an output: fresh); the second, over the same planes, runs as its own step.
    const { stats, memory } = jf.lower(x);
    expect(stats.convSums).toBe(1);
    expect(memory.freshBytes).toBe(4 * (2 * C + 2 * C + 2 * C * 100));
    const got = jf(x), want = f(x);
    want.forEach((t, i) => expect(worstRel(E.dataSync(got[i]), E.dataSync(t))).toBeLessThanOrEqual(tol('float32')));
    const g = (xx: E.Tensor) => E.neg(E.sum(E.conv2d(xx, w, { groups: C, padding: 'same' }), [2, 3]));
    const jg = E.jit(g);
    const lowered = jg.lower(x);
    expect(lowered.stats).toMatchObject({ convSums: 1, steps: 2 });
    // The conv's output and its sums, live together in the arena (64-byte aligned); only neg's result is fresh.
    expect(lowered.memory).toMatchObject({ arenaBytes: 4 * 2 * C * 100 + 32 + 64, freshBytes: 4 * 2 * C });
    const { result, profile } = jg.profile(x);
    expect(worstRel(E.dataSync(result), E.dataSync(g(x)))).toBeLessThanOrEqual(tol('float32'));
    expect(profile.rows.map((r) => r.label)).toContain('conv2d depthwise 3×3 → sum');
    expect(profile.rows.some((r) => r.category === 'reductions')).toBe(false);
  });

  it('a backend without an arena runs the conv with its sums step by step', () => {
    const b = cpuWithout('cpu-no-arena-sums', false);
    for (const dtype of ['float32', 'float64'] as const) {
      const f = seBlock(5, 3, 1, true, dtype);
      const x = u(3, [2, 5, 8, 8], -2, 2, dtype);
      const jf = E.jit(f);
      const xb = on(x, b);
      expect(jf.lower(xb).stats).toMatchObject({ backend: 'cpu-no-arena-sums', convSums: 1 });
      expect(jf.lower(xb).memory.arenaBytes).toBe(0);
      expect(worstRel(E.dataSync(jf(xb)), E.dataSync(f(x)))).toBeLessThanOrEqual(tol(dtype));
    }
  });

  it.each(['float32', 'float64'] as const)('%s: gradients through a graph whose conv writes the sums match eager', (dtype) => {
    const C = 6;
    const block = (w: E.Tensor, x: E.Tensor) => {
      const y = E.conv2d(x, w, { groups: C, padding: 'same', stride: 2 });
      return E.sum(E.mul(y, E.sigmoid(E.mean(y, [2, 3], { keepdims: true }))));
    };
    const step = (w: E.Tensor, x: E.Tensor) => E.valueAndGrad((q: E.Tensor) => block(q, x))(w);
    const w = u(1, [C, 1, 5, 5], -0.5, 0.5, dtype), x = u(2, [2, C, 11, 11], -1, 1, dtype);
    const js = E.jit(step);
    expect(js.lower(w, x).stats.convSums).toBe(1);
    const [l0, g0] = step(w, x);
    const [l1, g1] = js(w, x);
    expect(worstRel(E.dataSync(l1), E.dataSync(l0))).toBeLessThanOrEqual(tol(dtype));
    expect(worstRel(E.dataSync(g1), E.dataSync(g0))).toBeLessThanOrEqual(tol(dtype));
  });
});
