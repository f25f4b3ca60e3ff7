/**
 * jit on webgpu: fused elementwise groups run as one generated WGSL kernel each (the backend's
 * `fuse` hook; `stats.fusedBy` counts them as 'wgsl'). Runs wherever a WebGPU adapter is present (lavapipe in CI), skipped with the
 * reason otherwise.
 *
 * Fusion cases: every elementwise primitive with its pullback traced together (the jit's own
 * per-primitive cases, test/jit/primitives.test.ts; the pullbacks are the chains that fuse), plus
 * explicit chains with broadcast, scalar and strided leaves and BN's affine + SiLU. Jitted (fused)
 * vs eager (one dispatch per op) on the same device: ≤ 1e-6·(1 + max|eager|). Both are float32
 * on the device and the fused kernel only skips the stores between ops: on lavapipe the results
 * are bit-identical (measured 0 on every case); the bound leaves room for a driver that contracts
 * a·b + c into an FMA across what were two kernels (a few ulp).
 *
 * A jitted B0 train step equals the eager cpu step within webgpu.test.ts's tolerance (1e-4
 * relative per leaf; measured 1.07e-5, the same as eager webgpu vs cpu) and dispatches fewer
 * kernels than the eager webgpu step (the counts are printed).
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as E from '../../../src/index.ts';
import { findBackend } from '../../../src/backends/backend.ts';
import { bind, toBackend } from '../../../src/autograd/trace.ts';
import { type GpuBackend, createGpuBackend } from '../../../src/backends/gpu/index.ts';
import { modeUnavailableReason } from '../../../src/backends/gpu/runtime.ts';
import { compareJit, elementwisePullbacks, onBackend, trainStep, worstRel } from '../../helpers/jit.ts';

const reason = modeUnavailableReason('webgpu');
if (reason) console.warn(`[webgpu jit] skipping: ${reason}`);

const FUSED_TOL = 1e-6;
const STEP_TOL = 1e-4;

describe.skipIf(!!reason)(`jit on webgpu: fused WGSL kernels${reason ? ` (skipped: ${reason})` : ''}`, () => {
  const backend: GpuBackend = createGpuBackend({ name: 'gpu-webgpu-jit', mode: 'webgpu' });
  E.registerBackend(backend);
  afterAll(() => backend.destroy());
  const on = <T>(f: () => T): T => onBackend(backend as E.Backend<any>, f);
  const dev = (values: ArrayLike<number>, shape: number[], dtype: 'float32' | 'float64' = 'float32') =>
    E.fromArray(dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values), shape, backend as E.Backend<any>);

  function compare(f: (xs: E.Tensor[]) => E.Tensor[], xs: E.Tensor[]) {
    const r = compareJit(backend, f, xs);
    return { ...r, fused: r.stats.fusedLoops, declined: r.stats.declinedGroups };
  }

  it("every elementwise primitive's pullback: the fused kernels equal the ops one by one", () => {
    let fusedSteps = 0;
    for (const { name, inputs, f } of elementwisePullbacks(2)) {
      const r = compare(f, inputs.map((x) => dev(x.values, [...x.shape])));
      fusedSteps += r.fused;
      expect(r.err, name).toBeLessThanOrEqual(FUSED_TOL);
      expect(r.jitted, name).toBeLessThanOrEqual(r.eager);
    }
    expect(fusedSteps).toBeGreaterThan(20);
  });

  it('chains with broadcast, scalar and strided leaves, and affine + SiLU, are one dispatch each', () => {
    const n = 2 * 3 * 5 * 4;
    const x = dev(Array.from({ length: n }, (_, i) => Math.sin(i) * 3), [2, 3, 5, 4]);
    const scale = dev([0.5, -1.5, 2], [1, 3, 1, 1]);
    const shift = dev([0.1, 0.2, -0.3], [3, 1, 1]);
    const row = dev([1, 2, 3, 4], [4]);
    const col = dev(Array.from({ length: 10 }, (_, i) => i / 10), [2, 1, 5, 1]);
    const chains: [string, (xs: E.Tensor[]) => E.Tensor[], E.Tensor[]][] = [
      ['affine+silu, then *2', ([a, s, b]) => [E.mul(bind('affine', [a, s, b], { act: 'silu' }), 2)], [x, scale, shift]],
      ['strided and scalar leaves', ([a, r, c]) => [E.tanh(E.sub(E.mul(E.add(a, r), c), 0.5))], [x, row, col]],
      ['broadcastTo leaf, where', ([a, s]) => [E.where(E.greater(a, 0), E.exp(E.neg(a)), E.broadcastTo(s, [2, 3, 5, 4]))], [x, scale]],
    ];
    for (const [name, f, xs] of chains) {
      const r = compare(f, xs);
      expect(r.err, name).toBeLessThanOrEqual(FUSED_TOL);
      expect(r.jitted, `${name}: dispatches (eager ${r.eager})`).toBe(1);
      expect(r.fused, name).toBe(1);
    }
  });

  it('float64 groups (which webgpu leaves to the CPU kernels) are declined, run op by op and equal eager', () => {
    const x = dev([0.5, -1, 2, 3], [2, 2], 'float64');
    const r = compare(([a]) => [E.mul(E.exp(E.neg(a)), E.add(a, 1))], [x]);
    expect(r.err).toBeLessThanOrEqual(1e-12);
    expect([r.fused, r.declined]).toEqual([0, 1]);
  });

  it('a jitted B0 train step equals the eager cpu step, in fewer dispatches than eager webgpu', () => {
    const model = E.nn.createModel('b0', { key: E.random.key(0), widthMult: 0.25, depthMult: 0.25, lowSize: 64 });
    const step = trainStep(model);
    const run = (b: E.Backend<any>, f: typeof step) => {
      const mv = (t: E.Tensor) => toBackend(t, b);
      const args = [E.treeMap(mv, model.params), E.treeMap(mv, model.state), mv(E.random.normal(E.random.key(1), [4, 3, 64, 64])), mv(E.tensor([1, 0, 1, 0], [4, 1]))] as const;
      const d = backend.dispatches();
      const out = f(...args, E.random.key(7));
      const leaves = [out.loss, ...E.treeLeaves(out.grads), ...E.treeLeaves(out.state)] as E.Tensor[];
      return { leaves: leaves.map((t) => E.dataSync(t)), dispatches: backend.dispatches() - d };
    };
    const want = run(findBackend('cpu'), step);
    const eager = on(() => run(backend as E.Backend<any>, step));
    const jstep = E.jit(step);
    const jitted = on(() => run(backend as E.Backend<any>, jstep));
    const again = on(() => run(backend as E.Backend<any>, jstep));
    const worst = Math.max(...want.leaves.map((w, i) => worstRel(jitted.leaves[i], w)));
    console.log(`[webgpu jit] B0 (0.25×0.25, 4×64²) train step: ${eager.dispatches} dispatches eager, ${again.dispatches} jitted; worst leaf vs cpu ${worst.toExponential(2)}`);
    expect(worst, `worst leaf error ${worst}`).toBeLessThan(STEP_TOL);
    expect(again.dispatches).toBe(jitted.dispatches);
    expect(again.dispatches).toBeLessThan(eager.dispatches * 0.8);
  });
});
