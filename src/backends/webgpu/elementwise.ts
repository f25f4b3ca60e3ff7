/**
 * Elementwise kernels in WGSL: each op is a scalar function `op(a, b, c)`, called either flat
 * (every input of the output's size or a scalar) or strided (broadcasting = stride 0 along an axis,
 * axes merged as in gpu/strides.ts).
 */
import type { Kernel, KernelArg } from '../backend.ts';
import { broadcastStridesOf, coalesce, sizeOf, stridedConstants } from '../gpu/strides.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { compute, coords, offset } from './shader.ts';

/** σ in WGSL, stable for large |a| (also used by the fused kernels). */
export const sigmoidWgsl = 'fn sigmoid(a: f32) -> f32 { if (a >= 0.0) { return 1.0 / (1.0 + exp(-a)); } let e = exp(a); return e / (1.0 + e); }';

/**
 * The scalar bodies, overflow-free as the CPU kernels: sigmoid and softplus in their stable forms,
 * tanh from exp(−2|a|); pow of a negative base is defined for integer exponents only.
 */
export const wgslExprs: Record<string, [arity: 1 | 2 | 3, body: string]> = {
  neg: [1, 'return -a;'],
  exp: [1, 'return exp(a);'],
  log: [1, 'return log(a);'],
  sqrt: [1, 'return sqrt(a);'],
  abs: [1, 'return abs(a);'],
  sign: [1, 'if (a > 0.0) { return 1.0; } if (a < 0.0) { return -1.0; } return 0.0;'],
  sigmoid: [1, 'return sigmoid(a);'],
  tanh: [1, 'let e = exp(-2.0 * abs(a)); let t = (1.0 - e) / (1.0 + e); if (a < 0.0) { return -t; } return t;'],
  relu: [1, 'if (a > 0.0) { return a; } return 0.0;'],
  silu: [1, 'return a * sigmoid(a);'],
  softplus: [1, 'return max(a, 0.0) + log(1.0 + exp(-abs(a)));'],
  add: [2, 'return a + b;'],
  sub: [2, 'return a - b;'],
  mul: [2, 'return a * b;'],
  div: [2, 'return a / b;'],
  pow: [2, 'if (b == 0.0) { return 1.0; } if (a >= 0.0) { return pow(a, b); } let p = pow(-a, b); if (floor(b * 0.5) * 2.0 == b) { return p; } if (floor(b) == b) { return -p; } return (a - a) / (a - a);'],
  maximum: [2, 'if (a != a || a > b) { return a; } return b;'],
  minimum: [2, 'if (a != a || a < b) { return a; } return b;'],
  greater: [2, 'return select(0.0, 1.0, a > b);'],
  greaterEqual: [2, 'return select(0.0, 1.0, a >= b);'],
  equal: [2, 'return select(0.0, 1.0, a == b);'],
  where: [3, 'return select(c, b, a != 0.0);'],
  affine: [3, 'return a * b + c;'],
  // b · silu'(a), silu' = σ(1 + a(1 − σ))
  siluGrad: [2, 'let s = sigmoid(a); return b * s * (1.0 + a * (1.0 - s));'],
};

const NAMES = ['a', 'b', 'c'] as const;

/** The webgpu kernel of elementwise primitive `name`. */
export function elementwiseWebGpuKernel(dev: () => WebGpuDevice, name: string): Kernel<WebGpuBuffer> {
  const [arity, body] = wgslExprs[name];
  const params = NAMES.slice(0, arity);
  const helpers = `${sigmoidWgsl}\nfn op(${params.map((p) => `${p}: f32`).join(', ')}) -> f32 { ${body} }`;
  return (inputs: readonly KernelArg<WebGpuBuffer>[], _attrs, out) => {
    const n = sizeOf(out.shape);
    const bind = inputs.map((x, j) => [`x${NAMES[j]}`, x.storage] as const);
    const call = (idx: (j: number) => string) => `  return op(${params.map((_, j) => `x${NAMES[j]}[${idx(j)}]`).join(', ')});`;
    if (inputs.every((x) => x.storage.size === n || x.storage.size === 1)) {
      return compute(dev(), { op: name, size: n, inputs: bind, helpers, body: call((j) => (inputs[j].storage.size === n ? 'i' : '0')) });
    }
    if (arity === 1) throw new Error(`${name} (webgpu): a unary op with a broadcast input`);
    const st = coalesce(out.shape, inputs.map((x) => broadcastStridesOf(x.shape, out.shape)), name);
    const ints = stridedConstants(st, params.map((p) => `s${p}`));
    return compute(dev(), { op: name, size: n, ints, inputs: bind, helpers, body: `${coords()}\n${call((j) => offset(`s${NAMES[j]}`))}` });
  };
}
