/**
 * Sums fused with the elementwise work producing their input (jit's reducing groups) against eager: the layouts the
 * CPU backend runs as wasm SIMD loops (per-channel sums of NCHW planes, per-plane sums, a full sum; ragged planes
 * with a one-lane tail; threaded when large), a layout left to the JS loop (a sum over a leading axis), broadcast
 * leaves, keepdims either way, outputs in the arena and outside the heap, float32 and float64; and groups whose
 * values have other readers, which write the values and their sums in one pass.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { wasmHeap } from '../../src/backends/cpu/fast/heap.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { Tensor } from '../../src/tensor/tensor.ts';

const heap = wasmHeap();

function onHeap(t: E.Tensor): E.Tensor {
  if (t.dtype !== 'float32' || !heap) return t;
  const r = heap.reserve(t.size * 4);
  r.f32().set(E.dataSync(t));
  return new Tensor(t.shape, 'float32', r.f32(), findBackend('cpu'));
}

/** Uniform values, drawn in float64 (so a float32 draw is exactly representable in float64: the reference's inputs). */
const data = (seed: number, shape: number[], dtype: E.DType) => E.cast(E.random.uniform(E.random.key(seed), shape, -3, 3, { dtype: 'float64' }), dtype);

/** Worst |a − b| / (1 + |b|). */
const worst = (a: E.Tensor, b: E.Tensor) => {
  const [x, y] = [E.dataSync(a), E.dataSync(b)];
  expect(x.length).toBe(y.length);
  let e = 0;
  for (let i = 0; i < y.length; i++) e = Math.max(e, Math.abs(x[i] - y[i]) / (1 + Math.abs(y[i])));
  return e;
};

type Case = [name: string, shape: number[], sshape: number[], axes: number[], keepdims: boolean, wasm: boolean];
const cases: Case[] = [
  ['per channel [N,C,HW]→[1,C,1,1], ragged planes', [2, 3, 5, 7], [1, 3, 1, 1], [0, 2, 3], true, true],
  ['per channel, large (threaded: > 2¹⁷ values)', [4, 24, 37, 41], [1, 24, 1, 1], [0, 2, 3], true, true],
  ['per plane [N,C,HW]→[N,C], broadcast per-image leaf', [3, 5, 6, 5], [3, 1, 1, 1], [2, 3], false, true],
  ['per plane, large (threaded)', [8, 32, 23, 25], [1, 32, 1, 1], [2, 3], true, true],
  ['everything', [3, 4, 7], [1, 4, 1], [0, 1, 2], false, true],
  ['leading axis (bias gradient of a dense layer)', [6, 37], [1, 37], [0], false, false],
  ['middle axis, row-broadcast leaf', [4, 9, 6], [1, 1, 6], [1], true, false],
];

// BN backward's Σ ct·(x·a + b) and a SiLU-gradient chain, each read only by the sum.
const exprs: [string, (x: E.Tensor, y: E.Tensor, s: E.Tensor) => E.Tensor][] = [
  ['mul', (x, y) => E.mul(x, y)],
  ['affine + siluGrad chain', (x, y, s) => E.mul(E.silu(E.add(E.mul(x, s), 0.5)), E.sub(y, E.mul(x, s)))],
];

