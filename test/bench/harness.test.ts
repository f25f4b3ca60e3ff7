/** The bench's row filter (`npm run bench -- --filter …`). */
import { describe, expect, it } from 'vitest';
import { matches } from '../../bench/harness.ts';

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
