/** jit's contract: the cache key, donation, host reads, keys as inputs, steady-state memory. */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { createGpuBackend } from '../../src/backends/gpu/index.ts';
import { wasmHeap } from '../../src/backends/cpu/fast/heap.ts';

const heap = wasmHeap();

const arr = (t: E.Tensor) => Array.from(E.dataSync(t));
const f = (x: E.Tensor, w: E.Tensor) => E.sum(E.silu(E.add(E.matmul(x, w), 1)), 1);

describe('the cache', () => {
  it('compiles once per signature: a new batch size recompiles, the same shapes reuse', () => {
    const jf = E.jit(f);
    const w = E.ones([3, 2]);
    jf(E.ones([4, 3]), w);
    jf(E.zeros([4, 3]), E.zeros([3, 2]));
    expect(jf.compiles).toBe(1);
    expect(arr(jf(E.ones([5, 3]), w))).toHaveLength(5);
    expect(jf.compiles).toBe(2);
    jf(E.ones([4, 3]), w);
    expect(jf.compiles).toBe(2);
    jf(E.ones([4, 3], 'float64'), E.ones([3, 2], 'float64'));
    expect(jf.compiles).toBe(3);
  });
  it('keys static arguments by value and evicts the least recently used entry', () => {
    const jg = E.jit((x: E.Tensor, s: { scale: number }) => E.mul(x, s.scale), { cacheSize: 2 });
    const x = E.tensor([1, 2]);
    expect(arr(jg(x, { scale: 2 }))).toEqual([2, 4]);
    expect(arr(jg(x, { scale: 3 }))).toEqual([3, 6]);
    jg(x, { scale: 2 });
    expect(jg.compiles).toBe(2);
    jg(x, { scale: 4 }); // evicts scale 3
    jg(x, { scale: 2 });
    expect(jg.compiles).toBe(3);
    jg(x, { scale: 3 });
    expect(jg.compiles).toBe(4);
  });
  it('takes tensors as inputs, never as baked constants', () => {
    const jf = E.jit((a: E.Tensor) => E.mul(a, 2));
    expect(arr(jf(E.tensor([1, 2])))).toEqual([2, 4]);
    expect(arr(jf(E.tensor([5, 7])))).toEqual([10, 14]);
  });
  it('rejects typed-array arguments (they would be baked in)', () => {
    expect(() => E.jit((a: Float32Array) => E.tensor(a))(new Float32Array(2))).toThrow(/argument 0 is a Float32Array; pass a tensor/);
  });
});

describe('donation', () => {
  const update = (p: { w: E.Tensor }, g: E.Tensor) => ({ w: E.sub(p.w, E.mul(g, 0.5)) });
  it('writes the output into the donated buffer, and a donated tensor cannot be read', () => {
    const ju = E.jit(update, { donate: [0] });
    const p = { w: E.tensor([1, 2, 3]) };
    const storage = p.w.storage;
    const out = ju(p, E.tensor([2, 2, 2]));
    expect(arr(out.w)).toEqual([0, 1, 2]);
    // The first call moves a donated float32 buffer into the wasm heap (where the kernels address it in place).
    if (heap?.shared) expect(heap.ptrOf(out.w.storage as Float32Array)).toBeGreaterThan(0);
    else expect(out.w.storage).toBe(storage);
    expect(ju.lower({ w: E.tensor([1, 2, 3]) }, E.tensor([1, 1, 1])).memory.donatedBytes).toBe(12);
    expect(() => E.dataSync(p.w)).toThrow(/dataSync: argument 0\.w .* was donated/);
    expect(() => E.add(p.w, 1)).toThrow(/add: argument 0\.w .* was donated/);
    expect(() => ju(p, E.tensor([1, 1, 1]))).toThrow(/argument 0\.w .* was donated/);
    // The output is an ordinary tensor; donated again, its buffer is updated in place.
    const again = ju(out, E.tensor([2, 2, 2]));
    expect(arr(again.w)).toEqual([-1, 0, 1]);
    expect(again.w.storage).toBe(out.w.storage);
  });
  it('without donation the inputs stay intact', () => {
    const ju = E.jit(update);
    const p = { w: E.tensor([1, 2, 3]) };
    ju(p, E.tensor([2, 2, 2]));
    expect(arr(p.w)).toEqual([1, 2, 3]);
  });
  it('refuses a donated buffer passed twice', () => {
    const ju = E.jit((a: E.Tensor, b: E.Tensor) => E.add(a, b), { donate: [0] });
    const a = E.tensor([1, 2]);
    expect(() => ju(a, a)).toThrow(/shares its buffer with donated argument 0/);
  });
});

