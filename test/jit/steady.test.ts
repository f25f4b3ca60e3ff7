/**
 * A compiled train step in steady state, called in a synchronous loop as a training loop calls it (no turn of the
 * event loop, so no FinalizationRegistry callback runs in between): after its first call it allocates nothing in
 * the wasm heap — every output takes a donated buffer, batch-norm running statistics and optimizer slots included,
 * so no call copies an input into the heap again — and its host-side work allocates little on the JS heap.
 */
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { rmsprop } from '../../src/train/optim.ts';
import { wasmHeap } from '../../src/backends/cpu/fast/heap.ts';
import { heapBytesAllocated } from '../../bench/harness.ts';
import { trainStep } from '../helpers/jit.ts';

const heap = wasmHeap();

describe.skipIf(!heap)('a jitted B0 train step (batch norm, RMSprop, donated state) in steady state', () => {
  it('keeps the wasm heap and the arena fixed and allocates little on the JS heap per call', () => {
    const key = E.random.key(0);
    const model = E.nn.createModel('b0', { key, widthMult: 0.25, depthMult: 0.25, lowSize: 32 });
    const x = E.random.normal(E.random.foldIn(key, 1), [2, 3, 32, 32]);
    const y = E.tensor([1, 0], [2, 1]);
    const opt = rmsprop({ alpha: 0.99, eps: 1e-8 });
    const grads = trainStep(model);
    const step = E.jit(
      (p: E.nn.Params, s: E.nn.State, slots: unknown, k: E.random.Key) => {
        const { loss, state: ns, grads: g } = grads(p, s, x, y, k);
        const [np, os] = opt.update(g, { name: 'rmsprop', step: 0, slots: slots as never }, p, 1e-3);
        return { loss, params: np, state: ns, slots: os.slots };
      },
      { donate: [0, 1, 2] },
    );
    let params = model.params;
    let state = model.state;
    let slots = opt.init(params).slots;
    const run = (n: number) => {
      const r = step(params, state, slots, E.random.foldIn(key, n));
      [params, state, slots] = [r.params, r.state, r.slots];
      return E.item(r.loss);
    };
    run(0);
    // Every output but the loss is written into a donated buffer.
    expect(step.lower(params, state, slots, key).memory.freshBytes).toBe(4);
    run(1);
    const [used, top, arena] = [heap!.allocatedBytes(), heap!.highWater, E.arenaBytes()];
    const calls = 30;
    const perCall = heapBytesAllocated(() => {
      for (let n = 2; n < 2 + calls; n++) run(n);
    }) / calls;
    expect(heap!.allocatedBytes()).toBe(used);
    expect(heap!.highWater).toBe(top);
    expect(E.arenaBytes()).toBe(arena);
    expect(step.compiles).toBe(1);
    // Measured 1.4 MB per call (mostly this small model's JS loops before they are optimised). Before command
    // buffers were reused, kernel calls built without arrays and the entry found without the signature string:
    // 3.6 MB.
    expect(perCall, `JS heap bytes allocated per call: ${perCall}`).toBeLessThan(2.2e6);
  });
});
