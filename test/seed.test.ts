import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

describe('property-test seed', () => {
  it('every file runs with the run seed printed at start (FC_SEED replays it)', () => {
    expect(process.env.FC_SEED).toMatch(/^-?\d+$/);
    expect(fc.readConfigureGlobal().seed).toBe(Number(process.env.FC_SEED));
  });
});
