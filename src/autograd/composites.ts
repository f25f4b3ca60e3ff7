/**
 * Gradient checks for the public ops that are composites of primitives (their VJPs come from the
 * table, but the composition is still worth checking: stability shifts, tie handling, reshapes).
 */
import * as o from '../tensor/ops.ts';
import { binaryCrossEntropyWithLogits, crossEntropy } from '../tensor/losses.ts';
import { axesCase, broadcastCase, dims, input, unaryCase, values } from './checkgen.ts';
import type { CompositeCheck } from './registry.ts';

type FC = typeof import('fast-check');

/** The composite checks, in order (src/autograd/registry.ts lists them with the primitives). */
export const compositeChecks: CompositeCheck[] = [];
const composite = (c: CompositeCheck): void => void compositeChecks.push(c);

const lastAxis = (fc: FC) => input(fc, dims(fc, 1, 3), 'real').map((x) => ({ inputs: [x] }));

composite({ name: 'mean', fn: ([x], a: any) => o.mean(x, a.axes, { keepdims: a.keepdims }), check: (fc) => axesCase(fc, 'real').map(([x, axes, keepdims]) => ({ inputs: [x], attrs: { axes, keepdims } })) });
composite({ name: 'min', fn: ([x], a: any) => o.min(x, a.axes), check: (fc) => axesCase(fc, 'distinct').map(([x, axes]) => ({ inputs: [x], attrs: { axes } })) });
composite({ name: 'logSumExp', fn: ([x], a: any) => o.logSumExp(x, a.axes, { keepdims: a.keepdims }), check: (fc) => axesCase(fc, 'real').map(([x, axes, keepdims]) => ({ inputs: [x], attrs: { axes, keepdims } })) });
composite({ name: 'softmax', fn: ([x]) => o.softmax(x, -1), check: lastAxis });
composite({ name: 'logSoftmax', fn: ([x]) => o.logSoftmax(x, -1), check: lastAxis });
composite({ name: 'clip', fn: ([x]) => o.clip(x, -1, 1), check: (fc) => unaryCase('gridHi')(fc).map((c) => ({ inputs: [{ ...c.inputs[0], values: c.inputs[0].values.map((v) => v / 2) }] })) });
composite({ name: 'square', fn: ([x]) => o.square(x), check: unaryCase('real') });
composite({ name: 'stack', fn: (xs) => o.stack(xs, -1), check: (fc) => dims(fc, 0, 3).chain((s) => fc.tuple(input(fc, fc.constant(s), 'real'), input(fc, fc.constant(s), 'real'))).map((inputs) => ({ inputs })) });
composite({ name: 'flatten', fn: ([x]) => o.flatten(x, 1), check: (fc) => input(fc, dims(fc, 2, 4), 'real').map((x) => ({ inputs: [x] })) });
composite({ name: 'matmul-vector', fn: ([a, b]) => o.matmul(a, b), check: (fc) => fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })).chain(([m, k]) => fc.tuple(input(fc, fc.constant([m, k]), 'real'), input(fc, fc.constant([k]), 'real'))).map((inputs) => ({ inputs })) });
composite({
  name: 'binaryCrossEntropyWithLogits',
  fn: ([x, t], a: any) => binaryCrossEntropyWithLogits(x, t, { posWeight: a?.posWeight, reduction: 'mean' }),
  check: (fc) =>
    dims(fc, 1, 2).chain((s) => {
      const n = s.reduce((p, d) => p * d, 1);
      return fc.tuple(values(fc, n, 'real'), values(fc, n, 'mask'), fc.option(fc.double({ min: 0.5, max: 4, noNaN: true }), { nil: undefined })).map(([x, t, pw]) => ({
        inputs: [{ shape: s, values: x.map((v) => v * 5) }, { shape: s, values: t }],
        attrs: { posWeight: pw },
        constant: [1],
      }));
    }),
});
composite({
  name: 'crossEntropy',
  fn: ([x], a: any) => crossEntropy(x, a.targets),
  check: (fc) =>
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 5 })).chain(([n, c]) =>
      fc.tuple(values(fc, n * c, 'real'), fc.array(fc.integer({ min: 0, max: c - 1 }), { minLength: n, maxLength: n })).map(([v, targets]) => ({
        inputs: [{ shape: [n, c], values: v }],
        attrs: { targets },
      })),
    ),
});
// where with a broadcast condition and scalar branches, through the public op.
composite({ name: 'where-scalar', fn: ([c, a]) => o.where(c, a, 0), check: (fc) => broadcastCase('mask', 'real')(fc).map((k) => ({ ...k, constant: [0] })) });
