/**
 * The conv cases of bench/suites/conv.ts on the gpu backend, in gpu.js's webasm mode and, when a GL
 * context can be created (under Xvfb: scripts/with-gl.sh), its headless-gl mode (Mesa's software
 * GL on a machine without a GPU). Rows: backend 'gpu-webasm' / 'gpu-headlessgl'. Each sample ends
 * with a read-back of the results, so queued GL work is inside the measured time.
 */
import * as E from '../../src/index.ts';
import { createGpuBackend, gpuModeAvailable, type GpuMode } from '../../src/backends/gpu/index.ts';
import { modeUnavailableReason } from '../../src/backends/gpu/runtime.ts';
import { type Pass, type Row, type Suite, matches, measure } from '../harness.ts';
import { cases as convCases, stochasticCase } from './conv.ts';

// The same cases (names and sizes) as the cpu conv suite, so rows line up across backends.
const cases = convCases.filter((c) => c.tfjs);

const modes: GpuMode[] = ['webasm', 'headlessgl'];

export const gpu: Suite = {
  name: 'gpu',
  description: 'the conv cases on the gpu backend: gpu.js webasm and headless-gl (software GL under Xvfb)',
  async run({ filter, quick }) {
    const rows: Row[] = [];
    const mopts = quick ? { time: 0, iterations: 3, warmup: 1 } : { time: 1500, iterations: 5, warmup: 1 };
    const key = E.random.key(0);
    const prev = E.getBackend().name;
    for (const mode of modes) {
      const name = `gpu-${mode}`;
      const want = (c: string, pass: Pass) => matches(filter, 'gpu', c, name, pass);
      if (![...cases.map((c) => c.name), 'stochastic/per-batch', 'stochastic/per-image'].some((c) => want(c, 'forward') || want(c, 'forward+backward'))) continue;
      if (!gpuModeAvailable(mode)) {
        console.error(`bench gpu: skipping ${name}: ${modeUnavailableReason(mode)}`);
        continue;
      }
      const backend = createGpuBackend({ name, mode });
      E.registerBackend(backend);
      E.setBackend(name);
      const record = async (c: string, pass: Pass, fn: () => unknown) => {
        if (!want(c, pass)) return;
        const m = await measure(fn, mopts);
        rows.push({ suite: 'gpu', name: c, backend: name, pass, ...m, readback: true });
        if (process.env.BENCH_VERBOSE) console.error(`gpu/${c} ${name} ${pass} ${m.medianMs.toFixed(2)} ms`);
      };
      try {
        for (const c of cases) {
          const x = E.random.normal(E.random.foldIn(key, 1), c.x);
          const w = E.random.normal(E.random.foldIn(key, 2), c.w, 0, 0.1);
          const ct = E.random.normal(E.random.foldIn(key, 3), E.conv2d(x, w, c.opts).shape);
          await record(c.name, 'forward', () => E.dataSync(E.conv2d(x, w, c.opts)));
          await record(c.name, 'forward+backward', () => {
            const [, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.conv2d(a, b, c.opts), [x, w]);
            return pullback(ct).map((g) => E.dataSync(g));
          });
        }
        const { x, w, ct, optsFor } = stochasticCase(key);
        for (const perImage of [false, true]) {
          const c = `stochastic/${perImage ? 'per-image' : 'per-batch'}`;
          const opts = optsFor(perImage);
          await record(c, 'forward', () => E.dataSync(E.stochasticConv2d(x, w, opts())));
          await record(c, 'forward+backward', () => {
            const o = opts();
            const [, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.stochasticConv2d(a, b, o), [x, w]);
            return pullback(ct).map((g) => E.dataSync(g));
          });
        }
      } finally {
        E.setBackend(prev);
        backend.destroy();
      }
    }
    return rows;
  },
};
