/**
 * Elementwise kernels, generated once per op from a scalar expression (`a`, `b`, `c` are the
 * inputs). Broadcasting is handled by collapsing the output shape to as few axes as possible
 * (merging axes that are contiguous for every input, dropping size-1 axes), so e.g. a BN affine
 * [N,C,H,W] ∘ [1,C,1,1] becomes [N, C, H·W] with a long inner loop in which the broadcast input
 * is a constant (inner stride 0) and the others are contiguous (inner stride 1).
 */
import type { FloatDType, Kernel, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { broadcastStrides, collapseAxes, sizeOf } from '../../tensor/shape.ts';
import { type AffineMode, type PlanesGeom, affineF32, fusedAvailable, sigmoidF32, siluF32, siluGradF32 } from './fast/activations.ts';
import { heapOut } from './heap_out.ts';
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
  const storages: TypedArray[] = [];
  return (inputs: readonly KernelArg<TypedArray>[], _attrs: unknown, spec: OutSpec): TypedArray => {
    const n = sizeOf(spec.shape);
    const out = outputFor(spec);
    if (n === 0) return out;
    const c = loopGeometry(inputs, spec.shape);
    for (let i = 0; i < inputs.length; i++) storages[i] = inputs[i].storage;
    storages.length = inputs.length;
    loops[spec.dtype as FloatDType](out, storages, c.shape, c.strides); // uint8 never gets here (trace.ts `bind`)
    storages.fill(null as unknown as TypedArray); // hold no buffer past the call
    return out;
  };
}

interface LoopGeometry {
  readonly ins: readonly (readonly number[])[];
  readonly shape: number[];
  readonly strides: number[][];
}
/**
 * The collapsed loop for the output shape, kept per (frozen) output shape array with the input shape arrays it was
 * made for: a compiled graph passes the same arrays on every call, so its steps skip the stride arithmetic.
 */
const geometries = new WeakMap<readonly number[], LoopGeometry>();
function loopGeometry(inputs: readonly KernelArg<TypedArray>[], shape: readonly number[]): LoopGeometry {
  let g = geometries.get(shape);
  let same = g !== undefined && g.ins.length === inputs.length;
  for (let i = 0; same && i < inputs.length; i++) same = g!.ins[i] === inputs[i].shape;
  if (same) return g!;
  g = { ins: inputs.map((x) => x.shape), ...collapseAxes(shape, inputs.map((x) => broadcastStrides(x.shape, shape))) };
  if (Object.isFrozen(shape) && inputs.every((x) => Object.isFrozen(x.shape))) geometries.set(shape, g);
  return g;
}

/** An affine operand's layout relative to NCHW output planes: the output's shape ('f') or one value per channel ('c'). */
function affineMode(shape: readonly number[], out: readonly number[]): AffineMode | null {
  if (shape.length === out.length && shape.every((d, i) => d === out[i])) return 'f';
  const s = [...new Array<number>(Math.max(0, out.length - shape.length)).fill(1), ...shape];
  return s.length === out.length && s.every((d, i) => (i === 1 ? d === out[1] : d === 1)) ? 'c' : null;
}

const isF32 = (ins: readonly KernelArg<TypedArray>[], out: OutSpec) => out.dtype === 'float32' && fusedAvailable() && ins.every((x) => x.storage instanceof Float32Array);
const full = (x: KernelArg<TypedArray>, out: OutSpec) => x.storage.length === sizeOf(out.shape) && affineMode(x.shape, out.shape) === 'f';

/**
 * The float32 fast paths of the memory-bound elementwise primitives (wasm SIMD, threads when large: see
 * fast/activations.ts): SiLU, sigmoid and SiLU's gradient on equal shapes, and the affine (with its fused SiLU)
 * on NCHW (or NC…) planes with per-channel or full scale and shift — batch norm's forms. Other dtypes and
 * broadcasts run `reference`.
 */
export function fastElementwiseKernel(name: string, reference: Kernel<TypedArray>): Kernel<TypedArray> {
  switch (name) {
    case 'silu':
    case 'sigmoid': {
      const f = name === 'silu' ? siluF32 : sigmoidF32;
      return (ins, a, out) => (isF32(ins, out) && full(ins[0], out) ? f(ins[0].storage as Float32Array, heapOut(out)) : reference(ins, a, out));
    }
    case 'siluGrad':
      return (ins, a, out) => (isF32(ins, out) && full(ins[0], out) && full(ins[1], out) ? siluGradF32(ins[0].storage as Float32Array, ins[1].storage as Float32Array, heapOut(out)) : reference(ins, a, out));
    case 'affine': {
      const silu = elementwiseKernel('silu', 1, elementwiseExprs.silu[1]);
      return (ins, a: { act?: 'silu' }, out) => {
        const [x, sc, sh] = ins;
        const r = out.shape.length;
        const g: PlanesGeom | null = r >= 2 ? { N: out.shape[0], C: out.shape[1], HW: sizeOf(out.shape.slice(2)) } : null;
        const am = affineMode(sc.shape, out.shape), bm = affineMode(sh.shape, out.shape);
        if (g && g.HW >= 4 && isF32(ins, out) && full(x, out) && am && bm) {
          return affineF32(x.storage as Float32Array, sc.storage as Float32Array, sh.storage as Float32Array, g, am, bm, a.act, heapOut(out));
        }
        const z = reference(ins, a, out);
        return a.act === 'silu' ? silu([{ storage: z, shape: out.shape, dtype: out.dtype }], {}, out) : z;
      };
    }
    default:
      return reference;
  }
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
