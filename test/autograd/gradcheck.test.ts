/**
 * Generated from the primitive table: every differentiable primitive and every registered
 * composite gets a fast-check property comparing its VJP with central finite differences in
 * float64 (error = max|g_ad − g_fd| / max(1, max|g_fd|) ≤ tolerance, default 1e-6).
 * A failure prints the shrunk case (shapes and values) and the error.
 */
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { bind } from '../../src/autograd/trace.ts';

const runs = Number(process.env.GRADCHECK_RUNS ?? 20);

const cases = [
  ...E.listPrimitives().filter((p) => p.vjp).map((p) => ({ name: p.name, check: p.check, tol: p.tolerance ?? E.DEFAULT_TOLERANCE, step: p.step, fn: (xs: E.Tensor[], a: unknown) => bind(p.name, xs, a) })),
  ...E.listCompositeChecks().map((c) => ({ name: c.name, check: c.check, tol: c.tolerance ?? E.DEFAULT_TOLERANCE, step: c.step, fn: c.fn })),
];

describe('gradient checks (float64, finite differences)', () => {
  it('every differentiable primitive has a check generator', () => {
    expect(cases.filter((c) => !c.check).map((c) => c.name)).toEqual([]);
  });
  for (const c of cases) {
    const gen = c.check;
    if (!gen) continue;
    it(c.name, () => {
      fc.assert(
        fc.property(gen(fc), (k) => {
          const err = E.checkGradients(c.fn, k, { step: c.step }).maxError;
          if (!(err <= c.tol)) throw new Error(`${c.name}: relative error ${err.toExponential(2)} > ${c.tol}`);
        }),
        { numRuns: runs },
      );
    });
  }
});
