/**
 * Convolutions: the EfficientNet stem, a depthwise and a pointwise conv, and the paper's
 * stochastic stem with per-batch and per-image windows next to the plain conv2d that produces the
 * same output — on this engine's cpu backend and, in the same run, on TensorFlow.js (tfjs-cpu and
 * tfjs-wasm; NHWC layouts, the same sizes). Forward, and forward+backward (both gradients, for a
 * fixed random cotangent) where the backend has the gradient kernels. Each stochastic row is timed
 * in turns with the plain conv's same pass and carries the ratio per pair (`pairedRatio`).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import * as E from '../../src/index.ts';
import * as F from '../../src/backends/cpu/fast/index.ts';
import { type Pass, type Row, type Suite, matches, measure, measurePaired, median } from '../harness.ts';

export interface Case {
  readonly name: string;
  readonly x: [number, number, number, number];
  readonly w: [number, number, number, number];
  readonly opts: E.Conv2dOptions;
  /** Run on TensorFlow.js too. */
  readonly tfjs: boolean;
}

/** The conv cases (shared with bench/suites/gpu.ts so rows line up across backends). */
export const cases: Case[] = [
  { name: 'stem 3x3/2 same 8x3x224x224->32', x: [8, 3, 224, 224], w: [32, 3, 3, 3], opts: { stride: 2, padding: 'same' }, tfjs: true },
  { name: 'depthwise 3x3 8x32x112x112', x: [8, 32, 112, 112], w: [32, 1, 3, 3], opts: { padding: 'same', groups: 32 }, tfjs: true },
  { name: 'pointwise 8x96x56x56->24', x: [8, 96, 56, 56], w: [24, 96, 1, 1], opts: {}, tfjs: true },
  // The plain conv with the stochastic stem's output: a 225×225 input is exactly one window.
  { name: 'stochastic/plain', x: [8, 3, 225, 225], w: [32, 3, 3, 3], opts: { stride: 2 }, tfjs: true },
];

export const STOCH = { n: 8, c: 3, size: 1024, o: 32, out: 112, k: 3, stride: 2 } as const;

/**
 * The stochastic stem's operands (on the current backend) and a source of its options with
 * fresh windows on every call, as in training (sampling is part of the cost).
 */
export function stochasticCase(key: E.random.Key) {
  const s = STOCH;
  const x = E.random.normal(E.random.foldIn(key, 4), [s.n, s.c, s.size, s.size]);
  // The image as training feeds it (the loader's highBytes): bytes, normalised inside the conv by its decode.
  const x8 = E.tensor(Uint8Array.from(E.dataSync(E.random.uniform(E.random.foldIn(key, 5), [s.n, s.c, s.size, s.size])), (v) => Math.floor(v * 256)), [s.n, s.c, s.size, s.size]);
  const decode = E.datasets.imagenetDecode;
  const w = E.random.normal(E.random.foldIn(key, 2), [s.o, s.c, s.k, s.k], 0, 0.1);
  const ct = E.random.normal(E.random.foldIn(key, 3), [s.n, s.o, s.out, s.out]);
  const sliceSize = E.stochasticSliceSize([s.out, s.out], [s.k, s.k], s.stride);
  const optsFor = (perImage: boolean) => {
    let step = 0;
    return () => ({
      stride: s.stride,
      outSize: [s.out, s.out] as [number, number],
      windows: E.sampleWindows(E.random.foldIn(key, step++), { batch: s.n, channels: s.o, inputSize: [s.size, s.size], sliceSize, perImage }),
    });
  };
  /**
   * Forward + weight gradient as a training step runs it: jitted, fresh windows from the key passed in each call, the
   * output's sum returned (as `plainStem`'s jitted pass).
   */
  const jitted = (perImage: boolean, bytes = false) => {
    const step = E.jit((k: E.random.Key, xs: E.Tensor, ws: E.Tensor, cts: E.Tensor) => {
      const windows = E.sampleWindows(k, { batch: s.n, channels: s.o, inputSize: [s.size, s.size], sliceSize, perImage });
      const [y, pullback] = E.vjp((b: E.Tensor) => E.stochasticConv2d(xs, b, { stride: s.stride, outSize: [s.out, s.out], windows, ...(bytes ? { decode } : {}) }), ws);
      return [E.sum(y), pullback(cts)];
    });
    let n = 0;
    return () => step(E.random.foldIn(key, n++), bytes ? x8 : x, w, ct);
  };
  return { x, x8, decode, w, ct, optsFor, jitted };
}

