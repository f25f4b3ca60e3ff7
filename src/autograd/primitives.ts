/**
 * The primitive table: every op the backends implement, with its shape rule and its
 * vector–Jacobian product side by side (one-line math comment each) and how to generate
 * gradient-check cases. Cotangents of broadcast inputs come back in the output's shape; the
 * autograd core sums them back once (src/autograd/trace.ts). A new op is one entry here plus one
 * kernel per backend (src/backends/<name>/).
 */
import type { DType } from '../backends/backend.ts';
import * as o from '../tensor/ops.ts';
import { type Shape, broadcastShapes, fmt, reducedShape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { axesCase, broadcastCase, dims, input, unaryCase, values } from './checkgen.ts';
import type { Primitive, Residuals } from './registry.ts';

type In = readonly { shape: Shape; dtype: DType }[];

/** The entries of this file, in order (src/autograd/registry.ts builds the table from them). */
export const primitives: Primitive<any>[] = [];
const entry = <A>(p: Primitive<A>): void => void primitives.push(p);

function sameDtype(op: string, xs: In): DType {
  const d = xs[0].dtype;
  for (const x of xs) {
    if (x.dtype !== d) throw new Error(`${op}: dtypes ${xs.map((y) => y.dtype).join(' and ')} differ (shapes ${xs.map((y) => fmt(y.shape)).join(' and ')}); cast first`);
  }
  return d;
}

const elementwise = (op: string) => (xs: In) => ({ shape: broadcastShapes(op, ...xs.map((x) => x.shape)), dtype: sameDtype(op, xs) });

type Vjp = (ct: Tensor, r: Residuals<any>) => readonly (Tensor | null)[];

function unaryPrim(name: string, vjp: Vjp | undefined, domain: Parameters<typeof unaryCase>[0] = 'real') {
  entry({ name, infer: elementwise(name), vjp, check: vjp && unaryCase(domain) });
}
function binaryPrim(name: string, vjp: Vjp | undefined, da: Parameters<typeof broadcastCase>[0] = 'real', db = da) {
  entry({ name, infer: elementwise(name), vjp, check: vjp && broadcastCase(da, db) });
}

// ---- unary -------------------------------------------------------------------------------------
unaryPrim('neg', (ct) => [o.neg(ct)]); // d(−x) = −1
unaryPrim('exp', (ct, { out }) => [o.mul(ct, out)]); // d eˣ = eˣ
unaryPrim('log', (ct, { inputs: [x] }) => [o.div(ct, x)], 'positive'); // d log x = 1/x
unaryPrim('sqrt', (ct, { out }) => [o.div(ct, o.mul(out, 2))], 'positive'); // d √x = 1/(2√x)
unaryPrim('abs', (ct, { inputs: [x] }) => [o.mul(ct, o.sign(x))], 'awayFromZero'); // d|x| = sign x
unaryPrim('sign', undefined);
unaryPrim('sigmoid', (ct, { out }) => [o.mul(ct, o.mul(out, o.sub(1, out)))]); // σ' = σ(1 − σ)
unaryPrim('tanh', (ct, { out }) => [o.mul(ct, o.sub(1, o.mul(out, out)))]); // tanh' = 1 − tanh²
unaryPrim('relu', (ct, { inputs: [x] }) => [o.mul(ct, o.greater(x, 0))], 'awayFromZero'); // relu' = [x > 0]
// silu' = σ(x)(1 + x(1 − σ(x))), fused into one pass by siluGrad below.
unaryPrim('silu', (ct, { inputs: [x] }) => [o.siluGrad(x, ct)]);
unaryPrim('softplus', (ct, { inputs: [x] }) => [o.mul(ct, o.sigmoid(x))]); // softplus' = σ

// ---- binary, broadcasting ----------------------------------------------------------------------
binaryPrim('add', (ct) => [ct, ct]);
binaryPrim('sub', (ct, { needs }) => [ct, needs[1] ? o.neg(ct) : null]);
binaryPrim('mul', (ct, { inputs: [a, b], needs }) => [needs[0] ? o.mul(ct, b) : null, needs[1] ? o.mul(ct, a) : null]);
// d(a/b) = da/b − a·db/b²
binaryPrim(
  'div',
  (ct, { inputs: [a, b], out, needs }) => [needs[0] ? o.div(ct, b) : null, needs[1] ? o.neg(o.div(o.mul(ct, out), b)) : null],
  'real',
  'awayFromZero',
);
// d(aᵇ) = b·aᵇ⁻¹ da + aᵇ·log a db (the latter taken as 0 where a ≤ 0)
binaryPrim(
  'pow',
  (ct, { inputs: [a, b], out, needs }) => [
    needs[0] ? o.mul(ct, o.mul(b, o.pow(a, o.sub(b, 1)))) : null,
    needs[1] ? o.mul(ct, o.where(o.greater(a, 0), o.mul(out, o.log(o.where(o.greater(a, 0), a, 1))), 0)) : null,
  ],
  'positive',
  'real',
);
// Ties split the gradient equally (as PyTorch does).
const pick = (a: Tensor, b: Tensor) => o.add(o.greater(a, b), o.mul(o.equal(a, b), 0.5));
binaryPrim('maximum', (ct, { inputs: [a, b] }) => [o.mul(ct, pick(a, b)), o.mul(ct, pick(b, a))], 'gridHi', 'gridLo');
binaryPrim('minimum', (ct, { inputs: [a, b] }) => [o.mul(ct, pick(b, a)), o.mul(ct, pick(a, b))], 'gridHi', 'gridLo');
binaryPrim('greater', undefined);
binaryPrim('greaterEqual', undefined);
binaryPrim('equal', undefined);

// siluGrad(x, c) = c·silu'(x): d/dx = c·silu''(x) with silu'' = σ(1 − σ)(2 + x(1 − 2σ)); d/dc = silu'(x).
binaryPrim('siluGrad', (ct, { inputs: [x, c], needs }) => {
  const s = o.sigmoid(x);
  return [
    needs[0] ? o.mul(ct, o.mul(c, o.mul(o.mul(s, o.sub(1, s)), o.add(2, o.mul(x, o.sub(1, o.mul(s, 2))))))) : null,
    needs[1] ? o.mul(ct, o.mul(s, o.add(1, o.mul(x, o.sub(1, s))))) : null,
  ];
});

// affine(x, a, b) = x·a + b in one pass (batch norm, biases): d/dx = a, d/da = x, d/db = 1.
// With act 'silu' the output is silu(x·a + b) (BN + activation fused); the VJP recomputes z = x·a + b
// rather than keeping it, and pushes ct·silu'(z) through the affine part.
entry<{ act?: 'silu' }>({
  name: 'affine',
  infer: (xs, a) => {
    if (a.act !== undefined && a.act !== 'silu') throw new Error(`affine: unknown activation '${a.act as string}' (silu or none)`);
    return elementwise('affine')(xs);
  },
  vjp: (ct, { inputs: [x, a, b], attrs, needs }) => {
    const g = attrs.act === 'silu' ? o.siluGrad(o.affine(x, a, b), ct) : ct;
    return [needs[0] ? o.mul(g, a) : null, needs[1] ? o.mul(g, x) : null, g];
  },
  check: (fc) => fc.tuple(broadcastCase('real', 'real', 'real')(fc), fc.boolean()).map(([k, act]) => ({ ...k, attrs: act ? { act: 'silu' } : {} })),
});

// where(c, a, b): the cotangent goes to a where c ≠ 0, to b elsewhere.
entry({
  name: 'where',
  infer: (xs) => ({ shape: broadcastShapes('where', ...xs.map((x) => x.shape)), dtype: sameDtype('where', xs.slice(1)) }),
  vjp: (ct, { inputs: [c], needs }) => [null, needs[1] ? o.where(c, ct, 0) : null, needs[2] ? o.where(c, 0, ct) : null],
  check: (fc) => broadcastCase('mask', 'real', 'real')(fc).map((k) => ({ ...k, constant: [0] })),
});

// ---- reductions --------------------------------------------------------------------------------
interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}
const reduceInfer = (op: string) => (xs: In, a: ReduceAttrs) => ({ shape: reducedShape(xs[0].shape, a.axes, a.keepdims), dtype: xs[0].dtype });
const kept = (x: Tensor, a: ReduceAttrs, t: Tensor) => o.reshape(t, reducedShape(x.shape, a.axes, true));
const reduceCheck = (domain: 'real' | 'distinct') => (fc: typeof import('fast-check')) =>
  axesCase(fc, domain).map(([x, axes, keepdims]) => ({ inputs: [x], attrs: { axes: [...axes].sort(), keepdims } }));

