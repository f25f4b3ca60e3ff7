/**
 * Optimizers as pure data transforms (Optax's shape): `init(params) → state` and
 * `update(grads, state, params, lr) → [newParams, newState]` over trees of tensors. The state is
 * plain data — a step count and named "slots", each a tree shaped like the parameters — so a
 * checkpoint stores it as safetensors plus one number. The update rules follow PyTorch's
 * torch.optim exactly (same formulas, same order of operations), so hyper-parameters carry over.
 */
import * as o from '../tensor/ops.ts';
import { type Tensor, data, item } from '../tensor/tensor.ts';
import { flatten, unflatten } from '../autograd/pytree.ts';
import { jit } from '../jit/jit.ts';

export type OptimizerName = 'rmsprop' | 'adam' | 'adamw' | 'sgd';
export const optimizerNames: readonly OptimizerName[] = ['rmsprop', 'adam', 'adamw', 'sgd'];

export interface OptimizerConfig {
  readonly name: OptimizerName;
  /** L2 penalty added to the gradient (RMSprop, Adam, SGD) or decoupled decay (AdamW, default 1e-2 there as in PyTorch). */
  readonly weightDecay?: number;
  /** RMSprop and SGD momentum (default 0). */
  readonly momentum?: number;
  /** RMSprop smoothing constant (default 0.99). */
  readonly alpha?: number;
  /** Added outside the square root (default 1e-8). */
  readonly eps?: number;
  /** RMSprop: normalise by the centred second moment (default false). */
  readonly centered?: boolean;
  /** Adam/AdamW betas (default [0.9, 0.999]). */
  readonly betas?: readonly [number, number];
  /** SGD: Nesterov momentum (default false). */
  readonly nesterov?: boolean;
  /** SGD: momentum dampening (default 0). */
  readonly dampening?: number;
}

/** The optimizer state: data only. Slots are trees of the parameters' structure. */
export interface OptState {
  readonly name: OptimizerName;
  readonly step: number;
  readonly slots: { readonly [slot: string]: unknown };
}

/** A number, or a scalar tensor (what a compiled update passes in place of the step's host scalars). */
export type Scalar = number | Tensor;

/**
 * The math of one optimizer: its slot names, the step's host scalars (the learning rate and what
 * depends on the step count, computed in float64 like PyTorch's Python floats), and the rule for
 * one leaf. `flags` are step-dependent booleans that change the rule's structure (SGD's first step).
 */
export interface UpdateRule {
  readonly slots: readonly string[];
  scalars(step: number, lr: number): { readonly values: Readonly<Record<string, number>>; readonly flags: Readonly<Record<string, boolean>> };
  leaf(g: Tensor, x: Tensor, s: readonly Tensor[], v: Readonly<Record<string, Scalar>>, flags: Readonly<Record<string, boolean>>): [Tensor, Tensor[]];
}

export interface Optimizer {
  readonly config: OptimizerConfig;
  readonly rule: UpdateRule;
  init(params: unknown): OptState;
  /** One step at learning rate `lr`: new parameters and state; nothing is mutated. */
  update<P>(grads: P, state: OptState, params: P, lr: number): [P, OptState];
}

const zerosTree = (params: unknown): unknown => {
  const [ls, def] = flatten(params);
  return unflatten(def, ls.map((l) => o.zerosLike(l)));
};

