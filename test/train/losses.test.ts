import { describe, expect, it } from 'vitest';
import { item, tensor } from '../../src/index.ts';
import { hostLosses, makeLoss, probabilities, type LossSpec } from '../../src/train/losses.ts';

const spec = (over: Partial<LossSpec>): LossSpec => ({ name: 'bce', posWeight: 1, classWeights: null, focalGamma: 2, numClasses: 1, ...over });

describe('training losses', () => {
  const logits1 = [-3, -0.5, 0.2, 4];
  const labels1 = new Float32Array([0, 1, 1, 0]);

  it('BCE: summed tensor loss = sum of host per-sample losses = the textbook formula', () => {
    for (const pw of [1, 3]) {
      const s = spec({ posWeight: pw });
      const t = item(makeLoss(s)(tensor(new Float64Array(logits1), [4, 1]), labels1));
      const h = hostLosses(s, labels1, logits1, true);
      const ref = logits1.map((x, i) => {
        const p = 1 / (1 + Math.exp(-x));
        return -(pw * labels1[i] * Math.log(p) + (1 - labels1[i]) * Math.log(1 - p));
      });
      expect(t).toBeCloseTo(ref.reduce((a, b) => a + b), 10);
      h.forEach((v, i) => expect(v).toBeCloseTo(ref[i], 12));
      // From probabilities (the TTA path) too.
      hostLosses(s, labels1, probabilities(logits1, 1), false).forEach((v, i) => expect(v).toBeCloseTo(ref[i], 9));
    }
  });

  it('focal (binary): (1 − p_t)^γ · CE', () => {
    const s = spec({ name: 'focal', focalGamma: 2 });
    const t = item(makeLoss(s)(tensor(new Float64Array(logits1), [4, 1]), labels1));
    const ref = logits1.map((x, i) => {
      const p = 1 / (1 + Math.exp(-x));
      const pt = labels1[i] ? p : 1 - p;
      return -((1 - pt) ** 2) * Math.log(pt);
    });
    expect(t).toBeCloseTo(ref.reduce((a, b) => a + b), 10);
    hostLosses(s, labels1, logits1, true).forEach((v, i) => expect(v).toBeCloseTo(ref[i], 12));
    const s3 = spec({ name: 'focal', focalGamma: 1.5 });
    expect(item(makeLoss(s3)(tensor(new Float64Array(logits1), [4, 1]), labels1))).toBeCloseTo(
      hostLosses(s3, labels1, logits1, true).reduce((a, b) => a + b),
      10,
    );
  });

  it('cross-entropy and focal for several classes, with class weights', () => {
    const logits = [1, 2, 0.5, -1, 0, 3, 2, 2, 2];
    const labels = new Float32Array([1, 2, 0]);
    for (const name of ['ce', 'focal'] as const) {
      for (const cw of [null, [0.5, 1, 2]]) {
        const s = spec({ name, numClasses: 3, classWeights: cw });
        const t = item(makeLoss(s)(tensor(new Float64Array(logits), [3, 3]), labels));
        const h = hostLosses(s, labels, logits, true);
        expect(t).toBeCloseTo(h.reduce((a, b) => a + b), 10);
        hostLosses(s, labels, probabilities(logits, 3), false).forEach((v, i) => expect(v).toBeCloseTo(h[i], 9));
      }
    }
    // Plain CE of the uniform row is log 3.
    expect(hostLosses(spec({ name: 'ce', numClasses: 3 }), [0], [2, 2, 2], true)[0]).toBeCloseTo(Math.log(3), 12);
  });
});
