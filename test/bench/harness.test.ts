/** The bench's row filter (`npm run bench -- --filter …`). */
import { describe, expect, it } from 'vitest';
import { matches, measurePaired, median } from '../../bench/harness.ts';

describe('bench --filter', () => {
  it('keeps every row without a filter, and rows containing the text (any case) with one', () => {
    expect(matches(undefined, 'models', 'b0/train-step-8x224', 'cpu-jit')).toBe(true);
    expect(matches('CPU-JIT', 'models', 'b0/train-step-8x224', 'cpu-jit')).toBe(true);
    expect(matches('torch', 'models', 'b0/train-step-8x224', 'cpu-jit')).toBe(false);
  });
  it('takes a comma-separated list: a row is kept when it contains any of them', () => {
    const f = 'cpu-jit, torch';
    expect(matches(f, 'models', 'b0/inference-8x224', 'torch')).toBe(true);
    expect(matches(f, 'models', 'b0/inference-8x224', 'cpu-jit')).toBe(true);
    expect(matches(f, 'models', 'b0/inference-8x224', 'tfjs-wasm')).toBe(false);
    expect(matches(',', 'models', 'b0', 'cpu')).toBe(false);
  });
});

describe('measurePaired', () => {
  const busy = (ms: number) => () => {
    const t0 = performance.now();
    while (performance.now() - t0 < ms);
  };
  it('times the two in alternating turns after their warm-ups, at least `iterations` pairs', async () => {
    const calls: string[] = [];
    const m = await measurePaired(() => calls.push('a'), () => calls.push('b'), { time: 0, iterations: 4, warmup: 2 });
    expect(calls.join('')).toBe('abab' + 'ab' + 'ba' + 'ab' + 'ba');
    expect(m.a.samples).toBe(4);
    expect(m.b.samples).toBe(4);
    expect(m.ratios).toHaveLength(4);
  });
  it('gives the first time over the second per pair', async () => {
    const m = await measurePaired(busy(30), busy(10), { time: 0, iterations: 5, warmup: 1 });
    expect(m.a.medianMs).toBeGreaterThanOrEqual(30);
    expect(m.b.medianMs).toBeGreaterThanOrEqual(10);
    // Each ratio is 30 ms over 10 ms, plus whatever a loaded machine adds to either call (a few ms: its time slices).
    expect(median(m.ratios)).toBeGreaterThan(1.8);
    expect(median(m.ratios)).toBeLessThan(4.5);
  });
});
