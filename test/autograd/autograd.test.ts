import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';

const arr = (t: E.Tensor) => Array.from(E.dataSync(t));
const f64 = (v: number[], s?: number[]) => E.tensor(new Float64Array(v), s);

describe('transforms', () => {
  it('grad over a tree keeps its structure', () => {
    const params = { w: f64([1, 2]), layers: [{ b: f64([3]) }], name: 'static' };
    const g = E.grad((p: typeof params) => E.add(E.sum(E.mul(p.w, p.w)), E.sum(E.mul(p.layers[0].b, 3))))(params);
    expect(arr(g.w)).toEqual([2, 4]);
    expect(arr(g.layers[0].b)).toEqual([3]);
    expect(g.name).toBe('static');
  });
  it('valueAndGrad returns the value; hasAux carries extra output', () => {
    const [v, g] = E.valueAndGrad((x: E.Tensor) => E.sum(E.exp(x)))(f64([0, 1]));
    expect(arr(v)[0]).toBeCloseTo(1 + Math.E);
    expect(arr(g)).toEqual([1, Math.E]);
    const [[loss, aux], g2] = E.valueAndGrad((x: E.Tensor) => [E.sum(x), { doubled: E.mul(x, 2) }] as [E.Tensor, { doubled: E.Tensor }], { hasAux: true })(f64([1, 2]));
    expect(arr(loss)).toEqual([3]);
    expect(arr(aux.doubled)).toEqual([2, 4]);
    expect(aux.doubled.node).toBeUndefined();
    expect(arr(g2)).toEqual([1, 1]);
  });
  it('vjp of a non-scalar output and a tree output', () => {
    const [y, back] = E.vjp((x: E.Tensor) => ({ a: E.mul(x, x), b: E.sum(x) }), f64([1, 2, 3]));
    expect(arr(y.a)).toEqual([1, 4, 9]);
    expect(arr(back({ a: f64([1, 0, 1]), b: f64([1], []) }))).toEqual([3, 1, 7]);
  });
  it('a value used several times accumulates', () => {
    const g = E.grad((x: E.Tensor) => E.sum(E.add(E.mul(x, x), E.mul(x, E.exp(x)))))(f64([0.5]));
    expect(arr(g)[0]).toBeCloseTo(2 * 0.5 + Math.exp(0.5) * 1.5, 12);
  });
  it('broadcast gradients are summed back to the input shape', () => {
    const g = E.grad((p: { a: E.Tensor; b: E.Tensor }) => E.sum(E.mul(p.a, p.b)))({ a: f64([1, 2, 3, 4, 5, 6], [2, 3]), b: f64([1, 10, 100], [1, 3]) });
    expect(g.b.shape).toEqual([1, 3]);
    expect(arr(g.b)).toEqual([5, 7, 9]);
    expect(arr(g.a)).toEqual([1, 10, 100, 1, 10, 100]);
    const gs = E.grad((s: E.Tensor) => E.sum(E.mul(f64([1, 2, 3]), s)))(f64([2], []));
    expect(gs.shape).toEqual([]);
    expect(arr(gs)).toEqual([6]);
  });
  it('slices, concat and gather route gradients', () => {
    const x = f64([1, 2, 3, 4]);
    const g = E.grad((t: E.Tensor) => {
      const [a, b] = E.split(t, [1, 3]);
      const c = E.concat([b, a, E.gather(t, [3, 3, 0])]);
      return E.sum(E.mul(c, f64([1, 2, 3, 4, 5, 6, 7])));
    })(x);
    expect(arr(g)).toEqual([4 + 7, 1, 2, 3 + 5 + 6]);
  });
  it('grad of a function that itself calls grad', () => {
    // d/dx Σ (∂/∂x Σ x³) = d/dx Σ 3x² = 6x
    const inner = E.grad((t: E.Tensor) => E.sum(E.pow(t, 3)));
    expect(arr(E.grad((t: E.Tensor) => E.sum(inner(t)))(f64([1, 2])))).toEqual([6, 12]);
    // Mixed: f(x) = Σ x · g(x) where g = ∇(Σ sin-free x²y) w.r.t. y at y = x → x², so f = Σ x³.
    const gy = (x: E.Tensor) => E.grad((y: E.Tensor) => E.sum(E.mul(E.mul(x, x), y)))(x);
    expect(arr(E.grad((x: E.Tensor) => E.sum(E.mul(x, gy(x))))(f64([1, 3])))).toEqual([3, 27]);
  });
  it('stopGradient blocks, escaped values are constants', () => {
    const g = E.grad((x: E.Tensor) => E.sum(E.mul(x, E.stopGradient(x))))(f64([3]));
    expect(arr(g)).toEqual([3]);
    let leaked: E.Tensor | undefined;
    E.grad((x: E.Tensor) => {
      leaked = E.mul(x, 2);
      return E.sum(leaked);
    })(f64([1]));
    expect(E.mul(leaked!, 3).node).toBeUndefined();
  });
  it('customVjp uses the given backward', () => {
    const clipGrad = E.customVjp((x: E.Tensor) => [x, null], (_r, ct) => [E.clip(ct, -1, 1)]);
    expect(arr(E.grad((x: E.Tensor) => E.sum(E.mul(clipGrad(x), 5)))(f64([1, 2])))).toEqual([1, 1]);
  });
  it('errors name the problem', () => {
    expect(() => E.grad((x: E.Tensor) => E.mul(x, 2))(f64([1, 2]))).toThrow(/valueAndGrad: f must return a scalar tensor, got shape \[2\]/);
  });
});

describe('memory', () => {
  it('1,000 calls of a small valueAndGrad leave RSS flat', () => {
    const w = E.random.normal(E.random.key(0), [64, 64]);
    const x = E.random.normal(E.random.key(1), [16, 64]);
    const step = E.valueAndGrad((p: { w: E.Tensor }) => E.mean(E.silu(E.matmul(x, p.w))));
    const run = (n: number) => {
      for (let i = 0; i < n; i++) step({ w });
    };
    const gc = (globalThis as { gc?: () => void }).gc;
    run(300); // warm up the JIT and heap
    gc?.();
    const before = process.memoryUsage().rss;
    run(1000);
    gc?.();
    const after = process.memoryUsage().rss;
    // No retained graphs: 1,000 steps would hold > 100 MB if each kept its activations.
    expect((after - before) / 2 ** 20).toBeLessThan(40);
  });
});