describe('jit: sums fused with the elementwise work before them', () => {
  describe.each(cases)('%s', (_, shape, sshape, axes, keepdims, wasm) => {
    it.each(exprs)('%s', (name, expr) => {
      for (const dtype of ['float32', 'float64'] as const) {
        for (const [inArena, valuesToo] of [[true, false], [false, false], [true, true]]) {
          // neg after the sum keeps the sums off the outputs, so they land in the arena (the heap); with `valuesToo`
          // the summed values are read again (and the group writes them as well as their sums).
          const f = (x: E.Tensor, y: E.Tensor, s: E.Tensor) => {
            const v = expr(x, y, s);
            const r = E.sum(v, axes, { keepdims });
            const sums = inArena ? E.neg(r) : r;
            return valuesToo ? [sums, E.mul(v, 2)] : [sums];
          };
          const args = [data(1, shape, dtype), data(2, shape, dtype), data(3, sshape, dtype)].map(onHeap) as [E.Tensor, E.Tensor, E.Tensor];
          const jf = E.jit(f);
          const { stats } = jf.lower(...args);
          expect(stats.fusedReductions, `${name} ${dtype}`).toBe(1);
          expect(stats.fusedBy).toEqual({ [dtype === 'float32' && wasm ? 'wasm-simd' : 'js']: stats.fusedLoops });
          const got = jf(...args), want = f(...args);
          const err = Math.max(...want.map((w, k) => worst(got[k], w)));
          // Sums are float64 either way. wasm: values and summation order are eager's (measured: equal bit for bit);
          // the JS loop keeps a chain's intermediates in double (measured: ≤ 1.4e-7 off eager in float32).
          expect(err, `${name} ${dtype}`).toBeLessThanOrEqual(dtype === 'float64' ? 1e-12 : dtype === 'float32' && wasm ? 1.2e-7 : 1e-6);
          if (dtype === 'float64') continue;
          // Against the float64 result on the same values, jit's float32 sums are no worse than eager's (within one ulp).
          const exact = f(...(args.map((a) => E.cast(a, 'float64')) as [E.Tensor, E.Tensor, E.Tensor]));
          const [ej, ee] = [got, want].map((r) => Math.max(...exact.map((x, k) => worst(r[k], x))));
          expect(ej, `${name}: jit ${ej} vs eager ${ee}, off float64`).toBeLessThanOrEqual(ee + 1.2e-7);
        }
      }
    });
  });

  it('a sum whose input is also an output: the group writes both (the values are not recomputed)', () => {
    const f = (x: E.Tensor, y: E.Tensor) => {
      const p = E.mul(E.add(x, 1), y);
      return [E.sum(p, [1], { keepdims: false }), p];
    };
    const args = [data(1, [4, 40], 'float32'), data(2, [4, 40], 'float32')].map(onHeap) as [E.Tensor, E.Tensor];
    const jf = E.jit(f);
    const { stats } = jf.lower(...args);
    expect([stats.fusedLoops, stats.fusedReductions, stats.steps]).toEqual([1, 1, 1]);
    const [a, b] = jf(...args);
    const [ea, eb] = f(...args);
    // Both outputs lie outside the heap (small: copied out of heap scratch), so the wasm group ran: eager's values
    // and summation order (measured: equal bit for bit).
    expect(worst(a, ea)).toBeLessThanOrEqual(1.2e-7);
    expect(worst(b, eb)).toBeLessThanOrEqual(1.2e-7);
  });

  it('a backend without an arena runs fused sums step by step, the sums of a group writing both in storage of their own', () => {
    const cpu = findBackend('cpu');
    const backend: E.Backend<any> = { ...cpu, name: 'cpu-without-arena', arena: undefined, view: undefined };
    E.registerBackend(backend);
    const f = (x: E.Tensor, y: E.Tensor) => {
      const p = E.mul(E.add(x, 1), y);
      return [E.sum(p, [0], { keepdims: false }), E.mul(p, 3), E.sum(E.mul(x, y), [1], { keepdims: true })];
    };
    const [x, y] = [data(1, [5, 12], 'float64'), data(2, [5, 12], 'float64')];
    const on = [x, y].map((t) => E.fromArray(E.dataSync(t), [...t.shape], backend)) as [E.Tensor, E.Tensor];
    const jf = E.jit(f);
    const { stats, memory } = jf.lower(...on);
    expect([stats.backend, stats.fusedReductions, memory.arenaBytes]).toEqual(['cpu-without-arena', 2, 0]);
    const got = jf(...on), want = f(x, y);
    want.forEach((w, k) => expect(worst(got[k], w)).toBeLessThanOrEqual(1e-12));
  });
});
