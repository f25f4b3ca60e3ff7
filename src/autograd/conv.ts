/**
 * The convolution family in the primitive table: conv2d (grouped / depthwise / pointwise), its two
 * gradients, the stochastic convolution of the paper and pooling. NCHW inputs, OIHW filters.
 * Conv and its gradients are bilinear, so each gradient is itself a primitive whose VJP is a conv
 * again (JAX's defbilinear): for y = conv(x, w), x̄ = convGradInput(ȳ, w), w̄ = convGradFilter(x, ȳ),
 * and since convGradInput is the adjoint of conv in x, its own VJP only needs conv and convGradFilter.
 * conv2dAffine is a conv2d followed by a per-output-channel affine (+ SiLU): eval-mode batch norm folded into the
 * conv, which jit substitutes for the pair (src/jit/fold.ts) so the kernels apply it while the output is in cache.
 */
import type { DType } from '../backends/backend.ts';
import type { Arbitrary } from 'fast-check';
import { type Shape, fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import * as o from '../tensor/ops.ts';
import { dims, input, values } from './checkgen.ts';
import type { CheckCase, Primitive } from './registry.ts';
import { bind } from './trace.ts';

export type Pair = [number, number];
export type Quad = [number, number, number, number];

export interface Conv2dAttrs {
  readonly stride: Pair;
  /** [top, bottom, left, right] */
  readonly padding: Quad;
  readonly dilation: Pair;
  readonly groups: number;
}
export interface Conv2dAffineAttrs extends Conv2dAttrs {
  /** SiLU applied after the affine (batch norm's fused activation). */
  readonly act?: 'silu';
}
export interface Conv2dGradInputAttrs extends Conv2dAttrs {
  readonly inputShape: number[];
}
export interface Conv2dGradFilterAttrs extends Conv2dAttrs {
  readonly filterShape: number[];
}

export interface StochasticConv2dAttrs {
  readonly stride: Pair;
  readonly outSize: Pair;
  /** (row, col) top-left corners: window i = k (per batch) or n·O + k (per image). */
  readonly windows: Int32Array;
  readonly perImage: boolean;
  /**
   * How a uint8 image is read: channel c's value v as v·scale[c] + shift[c] (e.g. ImageNet normalisation, so the
   * image can stay in bytes: a quarter of float32's memory and bandwidth). Absent: its values as they are. Only
   * with a uint8 image; the image has no gradient.
   */
  readonly decode?: ImageDecode;
}
export interface ImageDecode {
  readonly scale: readonly number[];
  readonly shift: readonly number[];
}
export interface StochasticConv2dGradInputAttrs extends StochasticConv2dAttrs {
  readonly inputShape: number[];
}
export interface StochasticConv2dGradFilterAttrs extends StochasticConv2dAttrs {
  readonly filterShape: number[];
}

export interface Pool2dAttrs {
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly padding: Quad;
}
export interface Pool2dGradAttrs extends Pool2dAttrs {
  readonly inputShape: number[];
}

type In = readonly { shape: Shape; dtype: DType }[];

/** The convolution and pooling entries of the primitive table (src/autograd/registry.ts builds the table from them). */
export const convPrimitives: Primitive<any>[] = [];
const entry = <A>(p: Primitive<A>): void => void convPrimitives.push(p);

/** Output length of a padded, strided, dilated window sweep along one axis. */
export const convOutLength = (n: number, k: number, s: number, d: number, lo: number, hi: number): number =>
  Math.floor((n + lo + hi - d * (k - 1) - 1) / s) + 1;

/** Side of the input window a stochastic conv reads for `out` outputs: (out − 1)·s + k. */
export const sliceLength = (out: number, k: number, s: number): number => (out - 1) * s + k;

function sameDtype(op: string, xs: In): DType {
  if (xs[0].dtype !== xs[1].dtype) {
    throw new Error(`${op}: dtypes ${xs[0].dtype} and ${xs[1].dtype} differ (shapes ${fmt(xs[0].shape)} and ${fmt(xs[1].shape)}); cast first`);
  }
  return xs[0].dtype;
}

function rank4(op: string, what: string, s: Shape): void {
  if (s.length !== 4) throw new Error(`${op}: ${what} must be 4-D, got shape ${fmt(s)}`);
}

function checkPositive(op: string, name: string, v: readonly number[], min = 1): void {
  for (const d of v) {
    if (!Number.isInteger(d) || d < min) throw new Error(`${op}: ${name} must be integers ≥ ${min}, got [${v.join(',')}]`);
  }
}

/** conv2d's output shape for input `x` and filter `w`; errors name the op and the sizes. */
export function conv2dShape(op: string, x: Shape, w: Shape, a: Conv2dAttrs): number[] {
  rank4(op, 'input', x);
  rank4(op, 'filter', w);
  checkPositive(op, 'stride', a.stride);
  checkPositive(op, 'dilation', a.dilation);
  checkPositive(op, 'padding', a.padding, 0);
  const [N, C, H, W] = x;
  const [O, Cg, kh, kw] = w;
  const g = a.groups;
  if (!Number.isInteger(g) || g < 1) throw new Error(`${op}: groups must be a positive integer, got ${g}`);
  if (C % g !== 0) throw new Error(`${op}: groups ${g} does not divide the ${C} input channels of ${fmt(x)}`);
  if (O % g !== 0) throw new Error(`${op}: groups ${g} does not divide the ${O} output channels of filter ${fmt(w)}`);
  if (Cg * g !== C) {
    throw new Error(`${op}: channel mismatch: input ${fmt(x)} has ${C} channels, filter ${fmt(w)} with groups ${g} expects ${Cg * g}`);
  }
  const [pt, pb, pl, pr] = a.padding;
  const [sh, sw] = a.stride;
  const [dh, dw] = a.dilation;
  const oh = convOutLength(H, kh, sh, dh, pt, pb);
  const ow = convOutLength(W, kw, sw, dw, pl, pr);
  if (oh < 1 || ow < 1) {
    throw new Error(
      `${op}: input ${H}×${W} padded to ${H + pt + pb}×${W + pl + pr} is smaller than the dilated kernel ${dh * (kh - 1) + 1}×${dw * (kw - 1) + 1} (input ${fmt(x)}, filter ${fmt(w)})`,
    );
  }
  return [N, O, oh, ow];
}

const baseConv = (a: Conv2dAttrs): Conv2dAttrs => ({ stride: a.stride, padding: a.padding, dilation: a.dilation, groups: a.groups });


function expectShape(op: string, what: string, got: Shape, want: Shape): void {
  if (got.length !== want.length || got.some((d, i) => d !== want[i])) {
    throw new Error(`${op}: ${what} has shape ${fmt(got)}, expected ${fmt(want)}`);
  }
}

// ---- gradient-check cases ----------------------------------------------------------------------
type FC = typeof import('fast-check');
const size = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
const pair = (fc: FC, min: number, max: number) => fc.tuple(fc.integer({ min, max }), fc.integer({ min, max }));

/** A generated convolution case: input, filter and output shapes and the attributes. */
interface ConvCase<A> {
  x: number[];
  w: number[];
  attrs: A;
  out: number[];
}
/** Small conv configurations: groups (incl. depthwise with a multiplier), stride, dilation, padding, rectangular kernels. */
const convCfg = (fc: FC) =>
  fc
    .record({
      n: fc.integer({ min: 1, max: 2 }),
      groups: fc.integer({ min: 1, max: 2 }),
      cg: fc.integer({ min: 1, max: 2 }),
      og: fc.integer({ min: 1, max: 2 }),
      hw: pair(fc, 1, 5),
      k: pair(fc, 1, 3),
      stride: pair(fc, 1, 2),
      dilation: pair(fc, 1, 2),
      padding: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
    })
    .filter(
      (c) =>
        convOutLength(c.hw[0], c.k[0], c.stride[0], c.dilation[0], c.padding[0], c.padding[1]) >= 1 &&
        convOutLength(c.hw[1], c.k[1], c.stride[1], c.dilation[1], c.padding[2], c.padding[3]) >= 1,
    )
    .map((c): ConvCase<Conv2dAttrs> => {
      const x = [c.n, c.groups * c.cg, c.hw[0], c.hw[1]];
      const w = [c.groups * c.og, c.cg, c.k[0], c.k[1]];
      const attrs: Conv2dAttrs = { stride: c.stride, padding: c.padding as Quad, dilation: c.dilation, groups: c.groups };
      return { x, w, attrs, out: conv2dShape('check', x, w, attrs) };
    });

const tensorCase = (fc: FC, shape: number[]) => values(fc, size(shape), 'real').map((v) => ({ shape, values: v }));

const stochCfg = (fc: FC) =>
  fc
    .record({
      n: fc.integer({ min: 1, max: 2 }),
      c: fc.integer({ min: 1, max: 2 }),
      o: fc.integer({ min: 1, max: 3 }),
      k: pair(fc, 1, 3),
      stride: pair(fc, 1, 2),
      outSize: pair(fc, 1, 2),
      extra: pair(fc, 0, 3),
      perImage: fc.boolean(),
      seeds: fc.array(fc.nat(), { minLength: 12, maxLength: 12 }),
    })
    .map((c): ConvCase<StochasticConv2dAttrs> => {
      const sh = sliceLength(c.outSize[0], c.k[0], c.stride[0]);
      const sw = sliceLength(c.outSize[1], c.k[1], c.stride[1]);
      const H = sh + c.extra[0];
      const W = sw + c.extra[1];
      const nw = c.perImage ? c.n * c.o : c.o;
      const windows = new Int32Array(2 * nw);
      for (let i = 0; i < nw; i++) {
        windows[2 * i] = c.seeds[2 * i] % (H - sh + 1);
        windows[2 * i + 1] = c.seeds[2 * i + 1] % (W - sw + 1);
      }
      const attrs: StochasticConv2dAttrs = { stride: c.stride, outSize: c.outSize, windows, perImage: c.perImage };
      return { x: [c.n, c.c, H, W], w: [c.o, c.c, c.k[0], c.k[1]], attrs, out: [c.n, c.o, c.outSize[0], c.outSize[1]] };
    });

// ---- bilinear conv families ---------------------------------------------------------------------

/**
 * A convolution y = x ⋆ w and its two transposes, x̄ = gradInput(ȳ, w) and w̄ = gradFilter(x, ȳ):
 * three primitives, each linear in both inputs, so each one's VJP is made of the other two (JAX's
 * `defbilinear`: the gradients of a conv are convs). `shape` gives y's shape and validates the
 * inputs, `base` keeps the forward's attributes of an attribute record, `cases` generates checks.
 */
function convFamily<A>(
  name: string, shape: (op: string, x: Shape, w: Shape, a: A) => number[], base: (a: A) => A, cases: (fc: FC) => Arbitrary<ConvCase<A>>,
  /** The dtype rule of the forward and the filter gradient when their first input (the image) may be uint8. */
  imageDtype?: (op: string, xs: In, a: A) => DType,
) {
  const image = imageDtype ? { uint8Inputs: [0], dtype: imageDtype } : { dtype: (op: string, xs: In) => sameDtype(op, xs) };
  const gi = `${name}GradInput`;
  const gf = `${name}GradFilter`;
  const forward = (x: Tensor, w: Tensor, a: A): Tensor => bind(name, [x, w], base(a));
  const gradInput = (ct: Tensor, w: Tensor, a: A, inputShape: Shape): Tensor => bind(gi, [ct, w], { ...base(a), inputShape: [...inputShape] });
  const gradFilter = (x: Tensor, ct: Tensor, a: A, filterShape: Shape): Tensor => bind(gf, [x, ct], { ...base(a), filterShape: [...filterShape] });
  /** Cases whose two inputs have the shapes `pick` chooses from a generated configuration. */
  const check = (pick: (c: ConvCase<A>) => [Shape, Shape, unknown]) => (fc: FC) =>
    cases(fc).chain((c) => {
      const [s0, s1, attrs] = pick(c);
      return fc.tuple(tensorCase(fc, [...s0]), tensorCase(fc, [...s1])).map((inputs): CheckCase => ({ inputs, attrs }));
    });
  entry<A>({
    name,
    uint8Inputs: image.uint8Inputs,
    infer: (xs, a) => ({ shape: shape(name, xs[0].shape, xs[1].shape, a), dtype: image.dtype(name, xs, a) }),
    // y = x ⋆ w: x̄ = gradInput(ȳ, w), w̄ = gradFilter(x, ȳ)
    vjp: (ct, { inputs: [x, w], attrs, needs }) => [needs[0] ? gradInput(ct, w, attrs, x.shape) : null, needs[1] ? gradFilter(x, ct, attrs, w.shape) : null],
    check: check((c) => [c.x, c.w, c.attrs]),
  });
  entry<A & { readonly inputShape: number[] }>({
    name: gi,
    infer: (xs, a) => {
      expectShape(gi, 'cotangent', xs[0].shape, shape(gi, a.inputShape, xs[1].shape, a));
      return { shape: [...a.inputShape], dtype: sameDtype(gi, xs) };
    },
    // Linear in ȳ (the adjoint of the forward in x) and in w: d ȳ = X̄ ⋆ w, d w = gradFilter(X̄, ȳ).
    vjp: (g, { inputs: [ct, w], attrs, needs }) => [needs[0] ? forward(g, w, attrs) : null, needs[1] ? gradFilter(g, ct, attrs, w.shape) : null],
    check: check((c) => [c.out, c.w, { ...c.attrs, inputShape: c.x }]),
  });
  entry<A & { readonly filterShape: number[] }>({
    name: gf,
    uint8Inputs: image.uint8Inputs,
    infer: (xs, a) => {
      expectShape(gf, 'cotangent', xs[1].shape, shape(gf, xs[0].shape, a.filterShape, a));
      return { shape: [...a.filterShape], dtype: image.dtype(gf, xs, a) };
    },
    // Linear in x and in ȳ: d x = gradInput(ȳ, W̄), d ȳ = x ⋆ W̄.
    vjp: (g, { inputs: [x, ct], attrs, needs }) => [needs[0] ? gradInput(ct, g, attrs, x.shape) : null, needs[1] ? forward(x, g, attrs) : null],
    check: check((c) => [c.x, c.out, { ...c.attrs, filterShape: c.w }]),
  });
  return { forward, gradInput, gradFilter };
}

export const { forward: conv2dPrim, gradInput: conv2dGradInputPrim, gradFilter: conv2dGradFilterPrim } = convFamily('conv2d', conv2dShape, baseConv, convCfg);

/** Whether a tensor of `shape`, broadcast against a conv output `out` = [N, O, …], holds one value per output channel. */
export function perChannel(shape: Shape, out: Shape): boolean {
  if (shape.length > out.length) return false;
  const s = [...new Array<number>(out.length - shape.length).fill(1), ...shape];
  return s.every((d, i) => d === (i === 1 ? out[1] : 1));
}

// conv2dAffine(x, w, a, b) = act(conv2d(x, w)·a + b), a and b per output channel. With y = conv2d(x, w) (recomputed)
// and g = ct, or ct·silu'(y·a + b) with the SiLU: x̄ = gradInput(g·a, w), w̄ = gradFilter(x, g·a), ā = g·y, b̄ = g.
entry<Conv2dAffineAttrs>({
  name: 'conv2dAffine',
  infer: (xs, a) => {
    if (xs.length !== 4) throw new Error(`conv2dAffine: expected 4 inputs (x, w, scale, shift), got ${xs.length}`);
    if (a.act !== undefined && a.act !== 'silu') throw new Error(`conv2dAffine: unknown activation '${a.act as string}' (silu or none)`);
    const shape = conv2dShape('conv2dAffine', xs[0].shape, xs[1].shape, a);
    (['scale', 'shift'] as const).forEach((what, i) => {
      const s = xs[2 + i].shape;
      if (!perChannel(s, shape)) throw new Error(`conv2dAffine: ${what} has shape ${fmt(s)}; expected one value per output channel of ${fmt(shape)}, e.g. [1, ${shape[1]}, 1, 1]`);
    });
    const dtype = sameDtype('conv2dAffine', xs);
    if (xs[2].dtype !== dtype || xs[3].dtype !== dtype) throw new Error(`conv2dAffine: dtypes ${xs.map((x) => x.dtype).join(', ')} differ; cast first`);
    return { shape, dtype };
  },
  vjp: (ct, { inputs: [x, w, a, b], attrs, needs }) => {
    const conv = baseConv(attrs);
    const y = needs[2] || attrs.act === 'silu' ? conv2dPrim(x, w, conv) : null;
    const g = attrs.act === 'silu' ? o.siluGrad(o.affine(y!, a, b), ct) : ct;
    const ga = needs[0] || needs[1] ? o.mul(g, a) : null;
    return [
      needs[0] ? conv2dGradInputPrim(ga!, w, conv, x.shape) : null,
      needs[1] ? conv2dGradFilterPrim(x, ga!, conv, w.shape) : null,
      needs[2] ? o.mul(g, y!) : null,
      needs[3] ? g : null,
    ];
  },
  check: (fc) =>
    fc.tuple(convCfg(fc), fc.boolean()).chain(([c, act]) => {
      const ch = [1, c.out[1], 1, 1];
      return fc
        .tuple(tensorCase(fc, c.x), tensorCase(fc, c.w), tensorCase(fc, ch), tensorCase(fc, ch))
        .map((inputs): CheckCase => ({ inputs, attrs: act ? { ...c.attrs, act: 'silu' } : c.attrs }));
    }),
});

// ---- stochastic conv ---------------------------------------------------------------------------

/** The stochastic conv's output shape; validates channels, the windows array and every window. */
export function stochasticConv2dShape(op: string, x: Shape, w: Shape, a: StochasticConv2dAttrs): number[] {
  rank4(op, 'input', x);
  rank4(op, 'filter', w);
  checkPositive(op, 'stride', a.stride);
  checkPositive(op, 'outSize', a.outSize);
  const [N, C, H, W] = x;
  const [O, Cw, kh, kw] = w;
  if (Cw !== C) throw new Error(`${op}: channel mismatch: input ${fmt(x)} has ${C} channels, filter ${fmt(w)} has ${Cw}`);
  const sh = sliceLength(a.outSize[0], kh, a.stride[0]);
  const sw = sliceLength(a.outSize[1], kw, a.stride[1]);
  if (sh > H || sw > W) {
    throw new Error(`${op}: input ${H}×${W} (shape ${fmt(x)}) is smaller than the slice ${sh}×${sw} needed for output ${a.outSize[0]}×${a.outSize[1]} with a ${kh}×${kw} kernel and stride [${a.stride.join(',')}]`);
  }
  const nw = a.perImage ? N * O : O;
  if (!(a.windows instanceof Int32Array) || a.windows.length !== 2 * nw) {
    throw new Error(
      `${op}: windows has length ${a.windows?.length}, expected ${2 * nw} (${a.perImage ? `N·C_out·2 = ${N}·${O}·2, per image` : `C_out·2 = ${O}·2, per batch`})`,
    );
  }
  for (let i = 0; i < nw; i++) {
    const r = a.windows[2 * i];
    const c = a.windows[2 * i + 1];
    if (r < 0 || c < 0 || r + sh > H || c + sw > W) {
      throw new Error(`${op}: window ${i} at (${r}, ${c}) of size ${sh}×${sw} lies outside the ${H}×${W} input (valid starts 0…${H - sh}, 0…${W - sw})`);
    }
  }
  return [N, O, a.outSize[0], a.outSize[1]];
}

const baseStoch = (a: StochasticConv2dAttrs): StochasticConv2dAttrs =>
  ({ stride: a.stride, outSize: a.outSize, windows: a.windows, perImage: a.perImage, ...(a.decode ? { decode: a.decode } : {}) });

/**
 * The stochastic conv's dtype: the other input's (a float) for a uint8 image, whose `decode` (if any) must give
 * a finite scale and shift per channel; else both inputs' own, and no decode.
 */
function stochDtype(op: string, xs: In, a: StochasticConv2dAttrs): DType {
  const [x, other] = xs;
  if (x.dtype !== 'uint8') {
    if (a.decode) throw new Error(`${op}: decode reads a uint8 image, but the image ${fmt(x.shape)} is ${x.dtype}`);
    return sameDtype(op, xs);
  }
  if (other.dtype === 'uint8') throw new Error(`${op}: input 1 ${fmt(other.shape)} is uint8; only the image may be`);
  const C = x.shape[1];
  for (const key of ['scale', 'shift'] as const) {
    const v = a.decode?.[key];
    if (v && (v.length !== C || !v.every(Number.isFinite))) {
      throw new Error(`${op}: decode.${key} must be ${C} finite numbers (one per channel of the image ${fmt(x.shape)}), got [${v.join(', ')}]`);
    }
  }
  if (a.decode && (!a.decode.scale || !a.decode.shift)) throw new Error(`${op}: decode needs both scale and shift`);
  return other.dtype;
}

// Bilinear like conv, or affine in a uint8 image through its decode; overlapping windows accumulate in x̄ (inside
// the gradInput kernel).
export const {
  forward: stochasticConv2dPrim,
  gradInput: stochasticConv2dGradInputPrim,
  gradFilter: stochasticConv2dGradFilterPrim,
} = convFamily('stochasticConv2d', stochasticConv2dShape, baseStoch, stochCfg, stochDtype);

// ---- pooling -----------------------------------------------------------------------------------

export function pool2dShape(op: string, x: Shape, a: Pool2dAttrs): number[] {
  rank4(op, 'input', x);
  checkPositive(op, 'kernel', a.kernel);
  checkPositive(op, 'stride', a.stride);
  checkPositive(op, 'padding', a.padding, 0);
  const [N, C, H, W] = x;
  const [kh, kw] = a.kernel;
  const [pt, pb, pl, pr] = a.padding;
  // A window made only of padding has no value to pool (PyTorch requires pad ≤ kernel/2).
  if (Math.max(pt, pb) >= kh || Math.max(pl, pr) >= kw) {
    throw new Error(`${op}: padding [${a.padding.join(',')}] must be smaller than the ${kh}×${kw} kernel`);
  }
  const oh = convOutLength(H, kh, a.stride[0], 1, pt, pb);
  const ow = convOutLength(W, kw, a.stride[1], 1, pl, pr);
  if (oh < 1 || ow < 1) throw new Error(`${op}: input ${fmt(x)} padded by [${a.padding.join(',')}] is smaller than the ${kh}×${kw} kernel`);
  return [N, C, oh, ow];
}
const basePool = (a: Pool2dAttrs): Pool2dAttrs => ({ kernel: a.kernel, stride: a.stride, padding: a.padding });

const poolCfg = (fc: FC) =>
  fc
    .record({ x: dims(fc, 4, 4, 3).map((s) => [s[0], s[1], s[2] + 1, s[3] + 1]), kernel: pair(fc, 1, 3), stride: pair(fc, 1, 2), pad: fc.tuple(fc.nat(), fc.nat(), fc.nat(), fc.nat()) })
    .map(({ x, kernel, stride, pad }) => {
      const padding: Quad = [pad[0] % kernel[0], pad[1] % kernel[0], pad[2] % kernel[1], pad[3] % kernel[1]];
      return { x, attrs: { kernel, stride, padding } as Pool2dAttrs };
    })
    .filter(({ x, attrs }) => {
      try {
        pool2dShape('check', x, attrs);
        return true;
      } catch {
        return false;
      }
    });

// mean over the window's in-bounds cells: x̄ spreads ȳ / count back over them.
entry<Pool2dAttrs>({
  name: 'avgPool2d',
  infer: (xs, a) => ({ shape: pool2dShape('avgPool2d', xs[0].shape, a), dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x], attrs }) => [bind('avgPool2dGrad', [ct], { ...basePool(attrs), inputShape: [...x.shape] })],
  check: (fc) => poolCfg(fc).chain(({ x, attrs }) => input(fc, fc.constant(x), 'real').map((v): CheckCase => ({ inputs: [v], attrs }))),
});
entry<Pool2dGradAttrs>({
  name: 'avgPool2dGrad',
  infer: (xs, a) => {
    expectShape('avgPool2dGrad', 'cotangent', xs[0].shape, pool2dShape('avgPool2dGrad', a.inputShape, a));
    return { shape: [...a.inputShape], dtype: xs[0].dtype };
  },
  // Linear, the adjoint of avgPool2d.
  vjp: (g, { attrs }) => [bind('avgPool2d', [g], basePool(attrs))],
  check: (fc) =>
    poolCfg(fc).chain(({ x, attrs }) =>
      input(fc, fc.constant(pool2dShape('check', x, attrs)), 'real').map((v): CheckCase => ({ inputs: [v], attrs: { ...attrs, inputShape: x } })),
    ),
});

