/**
 * jit's fused elementwise groups compiled to wasm SIMD (src/backends/cpu/fast/fused.ts) against eager: chains that
 * cover every op with a vector form, broadcasts along inner and outer axes, rows whose length is not a multiple of
 * 4 (the one-lane tail), groups large enough to run on the pool's threads, and NaN / ±0 operands. The group reads
 * heap-resident inputs and writes its arena slot (a transpose after it keeps its result off the output), so the
 * wasm path is the one taken (`stats.fusedBy`). float64 groups run the backend's JS loops and equal eager exactly.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { STAGE_MAX_FLOATS, wasmHeap } from '../../src/backends/cpu/fast/heap.ts';
import { fusedJsFallbacks } from '../../src/backends/cpu/fused.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { Tensor } from '../../src/tensor/tensor.ts';

const heap = wasmHeap();

function onHeap(t: E.Tensor): E.Tensor {
  if (t.dtype !== 'float32') return t;
  const r = heap!.reserve(t.size * 4);
  r.f32().set(E.dataSync(t));
  return new Tensor(t.shape, 'float32', r.f32(), findBackend('cpu'));
}

/** Values with NaN, ±0, ties and large magnitudes sprinkled in. */
function data(seed: number, shape: number[], dtype: E.DType): E.Tensor {
  const u = E.dataSync(E.random.uniform(E.random.key(seed), shape, -3, 3, { dtype }));
  const special = [NaN, 0, -0, 1, -1, 100, -100];
  const v = u.map((x, i) => (i % 13 === 5 ? special[(i / 13) % special.length | 0] : x));
  return E.tensor(v, shape);
}

type Chain = (x: E.Tensor, y: E.Tensor, s: E.Tensor) => E.Tensor;
const chains: [string, Chain][] = [
  ['arith', (x, y, s) => E.div(E.sub(E.mul(E.add(x, y), s), E.neg(y)), E.add(E.abs(s), 1))],
  ['compare/select', (x, y, s) => E.where(E.greater(x, y), E.maximum(x, s), E.minimum(E.mul(y, E.greaterEqual(y, s)), E.equal(x, 0)))],
  ['relu/sign/sqrt', (x, y, s) => E.add(E.mul(E.relu(x), E.sign(y)), E.sqrt(E.abs(E.add(s, y))))],
  ['sigmoid/silu', (x, y, s) => E.mul(E.silu(E.add(x, s)), E.sigmoid(E.mul(y, 2)))],
  ['BN affine + SiLU and its gradient', (x, y, s) => E.mul(E.silu(E.add(E.mul(x, s), E.mul(s, 0.5))), E.sub(y, E.mul(x, s)))],
];

const shapes: [string, number[], number[]][] = [
  ['per-channel broadcast, odd planes (tails)', [2, 3, 5, 7], [1, 3, 1, 1]],
  ['row broadcast', [6, 37], [1, 37]],
  ['large (threaded)', [2, 16, 64, 72], [1, 16, 1, 1]],
];

const worst = (a: E.Tensor, b: E.Tensor) => {
  const [x, y] = [E.dataSync(a), E.dataSync(b)];
  let e = 0;
  for (let i = 0; i < y.length; i++) {
    if (Number.isNaN(y[i]) !== Number.isNaN(x[i])) return Infinity;
    if (!Number.isNaN(y[i])) e = Math.max(e, Math.abs(x[i] - y[i]) / (1 + Math.abs(y[i])));
  }
  return e;
};

describe.skipIf(!heap)('wasm fused loops vs eager', () => {
  describe.each(shapes)('%s', (_, shape, sshape) => {
    it.each(chains)('%s', (name, chain) => {
      const f = (x: E.Tensor, y: E.Tensor, s: E.Tensor) => {
        const r = chain(x, y, s);
        return E.transpose(E.reshape(r, [shape[0], -1]), [1, 0]);
      };
      for (const dtype of ['float32', 'float64'] as const) {
        const args = [data(1, shape, dtype), data(2, shape, dtype), data(3, sshape, dtype)].map(onHeap) as [E.Tensor, E.Tensor, E.Tensor];
        const jf = E.jit(f);
        const lowered = jf.lower(...args);
        expect(lowered.stats.fusedLoops).toBeGreaterThan(0);
        expect(lowered.stats.fusedBy).toEqual({ [dtype === 'float32' ? 'wasm-simd' : 'js']: lowered.stats.fusedLoops });
        const err = worst(jf(...args), f(...args));
        // float32: every op rounds as eager's; the vector exp is eager's own (measured: equal bit for bit).
        expect(err, `${name} ${dtype}`).toBeLessThanOrEqual(dtype === 'float64' ? 1e-12 : 1e-6);
      }
    });
  });
});

