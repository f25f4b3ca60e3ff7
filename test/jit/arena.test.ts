/**
 * The CPU backend's jit arena is a region of the wasm heap: the fast kernels get the planned buffers' addresses and
 * copy nothing (the heap's copy counter stays at the bytes of the outputs that live outside it); inputs outside it
 * are copied by the kernels, or pinned into it once when the same tensors come call after call; every conv-family
 * kernel writes into its arena slot (no own-output ops); the views are re-made when the heap grows, between calls
 * or in the middle of one.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { wasmHeap } from '../../src/backends/cpu/fast/heap.ts';
import { findBackend } from '../../src/backends/backend.ts';
import { Tensor } from '../../src/tensor/tensor.ts';
import { arenaBinds } from '../../src/jit/execute.ts';

const heap = wasmHeap();
const cpu = findBackend('cpu');

/** A float32 tensor whose storage is a view of the wasm heap (as the arena's buffers are). */
function onHeap(t: E.Tensor): E.Tensor {
  const r = heap!.reserve(t.size * 4);
  r.f32().set(E.dataSync(t));
  return new Tensor(t.shape, 'float32', r.f32(), cpu);
}

/** A small conv net's loss and filter gradients: plain, depthwise and stochastic convs, both poolings. */
function convNet(p: { w: E.Tensor; dw: E.Tensor; sw: E.Tensor }, x: E.Tensor) {
  const windows = new Int32Array([0, 0, 2, 1, 1, 3, 3, 0]);
  return E.valueAndGrad((q: typeof p) => {
    const s = E.silu(E.stochasticConv2d(x, q.sw, { stride: 2, outSize: [6, 6], windows }));
    const a = E.silu(E.conv2d(s, q.w, { padding: 'same' }));
    const b = E.depthwiseConv2d(a, q.dw, { padding: 'same' });
    const c = E.add(E.maxPool2d(b, { kernel: 2 }), E.avgPool2d(b, { kernel: 2 }));
    return E.mean(E.square(c));
  })(p);
}

const rel = (a: E.Tensor, b: E.Tensor) => {
  const [x, y] = [E.dataSync(a), E.dataSync(b)];
  let e = 0, s = 0;
  for (let i = 0; i < y.length; i++) [e, s] = [Math.max(e, Math.abs(x[i] - y[i])), Math.max(s, Math.abs(y[i]))];
  return e / (1 + s);
};

