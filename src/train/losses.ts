/**
 * Training losses as functions (logits, labels) → summed loss over the samples (a scalar tensor,
 * differentiable), plus the same per-sample values on the host for validation. Summed, so that
 * micro-batches of a batch add up: the trainer divides by the batch size.
 */
import * as o from '../tensor/ops.ts';
import { binaryCrossEntropyWithLogits, crossEntropy } from '../tensor/losses.ts';
import { type Tensor, tensor } from '../tensor/tensor.ts';
import type { LossName } from './config.ts';

export interface LossSpec {
  readonly name: LossName;
  /** Binary: weight of the positives (1 = plain BCE). */
  readonly posWeight: number;
  /** Multiclass: a weight per class (null: none). */
  readonly classWeights: readonly number[] | null;
  readonly focalGamma: number;
  readonly numClasses: number;
}

export type LossFn = (logits: Tensor, labels: Float32Array) => Tensor;
/** The same loss over a targets tensor (see targetsFor), so a jitted step takes the labels as an input. */
export type TargetLossFn = (logits: Tensor, targets: Tensor) => Tensor;

/** The labels as the loss's targets: [N, 1] values (binary) or [N, C] one-hot rows (multiclass). */
export function targetsFor(spec: LossSpec, labels: Float32Array, dtype: Tensor['dtype']): Tensor {
  const n = labels.length;
  if (spec.numClasses === 1) return tensor(Float32Array.from(labels), [n, 1], dtype);
  const idx = Array.from(labels, (v) => v);
  for (const k of idx) if (!Number.isInteger(k) || k < 0 || k >= spec.numClasses) throw new Error(`loss: class index ${k} is out of range for ${spec.numClasses} classes`);
  return o.gather(o.eye(spec.numClasses, spec.numClasses, dtype), idx, 0);
}

/** The summed training loss. Binary models have one logit ([N, 1]); multiclass [N, C]. */
export function makeLoss(spec: LossSpec): LossFn {
  const f = makeTargetLoss(spec);
  return (logits, labels) => f(logits, targetsFor(spec, labels, logits.dtype));
}

/** makeLoss over targets (binary: [N, 1] labels; multiclass: [N, C] one-hot). */
export function makeTargetLoss(spec: LossSpec): TargetLossFn {
  const binary = spec.numClasses === 1;
  return (logits, y) => {
    if (binary) {
      const pw = spec.posWeight === 1 ? undefined : spec.posWeight;
      if (spec.name === 'bce') return binaryCrossEntropyWithLogits(logits, y, { posWeight: pw, reduction: 'sum' });
      // Focal (Lin et al. 2017): (1 − p_t)^γ · CE, with p_t the probability of the true class.
      const ce = binaryCrossEntropyWithLogits(logits, y, { posWeight: pw, reduction: 'none' });
      const p = o.sigmoid(logits);
      const pt = o.add(o.mul(p, y), o.mul(o.sub(1, p), o.sub(1, y)));
      return o.sum(o.mul(ce, focalFactor(pt, spec.focalGamma)));
    }
    const cw = spec.classWeights ? tensor(Float32Array.from(spec.classWeights), [spec.numClasses], logits.dtype) : undefined;
    // With class weights, sum the weighted terms (the trainer's mean is over images, not weights).
    if (spec.name === 'ce') return crossEntropy(logits, y, { reduction: 'sum', ...(cw ? { classWeights: cw } : {}) });
    const logpt = o.sum(o.mul(y, o.logSoftmax(logits, -1)), [1]);
    let per = o.mul(focalFactor(o.exp(logpt), spec.focalGamma), logpt);
    // A one-hot row times the weights picks the true class's weight exactly.
    if (cw) per = o.mul(per, o.sum(o.mul(y, cw), [1]));
    return o.neg(o.sum(per));
  };
}

const focalFactor = (pt: Tensor, gamma: number): Tensor => {
  const q = o.sub(1, pt);
  if (gamma === 0) return o.onesLike(q);
  if (gamma === 1) return q;
  if (gamma === 2) return o.mul(q, q);
  return o.pow(o.maximum(q, 0), gamma);
};

const softplus = (z: number) => Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z)));

/**
 * Per-sample loss on the host from averaged probabilities (validation with test-time
 * augmentation averages probabilities, then scores them). `probs` is [N] (binary) or [N, C].
 * With one pass, pass the logits instead (`fromLogits`) for full precision.
 */
export function hostLosses(spec: LossSpec, labels: ArrayLike<number>, values: ArrayLike<number>, fromLogits: boolean): Float64Array {
  const n = labels.length;
  const out = new Float64Array(n);
  const g = spec.name === 'focal' ? spec.focalGamma : 0;
  if (spec.numClasses === 1) {
    for (let i = 0; i < n; i++) {
      const y = labels[i];
      const w = 1 + (spec.posWeight - 1) * y;
      let ce: number;
      let p: number;
      if (fromLogits) {
        const x = values[i];
        ce = (1 - y) * x + w * softplus(-x);
        p = 1 / (1 + Math.exp(-x));
      } else {
        p = Math.min(Math.max(values[i], 1e-12), 1 - 1e-12);
        ce = -(w * y * Math.log(p) + (1 - y) * Math.log(1 - p));
      }
      const pt = y === 1 ? p : 1 - p;
      out[i] = g ? ce * (1 - pt) ** g : ce;
    }
    return out;
  }
  const c = spec.numClasses;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    let logpt: number;
    if (fromLogits) {
      let m = -Infinity;
      for (let k = 0; k < c; k++) m = Math.max(m, values[i * c + k]);
      let s = 0;
      for (let k = 0; k < c; k++) s += Math.exp(values[i * c + k] - m);
      logpt = values[i * c + y] - m - Math.log(s);
    } else logpt = Math.log(Math.max(values[i * c + y], 1e-12));
    const w = spec.classWeights ? spec.classWeights[y] : 1;
    out[i] = -w * (g ? (1 - Math.exp(logpt)) ** g : 1) * logpt;
  }
  return out;
}

/** Probabilities from host logits: sigmoid for one output, softmax per row otherwise. */
export function probabilities(logits: ArrayLike<number>, numClasses: number): Float64Array {
  const out = new Float64Array(logits.length);
  if (numClasses === 1) {
    for (let i = 0; i < logits.length; i++) out[i] = 1 / (1 + Math.exp(-logits[i]));
    return out;
  }
  for (let r = 0; r < logits.length / numClasses; r++) {
    let m = -Infinity;
    for (let k = 0; k < numClasses; k++) m = Math.max(m, logits[r * numClasses + k]);
    let s = 0;
    for (let k = 0; k < numClasses; k++) s += (out[r * numClasses + k] = Math.exp(logits[r * numClasses + k] - m));
    for (let k = 0; k < numClasses; k++) out[r * numClasses + k] /= s;
  }
  return out;
}