describe('host reads inside jit', () => {
  const x = E.tensor([1, 2, 3]);
  it.each([
    ['item', (t: E.Tensor) => E.item(E.sum(t))],
    ['dataSync', (t: E.Tensor) => E.dataSync(t)],
    ['toArray', (t: E.Tensor) => E.toArray(t)],
    ['argmax', (t: E.Tensor) => E.argmax(t)],
  ] as const)('%s throws an error naming it', (op, g) => {
    expect(() => E.jit(g as (t: E.Tensor) => unknown)(x)).toThrow(new RegExp(`^${op}: .*traced value inside jit|^jit: a host read`));
  });
  it('a traced value that escapes is an error when used', () => {
    let leaked: E.Tensor | null = null;
    E.jit((t: E.Tensor) => (leaked = E.mul(t, 2)))(x);
    expect(() => E.add(leaked!, 1)).toThrow(/traced by jit used outside its jitted function/);
  });
});

describe('keys are inputs', () => {
  const draw = E.jit((k: E.random.Key, x: E.Tensor) => {
    const windows = E.sampleWindows(E.random.foldIn(k, 1), { batch: 2, channels: 3, inputSize: [16, 16], sliceSize: [5, 5], perImage: true });
    const w = E.ones([3, 1, 3, 3]);
    return { y: E.stochasticConv2d(x, w, { stride: 2, outSize: [2, 2], windows }), mask: E.random.bernoulli(E.random.split(k)[1], 0.5, [32]) };
  });
  const x = E.random.uniform(E.random.key(0), [2, 1, 16, 16]);
  it('different keys give different windows and masks; the same key gives identical results', () => {
    const a = draw(E.random.key(1), x);
    const b = draw(E.random.key(2), x);
    const c = draw(E.random.key(1), x);
    expect(arr(a.y)).not.toEqual(arr(b.y));
    expect(arr(a.mask)).not.toEqual(arr(b.mask));
    expect(arr(c.y)).toEqual(arr(a.y));
    expect(arr(c.mask)).toEqual(arr(a.mask));
    expect(draw.compiles).toBe(1);
  });
  it('matches the eager draws', () => {
    const k = E.random.key(9);
    const windows = E.sampleWindows(E.random.foldIn(k, 1), { batch: 2, channels: 3, inputSize: [16, 16], sliceSize: [5, 5], perImage: true });
    const eager = E.stochasticConv2d(x, E.ones([3, 1, 3, 3]), { stride: 2, outSize: [2, 2], windows });
    expect(arr(draw(k, x).y)).toEqual(arr(eager));
  });
});