// d Σx = 1: the cotangent broadcast back over the reduced axes.
entry<ReduceAttrs>({
  name: 'sum',
  infer: reduceInfer('sum'),
  vjp: (ct, { inputs: [x], attrs }) => [o.broadcastTo(kept(x, attrs, ct), x.shape)],
  check: reduceCheck('real'),
});
// d max = 1 at the arg-max (shared equally among ties).
entry<ReduceAttrs>({
  name: 'max',
  infer: reduceInfer('max'),
  vjp: (ct, { inputs: [x], out, attrs }) => {
    const mask = o.equal(x, kept(x, attrs, out));
    const count = o.sum(mask, attrs.axes, { keepdims: true });
    return [o.mul(mask, o.div(kept(x, attrs, ct), count))];
  },
  check: reduceCheck('distinct'),
});

// moments: [mean, biased variance] over the axes, stacked on a new leading axis of 2.
// d mean/dx = 1/n; d var/dx = 2(x − mean)/n.
entry<ReduceAttrs>({
  name: 'moments',
  infer: (xs, a) => ({ shape: [2, ...reducedShape(xs[0].shape, a.axes, a.keepdims)], dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x], out, attrs }) => {
    const n = attrs.axes.reduce((p, ax) => p * x.shape[ax], 1);
    const [c0, c1, mean] = [o.slice(ct, [0], [1]), o.slice(ct, [1], [1]), o.slice(out, [0], [1])].map((t) => kept(x, attrs, t));
    return [o.div(o.add(c0, o.mul(o.mul(c1, 2), o.sub(x, mean))), n)];
  },
  check: reduceCheck('real'),
});