describe.skipIf(!heap)('the jit arena in the wasm heap', () => {
  const k = E.random.key(3);
  const u = (i: number, shape: number[]) => E.random.uniform(E.random.foldIn(k, i), shape, -1, 1);
  const p = { w: u(1, [8, 4, 3, 3]), dw: u(2, [8, 1, 3, 3]), sw: u(3, [4, 3, 3, 3]) };
  const x = u(4, [2, 3, 16, 16]);

  it('every conv-family kernel writes into its slot, and kernels read and write the arena in place', () => {
    // Scalar outputs only: then every buffer a kernel touches is in the heap but the 4 bytes of each output.
    const sums = (q: typeof p, xx: E.Tensor) => {
      const [l, g] = convNet(q, xx);
      return [l, E.sum(g.w), E.sum(g.dw), E.sum(g.sw)];
    };
    const jsums = E.jit(sums);
    const hp = { w: onHeap(p.w), dw: onHeap(p.dw), sw: onHeap(p.sw) };
    const hx = onHeap(x);
    const lowered = jsums.lower(hp, hx);
    expect(lowered.stats.ownOutputOps).toEqual([]);
    expect(lowered.memory.freshBytes).toBe(16);
    jsums(hp, hx);
    const c0 = heap!.copiedBytes;
    const got = jsums(hp, hx);
    expect(heap!.copiedBytes - c0).toBeLessThanOrEqual(16);
    // The same kernels as eager (measured: equal bit for bit); 1e-6 leaves room for the threads' summation order.
    sums(p, x).forEach((want, i) => expect(rel(got[i], want)).toBeLessThan(1e-6));
  });

  it('inputs outside the heap are copied by the kernels that read them, until the same tensors come a second time in a row: then they are pinned', () => {
    const jnet = E.jit(convNet);
    const fresh = () => ({ w: E.add(p.w, 0), dw: E.add(p.dw, 0), sw: E.add(p.sw, 0) });
    const copiedBy = (f: () => void) => {
      const c0 = heap!.copiedBytes;
      f();
      return heap!.copiedBytes - c0;
    };
    const { inputBytes, freshBytes } = jnet.lower(p, x).memory;
    // New tensors every call (what a training loop without donation passes): the kernels copy them.
    const copied = copiedBy(() => jnet(fresh(), E.add(x, 0)));
    expect(copied).toBeGreaterThan(inputBytes / 2);
    // Each input is read by at most three kernels (forward, and one per gradient).
    expect(copied).toBeLessThanOrEqual(3 * inputBytes + freshBytes);
    // The same tensors again and again (a model's parameters in inference): from the second call on, copied as
    // little as tensors that live in the heap are (the outputs outside it).
    const q = fresh(), xq = E.add(x, 0);
    const hq = { w: onHeap(q.w), dw: onHeap(q.dw), sw: onHeap(q.sw) }, hx = onHeap(xq);
    jnet(hq, hx);
    const inHeap = copiedBy(() => jnet(hq, hx));
    jnet(q, xq);
    const [l2] = jnet(q, xq);
    let l3: E.Tensor = l2;
    expect(copiedBy(() => ([l3] = jnet(q, xq)))).toBe(inHeap);
    expect(inHeap).toBeLessThan(copied / 2);
    expect(E.dataSync(l3)).toEqual(E.dataSync(l2));
    // Other tensors of the same shape are read, not the pinned copies.
    const other = { w: E.mul(p.w, 2), dw: p.dw, sw: p.sw };
    expect(E.item(jnet(other, xq)[0])).toBe(E.item(convNet(other, xq)[0]));
    expect(E.item(jnet(q, xq)[0])).toBe(E.item(l3));
  });

  it('re-binds its views when the heap grows between calls and in the middle of a call', () => {
    // A 3×3 conv over 64 channels of 96² needs a 21 MB im2col buffer in the heap mid-call.
    const f = (w: E.Tensor, xx: E.Tensor) => E.sum(E.silu(E.conv2d(E.silu(E.mul(xx, 2)), w, { padding: 'same' })), [0, 2, 3]);
    const jf = E.jit(f);
    const w = u(5, [4, 64, 3, 3]);
    const xx = u(6, [1, 64, 96, 96]);
    const want = f(w, xx);
    expect(rel(jf(w, xx), want)).toBeLessThan(1e-5);
    const b0 = arenaBinds();
    jf(w, xx);
    expect(arenaBinds()).toBe(b0); // nothing moved: the views stay
    // Between calls: grow the heap, so its buffer changes.
    const len0 = heap!.byteLength;
    heap!.release(heap!.alloc(len0));
    expect(heap!.byteLength).toBeGreaterThan(len0);
    expect(rel(jf(w, xx), want)).toBeLessThan(1e-5);
    expect(arenaBinds()).toBe(b0 + 1);
    // Mid-call: fill the heap up to its end, so the conv's im2col buffer must grow it.
    const fill: number[] = [];
    for (let room = heap!.byteLength - heap!.highWater; room > 1 << 16; room = heap!.byteLength - heap!.highWater) fill.push(heap!.alloc(room - (1 << 15)));
    const len1 = heap!.byteLength;
    const b1 = arenaBinds();
    expect(rel(jf(w, xx), want)).toBeLessThan(1e-5);
    expect(heap!.byteLength).toBeGreaterThan(len1);
    expect(arenaBinds()).toBeGreaterThan(b1);
    fill.forEach((a) => heap!.release(a));
  });

  it('many calls neither grow the heap nor move the arena', () => {
    const jnet = E.jit(convNet);
    // The second call pins the inputs (the same tensors twice in a row).
    jnet(p, x);
    jnet(p, x);
    const b0 = arenaBinds();
    const used = heap!.allocatedBytes();
    for (let i = 0; i < 200; i++) jnet(p, x);
    expect(heap!.allocatedBytes()).toBe(used);
    expect(arenaBinds()).toBe(b0);
  });
});
