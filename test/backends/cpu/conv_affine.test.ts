/**
 * conv2dAffine (a conv2d with eval-mode batch norm folded in: act(conv·a + b), a and b per output channel) on the CPU
 * backend: the fast kernel, which applies the affine (+ SiLU) as an epilogue of each conv path (the depthwise lane
 * kernels' registers, or the row kernels' staging stack past 128×128 planes; the direct kernel's registers (dense,
 * C·kh·kw ≤ 32); the sgemm's task stripes of columns or rows — im2col and grouped convs, 1×1 over large planes, an
 * M-split call; the batched 1×1 product over small planes), against
 *   - conv2d then affine through the same backend's kernels (the unfolded pair jit would otherwise run): the same
 *     float32 operations in the same order, so exactly equal;
 *   - the reference (conv2d's float64 loops, then the affine and SiLU loops), on the same float32 values.
 * float64 takes the reference path and equals conv then affine exactly.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../../src/index.ts';
import { type Conv2dAffineAttrs, conv2dShape } from '../../../src/autograd/conv.ts';
import { type KernelArg, type OutSpec, type TypedArray, findBackend } from '../../../src/backends/backend.ts';
import { bind } from '../../../src/autograd/trace.ts';
import { convKernels, convReferenceKernels } from '../../../src/backends/cpu/conv.ts';
import { convGeometry } from '../../../src/backends/cpu/conv_geom.ts';
import { depthwiseSimdOk, depthwiseUsesLanes } from '../../../src/backends/cpu/fast/dwconv.ts';
import { directConvOk } from '../../../src/backends/cpu/fast/directconv.ts';
import { wasmHeap } from '../../../src/backends/cpu/fast/heap.ts';
import { pointwiseBatchedOk } from '../../../src/backends/cpu/fast/pointwise.ts';
import { setSgemmMaxCallBytes } from '../../../src/backends/cpu/fast/sgemm.ts';
import { worstRel } from '../../helpers/jit.ts';
import { randF32 } from '../../helpers/random.ts';

type Path = 'depthwise' | 'direct' | 'pointwise-batched' | 'sgemm';
interface Case {
  readonly name: string;
  readonly x: number[];
  readonly w: number[];
  readonly stride?: number;
  readonly pad?: number;
  readonly groups?: number;
  readonly path: Path;
}

const cases: Case[] = [
  { name: 'dense 3×3', x: [2, 5, 11, 9], w: [6, 5, 3, 3], pad: 1, path: 'direct' },
  { name: 'dense 3×3 stride 2', x: [2, 3, 17, 17], w: [8, 3, 3, 3], stride: 2, pad: 1, path: 'direct' },
  { name: 'dense 3×3 stride 2, 5 output channels', x: [1, 2, 9, 14], w: [5, 2, 3, 3], stride: 2, pad: 1, path: 'direct' },
  { name: 'grouped 3×3', x: [2, 6, 8, 8], w: [9, 2, 3, 3], pad: 1, groups: 3, path: 'sgemm' },
  { name: 'depthwise 3×3', x: [3, 7, 12, 10], w: [7, 1, 3, 3], pad: 1, groups: 7, path: 'depthwise' },
  { name: 'depthwise 3×3 stride 2', x: [3, 7, 13, 13], w: [7, 1, 3, 3], stride: 2, pad: 1, groups: 7, path: 'depthwise' },
  { name: 'depthwise 5×5', x: [2, 5, 9, 11], w: [5, 1, 5, 5], pad: 2, groups: 5, path: 'depthwise' },
  { name: 'depthwise 5×5 stride 2', x: [2, 5, 15, 15], w: [5, 1, 5, 5], stride: 2, pad: 2, groups: 5, path: 'depthwise' },
  { name: 'depthwise ×2 multiplier, large planes', x: [1, 3, 40, 40], w: [6, 1, 3, 3], pad: 1, groups: 3, path: 'depthwise' },
  { name: 'depthwise stride 3 (im2col)', x: [2, 4, 10, 10], w: [4, 1, 3, 3], stride: 3, pad: 1, groups: 4, path: 'sgemm' },
  { name: 'pointwise, small planes', x: [4, 24, 5, 5], w: [40, 24, 1, 1], path: 'pointwise-batched' },
  { name: 'pointwise, large planes', x: [2, 16, 20, 20], w: [37, 16, 1, 1], path: 'sgemm' },
  // One image, many output channels over few pixels: the sgemm's tasks are stripes of rows.
  { name: 'pointwise, one image (row stripes)', x: [1, 24, 5, 5], w: [600, 24, 1, 1], path: 'sgemm' },
  // Planes beyond the lane kernels' 128×128: the stacked row kernels, the epilogue on their staging stack.
  { name: 'depthwise, planes past 128×128', x: [1, 2, 131, 130], w: [2, 1, 3, 3], pad: 1, groups: 2, path: 'depthwise' },
  // Past the direct kernel's 8 input channels: im2col + sgemm.
  { name: 'dense 3×3, 9 channels', x: [2, 9, 11, 9], w: [6, 9, 3, 3], pad: 1, path: 'sgemm' },
];


const size = (s: readonly number[]) => s.reduce((p, d) => p * d, 1);
const arg = (storage: TypedArray, shape: number[]): KernelArg<TypedArray> => ({ storage, shape, dtype: storage instanceof Float64Array ? 'float64' : 'float32' });

function setup(c: Case, seed: number, dtype: 'float32' | 'float64', act: boolean) {
  const g = c.groups ?? 1, s = c.stride ?? 1, p = c.pad ?? 0;
  const attrs: Conv2dAffineAttrs = { stride: [s, s], padding: [p, p, p, p], dilation: [1, 1], groups: g, ...(act ? { act: 'silu' as const } : {}) };
  const y = conv2dShape('test', c.x, c.w, attrs);
  const ch = [1, c.w[0], 1, 1];
  const cast = (a: Float32Array) => (dtype === 'float64' ? Float64Array.from(a) : a);
  // Scale and shift of BN's size: a = γ/σ around 1, b = β − μa a few tenths.
  const ins = [arg(cast(randF32(seed, size(c.x))), c.x), arg(cast(randF32(seed + 1, size(c.w))), c.w), arg(cast(randF32(seed + 2, c.w[0], 0.5, 1.5)), ch), arg(cast(randF32(seed + 3, c.w[0], -0.5, 0.5)), ch)];
  return { attrs, ins, out: { shape: y, dtype } as OutSpec };
}

/** conv2d, then affine (+ SiLU), through the CPU backend's own kernels (the unfolded pair). */
function unfolded(ins: KernelArg<TypedArray>[], attrs: Conv2dAffineAttrs, out: OutSpec): TypedArray {
  const cpu = findBackend('cpu');
  const y = convKernels.conv2d(ins.slice(0, 2), attrs, out);
  return cpu.kernels.get('affine')!([arg(y, [...out.shape]), ins[2], ins[3]], attrs.act ? { act: 'silu' } : {}, out) as TypedArray;
}

