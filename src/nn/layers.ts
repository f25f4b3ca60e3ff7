/**
 * Layers as pure functions over plain records (Equinox / Flax style): hyper-parameters live in a
 * config, `init(key, cfg)` makes the parameters (and state), and `apply(cfg, params, state, x, ctx)`
 * returns `[y, newState]` — nothing is mutated, randomness comes only from `ctx.key`.
 */
import type { DType } from '../backends/backend.ts';
import { conv2d } from '../tensor/conv.ts';
import * as o from '../tensor/ops.ts';
import { type Key, bernoulli, split } from '../tensor/random.ts';
import { type Shape, fmt } from '../tensor/shape.ts';
import { type Tensor } from '../tensor/tensor.ts';
import { customVjp } from '../autograd/trace.ts';
import { type Initializer, efficientNetConv, efficientNetDense } from './init.ts';

/** What every layer is applied under. */
export interface Ctx {
  /** Training mode: batch statistics in batch norm, dropout and drop-connect active. */
  readonly training: boolean;
  /** The source of every random choice (dropout masks, drop-connect, stochastic windows). */
  readonly key?: Key;
  /**
   * Sees every named intermediate activation (names as listed by `nn.summary`: 'stem', 'blocks.3',
   * 'stoch.head', …) and returns what the network continues with. Inspection tools use it to read an
   * activation or add a zero tensor to it, whose gradient is the gradient w.r.t. the activation.
   */
  readonly tap?: Tap;
}

/** What a tap is told beside the activation: a stochastic stem's window corners ((row, col) per image·channel or per channel). */
export interface TapInfo {
  readonly windows?: Int32Array;
}
export type Tap = (name: string, x: Tensor, info?: TapInfo) => Tensor;

/** `ctx.tap(name, x, info)`, or x when there is no tap. */
export const tapped = (ctx: Ctx, name: string, x: Tensor, info?: TapInfo): Tensor => (ctx.tap ? ctx.tap(name, x, info) : x);

const needKey = (op: string, ctx: Ctx): Key => {
  if (!ctx.key) throw new Error(`${op}: needs a random key (ctx.key) in this mode`);
  return ctx.key;
};

// ---- SiLU ----------------------------------------------------------------------------------------

/** x·σ(x) (swish), EfficientNet's activation. */
export const silu = (x: Tensor): Tensor => o.silu(x);

// ---- conv ----------------------------------------------------------------------------------------

/** 'same' = TensorFlow static same padding (official EfficientNet); 'symmetric' = dilation·⌊(k − 1)/2⌋ per side (torchvision); 'valid' = none. */
export type PaddingMode = 'same' | 'symmetric' | 'valid';

export interface ConvConfig {
  readonly inCh: number;
  readonly outCh: number;
  readonly kernel: number;
  readonly stride: number;
  /** 1 = dense; inCh = depthwise. */
  readonly groups: number;
  readonly bias: boolean;
  readonly padding: PaddingMode;
  /** Spacing between kernel taps (default 1); the kernel spans dilation·(kernel − 1) + 1 pixels. */
  readonly dilation?: number;
}
export interface ConvParams {
  readonly w: Tensor;
  readonly b?: Tensor;
}

/** Output side of a conv along one axis for input side n. */
export const convOutSize = (cfg: Pick<ConvConfig, 'kernel' | 'stride' | 'padding' | 'dilation'>, n: number): number => {
  const d = cfg.dilation ?? 1;
  const pad = cfg.padding === 'valid' ? 0 : d * Math.floor((cfg.kernel - 1) / 2);
  return cfg.padding === 'same' ? Math.ceil(n / cfg.stride) : Math.floor((n + 2 * pad - d * (cfg.kernel - 1) - 1) / cfg.stride) + 1;
};

