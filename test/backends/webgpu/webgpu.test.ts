/**
 * The gpu backend's webgpu mode beyond single primitives (those are in conformance.test.ts): a
 * train step of B0 and of b0-full-split equals the CPU backend's, tensors stay on the device, the
 * async read-back, and the adapter's limits. Runs wherever a WebGPU adapter is present (lavapipe
 * in CI), skipped with the reason otherwise.
 *
 * Train-step tolerance: |got − want| ≤ 1e-4 · (1 + max|want|) per gradient and BN-state leaf, and
 * 1e-4 relative on the loss. Measured on lavapipe for the models here (B0 and b0-full-split at
 * width and depth 0.25, 4×64² (+96²) images: every layer type, seconds on lavapipe): worst leaf
 * 1.0e-5, loss 9e-6; for the full-width B0 at 4×64²: worst leaf 7e-5, loss 4e-5. The float32
 * device sums in another order than the CPU's float64 accumulation; BN's batch statistics amplify
 * that a little.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as E from '../../../src/index.ts';
import { toBackend } from '../../../src/autograd/trace.ts';
import { type GpuBackend, createGpuBackend } from '../../../src/backends/gpu/index.ts';
import { modeUnavailableReason } from '../../../src/backends/gpu/runtime.ts';

const reason = modeUnavailableReason('webgpu');
if (reason) console.warn(`[webgpu] skipping: ${reason}`);

const RTOL = 1e-4;

function worstRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < want.length; i++) {
    scale = Math.max(scale, Math.abs(want[i]));
    err = Math.max(err, Math.abs(got[i] - want[i]));
  }
  return got.length === want.length ? err / (1 + scale) : Infinity;
}

describe.skipIf(!!reason)(`gpu webgpu mode${reason ? ` (skipped: ${reason})` : ''}`, () => {
  const backend: GpuBackend = createGpuBackend({ name: 'gpu-webgpu-model', mode: 'webgpu' });
  E.registerBackend(backend);
  afterAll(() => backend.destroy());
  const on = <T>(name: string, f: () => T): T => {
    const prev = E.getBackend();
    E.setBackend(name);
    try {
      return f();
    } finally {
      E.setBackend(prev.name);
    }
  };

  it('reports the adapter: name, vendor and limits', () => {
    const a = backend.adapter()!;
    expect(a.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(backend.describe!()).toMatch(/webgpu mode on .+maxStorageBufferBindingSize \d+ MiB/);
  });

  for (const name of ['b0', 'b0-full-split']) {
    it(`${name}: a train step's loss, gradients and BN state equal the cpu backend's`, () => {
      const model = E.nn.createModel(name, { key: E.random.key(0), widthMult: 0.25, depthMult: 0.25, lowSize: 64, highSize: 96, stochOutSize: 32, dropout: 0.2 });
      const step = (b: string) =>
        on(b, () => {
          const dev = E.getBackend();
          const mv = (t: E.Tensor) => toBackend(t, dev);
          const params = E.treeMap(mv, model.params) as E.nn.Params;
          const state = E.treeMap(mv, model.state) as E.nn.State;
          const low = E.random.normal(E.random.key(1), [4, 3, 64, 64]);
          const x = E.nn.inputKind(model.config) === 'pair' ? { low, high: E.random.normal(E.random.key(2), [4, 3, 96, 96]) } : low;
          const y = E.tensor([1, 0, 1, 0], [4, 1]);
          const [[loss, s], g] = E.valueAndGrad(
            (p: E.nn.Params) => {
              const [logits, st] = E.nn.apply(model.config, p, state, x, { training: true, key: E.random.key(7) });
              return [E.binaryCrossEntropyWithLogits(logits, y), st] as [E.Tensor, E.nn.State];
            },
            { hasAux: true },
          )(params);
          expect((loss as E.Tensor).backend.name).toBe(b);
          const leaves = [...E.treeLeaves(g), ...E.treeLeaves(s)] as E.Tensor[];
          return { loss: E.item(loss), leaves: leaves.map((t) => E.dataSync(t)) };
        });
      const want = step('cpu');
      const before = backend.dispatches();
      const got = step(backend.name);
      expect(backend.dispatches()).toBeGreaterThan(before);
      expect(Math.abs(got.loss - want.loss) / Math.abs(want.loss)).toBeLessThan(1e-4);
      const worst = Math.max(...want.leaves.map((w, i) => worstRel(got.leaves[i], w)));
      expect(worst, `worst leaf error ${worst}`).toBeLessThan(RTOL);
    });
  }

  it('keeps results on the device until read, and reads them asynchronously', async () => {
    const dev = backend.adapter() && on(backend.name, () => {
      const a = E.tensor([1, 2, 3, 4], [2, 2]);
      return E.matmul(E.exp(a), a);
    });
    expect(ArrayBuffer.isView(dev!.storage)).toBe(false);
    const want = E.dataSync(E.matmul(E.exp(E.tensor([1, 2, 3, 4], [2, 2])), E.tensor([1, 2, 3, 4], [2, 2])));
    const got = await E.data(dev!);
    expect(worstRel(got, want)).toBeLessThan(1e-6);
    expect(Array.from(E.dataSync(dev!))).toEqual(Array.from(got));
  });

  it('names the adapter limit a tensor exceeds', () => {
    const max = backend.adapter()!.limits.maxStorageBufferBindingSize;
    const n = Math.floor(max / 4) + 1;
    on(backend.name, () => {
      const x = E.tensor([1]);
      expect(() => E.broadcastTo(x, [n])).toThrow(/broadcastTo.*needs \d+ bytes, over this adapter's maxStorageBufferBindingSize/);
    });
  });
});