// ---- matmul ------------------------------------------------------------------------------------
interface MatmulAttrs {
  transA: boolean;
  transB: boolean;
}
entry<MatmulAttrs>({
  name: 'matmul',
  infer: (xs, { transA, transB }) => {
    const [a, b] = xs;
    sameDtype('matmul', xs);
    const bad = () => new Error(`matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} are not aligned${transA || transB ? ` (transposeA=${transA}, transposeB=${transB})` : ''}`);
    if (a.shape.length < 2 || b.shape.length < 2) throw bad();
    const [m, ka] = transA ? a.shape.slice(-2).reverse() : a.shape.slice(-2);
    const [kb, n] = transB ? b.shape.slice(-2).reverse() : b.shape.slice(-2);
    if (ka !== kb) throw bad();
    let batch: number[];
    try {
      batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    } catch {
      throw bad();
    }
    return { shape: [...batch, m, n], dtype: a.dtype };
  },
  // C = op(A)·op(B): d op(A) = C̄·op(B)ᵀ, d op(B) = op(A)ᵀ·C̄, transposed back where op is a transpose.
  vjp: (ct, { inputs: [a, b], attrs: { transA, transB }, needs }) => [
    !needs[0] ? null : transA ? o.matmul(b, ct, { transposeA: transB, transposeB: true }) : o.matmul(ct, b, { transposeB: !transB }),
    !needs[1] ? null : transB ? o.matmul(ct, a, { transposeA: true, transposeB: transA }) : o.matmul(a, ct, { transposeA: !transA }),
  ],
  check: (fc) =>
    fc
      .tuple(dims(fc, 0, 2, 3), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.boolean(), fc.boolean(), fc.boolean())
      .chain(([batch, m, k, n, ta, tb, bcast]) => {
        const sa = [...batch, ...(ta ? [k, m] : [m, k])];
        const sb = [...(bcast ? batch.slice(1) : batch), ...(tb ? [n, k] : [k, n])];
        return fc.tuple(input(fc, fc.constant(sa), 'real'), input(fc, fc.constant(sb), 'real')).map((inputs) => ({ inputs, attrs: { transA: ta, transB: tb } }));
      }),
});

