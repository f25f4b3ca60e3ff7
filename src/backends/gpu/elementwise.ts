/**
 * Elementwise kernels on gpu.js: each op is a scalar helper `op` (written in the subset of JS that
 * gpu.js translates to GLSL and WebAssembly) called by one of three kernels: `mapKernel` (flat,
 * inputs of the output's size or scalars), `zipKernel` (two strided inputs) and `selectKernel`
 * (three strided inputs, for `where`). Broadcasting = stride 0 along an axis.
 */
import type { Kernel, KernelArg } from '../backend.ts';
import type { GpuBuffer, GpuRuntime, HelperSpec } from './runtime.ts';
import { broadcastStridesOf, coalesce, keyOf, sizeOf, stridedConstants } from './strides.ts';

/** What a kernel function sees as `this`. */
export interface KernelThis {
  readonly thread: { readonly x: number };
  readonly constants: Record<string, number>;
}
declare function coord(i: number, s: number, d: number): number;
declare function op(a: number, b?: number, c?: number): number;

/** y[i] = op(a[i·sa], b[i·sb], c[i·sc]) — sa = 0 for a scalar input, 1 otherwise. */
function map1Kernel(this: KernelThis, a: Float32Array): number {
  return op(a[this.thread.x * this.constants.sa]);
}
function map2Kernel(this: KernelThis, a: Float32Array, b: Float32Array): number {
  const i = this.thread.x;
  return op(a[i * this.constants.sa], b[i * this.constants.sb]);
}
function map3Kernel(this: KernelThis, a: Float32Array, b: Float32Array, c: Float32Array): number {
  const i = this.thread.x;
  return op(a[i * this.constants.sa], b[i * this.constants.sb], c[i * this.constants.sc]);
}

/** Broadcasting binary op: c0…c5 are the coordinates of output element i (row-major, see strides.ts). */
function zipKernel(this: KernelThis, a: Float32Array, b: Float32Array): number {
  const i = this.thread.x;
  const c0 = coord(i, this.constants.o0, this.constants.d0);
  const c1 = coord(i, this.constants.o1, this.constants.d1);
  const c2 = coord(i, this.constants.o2, this.constants.d2);
  const c3 = coord(i, this.constants.o3, this.constants.d3);
  const c4 = coord(i, this.constants.o4, this.constants.d4);
  const c5 = coord(i, this.constants.o5, this.constants.d5);
  const ia = c0 * this.constants.a0 + c1 * this.constants.a1 + c2 * this.constants.a2 + c3 * this.constants.a3 + c4 * this.constants.a4 + c5 * this.constants.a5;
  const ib = c0 * this.constants.b0 + c1 * this.constants.b1 + c2 * this.constants.b2 + c3 * this.constants.b3 + c4 * this.constants.b4 + c5 * this.constants.b5;
  return op(a[ia], b[ib]);
}

function selectKernel(this: KernelThis, a: Float32Array, b: Float32Array, c: Float32Array): number {
  const i = this.thread.x;
  const c0 = coord(i, this.constants.o0, this.constants.d0);
  const c1 = coord(i, this.constants.o1, this.constants.d1);
  const c2 = coord(i, this.constants.o2, this.constants.d2);
  const c3 = coord(i, this.constants.o3, this.constants.d3);
  const c4 = coord(i, this.constants.o4, this.constants.d4);
  const c5 = coord(i, this.constants.o5, this.constants.d5);
  const ia = c0 * this.constants.a0 + c1 * this.constants.a1 + c2 * this.constants.a2 + c3 * this.constants.a3 + c4 * this.constants.a4 + c5 * this.constants.a5;
  const ib = c0 * this.constants.b0 + c1 * this.constants.b1 + c2 * this.constants.b2 + c3 * this.constants.b3 + c4 * this.constants.b4 + c5 * this.constants.b5;
  const ic = c0 * this.constants.c0 + c1 * this.constants.c1 + c2 * this.constants.c2 + c3 * this.constants.c3 + c4 * this.constants.c4 + c5 * this.constants.c5;
  return op(a[ia], b[ib], c[ic]);
}

/**
 * The scalar bodies. GLSL ES 1.0 has no tanh, and pow is undefined for a negative base, so both
 * are spelled out; sigmoid and softplus use the overflow-free forms of the CPU kernels.
 */
