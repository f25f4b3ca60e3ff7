/**
 * Elementwise kernels, generated once per op from a scalar expression (`a`, `b`, `c` are the
 * inputs). Broadcasting is handled by collapsing the output shape to as few axes as possible
 * (merging axes that are contiguous for every input, dropping size-1 axes), so e.g. a BN affine
 * [N,C,H,W] ∘ [1,C,1,1] becomes [N, C, H·W] with a long inner loop in which the broadcast input
 * is a constant (inner stride 0) and the others are contiguous (inner stride 1).
 */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { broadcastStrides, collapseAxes, sizeOf } from '../../tensor/shape.ts';
import { outputFor } from './layout.ts';

/** Helpers an expression may call (also used by jit's fused loops). */
export const lib = {
  // σ(x) without overflow for large |x|.
  sigmoid: (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  // log(1 + eˣ) = max(x, 0) + log1p(e^−|x|)
  softplus: (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
  // ct · silu'(x), silu' = σ(x)(1 + x(1 − σ(x)))
  siluGrad: (x: number, ct: number) => {
    const s = x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
    return ct * s * (1 + x * (1 - s));
  },
};

type Loop = (out: TypedArray, ins: TypedArray[], shape: readonly number[], strides: readonly number[][]) => void;

function makeLoop(name: string, arity: number, expr: string): Loop {
  const vs = ['a', 'b', 'c'].slice(0, arity);
  const helpers = Object.keys(lib).map((k) => `const ${k} = lib.${k};`).join('\n');
  // One specialised inner loop per pattern of inner strides (bit v set: input v is constant along the row).
  const variants: string[] = [];
  for (let mask = 0; mask < 1 << arity; mask++) {
    const pre = vs.map((v, i) => (mask & (1 << i) ? `const ${v} = I${v}[o${v}];` : '')).join(' ');
    const reads = vs.map((v, i) => (mask & (1 << i) ? '' : `const ${v} = I${v}[o${v} + j];`)).join(' ');
    variants.push(`case ${mask}: { ${pre} for (let j = 0; j < last; j++) { ${reads} out[o + j] = ${expr}; } break; }`);
  }
  // A named function (\`ew_<op>\`), so profiles say which op a loop belongs to.
  return new Function(
    'lib',
    `${helpers}
     return function ew_${name}(out, ins, shape, strides) {
     const rank = shape.length, n = out.length;
     ${vs.map((v, i) => `const I${v} = ins[${i}], S${v} = strides[${i}]; let o${v} = 0;`).join('\n')}
     const last = rank ? shape[rank - 1] : 1;
     const mask = ${vs.map((v, i) => `(rank && S${v}[rank - 1] === 0 ? ${1 << i} : 0)`).join(' | ')};
     const idx = new Int32Array(Math.max(rank, 1));
     for (let o = 0; o < n; o += last) {
       switch (mask) { ${variants.join('\n')} }
       for (let d = rank - 2; d >= 0; d--) {
         idx[d]++;
         ${vs.map((v) => `o${v} += S${v}[d];`).join(' ')}
         if (idx[d] < shape[d]) break;
         ${vs.map((v) => `o${v} -= S${v}[d] * shape[d];`).join(' ')}
         idx[d] = 0;
       }
     }
     };`,
  )(lib) as Loop;
}

/**
 * A kernel for an elementwise op of `arity` inputs given as a scalar expression. One loop is
 * generated per output dtype, so each sees only Float32Arrays or only Float64Arrays (monomorphic
 * element access; a loop shared by both array types runs several times slower).
 */
export function elementwiseKernel(name: string, arity: number, expr: string) {
  const loops = { float32: makeLoop(name, arity, expr), float64: makeLoop(name, arity, expr) };
  return (inputs: readonly KernelArg<TypedArray>[], _attrs: unknown, spec: OutSpec): TypedArray => {
    const n = sizeOf(spec.shape);
    const out = outputFor(spec);
    if (n === 0) return out;
    const c = collapseAxes(spec.shape, inputs.map((x) => broadcastStrides(x.shape, spec.shape)));
    loops[spec.dtype](out, inputs.map((x) => x.storage), c.shape, c.strides);
    return out;
  };
}

/** The CPU expressions of the elementwise primitives. */
export const elementwiseExprs: Record<string, [arity: number, expr: string]> = {
  neg: [1, '-a'],
  exp: [1, 'Math.exp(a)'],
  log: [1, 'Math.log(a)'],
  sqrt: [1, 'Math.sqrt(a)'],
  abs: [1, 'Math.abs(a)'],
  sign: [1, 'a > 0 ? 1 : a < 0 ? -1 : 0'],
  sigmoid: [1, 'sigmoid(a)'],
  tanh: [1, 'Math.tanh(a)'],
  relu: [1, 'a > 0 ? a : 0'],
  silu: [1, 'a * sigmoid(a)'],
  softplus: [1, 'softplus(a)'],
  add: [2, 'a + b'],
  sub: [2, 'a - b'],
  mul: [2, 'a * b'],
  div: [2, 'a / b'],
  pow: [2, 'Math.pow(a, b)'],
  maximum: [2, 'a > b ? a : b !== b ? b : Math.max(a, b)'],
  minimum: [2, 'a < b ? a : b !== b ? b : Math.min(a, b)'],
  greater: [2, 'a > b ? 1 : 0'],
  greaterEqual: [2, 'a >= b ? 1 : 0'],
  equal: [2, 'a === b ? 1 : 0'],
  where: [3, 'a !== 0 ? b : c'],
  affine: [3, 'a * b + c'],
  siluGrad: [2, 'siluGrad(a, b)'],
};