// ---- shape ops ---------------------------------------------------------------------------------
entry<{ shape: number[] }>({
  name: 'reshape',
  infer: (xs, { shape }) => ({ shape, dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x] }) => [o.reshape(ct, x.shape)],
  check: (fc) => input(fc, dims(fc, 1, 3), 'real').map((x) => ({ inputs: [x], attrs: { shape: [x.values.length] } })),
});

entry<{ perm: number[] }>({
  name: 'transpose',
  infer: (xs, { perm }) => ({ shape: perm.map((p) => xs[0].shape[p]), dtype: xs[0].dtype }),
  // The inverse permutation: axis perm[i] of the input is axis i of the output.
  vjp: (ct, { attrs: { perm } }) => [o.transpose(ct, perm.map((_, i) => perm.indexOf(i)))],
  check: (fc) =>
    input(fc, dims(fc, 2, 4, 3), 'real').chain((x) =>
      fc.shuffledSubarray([...x.shape.keys()], { minLength: x.shape.length, maxLength: x.shape.length }).map((perm) => ({ inputs: [x], attrs: { perm } })),
    ),
});

entry<{ shape: number[] }>({
  name: 'broadcastTo',
  infer: (xs, { shape }) => ({ shape, dtype: xs[0].dtype }),
  vjp: (ct) => [ct], // summed back to the input's shape by the core
  check: (fc) => broadcastCase('real', 'real')(fc).map((k) => {
    const out = broadcastShapes('broadcastTo', k.inputs[0].shape, k.inputs[1].shape);
    return { inputs: [k.inputs[0]], attrs: { shape: out } };
  }),
});

interface SliceAttrs {
  begin: number[];
  size: number[];
}
entry<SliceAttrs>({
  name: 'slice',
  // A batch of uint8 images is cut into micro-batches (it is never tracked, so the VJP never sees one).
  uint8Inputs: [0],
  infer: (xs, { size }) => ({ shape: size, dtype: xs[0].dtype }),
  // The cotangent of a box is zero outside it.
  vjp: (ct, { inputs: [x], attrs: { begin, size } }) => [o.pad(ct, begin.map((b, i) => [b, x.shape[i] - b - size[i]] as [number, number]))],
  check: (fc) =>
    input(fc, dims(fc, 1, 3), 'real').chain((x) =>
      fc.tuple(...x.shape.map((d) => fc.integer({ min: 0, max: d - 1 }).chain((b) => fc.tuple(fc.constant(b), fc.integer({ min: 0, max: d - b }))))).map((bs) => ({
        inputs: [x],
        attrs: { begin: bs.map((p) => p[0]), size: bs.map((p) => p[1]) },
      })),
    ),
});

interface PadAttrs {
  widths: [number, number][];
  value: number;
}
entry<PadAttrs>({
  name: 'pad',
  infer: (xs, { widths }) => ({ shape: xs[0].shape.map((d, i) => d + widths[i][0] + widths[i][1]), dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x], attrs: { widths } }) => [o.slice(ct, widths.map((w) => w[0]), x.shape)],
  check: (fc) =>
    input(fc, dims(fc, 1, 3), 'real').chain((x) =>
      fc.tuple(fc.array(fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })), { minLength: x.shape.length, maxLength: x.shape.length }), fc.double({ min: -2, max: 2, noNaN: true })).map(([widths, value]) => ({ inputs: [x], attrs: { widths, value } })),
    ),
});