/** Applies `f` leaf-wise over grads, params and slot trees; `f` returns the new param and slot leaves. */
function step<P>(
  grads: P,
  params: P,
  slotNames: readonly string[],
  slots: OptState['slots'],
  f: (g: Tensor, p: Tensor, s: Tensor[]) => [Tensor, Tensor[]],
): [P, Record<string, unknown>] {
  const [ps, def] = flatten(params);
  const [gs] = flatten(grads);
  if (gs.length !== ps.length) throw new Error(`optimizer: ${gs.length} gradients for ${ps.length} parameters`);
  const ss = slotNames.map((n) => {
    const [l] = flatten(slots[n]);
    if (l.length !== ps.length) throw new Error(`optimizer: slot '${n}' has ${l.length} tensors for ${ps.length} parameters`);
    return l;
  });
  const newP: Tensor[] = [];
  const newS: Tensor[][] = slotNames.map(() => []);
  for (let i = 0; i < ps.length; i++) {
    if (gs[i].shape.length !== ps[i].shape.length || gs[i].shape.some((d, j) => d !== ps[i].shape[j])) {
      throw new Error(`optimizer: gradient ${i} has shape [${gs[i].shape}] but its parameter [${ps[i].shape}]`);
    }
    const [p, s] = f(gs[i], ps[i], ss.map((l) => l[i]));
    newP.push(p);
    s.forEach((t, k) => newS[k].push(t));
  }
  return [unflatten<P>(def, newP), Object.fromEntries(slotNames.map((n, k) => [n, unflatten(def, newS[k])]))];
}

/** The new parameters and slots of one step of `rule` with the given scalars (numbers eagerly, scalar tensors when compiled). */
const applyRule = <P>(rule: UpdateRule, grads: P, slots: OptState['slots'], params: P, v: Readonly<Record<string, Scalar>>, flags: Readonly<Record<string, boolean>>) =>
  step(grads, params, rule.slots, slots, (g, x, s) => rule.leaf(g, x, s, v, flags));

/** An optimizer from its rule: `update` applies it eagerly with the step's host scalars. */
function optimizer(name: OptimizerName, config: OptimizerConfig, rule: UpdateRule): Optimizer {
  return {
    config,
    rule,
    init: (params) => ({ name, step: 0, slots: Object.fromEntries(rule.slots.map((n) => [n, zerosTree(params)])) }),
    update(grads, state, params, lr) {
      const { values, flags } = rule.scalars(state.step, lr);
      const [p, slots] = applyRule(rule, grads, state.slots, params, values, flags);
      return [p, { name, step: state.step + 1, slots }];
    },
  };
}

const need = (ok: boolean, msg: string) => {
  if (!ok) throw new Error(msg);
};

/**
 * RMSprop (torch.optim.RMSprop): v ← αv + (1 − α)g²; denominator √v + ε (or √(v − ḡ²) + ε when
 * centred, ḡ ← αḡ + (1 − α)g); with momentum b ← μb + g/den, p ← p − lr·b; else p ← p − lr·g/den.
 */
export function rmsprop(cfg: Omit<OptimizerConfig, 'name'> = {}): Optimizer {
  const alpha = cfg.alpha ?? 0.99;
  const eps = cfg.eps ?? 1e-8;
  const wd = cfg.weightDecay ?? 0;
  const mom = cfg.momentum ?? 0;
  const centered = cfg.centered ?? false;
  need(alpha >= 0 && alpha < 1, `rmsprop: alpha must be in [0, 1), got ${alpha}`);
  need(eps >= 0 && wd >= 0 && mom >= 0, `rmsprop: eps, weightDecay and momentum must be ≥ 0`);
  const names = ['square_avg', ...(mom > 0 ? ['momentum_buffer'] : []), ...(centered ? ['grad_avg'] : [])];
  return optimizer('rmsprop', { ...cfg, name: 'rmsprop', alpha, eps, weightDecay: wd, momentum: mom, centered }, {
    slots: names,
    scalars: (_step, lr) => ({ values: { lr }, flags: {} }),
    leaf(g, x, s, { lr }) {
      if (wd !== 0) g = o.add(g, o.mul(x, wd));
      const v = o.add(o.mul(s[0], alpha), o.mul(o.mul(g, g), 1 - alpha));
      const out: Tensor[] = [v];
      let gAvg: Tensor | undefined;
      if (centered) gAvg = o.add(o.mul(s[names.indexOf('grad_avg')], alpha), o.mul(g, 1 - alpha));
      const den = o.add(o.sqrt(gAvg ? o.sub(v, o.mul(gAvg, gAvg)) : v), eps);
      let nx: Tensor;
      if (mom > 0) {
        const b = o.add(o.mul(s[1], mom), o.div(g, den));
        out.push(b);
        nx = o.sub(x, o.mul(b, lr));
      } else nx = o.sub(x, o.mul(o.div(g, den), lr));
      if (gAvg) out.push(gAvg);
      return [nx, out];
    },
  });
}