export const gpuExprs: Record<string, [arity: 1 | 2 | 3, body: string]> = {
  neg: [1, 'return -a;'],
  exp: [1, 'return Math.exp(a);'],
  log: [1, 'return Math.log(a);'],
  sqrt: [1, 'return Math.sqrt(a);'],
  abs: [1, 'return Math.abs(a);'],
  sign: [1, 'if (a > 0.0) { return 1.0; } if (a < 0.0) { return -1.0; } return 0.0;'],
  sigmoid: [1, 'if (a >= 0.0) { return 1.0 / (1.0 + Math.exp(-a)); } const e = Math.exp(a); return e / (1.0 + e);'],
  tanh: [1, 'const e = Math.exp(-2.0 * Math.abs(a)); const t = (1.0 - e) / (1.0 + e); if (a < 0.0) { return -t; } return t;'],
  relu: [1, 'if (a > 0.0) { return a; } return 0.0;'],
  silu: [1, 'if (a >= 0.0) { return a / (1.0 + Math.exp(-a)); } const e = Math.exp(a); return a * e / (1.0 + e);'],
  softplus: [1, 'return Math.max(a, 0.0) + Math.log(1.0 + Math.exp(-Math.abs(a)));'],
  add: [2, 'return a + b;'],
  sub: [2, 'return a - b;'],
  mul: [2, 'return a * b;'],
  div: [2, 'return a / b;'],
  // aᵇ for a < 0 is defined only for integer b: |a|ᵇ with the sign of (−1)ᵇ.
  pow: [2, 'if (a >= 0.0) { return Math.pow(a, b); } const p = Math.pow(-a, b); if (Math.floor(b * 0.5) * 2.0 == b) { return p; } return -p;'],
  maximum: [2, 'return Math.max(a, b);'],
  minimum: [2, 'return Math.min(a, b);'],
  greater: [2, 'if (a > b) { return 1.0; } return 0.0;'],
  greaterEqual: [2, 'if (a >= b) { return 1.0; } return 0.0;'],
  equal: [2, 'if (a == b) { return 1.0; } return 0.0;'],
  where: [3, 'if (a != 0.0) { return b; } return c;'],
  affine: [3, 'return a * b + c;'],
  // b · silu'(a), silu' = σ(1 + a(1 − σ))
  siluGrad: [2, 'let s = 0.0; if (a >= 0.0) { s = 1.0 / (1.0 + Math.exp(-a)); } else { const e = Math.exp(a); s = e / (1.0 + e); } return b * s * (1.0 + a * (1.0 - s));'],
};

function opHelper(arity: number, body: string): HelperSpec {
  const params = ['a', 'b', 'c'].slice(0, arity);
  return {
    source: `function op(${params.join(', ')}) { ${body} }`,
    argumentTypes: Object.fromEntries(params.map((p) => [p, 'Number'])),
    returnType: 'Number',
  };
}

/** The gpu kernel of elementwise primitive `name`. */
export function elementwiseGpuKernel(rt: () => GpuRuntime, name: string): Kernel<GpuBuffer> {
  const [arity, body] = gpuExprs[name];
  const helper = opHelper(arity, body);
  return (inputs: readonly KernelArg<GpuBuffer>[], _attrs, out) => {
    const n = sizeOf(out.shape);
    const flat = inputs.every((x) => x.storage.size === n || x.storage.size === 1);
    const args = inputs.map((x) => x.storage);
    if (flat) {
      const sc = Object.fromEntries(inputs.map((x, j) => [`s${'abc'[j]}`, x.storage.size === n ? 1 : 0]));
      const fn = [map1Kernel, map2Kernel, map3Kernel][arity - 1];
      return rt().run(keyOf(name, 'flat', n, sc), () => ({ fn, output: n, constants: sc, functions: [helper] }), args, n);
    }
    const st = coalesce(out.shape, inputs.map((x) => broadcastStridesOf(x.shape, out.shape)), name);
    const constants = stridedConstants(st, ['a', 'b', 'c'].slice(0, arity));
    const fn = arity === 3 ? selectKernel : arity === 2 ? zipKernel : null;
    if (!fn) throw new Error(`${name} (gpu): a unary op with a broadcast input`);
    return rt().run(keyOf(name, 'strided', n, constants), () => ({ fn, output: n, constants, functions: [helper] }), args, n);
  };
}
