/**
 * stochsimd.ts `touch`: the loop that brings a band or a window into cache before the stochastic conv's kernels
 * read it. Its sum of the words it read says which words those were: one per 64 bytes from each row's start, and the
 * one at the row's last byte, over `rows` rows `rs` bytes apart in each of C planes `ps` bytes apart.
 */
import { describe, expect, it } from 'vitest';
import { wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { stochKernels } from '../../../../src/backends/cpu/fast/stochsimd.ts';

const heap = wasmHeap();

/** The sum `touch` is documented to return (i32 words, little-endian, wrapping). */
function expected(view: DataView, p: number, len: number, rows: number, rs: number, C: number, ps: number): number {
  let sum = 0;
  for (let c = 0; c < C; c++) {
    for (let r = 0; r < rows; r++) {
      const row = p + c * ps + r * rs;
      for (let o = 0; o < len; o += 64) sum = (sum + view.getInt32(row + o, true)) | 0;
      sum = (sum + view.getInt32(row + len - 1, true)) | 0;
    }
  }
  return sum;
}

describe.skipIf(!heap)('stochastic conv: touch', () => {
  const cases = [
    { name: 'a uint8 window: 225-byte rows at an odd address', off: 3, len: 225, rows: 7, rs: 1024, C: 3, ps: 1024 * 9 },
    { name: 'a band: one contiguous range per plane', off: 0, len: 5 * 1024, rows: 1, rs: 0, C: 3, ps: 8 * 1024 },
    { name: 'rows shorter than a word', off: 1, len: 1, rows: 4, rs: 5, C: 2, ps: 40 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const h = heap!;
      const bytes = c.off + (c.C - 1) * c.ps + (c.rows - 1) * c.rs + c.len + 4;
      const base = h.alloc(bytes);
      try {
        const u8 = new Uint8Array(h.memory.buffer, base, bytes);
        for (let i = 0; i < bytes; i++) u8[i] = (i * 2654435761) >>> 23;
        const k = stochKernels({ kh: 3, kw: 3, sh: 2, sw: 2, u8: true }).touch;
        const got = (k.run as unknown as (...a: number[]) => number)(base + c.off, c.len, c.rows, c.rs, c.C, c.ps);
        expect(got).toBe(expected(new DataView(h.memory.buffer), base + c.off, c.len, c.rows, c.rs, c.C, c.ps));
      } finally {
        h.release(base);
      }
    });
  }
});
