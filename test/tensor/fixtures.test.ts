/** Values and gradients of composite functions against PyTorch (test/fixtures/core.json, made by scripts/fixtures/torch_core.py). */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';

interface Fix { shape: number[]; values: number[] }
interface Case { name: string; inputs: Record<string, Fix>; consts: Record<string, Fix>; value: number; grads: Record<string, number[]> }
const fixture = JSON.parse(readFileSync(new URL('../fixtures/core.json', import.meta.url), 'utf8')) as { cases: Case[] };

const t = (f: Fix) => E.tensor(new Float64Array(f.values), f.shape);
type In = Record<string, E.Tensor>;
const fns: Record<string, (x: In, c: In) => E.Tensor> = {
  'logSoftmax(matmul)': ({ x, w }, { C }) => E.sum(E.mul(E.logSoftmax(E.matmul(x, w), -1), C)),
  'bce(extreme logits)': ({ x }, { t: y }) => E.binaryCrossEntropyWithLogits(x, y, { reduction: 'sum' }),
  'bce(extreme logits, posWeight=3, mean)': ({ x }, { t: y }) => E.binaryCrossEntropyWithLogits(x, y, { posWeight: 3 }),
  'softmax(broadcast sum)': ({ a, b }, { W }) => E.sum(E.mul(E.softmax(E.add(a, b), -1), W)),
  'crossEntropy(classWeights)': ({ x }) => E.crossEntropy(x, [0, 2, 1, 2], { classWeights: E.tensor(new Float64Array([2, 1, 0.5])) }),
  'logSumExp(large, axis 0)': ({ x }) => E.sum(E.mul(E.logSumExp(x, 0), E.arange(0, 4, 1, 'float64'))),
  'amax(ties)': ({ x }) => E.sum(E.mul(E.max(x, 1), E.tensor(new Float64Array([1, 3])))),
  'silu·softplus·sigmoid chain': ({ x }) => E.sum(E.add(E.mul(E.silu(x), E.softplus(E.neg(x))), E.sigmoid(E.mul(x, 2)))),
  'mean(pow, sqrt, abs)': ({ x }) => E.mean(E.pow(E.sqrt(E.add(E.abs(x), 1)), 1.5)),
};

describe('PyTorch fixtures (float64)', () => {
  it('cover every generated case', () => expect(fixture.cases.map((c) => c.name).sort()).toEqual(Object.keys(fns).sort()));
  for (const c of fixture.cases) {
    it(c.name, () => {
      const inputs = Object.fromEntries(Object.entries(c.inputs).map(([k, v]) => [k, t(v)]));
      const consts = Object.fromEntries(Object.entries(c.consts).map(([k, v]) => [k, t(v)]));
      const [v, g] = E.valueAndGrad((x: In) => fns[c.name](x, consts))(inputs);
      expect(E.item(v)).toBeCloseTo(c.value, 9);
      for (const [k, ref] of Object.entries(c.grads)) {
        const got = E.dataSync(g[k]);
        ref.forEach((r, i) => expect(Math.abs(got[i] - r)).toBeLessThan(1e-10 * Math.max(1, Math.abs(r))));
      }
    });
  }
});
