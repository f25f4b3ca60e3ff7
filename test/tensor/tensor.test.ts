import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { isKey } from '../../src/tensor/random.ts';
import { collapseAxes } from '../../src/tensor/shape.ts';

const arr = (t: E.Tensor) => Array.from(E.dataSync(t));
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(b[i])));
};

describe('creation and dtypes', () => {
  it('dtype follows the data', () => {
    expect(E.tensor(new Float64Array([1, 2])).dtype).toBe('float64');
    expect(E.tensor(new Float32Array([1, 2])).dtype).toBe('float32');
    expect(E.tensor([1, 2]).dtype).toBe('float32');
    expect(E.tensor([[1, 2], [3, 4]]).shape).toEqual([2, 2]);
  });
  it('shape is readonly and dataSync copies', () => {
    const t = E.tensor([1, 2, 3, 4], [2, 2]);
    expect(() => (t.shape as number[]).push(1)).toThrow();
    const d = E.dataSync(t);
    d[0] = 99;
    expect(E.dataSync(t)[0]).toBe(1);
  });
  it('data() resolves to the values', async () => {
    expect(Array.from(await E.data(E.arange(3)))).toEqual([0, 1, 2]);
  });
  it('creation helpers', () => {
    expect(arr(E.zeros([2, 2]))).toEqual([0, 0, 0, 0]);
    expect(arr(E.ones([3]))).toEqual([1, 1, 1]);
    expect(arr(E.full([2], 7))).toEqual([7, 7]);
    expect(arr(E.arange(1, 7, 2))).toEqual([1, 3, 5]);
    expect(arr(E.eye(2, 3))).toEqual([1, 0, 0, 0, 1, 0]);
    expect(E.zerosLike(E.tensor(new Float64Array(3))).dtype).toBe('float64');
    expect(arr(E.onesLike(E.zeros([2])))).toEqual([1, 1]);
  });
  it('bad shapes name the op', () => {
    expect(() => E.tensor([1, 2, 3], [2, 2])).toThrow(/tensor: 3 values do not fill shape \[2,2\]/);
    expect(() => E.zeros([-1, 2])).toThrow(/full: invalid shape \[-1,2\]/);
    expect(() => E.reshape(E.zeros([2, 3]), [4])).toThrow(/reshape: cannot reshape \[2,3\] \(6 elements\) into \[4\]/);
    expect(() => E.sum(E.zeros([2, 3]), 2)).toThrow(/sum: axis 2 is out of range for a tensor of rank 2/);
    expect(() => E.add(E.zeros([2, 3]), E.zeros([4]))).toThrow('add: shapes [2,3] and [4] do not broadcast');
    expect(() => E.add(E.zeros([2]), E.tensor(new Float64Array(2)))).toThrow(/add: dtypes float32 and float64 differ/);
    expect(() => E.matmul(E.zeros([2, 3]), E.zeros([2, 3]))).toThrow(/matmul: shapes \[2,3\] and \[2,3\] are not aligned/);
    expect(() => E.concat([E.zeros([2, 3]), E.zeros([3, 3])], 1)).toThrow(/concat: shapes \[2,3\] and \[3,3\] differ outside axis 1/);
    expect(() => E.slice(E.zeros([2, 3]), [0, 2], [1, 2])).toThrow(/slice: .* is outside shape \[2,3\]/);
    expect(() => E.gather(E.zeros([2, 3]), [3], 1)).toThrow(/gather: index 3 is out of range for an axis of size 3/);
    expect(() => E.transpose(E.zeros([2, 3]), [0, 0])).toThrow(/transpose: \[0,0\] is not a permutation/);
  });
});

