/**
 * The model API: a model is data `{ config, params, state }`; `apply` is the pure forward pass,
 * `forward` applies a model's own fields, `predict` is the eval-mode forward.
 * @example
 *   const m = nn.createModel('b0-full-split', { key: random.key(0) });
 *   const [logits, state] = nn.forward(m, { low, high }, { training: true, key: random.key(1) });
 */
import type { DType } from '../backends/backend.ts';
import { type Key, key as makeKey } from '../tensor/random.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { treeLeaves } from '../autograd/pytree.ts';
import type { Ctx, PaddingMode } from './layers.ts';
import {
  type Arch,
  type BuildOptions,
  type Input,
  type ModelConfig,
  type Params,
  type State,
  type Variant,
  SCALING,
  applyEfficientNet,
  buildConfig,
  initEfficientNet,
  isPair,
  variants,
} from './efficientnet.ts';

export interface Model {
  readonly config: ModelConfig;
  readonly params: Params;
  readonly state: State;
}

export interface CreateOptions {
  /** Outputs of the dense layer (1 = one melanoma logit). */
  readonly numClasses?: number;
  /** The key the weights are drawn from (required: no hidden randomness). */
  readonly key: Key;
  /** Side of the (resized) low-res image; default the variant's resolution (224 for B0, 380 for B4). */
  readonly lowSize?: number;
  /** Side of the high-res image (two-input and pure-stochastic models; default 1024). */
  readonly highSize?: number;
  /** Output side of the stochastic stem (default: the low-res stem's output, 112 for B0 and 190 for B4). */
  readonly stochOutSize?: number;
  /** A window per image and channel (default) or per channel for the whole batch. */
  readonly perImage?: boolean;
  readonly dtype?: DType;
  /** Override the compound coefficients (tiny models for tests). */
  readonly widthMult?: number;
  readonly depthMult?: number;
  /** 'same' (TensorFlow, default) or 'symmetric' (torchvision). */
  readonly padding?: PaddingMode;
  /** BN eps (default 1e-3) and momentum (PyTorch convention, default 0.01 = TF's 0.99). */
  readonly bnEps?: number;
  readonly bnMomentum?: number;
  /** Dropout before the dense layer (default: the variant's) and the final drop-connect rate (0.2). */
  readonly dropout?: number;
  readonly dropConnectRate?: number;
  /** stochastic-skip: how many leading stages each stem has its own copy of (default 3: B0's first 5 blocks). */
  readonly skipStages?: number;
  /** Dense-layer init: 'efficientnet' (official, default) or 'zeros' (from-scratch one-logit heads). */
  readonly headInit?: 'efficientnet' | 'zeros';
}

const SUFFIX: Readonly<Record<string, { arch: Arch; stem?: number }>> = {
  '': { arch: 'plain' },
  '-64': { arch: 'plain', stem: 64 },
  '-stochastic-stem': { arch: 'stochastic-stem' },
  '-stochastic-skip': { arch: 'stochastic-skip' },
  '-full-split': { arch: 'full-split' },
  '-pure-stochastic': { arch: 'pure-stochastic' },
};

/** The paper's architectures (any 'bN' + suffix is accepted by createModel: b4-full-split, b2-stochastic-stem, …). */
export const modelNames: readonly string[] = [
  ...variants,
  'b0-64',
  'b0-stochastic-stem',
  'b4-stochastic-stem',
  'b0-stochastic-skip',
  'b0-full-split',
  'b4-full-split',
  'b0-pure-stochastic',
];

/** Splits a name like 'b4-stochastic-stem' into variant and architecture. */
export function parseModelName(name: string): { variant: Variant; arch: Arch; stem?: number } {
  const m = /^(b[0-7])(.*)$/.exec(name);
  const s = m ? SUFFIX[m[2]] : undefined;
  if (!m || !s) {
    throw new Error(`createModel: unknown model '${name}'; names are bN (N = 0…7) optionally followed by ${Object.keys(SUFFIX).filter(Boolean).join(', ')} (paper: ${modelNames.join(', ')})`);
  }
  return { variant: m[1] as Variant, ...s };
}

/** The config of a named model (no weights). */
export function modelConfig(name: string, opts: Omit<CreateOptions, 'key'> = {}): ModelConfig {
  const { variant, arch, stem } = parseModelName(name);
  const b: BuildOptions = { ...opts, ...(stem ? { stem } : {}) };
  return buildConfig(name, variant, arch, b);
}

/** A freshly initialised model (EfficientNet's initialisers; BN running mean 0, variance 1). */
export function createModel(name: string, opts: CreateOptions): Model {
  if (!opts || !opts.key) throw new Error(`createModel('${name}'): pass a random key ({ key: random.key(seed) })`);
  const config = modelConfig(name, opts);
  const { params, state } = initEfficientNet(opts.key, config);
  return { config, params, state };
}

/** The pure forward pass: `[logits (N, numClasses), newState]`. */
export const apply = (config: ModelConfig, params: Params, state: State, input: Input, ctx: Ctx): [Tensor, State] =>
  applyEfficientNet(config, params, state, input, ctx);

/** `apply` on a model's own config, params and state. */
export const forward = (model: Model, input: Input, ctx: Ctx): [Tensor, State] => apply(model.config, model.params, model.state, input, ctx);

/**
 * Eval-mode logits. Stochastic stems draw random windows in eval too: pass different keys and average
 * for test-time augmentation (the paper's 3 passes). The default key is fixed (key(0)), so repeated
 * calls without a key agree.
 */
export const predict = (model: Model, input: Input, key: Key = makeKey(0)): Tensor => forward(model, input, { training: false, key })[0];

/** 'pair' models take `{ low, high }`; 'single' ones one tensor (for pure-stochastic: the high-res image). */
export const inputKind = (config: ModelConfig): 'single' | 'pair' => (isPair(config) ? 'pair' : 'single');

/**
 * Default image sides of a named model. `low`: the side of the single input of one-input models
 * (for pure-stochastic that input is the high-res image: 1024) or of the low-res image of pair
 * models; `high`: the high-res side of pair models, else null.
 */
export function defaultSizes(name: string): { low: number; high: number | null } {
  const { variant, arch } = parseModelName(name);
  if (arch === 'pure-stochastic') return { low: 1024, high: null };
  return { low: SCALING[variant].resolution, high: arch === 'plain' ? null : 1024 };
}

/** Number of trainable scalars (BN running statistics are state, not counted — as in PyTorch). */
export function parameterCount(model: Model | { readonly params: unknown } | Params): number {
  const params = 'params' in model && ('config' in model || 'layer' in model) ? (model as Model).params : model;
  return treeLeaves(params).reduce((p, t) => p + t.size, 0);
}
