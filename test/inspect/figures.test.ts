/** Evaluation figures: the most confident errors are chosen by probability; the thresholds chart marks Youden's point. */
import { describe, expect, it } from 'vitest';
import { inspect } from '../../src/index.ts';

describe('evaluation figures', () => {
  const items = [
    { name: 'a', path: 'a.jpg', label: 0, probability: 0.9 },
    { name: 'b', path: 'b.jpg', label: 0, probability: 0.6 },
    { name: 'c', path: 'c.jpg', label: 0, probability: 0.1 },
    { name: 'd', path: 'd.jpg', label: 1, probability: 0.2 },
    { name: 'e', path: 'e.jpg', label: 1, probability: 0.45 },
    { name: 'f', path: 'f.jpg', label: 1, probability: 0.8 },
  ];
  it('confidentErrors: false positives by descending, false negatives by ascending probability, k each', () => {
    const e = inspect.confidentErrors(items, 0.5, 1);
    expect(e.fp.map((s) => s.name)).toEqual(['a']);
    expect(e.fn.map((s) => s.name)).toEqual(['d']);
    const all = inspect.confidentErrors(items, 0.5, 4);
    expect(all.fp.map((s) => s.name)).toEqual(['a', 'b']);
    expect(all.fn.map((s) => s.name)).toEqual(['d', 'e']);
  });
  it("thresholdsSvg: three curves and Youden's threshold in the title", () => {
    const svg = inspect.thresholdsSvg(items.map((s) => s.label), items.map((s) => s.probability), 'T');
    // J = sensitivity + specificity − 1: 1/3 at 0.2 (1, 1/3), 0 at 0.45 (2/3, 1/3) and at 0.8 (1/3, 2/3).
    expect(svg).toMatch(/T: Youden 0\.200 \(sens\. 1\.000, spec\. 0\.333\)/);
    for (const name of ['sensitivity', 'specificity', 'F1', 'Youden point']) expect(svg).toContain(`>${name}<`);
  });
});