describe('ops (values)', () => {
  const x = E.tensor([[1, -2, 3], [-4, 5, -6]]);
  it('elementwise and broadcasting', () => {
    expect(arr(E.add(x, E.tensor([10, 20, 30])))).toEqual([11, 18, 33, 6, 25, 24]);
    expect(arr(E.mul(E.tensor([[1], [2]]), E.tensor([1, 2, 3])))).toEqual([1, 2, 3, 2, 4, 6]);
    expect(arr(E.sub(5, E.tensor([1, 2])))).toEqual([4, 3]);
    expect(arr(E.abs(x))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(arr(E.relu(x))).toEqual([1, 0, 3, 0, 5, 0]);
    expect(arr(E.maximum(x, 0))).toEqual([1, 0, 3, 0, 5, 0]);
    expect(arr(E.clip(x, -2, 2))).toEqual([1, -2, 2, -2, 2, -2]);
    expect(arr(E.where(E.greater(x, 0), x, E.neg(x)))).toEqual([1, 2, 3, 4, 5, 6]);
    close(arr(E.sigmoid(E.tensor([0, 1000, -1000]))), [0.5, 1, 0]);
    close(arr(E.softplus(E.tensor([0, 1000, -1000]))), [Math.log(2), 1000, 0]);
    close(arr(E.silu(E.tensor([1]))), [1 / (1 + Math.exp(-1))]);
    close(arr(E.pow(E.tensor([2, 3]), 2)), [4, 9]);
  });
  it('matches a naive broadcast for random shapes', () => {
    fc.assert(
      fc.property(E.checkgen.broadcastingShapes(fc, 2), ([sa, sb]) => {
        const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
        const a = E.arange(size(sa)).shape.length ? E.reshape(E.arange(size(sa)), sa) : E.arange(0);
        const b = E.reshape(E.mul(E.arange(size(sb)), 10), sb);
        const y = E.add(a, b);
        // Reference: index arithmetic on the broadcast shape.
        const out = E.broadcastShapes('ref', sa, sb);
        const st = (s: number[]) => E.stridesOf(s);
        const ya = E.dataSync(y);
        for (let i = 0; i < size(out); i++) {
          let r = i, ia = 0, ib = 0;
          for (let d = out.length - 1; d >= 0; d--) {
            const idx = r % out[d]; r = Math.floor(r / out[d]);
            const da = d - (out.length - sa.length), db = d - (out.length - sb.length);
            if (da >= 0 && sa[da] !== 1) ia += idx * st(sa)[da];
            if (db >= 0 && sb[db] !== 1) ib += idx * st(sb)[db];
          }
          if (ya[i] !== ia + 10 * ib) return false;
        }
        return true;
      }),
      { numRuns: 50 },
    );
  });
  it('reductions with axes and keepdims', () => {
    expect(arr(E.sum(x))).toEqual([-3]);
    expect(arr(E.sum(x, 0))).toEqual([-3, 3, -3]);
    expect(E.sum(x, 1, { keepdims: true }).shape).toEqual([2, 1]);
    expect(arr(E.max(x, 1))).toEqual([3, 5]);
    expect(arr(E.min(x, 0))).toEqual([-4, -2, -6]);
    expect(arr(E.mean(x, [0, 1]))).toEqual([-0.5]);
    expect(arr(E.sum(E.reshape(E.arange(24), [2, 3, 4]), [0, 2]))).toEqual([60, 92, 124]);
    close(arr(E.logSumExp(E.tensor([1000, 1000, 1000]))), [1000 + Math.log(3)]);
    close(arr(E.logSumExp(E.tensor([-Infinity, 0]))), [0]);
    close(arr(E.sum(E.softmax(x, 1), 1)), [1, 1]);
    expect(arr(E.argmax(x, 1))).toEqual([2, 1]);
  });
  it('matmul, batched and broadcast, with vectors', () => {
    const a = E.reshape(E.arange(12), [2, 2, 3]);
    const b = E.reshape(E.arange(6), [3, 2]);
    expect(arr(E.matmul(a, b))).toEqual([10, 13, 28, 40, 46, 67, 64, 94]);
    expect(arr(E.matmul(E.tensor([1, 2, 3]), b))).toEqual([16, 22]);
    expect(E.matmul(E.tensor([1, 2]), E.tensor([3, 4])).shape).toEqual([]);
    expect(arr(E.matmul(b, b, { transposeA: true }))).toEqual([20, 26, 26, 35]);
    expect(arr(E.matmul(b, b, { transposeB: true }))).toEqual([1, 3, 5, 3, 13, 23, 5, 23, 41]);
  });
  it('shape ops', () => {
    const t = E.reshape(E.arange(6), [2, 3]);
    expect(arr(E.transpose(t))).toEqual([0, 3, 1, 4, 2, 5]);
    expect(arr(E.slice(t, [0, 1], [2, 2]))).toEqual([1, 2, 4, 5]);
    expect(arr(E.slice(t, [-1]))).toEqual([3, 4, 5]);
    expect(arr(E.pad(E.tensor([1, 2]), [[1, 2]], 9))).toEqual([9, 1, 2, 9, 9]);
    expect(arr(E.concat([t, t], 1))).toEqual([0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
    expect(E.stack([t, t], 1).shape).toEqual([2, 2, 3]);
    expect(E.flatten(E.zeros([2, 3, 4]), 1).shape).toEqual([2, 12]);
    expect(arr(E.broadcastTo(E.tensor([1, 2]), [2, 2]))).toEqual([1, 2, 1, 2]);
    expect(arr(E.gather(t, [2, 0, 2], 1))).toEqual([2, 0, 2, 5, 3, 5]);
    expect(arr(E.indexSelect(t, 0, [1]))).toEqual([3, 4, 5]);
    expect(E.gather(t, E.tensor([[0, 1], [1, 0]]), 0).shape).toEqual([2, 2, 3]);
    expect(E.squeeze(E.zeros([1, 2, 1])).shape).toEqual([2]);
    expect(E.expandDims(E.zeros([2]), 0).shape).toEqual([1, 2]);
    expect(E.cast(t, 'float64').dtype).toBe('float64');
  });
});

describe('losses', () => {
  it('BCE with logits matches the formula and is stable to |logit| = 1e4', () => {
    const x = E.tensor(new Float64Array([0.3, -1.2, 1e4, -1e4, 1e4, -1e4]));
    const t = E.tensor(new Float64Array([1, 0, 1, 0, 0, 1]));
    const l = arr(E.binaryCrossEntropyWithLogits(x, t, { reduction: 'none' }));
    const ref = (z: number, y: number) => Math.max(z, 0) - z * y + Math.log1p(Math.exp(-Math.abs(z)));
    close(l, [ref(0.3, 1), ref(-1.2, 0), 0, 0, 1e4, 1e4], 1e-12);
    const g = E.grad((z: E.Tensor) => E.binaryCrossEntropyWithLogits(z, t, { reduction: 'sum' }))(x);
    const s = (z: number) => 1 / (1 + Math.exp(-z));
    close(arr(g), [s(0.3) - 1, s(-1.2), 0, 0, 1, -1], 1e-12);
    expect(arr(g).every(Number.isFinite)).toBe(true);
  });
  it('BCE posWeight weights the positive term (PyTorch pos_weight)', () => {
    const x = E.tensor([0.5, -0.5]);
    const t = E.tensor([1, 1]);
    const plain = arr(E.binaryCrossEntropyWithLogits(x, t, { reduction: 'none' }));
    const w = arr(E.binaryCrossEntropyWithLogits(x, t, { posWeight: 3, reduction: 'none' }));
    close(w, plain.map((v) => 3 * v), 1e-6);
  });
  it('crossEntropy with indices, one-hot and class weights', () => {
    const logits = E.tensor(new Float64Array([1, 2, 3, 1, 0, -1]), [2, 3]);
    const ls = E.dataSync(E.logSoftmax(logits));
    close(arr(E.crossEntropy(logits, [2, 0])), [-(ls[2] + ls[3]) / 2]);
    close(arr(E.crossEntropy(logits, E.tensor(new Float64Array([0, 0, 1, 1, 0, 0]), [2, 3]))), [-(ls[2] + ls[3]) / 2]);
    const cw = E.tensor(new Float64Array([2, 1, 1]));
    close(arr(E.crossEntropy(logits, [2, 0], { classWeights: cw })), [-(ls[2] + 2 * ls[3]) / 3]);
    expect(() => E.crossEntropy(logits, [3, 0])).toThrow(/class index 3 is out of range for 3 classes/);
  });
});

describe('random keys', () => {
  it('are deterministic, splittable and independent of call order', () => {
    const k = E.random.key(1337);
    expect(arr(E.random.uniform(k, [5]))).toEqual(arr(E.random.uniform(k, [5])));
    const [a, b] = E.random.split(k);
    expect(arr(E.random.normal(a, [4]))).not.toEqual(arr(E.random.normal(b, [4])));
    expect(E.random.split(k)[1]).toEqual(b);
  });
  it('have the right moments', () => {
    const n = Array.from(E.dataSync(E.random.normal(E.random.key(3), [20000], 2, 3)));
    const mean = n.reduce((p, v) => p + v, 0) / n.length;
    const sd = Math.sqrt(n.reduce((p, v) => p + (v - mean) ** 2, 0) / n.length);
    expect(Math.abs(mean - 2)).toBeLessThan(0.1);
    expect(Math.abs(sd - 3)).toBeLessThan(0.1);
    const u = Array.from(E.dataSync(E.random.uniform(E.random.key(4), [20000], -1, 1)));
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-1);
    expect(Math.max(...u)).toBeLessThan(1);
    const p = Array.from(E.dataSync(E.random.bernoulli(E.random.key(5), 0.3, [20000])));
    expect(Math.abs(p.reduce((s, v) => s + v, 0) / p.length - 0.3)).toBeLessThan(0.02);
    const perm = Array.from(E.random.permutation(E.random.key(6), 10)).sort((x, y) => x - y);
    expect(perm).toEqual([...Array(10).keys()]);
  });
  it('are told from other records: exactly k0 and k1, both unsigned 32-bit words', () => {
    expect(isKey(E.random.key(7))).toBe(true);
    expect(isKey({ k0: 0, k1: 2 ** 32 - 1 })).toBe(true);
    for (const x of [{ k0: 1 }, { k0: 1, k1: 2, k2: 3 }, { k0: -1, k1: 2 }, { k0: 1.5, k1: 2 }, { k0: 1, k1: 2 ** 32 }, { k0: '1', k1: 2 }, [1, 2], null, 3, { w: E.zeros([2]) }])
      expect(isKey(x), JSON.stringify(x)).toBe(false);
    expect(isKey(Object.assign(Object.create({ k2: 0 }), { k0: 1, k1: 2 }))).toBe(false); // not a plain record
  });
});

describe('collapseAxes', () => {
  it('merges axes contiguous for every operand and drops size-1 axes, covering the same offsets', () => {
    const offsets = (shape: readonly number[], strides: readonly number[]): number[] => {
      let out = [0];
      shape.forEach((n, i) => (out = out.flatMap((o) => Array.from({ length: n }, (_, j) => o + j * strides[i]))));
      return out;
    };
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 0, maxLength: 4 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), (shape, bcast) => {
        const dense = shape.map((_, i) => shape.slice(i + 1).reduce((p, n) => p * n, 1));
        const broadcast = dense.map((s, i) => (bcast[i] ? 0 : s));
        const c = collapseAxes(shape, [dense, broadcast]);
        expect(c.shape.every((n) => n > 1)).toBe(true);
        expect(offsets(c.shape, c.strides[0])).toEqual(offsets(shape, dense));
        expect(offsets(c.shape, c.strides[1])).toEqual(offsets(shape, broadcast));
      }),
    );
    expect(collapseAxes([2, 1, 3, 4], [[12, 12, 4, 1], [0, 0, 4, 1]])).toEqual({ shape: [2, 12], strides: [[12, 1], [0, 1]] });
  });
});

