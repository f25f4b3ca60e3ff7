/** Core tensor ops: elementwise, reductions and matmul on the CPU backend. */
import * as E from '../../src/index.ts';
import { type Row, type Suite, matches, measure } from '../harness.ts';

export const core: Suite = {
  name: 'core',
  description: 'elementwise, reduction and matmul ops (cpu)',
  async run({ filter }) {
    const rows: Row[] = [];
    const k = E.random.key(0);
    const a = E.random.normal(k, [256, 256]);
    const b = E.random.normal(E.random.foldIn(k, 1), [256, 256]);
    const x = E.random.normal(k, [8, 32, 56, 56]);
    const cases: [string, () => unknown][] = [
      ['matmul-256', () => E.matmul(a, b)],
      ['add-broadcast-8x32x56x56', () => E.add(x, E.reshape(E.ones([32]), [32, 1, 1]))],
      ['silu-8x32x56x56', () => E.silu(x)],
      ['sum-spatial-8x32x56x56', () => E.sum(x, [2, 3])],
    ];
    for (const [name, fn] of cases) {
      if (!matches(filter, 'core', name, 'cpu', 'forward')) continue;
      rows.push({ suite: 'core', name, backend: 'cpu', pass: 'forward', ...(await measure(fn)) });
    }
    const loss = (p: { a: E.Tensor }) => E.sum(E.silu(E.matmul(p.a, b)));
    if (matches(filter, 'core', 'matmul-silu-grad-256', 'cpu', 'forward+backward')) {
      rows.push({ suite: 'core', name: 'matmul-silu-grad-256', backend: 'cpu', pass: 'forward+backward', ...(await measure(() => E.grad(loss)({ a }))) });
    }
    return rows;
  },
};