/**
 * The plain conv with the stochastic stem's output (the `stochastic/plain` case, same operands as its rows), each
 * pass the stochastic rows are paired with: forward, forward + weight gradient, forward + both gradients.
 */
function plainStem(key: E.random.Key) {
  const c = cases.find((k) => k.name === 'stochastic/plain')!;
  const x = E.random.normal(E.random.foldIn(key, 1), c.x);
  const w = E.random.normal(E.random.foldIn(key, 2), c.w, 0, 0.1);
  const ct = E.random.normal(E.random.foldIn(key, 3), E.conv2d(x, w, c.opts).shape);
  const weightGrad = (xs: E.Tensor, ws: E.Tensor, cts: E.Tensor) => {
    const [y, pullback] = E.vjp((b: E.Tensor) => E.conv2d(xs, b, c.opts), ws);
    return [y, pullback(cts)];
  };
  // The weight gradient does not need the output, and a jitted step would drop the forward: its sum is returned, as
  // a training step's next layer reads it in the arena (the output itself would be copied out of the heap).
  const jitted = E.jit((xs: E.Tensor, ws: E.Tensor, cts: E.Tensor) => {
    const [y, dw] = weightGrad(xs, ws, cts);
    return [E.sum(y), dw];
  });
  return {
    forward: () => E.conv2d(x, w, c.opts),
    'weight grad': () => weightGrad(x, w, ct),
    'weight grad, jit': () => jitted(x, w, ct),
    both: () => E.vjp(([a, b]: E.Tensor[]) => E.conv2d(a, b, c.opts), [x, w])[1](ct),
  };
}

type TF = any;
interface Tfjs {
  tf: TF;
  backends: string[];
  notes: string[];
}

