/**
 * jit on the gpu.js modes: fused elementwise groups run as one generated gpu.js kernel each (the backend's `fuse`
 * hook, src/backends/gpu/fused.ts; `stats.fusedBy` counts them as 'gpu.js'). Modes: headless-gl (the GLSL path;
 * vitest starts an Xvfb display when one is installed, test/setup/display.ts, otherwise skipped with the reason),
 * webasm and cpu, as in the conformance suite.
 *
 * Jitted (fused) vs eager (one launch per op) on the same backend: ≤ 1e-6·(1 + max|eager|). Both store float32 and
 * the fused kernel only skips the stores between ops: measured bit-identical on every case here on headless-gl
 * (Mesa) and webasm; gpu.js's cpu mode keeps the intermediates as JS doubles (measured 7.8e-8). The bound also
 * leaves room for a GL driver that contracts a·b + c into an FMA across what were two kernels. Launches are
 * counted by the backend (`dispatches()`), not timed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as E from '../../../src/index.ts';
import { bind, toBackend } from '../../../src/autograd/trace.ts';
import { type GpuBackend, type GpuMode, createGpuBackend } from '../../../src/backends/gpu/index.ts';
import { modeUnavailableReason } from '../../../src/backends/gpu/runtime.ts';
import { compareJit, elementwisePullbacks, onBackend, trainStep, worstRel } from '../../helpers/jit.ts';

const TOL = 1e-6;

const modes: GpuMode[] = ['headlessgl', 'webasm', 'cpu'];

describe.each(modes)('jit on gpu.js %s: fused kernels', (mode) => {
  const reason = modeUnavailableReason(mode);
  const backend: GpuBackend = createGpuBackend({ name: `gpu-fused-${mode}`, mode });
  E.registerBackend(backend);
  afterAll(() => backend.destroy());
  const dev = (values: ArrayLike<number>, shape: number[], dtype: E.DType = 'float32') =>
    E.fromArray(dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values), shape, backend as E.Backend<any>);
  const wave = (shape: number[], a = 1) => dev(Array.from({ length: shape.reduce((p, d) => p * d, 1) }, (_, i) => Math.sin(i * a) * 3), shape);

  it.skipIf(!!reason)(`every elementwise primitive's pullback: the fused kernels equal the ops one by one${reason ? ` (skipped: ${reason})` : ''}`, () => {
    let fused = 0;
    // GL compiles a shader per group and shape: fewer cases there.
    for (const { name, inputs, f } of elementwisePullbacks(mode === 'headlessgl' ? 1 : 2)) {
      const r = compareJit(backend, f, inputs.map((x) => dev(x.values, [...x.shape])));
      fused += r.stats.fusedLoops;
      expect(r.err, name).toBeLessThanOrEqual(TOL);
      expect(r.jitted, name).toBe(r.eager - (r.stats.fusedOps - r.stats.fusedLoops));
    }
    expect(fused).toBeGreaterThan(10);
  });

  it.skipIf(!!reason)(`chains with flat, scalar, strided and broadcastTo leaves are one launch each${reason ? ` (skipped: ${reason})` : ''}`, () => {
    const x = wave([2, 3, 5, 4]);
    const y = wave([2, 3, 5, 4], 0.7);
    const scale = dev([0.5, -1.5, 2], [1, 3, 1, 1]);
    const shift = dev([0.1, 0.2, -0.3], [3, 1, 1]);
    const row = dev([1, 2, 3, 4], [4]);
    const col = dev(Array.from({ length: 10 }, (_, i) => i / 10), [2, 1, 5, 1]);
    const chains: [string, (xs: E.Tensor[]) => E.Tensor[], E.Tensor[], number][] = [
      ['BN affine + SiLU, then *2 (scalar leaf)', ([a, s, b]) => [E.mul(bind('affine', [a, s, b], { act: 'silu' }), 2)], [x, scale, shift], 3],
      ['strided row and column leaves, tanh', ([a, r, c]) => [E.tanh(E.sub(E.mul(E.add(a, r), c), 0.5))], [x, row, col], 4],
      ['broadcastTo leaf, where, exp', ([a, s]) => [E.where(E.greater(a, 0), E.exp(E.neg(a)), E.broadcastTo(s, [2, 3, 5, 4]))], [x, scale], 5],
      ['SiLU gradient, sigmoid, log, maximum', ([a, b, s]) => [E.mul(bind('siluGrad', [a, b], {}), E.log(E.add(E.sigmoid(E.maximum(a, s)), 1)))], [x, y, scale], 6],
      ['sqrt, abs, pow, div, minimum, sign', ([a, b]) => [E.div(E.pow(E.sqrt(E.abs(a)), 1.5), E.add(E.abs(E.minimum(b, E.sign(a))), 1))], [x, y], 8],
    ];
    for (const [name, f, xs, ops] of chains) {
      const r = compareJit(backend, f, xs);
      expect(r.err, name).toBeLessThanOrEqual(TOL);
      expect(r.stats.fusedBy, name).toEqual({ 'gpu.js': 1 });
      expect(r.eager, `${name}: eager launches`).toBe(ops);
      expect(r.jitted, `${name}: jitted launches (eager ${r.eager})`).toBe(1);
    }
  });

  it.skipIf(!!reason)(`declines float64 groups and groups of more than 8 leaves: they run op by op and equal eager${reason ? ` (skipped: ${reason})` : ''}`, () => {
    const d = compareJit(backend, ([a]) => [E.mul(E.exp(E.neg(a)), E.add(a, 1))], [dev([0.5, -1, 2, 3], [2, 2], 'float64')]);
    expect(d.err).toBe(0);
    expect([d.stats.fusedLoops, d.stats.declinedGroups]).toEqual([0, 1]);
    const xs = Array.from({ length: 9 }, (_, k) => wave([3, 4], k + 1));
    const w = compareJit(backend, (ys) => [ys.slice(1).reduce((p, q) => E.add(p, E.mul(q, 0.5)), ys[0])], xs);
    expect(w.err).toBeLessThanOrEqual(TOL);
    expect(w.stats.declinedGroups).toBe(1);
    expect(w.jitted).toBe(w.eager);
  });
});

const webasm = modeUnavailableReason('webasm');
describe.skipIf(!!webasm)(`jit on gpu.js webasm: a B0 train step${webasm ? ` (skipped: ${webasm})` : ''}`, () => {
  it('equals the eager step on the same backend, with one launch per fused group', () => {
    const backend = createGpuBackend({ name: 'gpu-fused-b0', mode: 'webasm' });
    E.registerBackend(backend);
    try {
      const model = E.nn.createModel('b0', { key: E.random.key(0), widthMult: 0.25, depthMult: 0.25, lowSize: 32 });
      const step = trainStep(model);
      const mv = (t: E.Tensor) => toBackend(t, backend as E.Backend<any>);
      const args = [E.treeMap(mv, model.params), E.treeMap(mv, model.state), mv(E.random.normal(E.random.key(1), [2, 3, 32, 32])), mv(E.tensor([1, 0], [2, 1]))] as const;
      const run = (f: typeof step) =>
        onBackend(backend as E.Backend<any>, () => {
          const d = backend.dispatches();
          const leaves = (E.treeLeaves(f(...args, E.random.key(7))) as E.Tensor[]).map((t) => E.dataSync(t));
          return { leaves, launches: backend.dispatches() - d };
        });
      const eager = run(step);
      const jstep = E.jit(step);
      run(jstep);
      const jitted = run(jstep);
      const worst = Math.max(...eager.leaves.map((w, i) => worstRel(jitted.leaves[i], w)));
      const stats = jstep.lower(...args, E.random.key(7)).stats;
      console.log(`[gpu.js jit] B0 (0.25×0.25, 2×32²) train step on webasm: ${eager.launches} launches eager, ${jitted.launches} jitted (${stats.fusedLoops} fused groups of ${stats.fusedOps} ops); worst leaf ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(TOL);
      expect(stats.fusedBy).toEqual({ 'gpu.js': stats.fusedLoops });
      // A group of k ops saves k − 1 launches, or more where one of its ops takes several launches eagerly (such an
      // op saves launches as a group even alone).
      expect(jitted.launches).toBeLessThanOrEqual(eager.launches - (stats.fusedOps - stats.fusedLoops));
    } finally {
      backend.destroy();
    }
  });
});