export const conv = {
  weightShape: (cfg: ConvConfig): number[] => [cfg.outCh, cfg.inCh / cfg.groups, cfg.kernel, cfg.kernel],
  init(key: Key, cfg: ConvConfig, dtype: DType = 'float32', init: Initializer = efficientNetConv(cfg.groups)): ConvParams {
    if (cfg.inCh % cfg.groups !== 0 || cfg.outCh % cfg.groups !== 0) {
      throw new Error(`conv.init: channels ${cfg.inCh} → ${cfg.outCh} are not divisible by groups ${cfg.groups}`);
    }
    const w = init(key, conv.weightShape(cfg), dtype);
    return cfg.bias ? { w, b: o.zeros([cfg.outCh], dtype) } : { w };
  },
  apply(cfg: ConvConfig, p: ConvParams, x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== cfg.inCh) {
      throw new Error(`conv: expected input (N, ${cfg.inCh}, H, W), got ${fmt(x.shape)}`);
    }
    const dilation = cfg.dilation ?? 1;
    const half = cfg.padding === 'valid' ? 0 : dilation * Math.floor((cfg.kernel - 1) / 2);
    const y = conv2d(x, p.w, { stride: cfg.stride, groups: cfg.groups, dilation, padding: cfg.padding === 'same' ? 'same' : half });
    return p.b ? o.add(y, o.reshape(p.b, [1, cfg.outCh, 1, 1])) : y;
  },
  paramCount: (cfg: ConvConfig): number => (cfg.outCh * cfg.inCh * cfg.kernel * cfg.kernel) / cfg.groups + (cfg.bias ? cfg.outCh : 0),
  /** Multiply–accumulates for one image of output size oh × ow. */
  macs: (cfg: ConvConfig, oh: number, ow: number): number => (cfg.outCh * oh * ow * cfg.inCh * cfg.kernel * cfg.kernel) / cfg.groups,
};

// ---- batch norm ----------------------------------------------------------------------------------

export interface BatchNormConfig {
  readonly channels: number;
  /** Added to the variance: 1e-3 in TensorFlow's EfficientNet, 1e-5 in PyTorch. */
  readonly eps: number;
  /** PyTorch convention: running ← (1 − m)·running + m·batch (0.1 in PyTorch, 0.01 = TF's 0.99). */
  readonly momentum: number;
}
export interface BatchNormParams {
  /** γ */
  readonly scale: Tensor;
  /** β */
  readonly bias: Tensor;
}
export interface BatchNormState {
  readonly mean: Tensor;
  readonly var: Tensor;
}

/**
 * Training-mode normalisation with a hand-written VJP (one node instead of ~10):
 * x̂ = (x − μ)/√(σ² + ε), y = γ·x̂ + β, and for the input
 * x̄ = (1/√(σ² + ε))·(ȳγ − mean(ȳγ) − x̂·mean(ȳγ·x̂))  (means over N, H, W).
 */
/**
 * Training-mode batch norm with a hand-written VJP, in as few passes over the activations as the
 * math allows (each pass costs more than the arithmetic): forward = moments (2 read passes) + one
 * affine pass y = x·A + B with A = γ/σ, B = β − μA; backward = Σct and Σct·x, then
 *   dx = γ/σ · (ct − mean(ct) − x̂ · mean(ct·x̂))  written as  dx = ct·A + (x·P + Q)
 * with per-channel P = −m₂γ/σ², Q = γ/σ·(m₂μ/σ − m₁), m₁ = mean(ct), m₂ = mean(ct·x̂) = (mean(ct·x) − μm₁)/σ.
 * x̂ is never materialised (less memory held between forward and backward).
 */
function batchNormTrain(x: Tensor, scale: Tensor, bias: Tensor, eps: number, axes: number[], bshape: number[], act?: 'silu'): { y: Tensor; mean: Tensor; var: Tensor } {
  let mu!: Tensor;
  let variance!: Tensor;
  const n = axes.reduce((p, a) => p * x.shape[a], 1);
  const f = customVjp(
    (xx: Tensor, g: Tensor, b: Tensor) => {
      [mu, variance] = o.moments(xx, axes, { keepdims: true });
      const inv = o.div(1, o.sqrt(o.add(variance, eps)));
      const a = o.mul(o.reshape(g, bshape), inv);
      const shift = o.sub(o.reshape(b, bshape), o.mul(mu, a));
      const y = o.affine(xx, a, shift, { act });
      return [y, { xx, inv, a, mu, shift }] as [Tensor, { xx: Tensor; inv: Tensor; a: Tensor; mu: Tensor; shift: Tensor }];
    },
    ({ xx, inv, a, mu: m, shift }, ctOut) => {
      // Through the fused activation first: recompute z = x·A + B instead of keeping it.
      const ct = act === 'silu' ? o.siluGrad(o.affine(xx, a, shift), ctOut) : ctOut;
      const s1 = o.sum(ct, axes, { keepdims: true });
      const m1 = o.div(s1, n);
      const m2 = o.mul(o.sub(o.div(o.sum(o.mul(ct, xx), axes, { keepdims: true }), n), o.mul(m, m1)), inv);
      const p = o.neg(o.mul(o.mul(a, inv), m2));
      const q = o.mul(a, o.sub(o.mul(o.mul(m2, m), inv), m1));
      const dx = o.affine(ct, a, o.affine(xx, p, q));
      const cshape = [bshape[1]];
      return [dx, o.reshape(o.mul(m2, n), cshape), o.reshape(s1, cshape)];
    },
  );
  const y = f(x, scale, bias);
  return { y, mean: o.reshape(mu, [scale.shape[0]]), var: o.reshape(variance, [scale.shape[0]]) };
}

