/**
 * Elementwise kernels, generated once per op from a scalar expression (`a`, `b`, `c` are the
 * inputs): a plain loop when shapes match or an input is a scalar, a strided loop that walks
 * broadcast (stride-0) axes otherwise.
 */
import type { KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { arrayFor } from '../../tensor/tensor.ts';
import { sizeOf } from '../../tensor/shape.ts';

/** Helpers an expression may call. */
const lib = {
  // σ(x) without overflow for large |x|.
  sigmoid: (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x))),
  // log(1 + eˣ) = max(x, 0) + log1p(e^−|x|)
  softplus: (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x))),
};

/** Strides of `shape` aligned to `out` (rank padded on the left), 0 along broadcast axes. */
export function broadcastStrides(shape: readonly number[], out: readonly number[]): Int32Array {
  const st = new Int32Array(out.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    const j = out.length - shape.length + i;
    st[j] = shape[i] === 1 ? 0 : acc;
    acc *= shape[i];
  }
  return st;
}

type Loop = (out: TypedArray, ins: TypedArray[], shape: readonly number[], strides: Int32Array[], lib: unknown) => void;

function makeLoop(arity: number, expr: string): { flat: Loop; strided: Loop } {
  const names = ['a', 'b', 'c'].slice(0, arity);
  const helpers = Object.keys(lib).map((k) => `const ${k} = lib.${k};`).join('\n');
  const flat = new Function(
    'out', 'ins', 'shape', 'strides', 'lib',
    `${helpers}
     ${names.map((v, i) => `const I${v} = ins[${i}]; const s${v} = I${v}.length === 1 && out.length !== 1;`).join('\n')}
     ${names.map((v) => `const k${v} = I${v}[0];`).join('\n')}
     const n = out.length;
     for (let i = 0; i < n; i++) {
       ${names.map((v) => `const ${v} = s${v} ? k${v} : I${v}[i];`).join(' ')}
       out[i] = ${expr};
     }`,
  ) as Loop;
  const strided = new Function(
    'out', 'ins', 'shape', 'strides', 'lib',
    `${helpers}
     const rank = shape.length, n = out.length;
     ${names.map((v, i) => `const I${v} = ins[${i}], S${v} = strides[${i}]; let o${v} = 0; const l${v} = S${v}[rank - 1];`).join('\n')}
     const last = shape[rank - 1];
     const idx = new Int32Array(rank);
     let o = 0;
     while (o < n) {
       for (let j = 0; j < last; j++) {
         ${names.map((v) => `const ${v} = I${v}[o${v} + j * l${v}];`).join(' ')}
         out[o++] = ${expr};
       }
       for (let d = rank - 2; d >= 0; d--) {
         idx[d]++;
         ${names.map((v) => `o${v} += S${v}[d];`).join(' ')}
         if (idx[d] < shape[d]) break;
         ${names.map((v) => `o${v} -= S${v}[d] * shape[d];`).join(' ')}
         idx[d] = 0;
       }
     }`,
  ) as Loop;
  return { flat, strided };
}

/** A kernel for an elementwise op of `arity` inputs given as a scalar expression. */
export function elementwiseKernel(arity: number, expr: string) {
  const { flat, strided } = makeLoop(arity, expr);
  return (inputs: readonly KernelArg<TypedArray>[], _attrs: unknown, spec: OutSpec): TypedArray => {
    const n = sizeOf(spec.shape);
    const out = arrayFor(spec.dtype, n);
    if (n === 0) return out;
    const ins = inputs.map((x) => x.storage);
    if (ins.every((x) => x.length === n || x.length === 1)) flat(out, ins, spec.shape, [], lib);
    else strided(out, ins, spec.shape, inputs.map((x) => broadcastStrides(x.shape, spec.shape)), lib);
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
};
