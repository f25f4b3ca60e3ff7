/**
 * Classification metrics on plain arrays (float64 arithmetic, no tensors): exact ROC AUC with ties
 * (Mann–Whitney U with mid-ranks), ROC curve points, threshold metrics at 0.5 and at Youden's J,
 * F-scores, Cohen's kappa; one-vs-rest AUC and balanced accuracy for several classes.
 * A sample is predicted positive when its score is ≥ the threshold (sklearn's roc_curve rule).
 * Undefined quantities (an AUC with one class only, a sensitivity with no positives) are NaN.
 */

export type Labels = ArrayLike<number>;
export type Scores = ArrayLike<number>;

function checkPair(op: string, labels: Labels, scores: Scores): void {
  if (labels.length !== scores.length) {
    throw new Error(`${op}: ${labels.length} labels but ${scores.length} scores`);
  }
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] !== 0 && labels[i] !== 1) throw new Error(`${op}: label ${labels[i]} at index ${i} is not 0 or 1`);
    if (Number.isNaN(scores[i])) throw new Error(`${op}: score at index ${i} is NaN`);
  }
}

/** Ranks 1…n of the values, ties given the mean of the ranks they span (mid-ranks). */
export function midRanks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && values[order[j + 1]] === values[order[i]]) j++;
    const r = (i + j) / 2 + 1; // ranks i+1 … j+1, averaged
    for (let k = i; k <= j; k++) ranks[order[k]] = r;
    i = j + 1;
  }
  return ranks;
}

/**
 * Exact ROC AUC = P(score⁺ > score⁻) + ½·P(score⁺ = score⁻) = U / (n⁺·n⁻), with
 * U = (sum of the positives' mid-ranks) − n⁺(n⁺ + 1)/2. NaN when a class is absent.
 * @example rocAuc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) // 0.75
 */
export function rocAuc(labels: Labels, scores: Scores): number {
  checkPair('rocAuc', labels, scores);
  const ranks = midRanks(scores);
  let nPos = 0;
  let rankSum = 0;
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === 1) {
      nPos++;
      rankSum += ranks[i];
    }
  }
  const nNeg = labels.length - nPos;
  if (nPos === 0 || nNeg === 0) return NaN;
  return (rankSum - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

export interface RocCurve {
  /** False-positive rates, from 0 to 1. */
  readonly fpr: number[];
  /** True-positive rates, from 0 to 1. */
  readonly tpr: number[];
  /** thresholds[i] gives (fpr[i], tpr[i]) with the rule score ≥ threshold; the first is +∞. */
  readonly thresholds: number[];
}

/** All ROC points, one per distinct score (sklearn's roc_curve with drop_intermediate=False). */
export function rocCurve(labels: Labels, scores: Scores): RocCurve {
  checkPair('rocCurve', labels, scores);
  const n = labels.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a]);
  let nPos = 0;
  for (let i = 0; i < n; i++) nPos += labels[i];
  const nNeg = n - nPos;
  const fpr = [0];
  const tpr = [0];
  const thresholds = [Infinity];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < n; ) {
    const s = scores[order[i]];
    while (i < n && scores[order[i]] === s) {
      if (labels[order[i]] === 1) tp++;
      else fp++;
      i++;
    }
    fpr.push(nNeg ? fp / nNeg : NaN);
    tpr.push(nPos ? tp / nPos : NaN);
    thresholds.push(s);
  }
  return { fpr, tpr, thresholds };
}

export interface Confusion {
  readonly tp: number;
  readonly fp: number;
  readonly tn: number;
  readonly fn: number;
}

/** Counts with "positive" ⇔ score ≥ threshold. */
export function confusionAt(labels: Labels, scores: Scores, threshold: number): Confusion {
  checkPair('confusionAt', labels, scores);
  let tp = 0;
  let fp = 0;
  let tn = 0;
  let fn = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = scores[i] >= threshold;
    if (labels[i] === 1) p ? tp++ : fn++;
    else p ? fp++ : tn++;
  }
  return { tp, fp, tn, fn };
}

const ratio = (a: number, b: number): number => (b === 0 ? NaN : a / b);

/** F_β = (1 + β²)·tp / ((1 + β²)·tp + β²·fn + fp); 0 when there is nothing to score (sklearn's zero_division=0). */
export function fBeta(c: Confusion, beta: number): number {
  const b2 = beta * beta;
  const den = (1 + b2) * c.tp + b2 * c.fn + c.fp;
  return den === 0 ? 0 : ((1 + b2) * c.tp) / den;
}

/** Cohen's κ = (p_o − p_e) / (1 − p_e) from a square matrix of counts (rows: truth, columns: prediction). */
export function cohenKappa(matrix: readonly (readonly number[])[]): number {
  const k = matrix.length;
  let total = 0;
  let agree = 0;
  const rows = new Float64Array(k);
  const cols = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = matrix[i][j];
      total += v;
      rows[i] += v;
      cols[j] += v;
      if (i === j) agree += v;
    }
  }
  if (total === 0) return NaN;
  const po = agree / total;
  let pe = 0;
  for (let i = 0; i < k; i++) pe += (rows[i] / total) * (cols[i] / total);
  return pe === 1 ? NaN : (po - pe) / (1 - pe);
}

export interface ThresholdMetrics {
  readonly threshold: number;
  readonly confusion: Confusion;
  readonly accuracy: number;
  /** Recall of the positives, tp / (tp + fn). */
  readonly sensitivity: number;
  /** Recall of the negatives, tn / (tn + fp). */
  readonly specificity: number;
  readonly precision: number;
  readonly f1: number;
  readonly f2: number;
  readonly kappa: number;
}

