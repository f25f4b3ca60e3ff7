/**
 * Generators of gradient-check cases for the primitive table. `fc` (fast-check) is passed in, so
 * the engine itself has no runtime dependency on it. Values are chosen away from kinks and ties,
 * where finite differences are meaningless.
 */
import type { Arbitrary } from 'fast-check';
import type { CheckCase } from './registry.ts';

type FC = typeof import('fast-check');

/**
 * real: [-3, 3]; positive: [0.2, 3]; awayFromZero: ±[0.2, 3];
 * gridHi / gridLo: k ± 0.25 (two such inputs never tie); distinct: all values of a tensor differ by ≥ 1e-3;
 * mask: 0 or 1; zeroOrNormal: [-3, 3] with |x| < 1e-3 snapped to 0 (exact zeros, and no float32
 * subnormals, which GPUs may flush to zero).
 */
export type Domain = 'real' | 'positive' | 'awayFromZero' | 'gridHi' | 'gridLo' | 'distinct' | 'mask' | 'zeroOrNormal';

export function values(fc: FC, n: number, domain: Domain): Arbitrary<number[]> {
  const d = (min: number, max: number) => fc.double({ min, max, noNaN: true, noDefaultInfinity: true });
  const arr = <T>(a: Arbitrary<T>) => fc.array(a, { minLength: n, maxLength: n });
  switch (domain) {
    case 'real':
      return arr(d(-3, 3));
    case 'zeroOrNormal':
      return arr(d(-3, 3).map((v) => (Math.abs(v) < 1e-3 ? 0 : v)));
    case 'positive':
      return arr(d(0.2, 3));
    case 'awayFromZero':
      return arr(fc.tuple(d(0.2, 3), fc.boolean()).map(([v, s]) => (s ? -v : v)));
    case 'gridHi':
      return arr(fc.integer({ min: -3, max: 3 }).map((k) => k + 0.25));
    case 'gridLo':
      return arr(fc.integer({ min: -3, max: 3 }).map((k) => k - 0.25));
    case 'distinct':
      return arr(fc.integer({ min: -3, max: 3 })).map((ks) => ks.map((k, i) => k + ((i * 7919) % n) / n + 1e-3 * i / n));
    case 'mask':
      return arr(fc.integer({ min: 0, max: 1 }));
  }
}

export const dims = (fc: FC, minRank = 0, maxRank = 3, maxDim = 4): Arbitrary<number[]> =>
  fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: minRank, maxLength: maxRank });

const size = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);

/** One input of the given shape arbitrary and domain. */
export const input = (fc: FC, shape: Arbitrary<number[]>, domain: Domain) =>
  shape.chain((s) => values(fc, size(s), domain).map((v) => ({ shape: s, values: v })));

/** A case for an elementwise unary op. */
export const unaryCase = (domain: Domain, attrs?: unknown) => (fc: FC): Arbitrary<CheckCase> =>
  input(fc, dims(fc), domain).map((x) => ({ inputs: [x], attrs }));

/** Shapes that broadcast together: each drops some leading axes of a base shape and sets some axes to 1. */
export const broadcastingShapes = (fc: FC, n: number): Arbitrary<number[][]> =>
  dims(fc, 0, 3).chain((base) =>
    fc.array(
      fc.tuple(fc.integer({ min: 0, max: base.length }), fc.array(fc.boolean(), { minLength: base.length, maxLength: base.length })).map(
        ([drop, ones]) => base.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d)),
      ),
      { minLength: n, maxLength: n },
    ),
  );

/** A case for an elementwise op of several broadcasting inputs, one domain per input. */
export const broadcastCase = (...domains: Domain[]) => (fc: FC): Arbitrary<CheckCase> =>
  broadcastingShapes(fc, domains.length).chain((shapes) =>
    fc.tuple(...shapes.map((s, i) => values(fc, size(s), domains[i]).map((v) => ({ shape: s, values: v })))).map((inputs) => ({
      inputs,
    })),
  );

/** A non-scalar input and a subset of its axes. */
export const axesCase = (fc: FC, domain: Domain, minRank = 1) =>
  dims(fc, minRank, 3).chain((s) =>
    fc.tuple(
      values(fc, size(s), domain).map((v) => ({ shape: s, values: v })),
      fc.subarray([...s.keys()], { minLength: 1 }),
      fc.boolean(),
    ),
  );

/**
 * Forward-only cases for the primitives that have no gradient check (comparisons, sign, cast), so
 * the suites that compare implementations (backends, jit vs eager) cover every primitive.
 */
export const forwardOnlyCases: Readonly<Record<string, (fc: FC) => Arbitrary<CheckCase>>> = {
  // sign tells 0 from a subnormal, which a GPU may flush to 0: its cases have exact zeros instead.
  sign: unaryCase('zeroOrNormal'),
  greater: broadcastCase('gridHi', 'gridLo'),
  greaterEqual: broadcastCase('gridHi', 'gridLo'),
  equal: broadcastCase('mask', 'mask'),
  cast: unaryCase('real', { dtype: 'float64' }),
};
