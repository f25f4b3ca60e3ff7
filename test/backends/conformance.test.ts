/**
 * The conformance suite: every primitive of the table, forward and VJP (both gradients of the
 * convs), on every backend/mode against the CPU backend, on small random float32 cases drawn from
 * the table's own `check` generators (so a new primitive is covered the day it is added).
 *
 * Backends: webgpu (the WGSL kernels on a WebGPU adapter: Mesa's lavapipe in CI, needs the `webgpu`
 * package and a Vulkan driver, otherwise skipped with the reason printed), gpu.js headless-gl (the
 * real GLSL path; needs a GL context: vitest starts an Xvfb display when one is installed
 * (test/setup/display.ts), otherwise skipped with the reason
 * printed), gpu.js webasm (always) and gpu.js cpu.
 *
 * Tolerance (float32): |got − want| ≤ RTOL · (1 + max|want|) elementwise, with RTOL = 1e-4, i.e.
 * relative to the case's largest value: the CPU reference accumulates in float64, the GPU in float32
 * over up to a few hundred terms of size ≤ 9, and GLSL's exp/log/pow are a few ulp off. Values must
 * also agree on being finite. (TensorFlow.js tests its WebGL backend at 1e-3.)
 */
import * as fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import type { CheckCase } from '../../src/autograd/registry.ts';
import { forwardOnlyCases } from '../../src/autograd/checkgen.ts';
import { bind } from '../../src/autograd/trace.ts';
import { createGpuBackend, gpuModeAvailable, type GpuBackend, type GpuMode } from '../../src/backends/gpu/index.ts';
import { modeUnavailableReason } from '../../src/backends/gpu/runtime.ts';

const RTOL = 1e-4;

interface Target {
  readonly mode: GpuMode;
  /** Random cases per primitive (GL compiles a shader per shape: keep it small). */
  readonly runs: number;
}
const targets: Target[] = [
  { mode: 'webgpu', runs: 3 },
  { mode: 'headlessgl', runs: 2 },
  { mode: 'webasm', runs: 4 },
  { mode: 'cpu', runs: 2 },
];

// Primitives without a gradient check get forward-only cases; float64 casts run on the CPU kernels by design.
const forwardOnly = forwardOnlyCases;

function allClose(got: ArrayLike<number>, want: ArrayLike<number>): { ok: boolean; worst: number; at: number } {
  let scale = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  const tol = RTOL * (1 + scale);
  let worst = 0;
  let at = -1;
  if (got.length !== want.length) return { ok: false, worst: Infinity, at: -1 };
  for (let i = 0; i < want.length; i++) {
    const a = got[i];
    const b = want[i];
    const err = Number.isFinite(b) ? Math.abs(a - b) : a === b || (Number.isNaN(a) && Number.isNaN(b)) ? 0 : Infinity;
    if (!(err <= worst)) {
      worst = Number.isNaN(err) ? Infinity : err;
      at = i;
    }
  }
  return { ok: worst <= tol, worst, at };
}

const toTensors = (c: CheckCase, backend: E.Backend<any>): E.Tensor[] =>
  c.inputs.map((x) => E.fromArray(Float32Array.from(x.values), x.shape, backend));

/** Runs the primitive's forward and (if it has one) its VJP with cotangent `ct`, on `backend`. */
function evaluate(name: string, c: CheckCase, ctValues: Float32Array | null, backend: E.Backend<any>): { y: Float64Array; grads: (Float64Array | null)[] } {
  const prev = E.getBackend();
  E.setBackend(backend.name);
  try {
    const xs = toTensors(c, backend);
    const f = (ins: E.Tensor[]) => bind(name, ins, c.attrs);
    if (!ctValues) return { y: Float64Array.from(E.dataSync(f(xs))), grads: [] };
    const [y, pullback] = E.vjp(f, xs);
    const ct = E.fromArray(ctValues.slice(), y.shape, backend);
    const gs = pullback(ct as never) as unknown as E.Tensor[];
    return {
      y: Float64Array.from(E.dataSync(y)),
      grads: gs.map((g, i) => (c.constant?.includes(i) ? null : Float64Array.from(E.dataSync(g)))),
    };
  } finally {
    E.setBackend(prev.name);
  }
}

const cpu = E.getBackend();