entry<{ axis: number }>({
  name: 'concat',
  infer: (xs, { axis }) => {
    const dtype = sameDtype('concat', xs);
    const r = xs[0].shape;
    for (const x of xs) {
      if (x.shape.length !== r.length || x.shape.some((d, i) => i !== axis && d !== r[i])) {
        throw new Error(`concat: shapes ${xs.map((y) => fmt(y.shape)).join(' and ')} differ outside axis ${axis}`);
      }
    }
    return { shape: r.map((d, i) => (i === axis ? xs.reduce((p, x) => p + x.shape[axis], 0) : d)), dtype };
  },
  vjp: (ct, { inputs, attrs: { axis } }) => o.split(ct, inputs.map((x) => x.shape[axis]), axis),
  check: (fc) =>
    fc.tuple(dims(fc, 1, 3), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 2, maxLength: 3 }), fc.nat()).chain(([s, lens, ax]) => {
      const axis = ax % s.length;
      return fc.tuple(...lens.map((n) => input(fc, fc.constant(s.map((d, i) => (i === axis ? n : d))), 'real'))).map((inputs) => ({ inputs, attrs: { axis } }));
    }),
});

interface GatherAttrs {
  axis: number;
  indices: Int32Array;
  shape: number[];
}
const gatherShape = (x: Shape, a: GatherAttrs) => [...x.slice(0, a.axis), ...a.shape, ...x.slice(a.axis + 1)];
const indicesCase = (fc: typeof import('fast-check')) =>
  input(fc, dims(fc, 1, 3), 'real').chain((x) =>
    fc.nat().chain((ax) => {
      const axis = ax % x.shape.length;
      return fc.array(fc.integer({ min: 0, max: x.shape[axis] - 1 }), { maxLength: 5 }).map((idx) => ({ x, axis, idx }));
    }),
  );
// Picks slices along an axis; the cotangent of repeated indices accumulates.
entry<GatherAttrs>({
  name: 'gather',
  infer: (xs, a) => ({ shape: gatherShape(xs[0].shape, a), dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x], attrs }) => [o.scatterAdd(ct, attrs.indices, attrs.shape, attrs.axis, x.shape[attrs.axis])],
  check: (fc) => indicesCase(fc).map(({ x, axis, idx }) => ({ inputs: [x], attrs: { axis, indices: Int32Array.from(idx), shape: [idx.length] } })),
});
// The transpose of gather: adds slices into a zero tensor of `size` along the axis.
entry<GatherAttrs & { size: number }>({
  name: 'scatterAdd',
  infer: (xs, a) => {
    const s = xs[0].shape;
    const n = a.shape.length;
    return { shape: [...s.slice(0, a.axis), a.size, ...s.slice(a.axis + n)], dtype: xs[0].dtype };
  },
  vjp: (ct, { attrs }) => [o.gather(ct, attrs.indices, attrs.axis)],
  check: (fc) =>
    indicesCase(fc).chain(({ x, axis, idx }) => {
      const s = [...x.shape.slice(0, axis), idx.length, ...x.shape.slice(axis + 1)];
      return values(fc, s.reduce((p, d) => p * d, 1), 'real').map((v) => ({
        inputs: [{ shape: s, values: v }],
        attrs: { axis, indices: Int32Array.from(idx), shape: [idx.length], size: x.shape[axis] },
      }));
    }),
});

entry<{ dtype: DType }>({
  name: 'cast',
  uint8Inputs: [0],
  infer: (xs, { dtype }) => ({ shape: xs[0].shape, dtype }),
  // A uint8 input is data (an image), not differentiable: no cotangent for it.
  vjp: (ct, { inputs: [x] }) => [x.dtype === 'uint8' ? null : o.cast(ct, x.dtype)],
  // Checked through float32: rounding to float32 needs a wide step and a float32 tolerance.
  check: (fc) => unaryCase('real', { dtype: 'float32' })(fc),
  step: 1e-2,
  tolerance: 1e-4,
});