export const batchNorm = {
  init(cfg: BatchNormConfig, dtype: DType = 'float32'): { params: BatchNormParams; state: BatchNormState } {
    return {
      params: { scale: o.ones([cfg.channels], dtype), bias: o.zeros([cfg.channels], dtype) },
      state: { mean: o.zeros([cfg.channels], dtype), var: o.ones([cfg.channels], dtype) },
    };
  },
  /**
   * (N, C, H, W) or (N, C). Training: normalise with the batch mean and (biased) variance and return
   * running stats updated with the unbiased variance, as PyTorch does. Eval: use the running stats.
   */
  apply(cfg: BatchNormConfig, p: BatchNormParams, s: BatchNormState, x: Tensor, ctx: Ctx, act?: 'silu'): [Tensor, BatchNormState] {
    if ((x.rank !== 4 && x.rank !== 2) || x.shape[1] !== cfg.channels) {
      throw new Error(`batchNorm: expected input (N, ${cfg.channels}, H, W) or (N, ${cfg.channels}), got ${fmt(x.shape)}`);
    }
    const axes = x.rank === 4 ? [0, 2, 3] : [0];
    const bshape = x.rank === 4 ? [1, cfg.channels, 1, 1] : [1, cfg.channels];
    if (!ctx.training) {
      // y = x·a + b with a = γ/√(var + ε), b = β − mean·a (differentiable in γ and β).
      const a = o.div(p.scale, o.sqrt(o.add(s.var, cfg.eps)));
      const b = o.sub(p.bias, o.mul(s.mean, a));
      return [o.affine(x, o.reshape(a, bshape), o.reshape(b, bshape), { act }), s];
    }
    const n = x.size / cfg.channels;
    if (n < 2) throw new Error(`batchNorm: training needs more than one value per channel, got input ${fmt(x.shape)}`);
    const { y, mean, var: v } = batchNormTrain(x, p.scale, p.bias, cfg.eps, axes, bshape, act);
    const m = cfg.momentum;
    const next: BatchNormState = {
      mean: o.stopGradient(o.add(o.mul(s.mean, 1 - m), o.mul(mean, m))),
      var: o.stopGradient(o.add(o.mul(s.var, 1 - m), o.mul(v, (m * n) / (n - 1)))),
    };
    return [y, next];
  },
  paramCount: (cfg: BatchNormConfig): number => 2 * cfg.channels,
};

// ---- linear --------------------------------------------------------------------------------------

export interface LinearConfig {
  readonly inFeatures: number;
  readonly outFeatures: number;
  readonly bias: boolean;
}
/** Weight in PyTorch's (out, in) layout. */
export interface LinearParams {
  readonly w: Tensor;
  readonly b?: Tensor;
}

export const linear = {
  init(key: Key, cfg: LinearConfig, dtype: DType = 'float32', init: Initializer = efficientNetDense): LinearParams {
    const w = init(key, [cfg.outFeatures, cfg.inFeatures], dtype);
    return cfg.bias ? { w, b: o.zeros([cfg.outFeatures], dtype) } : { w };
  },
  apply(cfg: LinearConfig, p: LinearParams, x: Tensor): Tensor {
    if (x.rank !== 2 || x.shape[1] !== cfg.inFeatures) throw new Error(`linear: expected input (N, ${cfg.inFeatures}), got ${fmt(x.shape)}`);
    const y = o.matmul(x, p.w, { transposeB: true });
    return p.b ? o.add(y, p.b) : y;
  },
  paramCount: (cfg: LinearConfig): number => cfg.inFeatures * cfg.outFeatures + (cfg.bias ? cfg.outFeatures : 0),
};

