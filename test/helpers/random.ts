/** Deterministic float32 test data: `n` values in [lo, hi) from an integer hash of `seed` (no tensor machinery). */
export function randF32(seed: number, n: number, lo = -1, hi = 1): Float32Array {
  let s = (seed * 2654435761 + 12345) >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x9e3779b9) >>> 0;
    out[i] = lo + (s / 2 ** 32) * (hi - lo);
  }
  return out;
}