// max over the window: ȳ goes to the first arg-max (PyTorch's choice), padding never wins.
entry<Pool2dAttrs>({
  name: 'maxPool2d',
  infer: (xs, a) => ({ shape: pool2dShape('maxPool2d', xs[0].shape, a), dtype: xs[0].dtype }),
  vjp: (ct, { inputs: [x], attrs }) => [bind('maxPool2dGrad', [x, ct], basePool(attrs))],
  check: (fc) => poolCfg(fc).chain(({ x, attrs }) => input(fc, fc.constant(x), 'distinct').map((v): CheckCase => ({ inputs: [v], attrs }))),
});
entry<Pool2dAttrs>({
  name: 'maxPool2dGrad',
  infer: (xs, a) => {
    expectShape('maxPool2dGrad', 'cotangent', xs[1].shape, pool2dShape('maxPool2dGrad', xs[0].shape, a));
    return { shape: [...xs[0].shape], dtype: sameDtype('maxPool2dGrad', xs) };
  },
  // Piecewise constant in x; linear in ȳ with adjoint "pick X̄ at each window's arg-max".
  vjp: (g, { inputs: [x], attrs, needs }) => [null, needs[1] ? bind('maxPool2dSelect', [x, g], basePool(attrs)) : null],
  check: (fc) =>
    poolCfg(fc).chain(({ x, attrs }) =>
      fc
        .tuple(input(fc, fc.constant(x), 'distinct'), input(fc, fc.constant(pool2dShape('check', x, attrs)), 'real'))
        .map((inputs): CheckCase => ({ inputs, attrs, constant: [0] })),
    ),
});
/** g at the arg-max of x in each pooling window: the adjoint of maxPool2dGrad in its cotangent. */
entry<Pool2dAttrs>({
  name: 'maxPool2dSelect',
  infer: (xs, a) => {
    expectShape('maxPool2dSelect', 'second input', xs[1].shape, xs[0].shape);
    return { shape: pool2dShape('maxPool2dSelect', xs[0].shape, a), dtype: sameDtype('maxPool2dSelect', xs) };
  },
  vjp: (ct, { inputs: [x], attrs, needs }) => [null, needs[1] ? bind('maxPool2dGrad', [x, ct], basePool(attrs)) : null],
  check: (fc) =>
    poolCfg(fc).chain(({ x, attrs }) =>
      fc.tuple(input(fc, fc.constant(x), 'distinct'), input(fc, fc.constant(x), 'real')).map((inputs): CheckCase => ({ inputs, attrs, constant: [0] })),
    ),
});
