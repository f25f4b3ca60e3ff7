/** Loss functions, built from primitives so their gradients come from the table. */
import { fmt } from './shape.ts';
import * as o from './ops.ts';
import type { Tensor } from './tensor.ts';

export type Reduction = 'mean' | 'sum' | 'none';

function reduce(x: Tensor, reduction: Reduction, op: string): Tensor {
  switch (reduction) {
    case 'mean':
      return o.mean(x);
    case 'sum':
      return o.sum(x);
    case 'none':
      return x;
    default:
      throw new Error(`${op}: unknown reduction '${reduction as string}' (mean, sum or none)`);
  }
}

export interface BceOptions {
  /** Weight of the positive term (PyTorch's pos_weight), broadcast over the last axis. */
  readonly posWeight?: Tensor | number;
  readonly reduction?: Reduction;
}

/**
 * Binary cross-entropy on logits x with targets t ∈ [0, 1]:
 * ℓ = (1 − t)·x + (1 + (w − 1)·t)·softplus(−x), which equals −w·t·log σ(x) − (1 − t)·log(1 − σ(x))
 * and stays finite for any |x| (softplus is computed as max(z, 0) + log1p(e^−|z|)).
 */
export function binaryCrossEntropyWithLogits(logits: Tensor, targets: Tensor, opts: BceOptions = {}): Tensor {
  if (logits.shape.length !== targets.shape.length || logits.shape.some((d, i) => d !== targets.shape[i])) {
    throw new Error(`binaryCrossEntropyWithLogits: logits ${fmt(logits.shape)} and targets ${fmt(targets.shape)} differ in shape`);
  }
  const sp = o.softplus(o.neg(logits));
  const pw = typeof opts.posWeight === 'number' ? o.full([], opts.posWeight, logits.dtype) : opts.posWeight;
  const w = pw === undefined ? null : o.add(1, o.mul(o.sub(pw, 1), targets));
  const loss = o.add(o.mul(o.sub(1, targets), logits), w ? o.mul(w, sp) : sp);
  return reduce(loss, opts.reduction ?? 'mean', 'binaryCrossEntropyWithLogits');
}

export interface CeOptions {
  /** A weight per class (PyTorch's `weight`): the mean is weighted as PyTorch does. */
  readonly classWeights?: Tensor;
  readonly reduction?: Reduction;
}

/**
 * Cross-entropy of logits [N, C] against integer class indices [N] or one-hot / soft targets [N, C].
 * With classWeights and the mean reduction, the sum is divided by the total weight of the targets (as PyTorch).
 */
export function crossEntropy(logits: Tensor, targets: Tensor | readonly number[] | Int32Array, opts: CeOptions = {}): Tensor {
  if (logits.rank !== 2) throw new Error(`crossEntropy: logits must be [N, C], got ${fmt(logits.shape)}`);
  const [n, c] = logits.shape;
  let onehot: Tensor;
  if (Array.isArray(targets) || targets instanceof Int32Array || (targets as Tensor).rank === 1) {
    const idx = Array.isArray(targets) || targets instanceof Int32Array ? [...targets] : [...o.toIndexList(targets as Tensor)];
    if (idx.length !== n) throw new Error(`crossEntropy: ${idx.length} targets for ${n} rows of logits ${fmt(logits.shape)}`);
    for (const k of idx) if (!Number.isInteger(k) || k < 0 || k >= c) throw new Error(`crossEntropy: class index ${k} is out of range for ${c} classes`);
    onehot = o.gather(o.eye(c, c, logits.dtype), idx, 0);
  } else {
    onehot = targets as Tensor;
    if (onehot.rank !== 2 || onehot.shape[0] !== n || onehot.shape[1] !== c) {
      throw new Error(`crossEntropy: targets ${fmt(onehot.shape)} do not match logits ${fmt(logits.shape)}`);
    }
  }
  let per = o.neg(o.sum(o.mul(onehot, o.logSoftmax(logits, -1)), [1]));
  if (!opts.classWeights) return reduce(per, opts.reduction ?? 'mean', 'crossEntropy');
  if (opts.classWeights.rank !== 1 || opts.classWeights.shape[0] !== c) {
    throw new Error(`crossEntropy: classWeights ${fmt(opts.classWeights.shape)} must be [${c}]`);
  }
  const w = o.sum(o.mul(onehot, opts.classWeights), [1]);
  per = o.mul(per, w);
  if ((opts.reduction ?? 'mean') === 'mean') return o.div(o.sum(per), o.sum(w));
  return reduce(per, opts.reduction!, 'crossEntropy');
}
