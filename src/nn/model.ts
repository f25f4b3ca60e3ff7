/**
 * The model API: a model is data `{ config, params, state }`; `apply` is the pure forward pass,
 * `forward` applies a model's own fields, `predict` is the eval-mode forward.
 * @example
 *   const m = nn.createModel('b0-full-split', { key: random.key(0) });
 *   const [logits, state] = nn.forward(m, { low, high }, { training: true, key: random.key(1) });
 */
import { type Key, key as makeKey } from '../tensor/random.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { treeLeaves } from '../autograd/pytree.ts';
import type { Ctx } from './layers.ts';
import { parseModelName } from './archs.ts';

export { parseModelName };
import { type BuildOptions, type Input, type InputSides, type ModelConfig, type Params, type State, applyEfficientNet, buildConfig, initEfficientNet, isPair } from './efficientnet.ts';

export interface Model {
  readonly config: ModelConfig;
  readonly params: Params;
  readonly state: State;
}

export interface CreateOptions extends BuildOptions {
  /** The key the weights are drawn from (required: no hidden randomness). */
  readonly key: Key;
}

/** The config of a named model (no weights). */
export function modelConfig(name: string, opts: BuildOptions = {}): ModelConfig {
  const { variant, arch, stem } = parseModelName(name);
  return buildConfig(name, variant, arch, stem ? { stem, ...opts } : opts);
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

/** Default side of each image a named model reads (null for an image it does not take): `{ low: null, high: 1024 }` for b0-pure-stochastic. */
export const defaultSizes = (name: string): InputSides => modelConfig(name).sides;

/** Number of trainable scalars (BN running statistics are state, not counted — as in PyTorch). */
export function parameterCount(model: Model | { readonly params: unknown } | Params): number {
  const params = 'params' in model && ('config' in model || 'layer' in model) ? (model as Model).params : model;
  return treeLeaves(params).reduce((p, t) => p + t.size, 0);
}
