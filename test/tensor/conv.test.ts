import { readFileSync } from 'node:fs';
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { checkGradients } from '../../src/autograd/gradcheck.ts';
import { bind } from '../../src/autograd/trace.ts';
import { conv2dShape } from '../../src/autograd/conv.ts';
import { convKernels, convReferenceKernels } from '../../src/backends/cpu/conv.ts';

const convPrims = [
  'conv2d', 'conv2dGradInput', 'conv2dGradFilter',
  'stochasticConv2d', 'stochasticConv2dGradInput', 'stochasticConv2dGradFilter',
  'avgPool2d', 'avgPool2dGrad', 'maxPool2d', 'maxPool2dGrad', 'maxPool2dSelect',
];

describe('gradient checks (float64, finite differences)', () => {
  for (const name of convPrims) {
    it(name, () => {
      const p = E.getPrimitive(name);
      expect(p.check).toBeDefined();
      fc.assert(
        fc.property(p.check!(fc), (c) => {
          const r = checkGradients((xs, a) => bind(name, xs, a), c, { step: p.step });
          expect(r.maxError).toBeLessThan(p.tolerance ?? 1e-6);
        }),
        { numRuns: 25 },
      );
    });
  }
});

// ---- PyTorch fixtures (scripts/fixtures/torch_conv.py) -------------------------------------------
interface Fixture {
  name: string;
  op: 'conv2d' | 'stochasticConv2d' | 'maxPool2d' | 'avgPool2d';
  opts: any;
  x: { shape: number[]; values: number[] };
  w?: { shape: number[]; values: number[] };
  g: number[];
  y: { shape: number[]; values: number[] };
  dx: number[];
  dw?: number[];
}
const fixtures: Fixture[] = JSON.parse(readFileSync(new URL('../fixtures/conv.json', import.meta.url), 'utf8')).cases;