// ---- dropout and drop-connect --------------------------------------------------------------------

function checkRate(op: string, rate: number): void {
  if (!(rate >= 0 && rate < 1)) throw new Error(`${op}: rate must be in [0, 1), got ${rate}`);
}

/** Zeroes each element with probability `rate` and rescales the rest by 1/(1 − rate); identity in eval. */
export function dropout(x: Tensor, rate: number, ctx: Ctx): Tensor {
  checkRate('dropout', rate);
  if (!ctx.training || rate === 0) return x;
  const keep = bernoulli(needKey('dropout', ctx), 1 - rate, x.shape, { dtype: x.dtype });
  return o.mul(x, o.mul(keep, 1 / (1 - rate)));
}

/**
 * Drop-connect / stochastic depth (Huang et al. 2016; torchvision's StochasticDepth 'row'): drops
 * the whole residual branch of each sample with probability `rate`, rescaling survivors by
 * 1/(1 − rate); identity in eval.
 */
export function dropConnect(x: Tensor, rate: number, ctx: Ctx): Tensor {
  checkRate('dropConnect', rate);
  if (!ctx.training || rate === 0) return x;
  const shape: Shape = [x.shape[0], ...x.shape.slice(1).map(() => 1)];
  const keep = bernoulli(needKey('dropConnect', ctx), 1 - rate, shape, { dtype: x.dtype });
  return o.mul(x, o.mul(keep, 1 / (1 - rate)));
}

// ---- squeeze and excitation ----------------------------------------------------------------------

export interface SqueezeExciteConfig {
  /** Channels of the input (the expanded channels inside MBConv). */
  readonly channels: number;
  /** Channels of the bottleneck: max(1, ⌊block_in·0.25⌋) in EfficientNet. */
  readonly squeeze: number;
}
/** Two 1×1 convs with biases, weights (out, in, 1, 1) as in torchvision. */
export interface SqueezeExciteParams {
  readonly reduce: { readonly w: Tensor; readonly b: Tensor };
  readonly expand: { readonly w: Tensor; readonly b: Tensor };
}

/** A 1×1 conv with bias on (N, C) vectors, as a matmul. */
const pointwise = (p: { w: Tensor; b: Tensor }, v: Tensor): Tensor =>
  o.add(o.matmul(v, o.reshape(p.w, [p.w.shape[0], p.w.shape[1]]), { transposeB: true }), p.b);

export const squeezeExcite = {
  init(key: Key, cfg: SqueezeExciteConfig, dtype: DType = 'float32'): SqueezeExciteParams {
    const [k1, k2] = split(key, 2);
    const r = conv.init(k1, { inCh: cfg.channels, outCh: cfg.squeeze, kernel: 1, stride: 1, groups: 1, bias: true, padding: 'same' }, dtype);
    const e = conv.init(k2, { inCh: cfg.squeeze, outCh: cfg.channels, kernel: 1, stride: 1, groups: 1, bias: true, padding: 'same' }, dtype);
    return { reduce: { w: r.w, b: r.b! }, expand: { w: e.w, b: e.b! } };
  },
  /** x · σ(W₂ silu(W₁ mean_hw(x) + b₁) + b₂), the scale broadcast over H and W. */
  apply(cfg: SqueezeExciteConfig, p: SqueezeExciteParams, x: Tensor): Tensor {
    if (x.rank !== 4 || x.shape[1] !== cfg.channels) throw new Error(`squeezeExcite: expected input (N, ${cfg.channels}, H, W), got ${fmt(x.shape)}`);
    const [n, c] = x.shape;
    const pooled = o.mean(x, [2, 3]);
    const s = o.sigmoid(pointwise(p.expand, o.silu(pointwise(p.reduce, pooled))));
    return o.mul(x, o.reshape(s, [n, c, 1, 1]));
  },
  paramCount: (cfg: SqueezeExciteConfig): number => 2 * cfg.channels * cfg.squeeze + cfg.channels + cfg.squeeze,
  macs: (cfg: SqueezeExciteConfig): number => 2 * cfg.channels * cfg.squeeze,
};