const heap = wasmHeap();

describe('conv2dAffine on the CPU backend', () => {
  it('each case takes the conv path it is named for', () => {
    for (const c of cases) {
      const { attrs, out } = setup(c, 1, 'float32', false);
      const p = convGeometry(c.x, c.w, out.shape, attrs);
      const path: Path = p.depthwise && depthwiseSimdOk(p) ? 'depthwise' : directConvOk(p) ? 'direct' : pointwiseBatchedOk(p) ? 'pointwise-batched' : 'sgemm';
      if (heap) expect(path, c.name).toBe(c.path);
      if (heap && path === 'depthwise') expect(depthwiseUsesLanes(p), c.name).toBe(!c.name.includes('past 128'));
    }
  });

  describe.each([false, true])('SiLU %s', (act) => {
    it.each(cases.map((c) => [c.name, c] as const))('float32 %s: fast = conv then affine; ≈ the reference', (_, c) => {
      const { attrs, ins, out } = setup(c, 7, 'float32', act);
      const fast = convKernels.conv2dAffine(ins, attrs, out);
      // The same float32 operations in the same order: the folded kernel changes where the affine runs, not what it computes.
      expect(worstRel(fast, unfolded(ins, attrs, out))).toBe(0);
      // float32 conv sums (≤ 81 terms of size ≤ 1) against float64 loops: measured worst 3.2e-7.
      expect(worstRel(fast, convReferenceKernels.conv2dAffine(ins, attrs, out))).toBeLessThan(2e-6);
    });

    it.each(cases.map((c) => [c.name, c] as const))('float64 %s: equals conv then affine', (_, c) => {
      const { attrs, ins, out } = setup(c, 11, 'float64', act);
      expect(worstRel(convKernels.conv2dAffine(ins, attrs, out), unfolded(ins, attrs, out))).toBe(0);
    });
  });

  it.skipIf(!heap)('writes into a slot of the wasm heap (jit arena), and through an sgemm call split in parts', () => {
    // In the heap, dense convs over few channels run the direct kernel, other one-group convs every image's product in one
    // batched sgemm job, grouped ones per group.
    for (const c of [cases[0], cases[1], cases[2], cases[3], cases[4], cases[10], cases[11], cases[12], cases[14]]) {
      const { attrs, ins, out } = setup(c, 5, 'float32', true);
      const want = unfolded(ins, attrs, out);
      const slot = heap!.reserve(size(out.shape) * 4);
      const view = slot.f32();
      const got = convKernels.conv2dAffine(ins, attrs, { ...out, into: view });
      expect(got, c.name).toBe(view);
      expect(worstRel(got, want), c.name).toBe(0);
      slot.release();
    }
    // Operands outside the heap, larger than the call limit: the product is split by rows (then columns), each
    // part with the epilogue rows it owns.
    const old = setSgemmMaxCallBytes(1024);
    try {
      const { attrs, ins, out } = setup(cases[11], 9, 'float32', true);
      expect(worstRel(convKernels.conv2dAffine(ins, attrs, out), unfolded(ins, attrs, out))).toBe(0);
    } finally {
      setSgemmMaxCallBytes(old);
    }
  });

  it('rejects scale or shift that is not one value per output channel, naming it', () => {
    const x = E.zeros([1, 2, 4, 4]), w = E.zeros([3, 2, 3, 3]);
    const attrs = { stride: [1, 1], padding: [1, 1, 1, 1], dilation: [1, 1], groups: 1 };
    expect(() => bind('conv2dAffine', [x, w, E.zeros([3]), E.zeros([1, 3, 1, 1])], attrs)).toThrow(/conv2dAffine: scale has shape \[3\]; expected one value per output channel of \[1,3,4,4\]/);
    expect(() => bind('conv2dAffine', [x, w, E.zeros([1, 3, 1, 1]), E.zeros([1, 3, 4, 4])], attrs)).toThrow(/conv2dAffine: shift has shape/);
    expect(() => bind('conv2dAffine', [x, w, E.zeros([1, 3, 1, 1]), E.zeros([1, 3, 1, 1])], { ...attrs, act: 'relu' })).toThrow(/unknown activation 'relu'/);
  });
});