export function thresholdMetrics(labels: Labels, scores: Scores, threshold: number): ThresholdMetrics {
  const c = confusionAt(labels, scores, threshold);
  return {
    threshold,
    confusion: c,
    accuracy: ratio(c.tp + c.tn, c.tp + c.tn + c.fp + c.fn),
    sensitivity: ratio(c.tp, c.tp + c.fn),
    specificity: ratio(c.tn, c.tn + c.fp),
    precision: ratio(c.tp, c.tp + c.fp),
    f1: fBeta(c, 1),
    f2: fBeta(c, 2),
    kappa: cohenKappa([
      [c.tn, c.fp],
      [c.fn, c.tp],
    ]),
  };
}

/**
 * The threshold maximising Youden's J = sensitivity + specificity − 1 = tpr − fpr over the ROC
 * points (the highest such threshold on ties). NaN when a class is absent.
 */
export function youdenThreshold(labels: Labels, scores: Scores): number {
  const { fpr, tpr, thresholds } = rocCurve(labels, scores);
  let best = -Infinity;
  let at = NaN;
  for (let i = 1; i < thresholds.length; i++) {
    const j = tpr[i] - fpr[i];
    if (j > best) {
      best = j;
      at = thresholds[i];
    }
  }
  return at;
}

export interface BinaryMetrics {
  readonly n: number;
  readonly positives: number;
  readonly auc: number;
  /** At the threshold 0.5 on probabilities. */
  readonly atHalf: ThresholdMetrics;
  /** At Youden's threshold (chosen on the same data: optimistic by construction). */
  readonly atYouden: ThresholdMetrics;
}

/** Every binary metric for probabilities of the positive class. */
export function binaryMetrics(labels: Labels, probs: Scores): BinaryMetrics {
  checkPair('binaryMetrics', labels, probs);
  let positives = 0;
  for (let i = 0; i < labels.length; i++) positives += labels[i];
  const yt = youdenThreshold(labels, probs);
  return {
    n: labels.length,
    positives,
    auc: rocAuc(labels, probs),
    atHalf: thresholdMetrics(labels, probs, 0.5),
    atYouden: thresholdMetrics(labels, probs, Number.isNaN(yt) ? 0.5 : yt),
  };
}

/** A flat record of the binary metrics for CSV rows (keys in a fixed order). */
export function flatBinaryMetrics(m: BinaryMetrics, prefix = ''): Record<string, number> {
  const t = (x: ThresholdMetrics, s: string): Record<string, number> => ({
    [`${prefix}Accuracy${s}`]: x.accuracy,
    [`${prefix}Sensitivity${s}`]: x.sensitivity,
    [`${prefix}Specificity${s}`]: x.specificity,
    [`${prefix}F1${s}`]: x.f1,
    [`${prefix}F2${s}`]: x.f2,
    [`${prefix}Kappa${s}`]: x.kappa,
    [`${prefix}TP${s}`]: x.confusion.tp,
    [`${prefix}FP${s}`]: x.confusion.fp,
    [`${prefix}TN${s}`]: x.confusion.tn,
    [`${prefix}FN${s}`]: x.confusion.fn,
  });
  return { ...t(m.atHalf, '@0.5'), [`${prefix}Youden Threshold`]: m.atYouden.threshold, ...t(m.atYouden, '@Youden') };
}

// ---------------------------------------------------------------------------------------------
// Several classes

export interface MulticlassMetrics {
  readonly n: number;
  readonly classes: number;
  /** One-vs-rest AUC of each class (NaN for a class absent from, or alone in, the labels). */
  readonly aucPerClass: number[];
  /** Mean of the defined per-class AUCs. */
  readonly macroAuc: number;
  readonly accuracy: number;
  /** Mean recall over the classes present in the labels. */
  readonly balancedAccuracy: number;
  readonly kappa: number;
  /** counts[truth][prediction], prediction = argmax of the probabilities. */
  readonly confusion: number[][];
}

/** Multi-class metrics from integer labels 0…C−1 and row-major probabilities [N, C]. */
export function multiclassMetrics(labels: Labels, probs: ArrayLike<number>, classes: number): MulticlassMetrics {
  const n = labels.length;
  if (!Number.isInteger(classes) || classes < 2) throw new Error(`multiclassMetrics: classes must be an integer ≥ 2, got ${classes}`);
  if (probs.length !== n * classes) {
    throw new Error(`multiclassMetrics: ${probs.length} probabilities for ${n} labels × ${classes} classes`);
  }
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= classes) throw new Error(`multiclassMetrics: label ${y} at index ${i} is not in 0…${classes - 1}`);
    let arg = 0;
    for (let c = 1; c < classes; c++) if (probs[i * classes + c] > probs[i * classes + arg]) arg = c;
    confusion[y][arg]++;
  }
  const aucPerClass: number[] = [];
  const bin = new Float64Array(n);
  const col = new Float64Array(n);
  for (let c = 0; c < classes; c++) {
    for (let i = 0; i < n; i++) {
      bin[i] = labels[i] === c ? 1 : 0;
      col[i] = probs[i * classes + c];
    }
    aucPerClass.push(rocAuc(bin, col));
  }
  const defined = aucPerClass.filter((a) => !Number.isNaN(a));
  let correct = 0;
  let recallSum = 0;
  let present = 0;
  for (let c = 0; c < classes; c++) {
    correct += confusion[c][c];
    const row = confusion[c].reduce((a, b) => a + b, 0);
    if (row > 0) {
      recallSum += confusion[c][c] / row;
      present++;
    }
  }
  return {
    n,
    classes,
    aucPerClass,
    macroAuc: defined.length ? defined.reduce((a, b) => a + b, 0) / defined.length : NaN,
    accuracy: ratio(correct, n),
    balancedAccuracy: ratio(recallSum, present),
    kappa: cohenKappa(confusion),
    confusion,
  };
}