/**
 * Adam (torch.optim.Adam) and AdamW (decoupled: p ← p·(1 − lr·λ) first):
 * m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², p ← p − (lr / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε).
 */
function adamLike(name: 'adam' | 'adamw', cfg: Omit<OptimizerConfig, 'name'>): Optimizer {
  const [b1, b2] = cfg.betas ?? [0.9, 0.999];
  const eps = cfg.eps ?? 1e-8;
  const wd = cfg.weightDecay ?? (name === 'adamw' ? 1e-2 : 0);
  need(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1, `${name}: betas must be in [0, 1), got [${b1}, ${b2}]`);
  need(eps >= 0 && wd >= 0, `${name}: eps and weightDecay must be ≥ 0`);
  return optimizer(name, { ...cfg, name, betas: [b1, b2], eps, weightDecay: wd }, {
    slots: ['exp_avg', 'exp_avg_sq'],
    scalars(step, lr) {
      const t = step + 1;
      // decay: AdamW's 1 − lr·λ; stepSize: lr / (1 − β₁ᵗ); bc2: √(1 − β₂ᵗ).
      return { values: { decay: 1 - lr * wd, stepSize: lr / (1 - b1 ** t), bc2: Math.sqrt(1 - b2 ** t) }, flags: {} };
    },
    leaf(g, x, [m0, v0], { decay, stepSize, bc2 }) {
      if (name === 'adam' && wd !== 0) g = o.add(g, o.mul(x, wd));
      if (name === 'adamw' && wd !== 0) x = o.mul(x, decay);
      const m = o.add(o.mul(m0, b1), o.mul(g, 1 - b1));
      const v = o.add(o.mul(v0, b2), o.mul(o.mul(g, g), 1 - b2));
      const den = o.add(o.div(o.sqrt(v), bc2), eps);
      return [o.sub(x, o.mul(o.div(m, den), stepSize)), [m, v]];
    },
  });
}
export const adam = (cfg: Omit<OptimizerConfig, 'name'> = {}): Optimizer => adamLike('adam', cfg);
export const adamw = (cfg: Omit<OptimizerConfig, 'name'> = {}): Optimizer => adamLike('adamw', cfg);

/**
 * SGD (torch.optim.SGD): g ← g + λp; with momentum b ← g at the first step, then
 * b ← μb + (1 − d)g; Nesterov uses g + μb, else b; p ← p − lr·g.
 */
export function sgd(cfg: Omit<OptimizerConfig, 'name'> = {}): Optimizer {
  const mom = cfg.momentum ?? 0;
  const damp = cfg.dampening ?? 0;
  const wd = cfg.weightDecay ?? 0;
  const nesterov = cfg.nesterov ?? false;
  need(mom >= 0 && wd >= 0, 'sgd: momentum and weightDecay must be ≥ 0');
  need(!nesterov || (mom > 0 && damp === 0), 'sgd: Nesterov momentum requires momentum > 0 and dampening 0');
  return optimizer('sgd', { ...cfg, name: 'sgd', momentum: mom, dampening: damp, weightDecay: wd, nesterov }, {
    slots: mom > 0 ? ['momentum_buffer'] : [],
    scalars: (step, lr) => ({ values: { lr }, flags: { first: step === 0 } }),
    leaf(g, x, s, { lr }, { first }) {
      if (wd !== 0) g = o.add(g, o.mul(x, wd));
      if (mom === 0) return [o.sub(x, o.mul(g, lr)), []];
      const b = first ? g : o.add(o.mul(s[0], mom), o.mul(g, 1 - damp));
      const d = nesterov ? o.add(g, o.mul(b, mom)) : b;
      return [o.sub(x, o.mul(d, lr)), [b]];
    },
  });
}