/** float32 tolerance: |a − b| ≤ 1e-4 + 1e-4·|b| elementwise. */
function expectClose(got: ArrayLike<number>, want: readonly number[], what: string): void {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(e <= worst)) [worst, at] = [e, i];
  }
  expect(worst, `${what}: worst relative error at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThan(1e-4);
}

describe('PyTorch fixtures (float32)', () => {
  for (const f of fixtures) {
    it(`${f.op}: ${f.name}`, () => {
      const x = E.tensor(Float32Array.from(f.x.values), f.x.shape);
      const apply = (p: E.Tensor[]): E.Tensor => {
        switch (f.op) {
          case 'conv2d':
            return E.conv2d(p[0], p[1], f.opts);
          case 'stochasticConv2d':
            return E.stochasticConv2d(p[0], p[1], { ...f.opts, windows: Int32Array.from(f.opts.windows) });
          case 'maxPool2d':
            return E.maxPool2d(p[0], f.opts);
          case 'avgPool2d':
            return E.avgPool2d(p[0], f.opts);
        }
      };
      const params = f.w ? [x, E.tensor(Float32Array.from(f.w.values), f.w.shape)] : [x];
      const [y, pullback] = E.vjp(apply, params);
      expect([...y.shape]).toEqual(f.y.shape);
      expectClose(E.dataSync(y), f.y.values, 'forward');
      const grads = pullback(E.tensor(Float32Array.from(f.g), f.y.shape));
      expectClose(E.dataSync(grads[0]), f.dx, 'input gradient');
      if (f.dw) expectClose(E.dataSync(grads[1]), f.dw, 'filter gradient');
    });
  }
});

// ---- properties ------------------------------------------------------------------------------------
const randn = (seed: number, shape: number[]) => E.random.normal(E.random.key(seed), shape, 0, 1, { dtype: 'float64' });

describe('stochasticConv2d', () => {
  it('equals conv2d of each channel’s cropped window (per batch and per image)', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 3 }),
          o: fc.integer({ min: 1, max: 4 }),
          kh: fc.integer({ min: 1, max: 3 }),
          kw: fc.integer({ min: 1, max: 3 }),
          sh: fc.integer({ min: 1, max: 3 }),
          sw: fc.integer({ min: 1, max: 3 }),
          oh: fc.integer({ min: 1, max: 4 }),
          ow: fc.integer({ min: 1, max: 4 }),
          extraH: fc.integer({ min: 0, max: 6 }),
          extraW: fc.integer({ min: 0, max: 6 }),
          perImage: fc.boolean(),
          seed: fc.nat(1000),
        }),
        (p) => {
          const [sliceH, sliceW] = E.stochasticSliceSize([p.oh, p.ow], [p.kh, p.kw], [p.sh, p.sw]);
          const H = sliceH + p.extraH;
          const W = sliceW + p.extraW;
          const x = randn(p.seed, [p.n, p.c, H, W]);
          const w = randn(p.seed + 1, [p.o, p.c, p.kh, p.kw]);
          const windows = E.sampleWindows(E.random.key(p.seed), { batch: p.n, channels: p.o, inputSize: [H, W], sliceSize: [sliceH, sliceW], perImage: p.perImage });
          const y = E.stochasticConv2d(x, w, { stride: [p.sh, p.sw], outSize: [p.oh, p.ow], windows });
          expect([...y.shape]).toEqual([p.n, p.o, p.oh, p.ow]);
          const got = E.dataSync(y);
          for (let n = 0; n < p.n; n++) {
            for (let k = 0; k < p.o; k++) {
              const i = p.perImage ? n * p.o + k : k;
              const crop = E.slice(x, [n, 0, windows[2 * i], windows[2 * i + 1]], [1, p.c, sliceH, sliceW]);
              const want = E.dataSync(E.conv2d(crop, E.slice(w, [k], [1]), { stride: [p.sh, p.sw] }));
              const off = (n * p.o + k) * p.oh * p.ow;
              for (let e = 0; e < want.length; e++) expect(got[off + e]).toBeCloseTo(want[e], 10);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('accumulates overlapping windows in the input gradient', () => {
    const x = randn(1, [1, 1, 4, 4]);
    const w = E.ones([2, 1, 1, 1], 'float64');
    // both channels read the same 2×2 window: each cell's gradient is 1 + 1
    const g = E.grad((xx: E.Tensor) => E.sum(E.stochasticConv2d(xx, w, { outSize: [2, 2], windows: Int32Array.from([1, 1, 1, 1]) })))(x);
    expect(Array.from(E.dataSync(g))).toEqual([0, 0, 0, 0, 0, 2, 2, 0, 0, 2, 2, 0, 0, 0, 0, 0]);
  });
});

describe("conv2d 'same' padding", () => {
  it('gives ceil(H/s) outputs for any size, kernel, stride and dilation', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 2 }), (h, w, k, s, d) => {
        const x = E.zeros([1, 1, h, w]);
        const y = E.conv2d(x, E.zeros([1, 1, k, k]), { stride: s, padding: 'same', dilation: d });
        expect([...y.shape]).toEqual([1, 1, Math.ceil(h / s), Math.ceil(w / s)]);
      }),
      { numRuns: 100 },
    );
  });
  it('pads asymmetrically (more at the bottom/right) for stride 2 on even sizes, as TensorFlow does', () => {
    expect(E.samePadding(224, 3, 2)).toEqual([0, 1]);
    expect(E.samePadding(225, 3, 2)).toEqual([1, 1]);
    expect(E.samePadding(112, 5, 2)).toEqual([1, 2]);
    expect(E.samePadding(7, 3, 1)).toEqual([1, 1]);
  });
});

describe('sampleWindows', () => {
  const opts = { batch: 4, channels: 50, inputSize: [12, 10] as [number, number], sliceSize: [8, 7] as [number, number], perImage: true };
  it('has one (row, col) pair per image and channel, or per channel', () => {
    expect(E.sampleWindows(E.random.key(0), opts).length).toBe(2 * 4 * 50);
    expect(E.sampleWindows(E.random.key(0), { ...opts, perImage: false }).length).toBe(2 * 50);
  });
  it('reaches every valid start 0 … H − sh inclusive on both axes, and nothing else', () => {
    const win = E.sampleWindows(E.random.key(1), opts);
    const rows = new Set<number>();
    const cols = new Set<number>();
    for (let i = 0; i < win.length; i += 2) {
      rows.add(win[i]);
      cols.add(win[i + 1]);
    }
    expect([...rows].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4]);
    expect([...cols].sort((a, b) => a - b)).toEqual([0, 1, 2, 3]);
  });
  it('draws rows and columns independently (not on the diagonal)', () => {
    const win = E.sampleWindows(E.random.key(2), { ...opts, inputSize: [20, 20], sliceSize: [5, 5] });
    let off = 0;
    for (let i = 0; i < win.length; i += 2) if (win[i] !== win[i + 1]) off++;
    expect(off).toBeGreaterThan(win.length / 2 * 0.8);
  });
  it('is deterministic in the key', () => {
    expect(Array.from(E.sampleWindows(E.random.key(3), opts))).toEqual(Array.from(E.sampleWindows(E.random.key(3), opts)));
    expect(Array.from(E.sampleWindows(E.random.key(3), opts))).not.toEqual(Array.from(E.sampleWindows(E.random.key(4), opts)));
  });
  it('allows a slice as large as the input (the only start is 0)', () => {
    expect(Array.from(E.sampleWindows(E.random.key(0), { channels: 3, inputSize: [5, 6], sliceSize: [5, 6], perImage: false }))).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe('bad input errors name the problem and the sizes', () => {
  const x = E.zeros([2, 4, 8, 8]);
  it('channel mismatch', () => {
    expect(() => E.conv2d(x, E.zeros([3, 3, 3, 3]))).toThrow(/conv2d: channel mismatch.*\[2,4,8,8\] has 4 channels.*\[3,3,3,3\].*expects 3/);
    expect(() => E.stochasticConv2d(x, E.zeros([3, 2, 3, 3]), { outSize: [2, 2], windows: new Int32Array(6) })).toThrow(/stochasticConv2d: channel mismatch.*4 channels.*has 2/);
  });
  it('groups not dividing the channels', () => {
    expect(() => E.conv2d(x, E.zeros([6, 1, 3, 3]), { groups: 3 })).toThrow(/conv2d: groups 3 does not divide the 4 input channels of \[2,4,8,8\]/);
    expect(() => E.conv2d(x, E.zeros([3, 2, 3, 3]), { groups: 2 })).toThrow(/groups 2 does not divide the 3 output channels/);
  });
  it('a window outside the input', () => {
    expect(() => E.stochasticConv2d(x, E.zeros([2, 4, 3, 3]), { outSize: [4, 4], windows: Int32Array.from([0, 0, 2, 3]) })).toThrow(
      /stochasticConv2d: window 1 at \(2, 3\) of size 6×6 lies outside the 8×8 input \(valid starts 0…2, 0…2\)/,
    );
    expect(() => E.stochasticConv2d(x, E.zeros([2, 4, 3, 3]), { outSize: [4, 4], windows: Int32Array.from([-1, 0, 0, 0]) })).toThrow(/window 0 at \(-1, 0\)/);
  });
  it('an input smaller than the slice', () => {
    expect(() => E.stochasticConv2d(x, E.zeros([2, 4, 3, 3]), { stride: 2, outSize: [4, 4], windows: new Int32Array(4) })).toThrow(
      /stochasticConv2d: input 8×8 .* is smaller than the slice 9×9/,
    );
    expect(() => E.sampleWindows(E.random.key(0), { channels: 2, inputSize: [8, 8], sliceSize: [9, 9], perImage: false })).toThrow(/input 8×8 is smaller than the slice 9×9/);
  });
  it('a windows array of the wrong length', () => {
    expect(() => E.stochasticConv2d(x, E.zeros([3, 4, 3, 3]), { outSize: [2, 2], windows: new Int32Array(5) })).toThrow(
      /stochasticConv2d: windows has length 5, expected C_out·2 = 6 \(per batch\) or N·C_out·2 = 12 \(per image\)/,
    );
  });
  it('an input smaller than the kernel, and bad options', () => {
    expect(() => E.conv2d(E.zeros([1, 1, 2, 2]), E.zeros([1, 1, 3, 3]))).toThrow(/conv2d: input 2×2 padded to 2×2 is smaller than the dilated kernel 3×3/);
    expect(() => E.conv2d(x, E.zeros([1, 4, 3, 3]), { stride: 0 })).toThrow(/conv2d: stride/);
    expect(() => E.conv2d(x, E.zeros([1, 4, 3, 3]), { padding: [1, 2] as any })).toThrow(/conv2d: padding/);
    expect(() => E.conv2d(E.zeros([4, 8, 8]), E.zeros([1, 4, 3, 3]))).toThrow(/conv2d: input must be 4-D/);
  });
});

describe('pooling', () => {
  it('globalAvgPool2d is the spatial mean', () => {
    const x = randn(9, [2, 3, 4, 5]);
    const y = E.globalAvgPool2d(x);
    expect([...y.shape]).toEqual([2, 3, 1, 1]);
    const m = E.dataSync(E.mean(x, [2, 3]));
    E.dataSync(y).forEach((v, i) => expect(v).toBeCloseTo(m[i], 12));
    expect([...E.globalAvgPool2d(x, { keepdims: false }).shape]).toEqual([2, 3]);
  });
});

// ---- fast CPU kernels against the reference loops ---------------------------------------------------
describe('fast CPU kernels match the reference kernels', () => {
  const run = (kernels: Record<string, any>, name: string, inputs: E.Tensor[], attrs: any, outShape: number[]) =>
    kernels[name](inputs.map((t) => ({ storage: E.dataSync(t), shape: t.shape, dtype: t.dtype })), attrs, { shape: outShape, dtype: 'float64' }) as Float64Array;
  const same = (a: Float64Array, b: Float64Array) => {
    expect(a.length).toBe(b.length);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-9 * (1 + Math.abs(b[i])));
  };
  it('conv2d and its gradients: dense, grouped, depthwise (with multiplier), pointwise, padding, stride, dilation', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 2 }),
          groups: fc.integer({ min: 1, max: 3 }),
          cg: fc.integer({ min: 1, max: 3 }),
          og: fc.integer({ min: 1, max: 3 }),
          h: fc.integer({ min: 1, max: 9 }),
          w: fc.integer({ min: 1, max: 9 }),
          kh: fc.integer({ min: 1, max: 4 }),
          kw: fc.integer({ min: 1, max: 4 }),
          stride: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
          dilation: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 })),
          padding: fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3)),
          seed: fc.nat(1000),
        }),
        (c) => {
          const xs = [c.n, c.groups * c.cg, c.h, c.w];
          const ws = [c.groups * c.og, c.cg, c.kh, c.kw];
          const attrs = { stride: c.stride, padding: c.padding, dilation: c.dilation, groups: c.groups };
          let ys: number[];
          try {
            ys = conv2dShape('t', xs, ws, attrs as any);
          } catch {
            return; // kernel larger than the padded input
          }
          const x = randn(c.seed, xs);
          const w = randn(c.seed + 1, ws);
          const g = randn(c.seed + 2, ys);
          same(run(convKernels, 'conv2d', [x, w], attrs, ys), run(convReferenceKernels, 'conv2d', [x, w], attrs, ys));
          const gi = { ...attrs, inputShape: xs };
          same(run(convKernels, 'conv2dGradInput', [g, w], gi, xs), run(convReferenceKernels, 'conv2dGradInput', [g, w], gi, xs));
          const gf = { ...attrs, filterShape: ws };
          same(run(convKernels, 'conv2dGradFilter', [x, g], gf, ws), run(convReferenceKernels, 'conv2dGradFilter', [x, g], gf, ws));
        },
      ),
      { numRuns: 200 },
    );
  });
  it('stochastic conv and its gradients, per batch and per image, many channels', () => {
    fc.assert(
      fc.property(
        fc.record({
          n: fc.integer({ min: 1, max: 3 }),
          c: fc.integer({ min: 1, max: 8 }),
          o: fc.integer({ min: 1, max: 4 }),
          kh: fc.integer({ min: 1, max: 4 }),
          kw: fc.integer({ min: 1, max: 4 }),
          stride: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
          outSize: fc.tuple(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 })),
          extra: fc.tuple(fc.nat(5), fc.nat(5)),
          perImage: fc.boolean(),
          seed: fc.nat(1000),
        }),
        (p) => {
          const [sh, sw] = E.stochasticSliceSize(p.outSize, [p.kh, p.kw], p.stride);
          const xs = [p.n, p.c, sh + p.extra[0], sw + p.extra[1]];
          const ws = [p.o, p.c, p.kh, p.kw];
          const ys = [p.n, p.o, ...p.outSize];
          const windows = E.sampleWindows(E.random.key(p.seed), { batch: p.n, channels: p.o, inputSize: [xs[2], xs[3]], sliceSize: [sh, sw], perImage: p.perImage });
          const attrs = { stride: p.stride, outSize: p.outSize, windows, perImage: p.perImage };
          const x = randn(p.seed, xs);
          const w = randn(p.seed + 1, ws);
          const g = randn(p.seed + 2, ys);
          same(run(convKernels, 'stochasticConv2d', [x, w], attrs, ys), run(convReferenceKernels, 'stochasticConv2d', [x, w], attrs, ys));
          const gi = { ...attrs, inputShape: xs };
          same(run(convKernels, 'stochasticConv2dGradInput', [g, w], gi, xs), run(convReferenceKernels, 'stochasticConv2dGradInput', [g, w], gi, xs));
          const gf = { ...attrs, filterShape: ws };
          same(run(convKernels, 'stochasticConv2dGradFilter', [x, g], gf, ws), run(convReferenceKernels, 'stochasticConv2dGradFilter', [x, g], gf, ws));
        },
      ),
      { numRuns: 150 },
    );
  });
});
