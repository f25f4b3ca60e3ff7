/**
 * The CPU matmul kernel's float32 path with operands outside the wasm heap (a model's small weights given to a
 * compiled graph as inputs, eager's small arrays): they are copied once per call into the heap's stage, the product
 * runs there, and the result is the one the sgemm computes on heap operands, bit for bit.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../../src/index.ts';
import { STAGE_MAX_FLOATS, wasmHeap } from '../../../src/backends/cpu/fast/heap.ts';
import { findBackend } from '../../../src/backends/backend.ts';
import { Tensor } from '../../../src/tensor/tensor.ts';

const heap = wasmHeap();
const cpu = findBackend('cpu');

const onHeap = (t: E.Tensor) => {
  const r = heap!.reserve(t.size * 4);
  r.f32().set(E.dataSync(t));
  return new Tensor(t.shape, 'float32', r.f32(), cpu);
};
const offHeap = (t: E.Tensor) => new Tensor(t.shape, 'float32', Float32Array.from(E.dataSync(t)), cpu);
const bits = (t: E.Tensor) => Array.from(new Uint32Array(Float32Array.from(E.dataSync(t)).buffer));

describe.skipIf(!heap)('cpu matmul: float32 operands outside the heap', () => {
  it('are copied once per call (not per product of a batch) and give the in-heap result bit for bit', () => {
    const k = E.random.key(7);
    for (const [transposeA, transposeB] of [[false, false], [true, false], [false, true], [true, true]] as const) {
      // A broadcast over b's batch and b over a's: six products of 33×29×40.
      const a = E.random.normal(E.random.foldIn(k, 1), transposeA ? [3, 1, 40, 33] : [3, 1, 33, 40]);
      const b = E.random.normal(E.random.foldIn(k, 2), transposeB ? [2, 29, 40] : [2, 40, 29]);
      const want = bits(E.matmul(onHeap(a), onHeap(b), { transposeA, transposeB }));
      const [ha, hb] = [offHeap(a), offHeap(b)];
      expect(heap!.ptrOf(ha.storage as Float32Array)).toBe(-1);
      E.matmul(ha, hb, { transposeA, transposeB });
      const [c0, used] = [heap!.copiedBytes, heap!.allocatedBytes()];
      const y = E.matmul(ha, hb, { transposeA, transposeB });
      // A and B in, the (small, JS-heap) result out: once each.
      expect(heap!.copiedBytes - c0).toBe(4 * (a.size + b.size + y.size));
      expect(heap!.allocatedBytes()).toBe(used);
      expect(bits(y)).toEqual(want);
    }
  });

  it('larger than STAGE_MAX_FLOATS, they take the sgemm\'s own copies, with the same result', () => {
    const a = E.random.normal(E.random.key(8), [4, 64]);
    const b = offHeap(E.random.normal(E.random.key(9), [64, STAGE_MAX_FLOATS / 64 + 16]));
    expect(heap!.ptrOf(b.storage as Float32Array)).toBe(-1);
    expect(bits(E.matmul(offHeap(a), b))).toEqual(bits(E.matmul(onHeap(a), onHeap(b))));
  });
});