/** Loads TensorFlow.js (CommonJS, one instance) with the cpu and wasm backends. */
async function loadTfjs(): Promise<Tfjs | null> {
  const req = createRequire(import.meta.url);
  let tf: TF;
  try {
    tf = req('@tensorflow/tfjs');
  } catch (e) {
    return null;
  }
  const notes: string[] = [];
  const backends = ['cpu'];
  try {
    const wasm = req('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(path.dirname(req.resolve('@tensorflow/tfjs-backend-wasm/package.json')) + '/dist/');
    wasm.setThreadsCount(2);
    if (await tf.setBackend('wasm')) {
      backends.push('wasm');
      const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      const mt = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
      notes.push(`tfjs-wasm: SIMD ${simd ? 'on' : 'off'}, threads ${mt ? wasm.getThreadsCount() : '1 (no multithread support in Node: the threaded build starts its pthread workers from a blob: URL, which worker_threads rejects)'}`);
    }
  } catch (e) {
    notes.push(`tfjs-wasm unavailable: ${(e as Error).message}`);
  }
  await tf.setBackend('cpu');
  return { tf, backends, notes };
}

export const conv: Suite = {
  name: 'conv',
  description: 'conv2d / depthwise / pointwise / stochastic stem, cpu backend vs TensorFlow.js cpu and wasm',
  async run({ filter, quick }) {
    const rows: Row[] = [];
    const mopts = quick ? { time: 0, iterations: 3, warmup: 1 } : { time: 1500, iterations: 7, warmup: 2 };
    const want = (name: string, backend: string, pass: Pass) => matches(filter, 'conv', name, backend, pass);
    const record = async (name: string, backend: string, pass: Pass, fn: () => unknown, opts = mopts) => {
      if (!want(name, backend, pass)) return;
      const m = await measure(fn, opts);
      rows.push({ suite: 'conv', name, backend, pass, ...m });
      if (process.env.BENCH_VERBOSE) console.error(`conv/${name} ${backend} ${pass} ${m.medianMs.toFixed(2)} ms`);
    };
    const key = E.random.key(0);
    // The plain stem's operands and its jitted step, made once: its own rows and the stochastic rows' pairs use them.
    let plainOps: ReturnType<typeof plainStem> | undefined;
    const plainOnce = () => (plainOps ??= plainStem(key));

    // ---- this engine, cpu backend ----
    E.setBackend('cpu');
    for (const c of cases) {
      const x = E.random.normal(E.random.foldIn(key, 1), c.x);
      const w = E.random.normal(E.random.foldIn(key, 2), c.w, 0, 0.1);
      const y = E.conv2d(x, w, c.opts);
      const ct = E.random.normal(E.random.foldIn(key, 3), y.shape);
      await record(c.name, 'cpu', 'forward', () => E.conv2d(x, w, c.opts));
      await record(c.name, 'cpu', 'forward+backward', () => {
        const [, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.conv2d(a, b, c.opts), [x, w]);
        return pullback(ct);
      });
      // A stem's input is the image, never differentiated in training: forward + weight gradient only.
      if (c.name === 'stochastic/plain') {
        const plain = plainOnce();
        await record(`${c.name} (weight grad)`, 'cpu', 'forward+backward', plain['weight grad']);
        await record(`${c.name} (weight grad, jit)`, 'cpu', 'forward+backward', plain['weight grad, jit']);
      }
    }
    const variants = ['', ' (weight grad)', ' (weight grad, jit)', ' (weight grad, operands in the heap)', ' (uint8)', ' (weight grad, uint8)', ' (weight grad, uint8, jit)'];
    const stochRows = ['per-batch', 'per-image'].flatMap((f) => variants.map((v) => `stochastic/${f}${v}`));
    if (stochRows.some((name) => want(name, 'cpu', 'forward') || want(name, 'cpu', 'forward+backward'))) {
      const { x, x8, decode, w, ct, optsFor, jitted } = stochasticCase(key);
      const plain = plainOnce();
      // The large outputs live in the wasm heap (cpu fast/heap.ts `owned`): the first calls grow it to the working
      // set (fresh pages, once per process), so --quick warms up twice here.
      const sopts = { ...mopts, warmup: Math.max(mopts.warmup, 2) };
      /** A stochastic row timed in turns with the plain conv's same pass (harness `measurePaired`), its ratio per pair. */
      const paired = async (name: string, pass: Pass, fn: () => unknown, vs: keyof typeof plain) => {
        if (!want(name, 'cpu', pass)) return;
        const m = await measurePaired(fn, plain[vs], sopts);
        const pairedWith = `stochastic/plain${vs.startsWith('weight grad') ? ` (${vs})` : ''}`;
        rows.push({
          suite: 'conv', name, backend: 'cpu', pass, ...m.a,
          pairedWith, pairedMedianMs: m.b.medianMs, pairedRatio: median(m.ratios), pairRatios: m.ratios.map((r) => +r.toFixed(4)),
        });
        if (process.env.BENCH_VERBOSE) console.error(`conv/${name} cpu ${pass} ${m.a.medianMs.toFixed(2)} ms, ${median(m.ratios).toFixed(3)}× ${pairedWith} per pair`);
      };
      for (const perImage of [false, true]) {
        const name = `stochastic/${perImage ? 'per-image' : 'per-batch'}`;
        const opts = optsFor(perImage);
        await paired(name, 'forward', () => E.stochasticConv2d(x, w, opts()), 'forward');
        await paired(name, 'forward+backward', () => {
          const o = opts();
          const [, pullback] = E.vjp(([a, b]: E.Tensor[]) => E.stochasticConv2d(a, b, o), [x, w]);
          return pullback(ct);
        }, 'both');
        await paired(`${name} (weight grad)`, 'forward+backward', () => {
          const o = opts();
          const [, pullback] = E.vjp((b: E.Tensor) => E.stochasticConv2d(x, b, o), w);
          return pullback(ct);
        }, 'weight grad');
        await paired(`${name} (weight grad, jit)`, 'forward+backward', jitted(perImage), 'weight grad, jit');
        // The image as bytes (training's form): forward, forward + weight gradient, eager and jitted.
        await paired(`${name} (uint8)`, 'forward', () => E.stochasticConv2d(x8, w, { ...opts(), decode }), 'forward');
        await paired(`${name} (weight grad, uint8)`, 'forward+backward', () => {
          const o = { ...opts(), decode };
          const [, pullback] = E.vjp((b: E.Tensor) => E.stochasticConv2d(x8, b, o), w);
          return pullback(ct);
        }, 'weight grad');
        await paired(`${name} (weight grad, uint8, jit)`, 'forward+backward', jitted(perImage, true), 'weight grad, jit');
        // The same two kernels with the operands already in the wasm heap, as a compiled step's memory plan places
        // them: the pointer entry points, nothing copied in or out.
        const heap = F.wasmHeap();
        if (heap && want(`${name} (weight grad, operands in the heap)`, 'cpu', 'forward+backward')) {
          const put = (t: E.Tensor) => {
            const d = E.dataSync(t) as Float32Array;
            const r = heap.reserve(d.length * 4);
            r.f32().set(d);
            return r;
          };
          const [hx, hw, hg] = [x, w, ct].map(put);
          const hy = heap.reserve(ct.size * 4), hdw = heap.reserve(w.size * 4);
          const s = STOCH;
          await record(`${name} (weight grad, operands in the heap)`, 'cpu', 'forward+backward', () => {
            const g = { N: s.n, C: s.c, H: s.size, W: s.size, O: s.o, kh: s.k, kw: s.k, stride: [s.stride, s.stride] as const, outSize: [s.out, s.out] as const, windows: opts().windows, perImage };
            F.stochasticForwardPtr(hx.ptr, hw.ptr, hy.ptr, g);
            F.stochasticGradFilterPtr(hx.ptr, hg.ptr, hdw.ptr, g);
          });
          for (const r of [hx, hw, hg, hy, hdw]) r.release();
        }
      }
    }

    // ---- TensorFlow.js, same sizes in NHWC / HWIO ----
    const tfjs = await loadTfjs();
    if (!tfjs) {
      console.error('# conv: @tensorflow/tfjs not installed, skipping the TensorFlow.js rows');
      return rows;
    }
    const { tf } = tfjs;
    for (const note of tfjs.notes) console.error(`# conv: ${note}`);
    for (const be of tfjs.backends) {
      await tf.setBackend(be);
      const backend = `tfjs-${be}`;
      for (const c of cases.filter((k) => k.tfjs)) {
        if (!want(c.name, backend, 'forward') && !want(c.name, backend, 'forward+backward')) continue;
        const [N, C, H, W] = c.x;
        const [O, Cg, kh, kw] = c.w;
        const depthwise = (c.opts.groups ?? 1) > 1;
        const x = tf.randomNormal([N, H, W, C]);
        const w = depthwise ? tf.randomNormal([kh, kw, C, O / C], 0, 0.1) : tf.randomNormal([kh, kw, Cg, O], 0, 0.1);
        const pad = c.opts.padding === 'same' ? 'same' : 'valid';
        const stride = (c.opts.stride as number | undefined) ?? 1;
        const f = (a: TF, b: TF) => (depthwise ? tf.depthwiseConv2d(a, b, stride, pad) : tf.conv2d(a, b, stride, pad));
        const y0 = f(x, w);
        const dy = tf.randomNormal(y0.shape);
        y0.dispose();
        await record(c.name, backend, 'forward', () => {
          const y = f(x, w);
          y.dataSync();
          y.dispose();
        });
        const g = tf.grads(f);
        let backwardOk = true;
        try {
          tf.tidy(() => g([x, w], dy).forEach((t: TF) => t.dataSync()));
        } catch (e) {
          backwardOk = false;
          console.error(`# conv: ${backend} cannot run the backward pass of ${c.name}: ${(e as Error).message}`);
        }
        if (backwardOk) {
          // tfjs-cpu's gradient kernels are plain loops (seconds per call): the probe above was the
          // warm-up, and --quick takes a single sample.
          const once = quick ? { time: 0, iterations: 1, warmup: 0 } : { ...mopts, warmup: 0 };
          await record(c.name, backend, 'forward+backward', () => tf.tidy(() => g([x, w], dy).forEach((t: TF) => t.dataSync())), once);
        }
        tf.dispose([x, w, dy]);
      }
    }
    await tf.setBackend('cpu');
    return rows;
  },
};