describe.skipIf(!heap)('a lone elementwise op', () => {
  // Squeeze-excitation's scale: x [N,C,H,W] times a per-(image, channel) gate, read by a transpose (no other
  // elementwise op to fuse it with). Large enough, it runs as a one-node group on the backend's kernel.
  const f = (x: E.Tensor, s: E.Tensor) => E.transpose(E.reshape(E.mul(x, s), [2, -1]), [1, 0]);
  it('runs as a one-node wasm group from 2^14 elements, and equals eager bit for bit', () => {
    const x = onHeap(data(4, [2, 16, 32, 32], 'float32')), s = onHeap(data(5, [2, 16, 1, 1], 'float32'));
    const lowered = E.jit(f).lower(x, s);
    expect(lowered.stats.fusedBy).toEqual({ 'wasm-simd': 1 });
    expect(lowered.stats.fusedOps).toBe(1);
    expect(worst(E.jit(f)(x, s), f(x, s))).toBe(0);
  });
  it('stays the primitive below 2^14 elements', () => {
    const x = onHeap(data(4, [2, 16, 8, 8], 'float32')), s = onHeap(data(5, [2, 16, 1, 1], 'float32'));
    expect(E.jit(f).lower(x, s).stats.fusedLoops).toBe(0);
  });
});

describe.skipIf(!heap)('small buffers outside the heap', () => {
  // Squeeze-excitation's gate: a [16, C] product plus the FC's bias (a small parameter given as an input, outside
  // the heap), then sigmoid, whose JS loop (Math.exp) and vector form differ in the last bit for some values.
  const gate = (x: E.Tensor, b: E.Tensor) => E.sigmoid(E.add(x, b));
  const gateInArena = (x: E.Tensor, b: E.Tensor) => E.transpose(gate(x, b), [1, 0]);
  const bits = (t: E.Tensor | Float32Array) => Array.from(new Uint32Array(Float32Array.from(t instanceof Float32Array ? t : E.dataSync(t)).buffer));

  it('go through heap scratch: the wasm group runs and computes what it does on heap buffers, bit for bit', () => {
    const x = onHeap(data(6, [16, 300], 'float32')), b = data(7, [300], 'float32');
    expect(heap!.ptrOf(b.storage as Float32Array)).toBe(-1);
    // The reference: every buffer in the heap (the output in the arena), transposed back.
    const want = bits(E.transpose(E.jit(gateInArena)(x, onHeap(b)), [1, 0]));
    for (const [f, outBytes] of [[gateInArena, 0], [gate, 16 * 300 * 4]] as const) {
      const jf = E.jit(f);
      expect(jf.lower(x, b).stats.fusedBy).toEqual({ 'wasm-simd': 1 });
      // A new bias tensor per call (the same one twice in a row would be pinned into the heap by jit).
      const bias = () => data(7, [300], 'float32');
      jf(x, bias());
      const b2 = bias();
      const [j0, c0] = [fusedJsFallbacks(), heap!.copiedBytes];
      const got = jf(x, b2);
      const [j1, c1] = [fusedJsFallbacks(), heap!.copiedBytes];
      expect(bits(f === gate ? got : E.transpose(got, [1, 0]))).toEqual(want);
      expect(j1).toBe(j0);
      // The bias copied in; an output outside the heap (the graph's own) copied out.
      expect(c1 - c0).toBe(300 * 4 + outBytes);
    }
  });

  it('a reducing group stages its leaves too (SE pooling of a scaled activation)', () => {
    const f = (x: E.Tensor, s: E.Tensor) => E.neg(E.sum(E.mul(x, s), [2, 3]));
    const x = onHeap(data(8, [4, 24, 5, 7], 'float32')), s = data(9, [1, 24, 1, 1], 'float32');
    const jf = E.jit(f);
    expect(jf.lower(x, s).stats.fusedBy).toEqual({ 'wasm-simd': 1 });
    const j0 = fusedJsFallbacks();
    expect(bits(jf(x, s))).toEqual(bits(jf(x, onHeap(s))));
    expect(fusedJsFallbacks()).toBe(j0);
  });

  it('larger than STAGE_MAX_FLOATS, they run the JS loop', () => {
    const n = STAGE_MAX_FLOATS + 4;
    const x = new Tensor([2, n / 2], 'float32', E.dataSync(data(10, [2, n / 2], 'float32')) as Float32Array, findBackend('cpu'));
    const b = onHeap(data(11, [n / 2], 'float32'));
    expect(heap!.ptrOf(x.storage as Float32Array)).toBe(-1);
    const j0 = fusedJsFallbacks();
    const got = E.jit(gateInArena)(x, b);
    expect(fusedJsFallbacks()).toBe(j0 + 1);
    expect(worst(got, gateInArena(x, b))).toBeLessThanOrEqual(1e-6);
  });
});
