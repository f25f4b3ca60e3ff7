import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../src/index.ts';
import { checkGradients } from '../src/autograd/gradcheck.ts';
import { bind } from '../src/autograd/trace.ts';

const convPrims = [
  'conv2d', 'conv2dGradInput', 'conv2dGradFilter',
  'stochasticConv2d', 'stochasticConv2dGradInput', 'stochasticConv2dGradFilter',
  'avgPool2d', 'avgPool2dGrad', 'maxPool2d', 'maxPool2dGrad', 'maxPool2dSelect',
];

describe('gradient checks (float64, finite differences)', () => {
  for (const name of convPrims) {
    it(name, () => {
      const p = E.getPrimitive(name);
      expect(p.check).toBeDefined();
      fc.assert(
        fc.property(p.check!(fc), (c) => {
          const r = checkGradients((xs, a) => bind(name, xs, a), c, { step: p.step });
          expect(r.maxError).toBeLessThan(p.tolerance ?? 1e-6);
        }),
        { numRuns: 25, seed: 42 },
      );
    });
  }
});