describe('float32 fast paths agree with the float64 reference', () => {
  it('silu, sigmoid, siluGrad, affine, moments', () => {
    const k = E.random.key(9);
    const x64 = E.random.normal(k, [3, 5, 7, 9], 0, 4, { dtype: 'float64' });
    const c64 = E.random.normal(E.random.foldIn(k, 1), [3, 5, 7, 9], 0, 1, { dtype: 'float64' });
    const [x32, c32] = [E.cast(x64, 'float32'), E.cast(c64, 'float32')];
    const cmp = (a: E.Tensor, b: E.Tensor, tol: number) => close(E.dataSync(a), E.dataSync(b), tol);
    cmp(E.silu(x32), E.silu(x64), 1e-5);
    cmp(E.sigmoid(x32), E.sigmoid(x64), 1e-5);
    cmp(E.siluGrad(x32, c32), E.siluGrad(x64, c64), 1e-5);
    const s = E.reshape(E.arange(5), [1, 5, 1, 1]);
    cmp(E.affine(x32, s, 1), E.affine(x64, E.cast(s, 'float64'), 1), 1e-5);
    const [m32, v32] = E.moments(x32, [0, 2, 3]);
    const [m64, v64] = E.moments(x64, [0, 2, 3]);
    cmp(m32, m64, 1e-5);
    cmp(v32, v64, 1e-5);
    // moments = (mean, biased variance)
    const d = Array.from(E.dataSync(E.slice(x64, [0, 0, 0, 0], [3, 1, 7, 9])));
    const mu = d.reduce((p, v) => p + v, 0) / d.length;
    close([E.dataSync(m64)[0], E.dataSync(v64)[0]], [mu, d.reduce((p, v) => p + (v - mu) ** 2, 0) / d.length], 1e-12);
  });
});