/** A full GC (node's --expose-gc, turned on for this check). */
function gc(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

describe('steady state', () => {
  it('1,000 calls neither grow the heap nor the arena', () => {
    const step = E.jit((p: { w: E.Tensor }, x: E.Tensor) => {
      const [l, g] = E.valueAndGrad((q: { w: E.Tensor }) => E.mean(E.square(E.silu(E.matmul(x, q.w)))))(p);
      return [l, { w: E.sub(p.w, E.mul(g.w, 0.1)) }] as const;
    }, { donate: [0] });
    let p = { w: E.random.normal(E.random.key(1), [64, 64]) };
    const x = E.random.normal(E.random.key(2), [32, 64]);
    for (let i = 0; i < 50; i++) p = step(p, x)[1];
    gc();
    const heap0 = v8.getHeapStatistics().used_heap_size;
    const arena0 = E.arenaBytes();
    for (let i = 0; i < 1000; i++) p = step(p, x)[1];
    gc();
    const grown = v8.getHeapStatistics().used_heap_size - heap0;
    expect(step.compiles).toBe(1);
    expect(E.arenaBytes()).toBe(arena0);
    // One call's arena is ~40 KB; a leak of one intermediate per call would be ≥ 8 MB here.
    expect(grown, `heap grew by ${grown} bytes over 1,000 calls`).toBeLessThan(1_000_000);
  });
});

describe('a backend without an arena (gpu.js webasm)', () => {
  it('runs the graph step by step (fused groups as gpu.js kernels) and matches eager on that backend', () => {
    const backend = createGpuBackend({ name: 'gpu-jit-webasm', mode: 'webasm' });
    E.registerBackend(backend);
    const prev = E.getBackend();
    E.setBackend(backend.name);
    try {
      const g = (x: E.Tensor, w: E.Tensor) => E.valueAndGrad((v: E.Tensor) => E.sum(E.silu(E.add(E.matmul(x, v), 1))))(w);
      const x = E.fromArray(Float32Array.from({ length: 12 }, (_, i) => (i % 5) / 4 - 0.5), [4, 3], backend as E.Backend<any>);
      const w = E.fromArray(Float32Array.from({ length: 6 }, (_, i) => (i % 3) / 2 - 0.4), [3, 2], backend as E.Backend<any>);
      const [v0, g0] = g(x, w);
      const jg = E.jit(g);
      const [v1, g1] = jg(x, w);
      const { stats } = jg.lower(x, w);
      expect(stats.backend).toBe('gpu-jit-webasm');
      expect(stats.fusedBy['gpu.js']).toBeGreaterThan(0);
      expect(E.item(v1)).toBeCloseTo(E.item(v0), 6);
      arr(g1).forEach((v, i) => expect(v).toBeCloseTo(arr(g0)[i], 6));
      // A restarted backend has new kernels: the entry compiled for the old one is compiled again.
      backend.destroy();
      const [x2, w2] = [x, w].map((t) => E.fromArray(Float32Array.from(arr(t)), t.shape, backend as E.Backend<any>));
      const [v2] = jg(x2, w2);
      expect(jg.compiles).toBe(2);
      expect(E.item(v2)).toBeCloseTo(E.item(v0), 6);
    } finally {
      E.setBackend(prev.name);
      backend.destroy();
    }
  });
});

describe('composition', () => {
  it('grad of a jitted function differentiates it (f runs eagerly under the trace)', () => {
    const jf = E.jit((x: E.Tensor) => E.sum(E.mul(x, x)));
    expect(arr(E.grad(jf)(E.tensor([1, 2])))).toEqual([2, 4]);
  });
  it('a jitted function called inside another is inlined into its graph', () => {
    const inner = E.jit((x: E.Tensor) => E.exp(x));
    const outer = E.jit((x: E.Tensor) => E.add(inner(x), 1));
    expect(arr(outer(E.tensor([0, 0])))).toEqual([2, 2]);
    expect(inner.compiles).toBe(0);
  });
});

describe('profile', () => {
  // conv (3×3 dense), batch-norm-like affine + SiLU, a 1×1 conv, a depthwise conv, a sum: the categories a
  // profile of a model step sorts its time into.
  const f = (x: E.Tensor, w1: E.Tensor, w2: E.Tensor, w3: E.Tensor, s: E.Tensor) => {
    const a = E.silu(E.add(E.mul(E.conv2d(x, w1, { padding: 1 }), s), 0.5));
    return E.sum(E.conv2d(E.conv2d(a, w2), w3, { padding: 1, groups: 8 }));
  };
  const args = () =>
    [[2, 3, 16, 16], [8, 3, 3, 3], [8, 8, 1, 1], [8, 1, 3, 3], [1, 8, 1, 1]].map((s, i) => E.random.normal(E.random.key(i), s)) as [E.Tensor, E.Tensor, E.Tensor, E.Tensor, E.Tensor];
  it('times every kernel step of a call, by operation and by category, and returns the call’s result', () => {
    const jf = E.jit(f);
    const a = args();
    const { result, profile } = jf.profile(...a);
    expect(E.item(result)).toBe(E.item(jf(...a)));
    const lowered = jf.lower(...a);
    expect(profile.steps).toBeGreaterThan(0);
    expect(profile.steps).toBeLessThanOrEqual(lowered.stats.steps);
    expect(profile.rows.reduce((n, r) => n + r.calls, 0)).toBe(profile.steps);
    expect(profile.rows.reduce((n, r) => n + r.share, 0)).toBeCloseTo(1, 6);
    expect(profile.totalMs).toBeGreaterThanOrEqual(profile.stepsMs);
    const labels = profile.rows.map((r) => r.label);
    expect(labels).toEqual(expect.arrayContaining(['conv2d dense 3×3', 'conv2d pointwise 1×1', 'conv2d depthwise 3×3']));
    expect(labels.some((l) => l.startsWith('fused ') && l.includes('silu'))).toBe(true);
    expect(profile.categories.map((c) => c.label)).toEqual(expect.arrayContaining(['pointwise conv, forward', 'depthwise conv, forward', 'dense conv, forward']));
    expect(E.formatProfile(profile)).toMatch(/^call [\d.]+ ms, \d+ steps [\d.]+ ms\nby category:\n/);
  });
  it('labels gradient convs by pass, and refuses to run under grad', () => {
    const a = args();
    const step = E.jit((x: E.Tensor, w1: E.Tensor, w2: E.Tensor, w3: E.Tensor, s: E.Tensor) => E.grad((w: E.Tensor) => f(x, w, w2, w3, s))(w1));
    const cats = step.profile(...a).profile.categories.map((c) => c.label);
    expect(cats).toEqual(expect.arrayContaining(['dense conv, filter gradient', 'depthwise conv, input gradient', 'pointwise conv, input gradient']));
    expect(() => E.grad((x: E.Tensor) => E.jit(f).profile(x, ...a.slice(1) as [E.Tensor, E.Tensor, E.Tensor, E.Tensor]).result)(a[0])).toThrow(/profile runs the compiled graph/);
  });
});