describe.each(targets)('gpu $mode vs cpu', ({ mode, runs }) => {
  const reason = modeUnavailableReason(mode);
  if (reason) {
    // Printed so a CI log says why the GL / WebGPU tests did not run.
    console.warn(`[conformance] skipping gpu ${mode}: ${reason}`);
    it.skip(`gpu ${mode}: ${reason}`, () => {});
    return;
  }
  const backend: GpuBackend = createGpuBackend({ name: `gpu-${mode}`, mode });
  E.registerBackend(backend);
  afterAll(() => backend.destroy());

  it('reports its mode', () => {
    expect(backend.mode()).toBe(mode);
    expect(backend.describe!()).toContain(mode);
  });

  const prims = E.listPrimitives();
  it('covers every primitive of the table', () => {
    const missing = prims.filter((p) => !p.check && !forwardOnly[p.name]).map((p) => p.name);
    expect(missing).toEqual([]);
  });

  for (const prim of prims) {
    const gen = prim.check ?? forwardOnly[prim.name];
    if (!gen) continue;
    const grad = !!prim.vjp && !!prim.check;
    it(`${prim.name}: forward${grad ? ' and vjp' : ''}`, () => {
      const cases = fc.sample(
        gen(fc).chain((c) => fc.integer({ min: 0, max: 2 ** 30 }).map((seed) => [c, seed] as const)),
        { numRuns: runs },
      );
      for (const [c, seed] of cases) {
        // The cotangent: deterministic values in [-2, 2] of the output's size.
        let ct: Float32Array | null = null;
        if (grad) {
          const n = evaluate(prim.name, c, null, cpu).y.length;
          ct = Float32Array.from({ length: n }, (_, i) => (((seed + i * 7919) % 4001) / 1000) - 2);
        }
        const want = evaluate(prim.name, c, ct, cpu);
        const got = evaluate(prim.name, c, ct, backend);
        const where = (what: string) => `${prim.name} ${what} on gpu ${mode}, case ${JSON.stringify({ shapes: c.inputs.map((x) => x.shape), attrs: c.attrs })}`;
        const fwd = allClose(got.y, want.y);
        expect(fwd.ok, `${where('forward')}: worst error ${fwd.worst} at ${fwd.at}`).toBe(true);
        want.grads.forEach((g, i) => {
          if (!g) return;
          const r = allClose(got.grads[i]!, g);
          expect(r.ok, `${where(`vjp of input ${i}`)}: worst error ${r.worst} at ${r.at}`).toBe(true);
        });
      }
    });
  }

  it('keeps float64 on the CPU kernels and float32 on the device', () => {
    const prev = E.getBackend();
    E.setBackend(backend.name);
    try {
      const a64 = E.tensor([1, 2, 3], [3], 'float64');
      const y64 = E.mul(a64, a64);
      expect(y64.dtype).toBe('float64');
      expect(y64.backend.name).toBe('cpu');
      expect(Array.from(E.dataSync(y64))).toEqual([1, 4, 9]);
      const a32 = E.tensor([1, 2, 3]);
      const y32 = E.mul(E.add(a32, 1), a32);
      expect(y32.backend.name).toBe(backend.name);
      expect(Array.from(E.dataSync(y32))).toEqual([2, 6, 12]);
    } finally {
      E.setBackend(prev.name);
    }
  });

  it('stochasticConv2d equals conv2d on each channel’s cropped window (property)', () => windowCropProperty(backend.name, runs + 1));
});

// The paper's definition: channel k of a stochastic conv is conv2d of w[k] over k's window (fast-check, few runs).
function windowCropProperty(backendName: string, runs: number): void {
  fc.assert(
    fc.property(
      fc.record({
        n: fc.integer({ min: 1, max: 2 }),
        c: fc.integer({ min: 1, max: 2 }),
        o: fc.integer({ min: 1, max: 3 }),
        k: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        stride: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 })),
        outSize: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
        extra: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })),
        perImage: fc.boolean(),
        seed: fc.integer({ min: 0, max: 1000 }),
      }),
      (p) => {
        const prev = E.getBackend();
        E.setBackend(backendName);
        try {
          const slice = E.stochasticSliceSize(p.outSize, p.k, p.stride);
          const H = slice[0] + p.extra[0];
          const W = slice[1] + p.extra[1];
          const key = E.random.key(p.seed);
          const x = E.random.normal(key, [p.n, p.c, H, W]);
          const w = E.random.normal(E.random.foldIn(key, 1), [p.o, p.c, p.k[0], p.k[1]]);
          const windows = E.sampleWindows(E.random.foldIn(key, 2), { batch: p.n, channels: p.o, inputSize: [H, W], sliceSize: slice, perImage: p.perImage });
          const y = E.dataSync(E.stochasticConv2d(x, w, { stride: p.stride, outSize: p.outSize, windows }));
          const [oh, ow] = p.outSize;
          for (let n = 0; n < p.n; n++) {
            for (let k = 0; k < p.o; k++) {
              const i = p.perImage ? n * p.o + k : k;
              const crop = E.slice(x, [n, 0, windows[2 * i], windows[2 * i + 1]], [1, p.c, slice[0], slice[1]]);
              const ref = E.dataSync(E.conv2d(crop, E.slice(w, [k], [1]), { stride: p.stride }));
              const got = y.subarray((n * p.o + k) * oh * ow, (n * p.o + k + 1) * oh * ow);
              const r = allClose(got, ref);
              if (!r.ok) throw new Error(`channel ${k} of image ${n}: worst error ${r.worst}`);
            }
          }
        } finally {
          E.setBackend(prev.name);
        }
      },
    ),
    { numRuns: runs },
  );
}

describe('cpu', () => {
  it('stochasticConv2d equals conv2d on each channel’s cropped window (property)', () => windowCropProperty('cpu', 5));
});

describe('the gpu backend registered as gpu', () => {
  it('starts lazily and reports its mode: the first available of webgpu > webgl2 > webgl > headlessgl > webasm > cpu', () => {
    expect(E.listBackends()).toContain('gpu');
    const mode = E.gpuMode();
    expect(gpuModeAvailable(mode)).toBe(true);
    const forced = process.env.STOCHCONV_GPU_MODE;
    if (forced && forced !== 'auto') expect(mode).toBe(forced);
    else expect(mode).toBe(E.gpuModes.find((m) => gpuModeAvailable(m)));
    expect(E.gpuAdapter() !== null).toBe(mode === 'webgpu');
  });
});
