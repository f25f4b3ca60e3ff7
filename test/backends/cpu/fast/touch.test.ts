/**
 * stochsimd.ts `touch`: the loop that brings a band of an image into cache before the stochastic conv's kernels
 * read it. Its sum of the words it read says which words those were: one per 64 bytes from the start of each of C
 * ranges `ps` bytes apart, and the one at each range's last byte.
 */
import { describe, expect, it } from 'vitest';
import { wasmHeap } from '../../../../src/backends/cpu/fast/heap.ts';
import { stochKernels } from '../../../../src/backends/cpu/fast/stochsimd.ts';

const heap = wasmHeap();

/** The sum `touch` is documented to return (i32 words, little-endian, wrapping). */
function expected(view: DataView, p: number, len: number, C: number, ps: number): number {
  let sum = 0;
  for (let c = 0; c < C; c++) {
    for (let o = 0; o < len; o += 64) sum = (sum + view.getInt32(p + c * ps + o, true)) | 0;
    sum = (sum + view.getInt32(p + c * ps + len - 1, true)) | 0;
  }
  return sum;
}

describe.skipIf(!heap)('stochastic conv: touch', () => {
  const cases = [
    { name: 'a band of three planes', off: 0, len: 130 * 1024, C: 3, ps: 1024 * 1024 },
    { name: 'ranges at an odd address, their ends inside a line', off: 3, len: 225, C: 3, ps: 1000 },
    { name: 'ranges shorter than a word', off: 1, len: 1, C: 2, ps: 5 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const h = heap!;
      const bytes = c.off + (c.C - 1) * c.ps + c.len + 4;
      const base = h.alloc(bytes);
      try {
        const u8 = new Uint8Array(h.memory.buffer, base, bytes);
        for (let i = 0; i < bytes; i++) u8[i] = (i * 2654435761) >>> 23;
        const touch = stochKernels({ kh: 3, kw: 3, sh: 2, sw: 2, u8: true }).touch.run as unknown as (...a: number[]) => number;
        expect(touch(base + c.off, c.len, c.C, c.ps)).toBe(expected(new DataView(h.memory.buffer), base + c.off, c.len, c.C, c.ps));
      } finally {
        h.release(base);
      }
    });
  }
});