/** A compiled update; `compiles` counts its traces (one per parameter tree and flag set). */
export type CompiledUpdate = Optimizer['update'] & { readonly compiles: number };
const compiledUpdates = new WeakMap<Optimizer, CompiledUpdate>();

/**
 * `optimizer.update` compiled with `jit`: the whole step over every leaf runs as one graph (its
 * elementwise chains fused), instead of ~10 eager ops per leaf each allocating a full-size array.
 * The step's host scalars go in as scalar tensors of the parameters' dtype, so the learning rate
 * and step count change without recompiling and the arithmetic is the eager update's; a flag
 * (SGD's first step) compiles one more entry. Parameters of mixed dtypes fall back to the eager
 * update. Made once per optimizer.
 */
export function compiledUpdate(opt: Optimizer): CompiledUpdate {
  const known = compiledUpdates.get(opt);
  if (known) return known;
  const { rule } = opt;
  const f = jit((grads: unknown, slots: OptState['slots'], params: unknown, v: Record<string, Tensor>, flags: Record<string, boolean>) => applyRule(rule, grads, slots, params, v, flags));
  const update = <P>(grads: P, state: OptState, params: P, lr: number): [P, OptState] => {
    const leaves = flatten(params)[0] as Tensor[];
    const dtype = leaves[0]?.dtype;
    if (!dtype || leaves.some((l) => l.dtype !== dtype)) return opt.update(grads, state, params, lr);
    const { values, flags } = rule.scalars(state.step, lr);
    const v = Object.fromEntries(Object.entries(values).map(([k, x]) => [k, o.full([], x, dtype)]));
    const [p, slots] = f(grads, state.slots, params, v, flags) as [P, Record<string, unknown>];
    return [p, { name: state.name, step: state.step + 1, slots }];
  };
  const compiled = Object.defineProperty(update, 'compiles', { get: () => f.compiles }) as CompiledUpdate;
  compiledUpdates.set(opt, compiled);
  return compiled;
}

/** The optimizer named in a config. */
export function createOptimizer(cfg: OptimizerConfig): Optimizer {
  const { name, ...rest } = cfg;
  switch (name) {
    case 'rmsprop':
      return rmsprop(rest);
    case 'adam':
      return adam(rest);
    case 'adamw':
      return adamw(rest);
    case 'sgd':
      return sgd(rest);
    default:
      throw new Error(`createOptimizer: unknown optimizer '${name as string}' (${optimizerNames.join(', ')})`);
  }
}

/** √(Σ g²) over every leaf of a tree, as a scalar tensor on the leaves' device (nothing is read back). */
export function globalNormTensor(tree: unknown): Tensor {
  const leaves = flatten(tree)[0] as Tensor[];
  if (!leaves.length) throw new Error('globalNorm: the tree has no tensors');
  return o.sqrt(leaves.map((t) => o.sum(o.mul(t, t))).reduce((a, b) => o.add(a, b)));
}

/** √(Σ g²) over every leaf of a tree (one scalar read). */
export const globalNorm = (tree: unknown): number => item(globalNormTensor(tree));

/**
 * Scales the gradients so their global norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_:
 * every leaf times min(1, maxNorm / (norm + 1e-6)), exact when the factor is 1). The norm and the
 * factor are computed on the gradients' device and the scaling is queued before the norm is read
 * back, asynchronously: the only host read is that one number. Resolves to the clipped tree and
 * the norm before clipping.
 */
export async function clipByGlobalNorm<G>(grads: G, maxNorm: number): Promise<[G, number]> {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: maxNorm must be > 0, got ${maxNorm}`);
  const norm = globalNormTensor(grads);
  const f = o.minimum(o.div(maxNorm, o.add(norm, 1e-6)), 1);
  const [ls, def] = flatten(grads);
  const clipped = unflatten<G>(def, (ls as Tensor[]).map((g) => o.mul(g, f)));
  return [clipped, (await data(norm))[0]];
}
