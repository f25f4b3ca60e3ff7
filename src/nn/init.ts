/**
 * Weight initialisers. Each takes an explicit key, the shape and a dtype; fans follow PyTorch's
 * layouts (conv OIHW, linear (out, in)).
 */
import type { DType } from '../backends/backend.ts';
import { type Key, normal, uniform } from '../tensor/random.ts';
import { type Shape, fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

export type Initializer = (key: Key, shape: Shape, dtype: DType) => Tensor;

/**
 * fan_in and fan_out of a weight: linear (out, in) → (in, out); conv (O, C/groups, kh, kw) →
 * (C/groups·kh·kw, O·kh·kw) as PyTorch computes them.
 */
export function fans(shape: Shape): { fanIn: number; fanOut: number } {
  if (shape.length < 2) throw new Error(`fans: weight shape ${fmt(shape)} needs at least 2 dimensions`);
  const receptive = shape.slice(2).reduce((p, d) => p * d, 1);
  return { fanIn: shape[1] * receptive, fanOut: shape[0] * receptive };
}

/** He (Kaiming) normal, fan-in mode, for ReLU-like activations: N(0, 2/fan_in). */
export const heNormal: Initializer = (key, shape, dtype) => normal(key, shape, 0, Math.sqrt(2 / fans(shape).fanIn), { dtype });

/** PyTorch's kaiming_normal_(mode='fan_out'), torchvision's EfficientNet conv init: N(0, 2/(O·kh·kw)). */
export const heNormalFanOut: Initializer = (key, shape, dtype) => normal(key, shape, 0, Math.sqrt(2 / fans(shape).fanOut), { dtype });

/** Glorot (Xavier) uniform: U(±√(6/(fan_in + fan_out))). */
export const glorotUniform: Initializer = (key, shape, dtype) => {
  const { fanIn, fanOut } = fans(shape);
  const a = Math.sqrt(6 / (fanIn + fanOut));
  return uniform(key, shape, -a, a, { dtype });
};

/**
 * The official EfficientNet conv initialiser (variance scaling, scale 2, fan-out, normal):
 * N(0, 2/fan_out) with fan_out = kh·kw·(O/groups) as TensorFlow counts it for a (depthwise) kernel.
 * For a dense conv this equals heNormalFanOut; for a depthwise conv fan_out is kh·kw.
 */
export const efficientNetConv = (groups = 1): Initializer => (key, shape, dtype) => {
  if (shape.length !== 4) throw new Error(`efficientNetConv: conv weight must be (O, C/groups, kh, kw), got ${fmt(shape)}`);
  const fanOut = (shape[0] / groups) * shape[2] * shape[3];
  return normal(key, shape, 0, Math.sqrt(2 / fanOut), { dtype });
};

/** The official EfficientNet dense initialiser: U(±1/√out) for a (out, in) weight. */
export const efficientNetDense: Initializer = (key, shape, dtype) => {
  if (shape.length !== 2) throw new Error(`efficientNetDense: dense weight must be (out, in), got ${fmt(shape)}`);
  const r = 1 / Math.sqrt(shape[0]);
  return uniform(key, shape, -r, r, { dtype });
};

export const initializers = { heNormal, heNormalFanOut, glorotUniform, efficientNetConv, efficientNetDense } as const;
