/**
 * One model workload in its own process, so its peak RSS is its own:
 *   tsx bench/peers/model-workload.ts ENGINE WORKLOAD REPS|lockstep
 * (`lockstep`: after the warm-up, one timed rep per `rep` line on stdin until `end`, in turns with another process;
 * the protocol is bench/lockstep.ts's)
 * ENGINE: cpu | gpu (this engine's backends, eager; gpu = the best mode, webgpu where an adapter is
 * present) | cpu-jit | gpu-jit (the same step through jit: forward, backward and the optimizer
 * compiled as one graph, parameters and optimizer state donated) | tfjs-wasm | tfjs-cpu | tfjs-webgpu;
 * WORKLOAD: b0/train-step-8x224, b0/inference-16x128,
 * b0-full-split/train-step-8x224+1024, b0/steady-8x128 (REPS consecutive train steps: the medians of the first
 * and last 20, and the memory after step 20, 100, 200, …: RSS, the wasm heap's size, high-water mark and bytes
 * allocated, the jit arena; `rssGrowthLast100Pct` is the RSS growth over the last 100 steps).
 * Prints one JSON line: {medianMs, samples, peakRssMb, note, ...} (gpu, gpu-jit and tfjs-webgpu:
 * also the compute dispatches per step; gpu: the mode and the adapter). cpu-jit rows also carry the JS heap
 * bytes allocated per steady-state step, garbage included (`heapBytesPerStep`).
 */
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import * as E from '../../src/index.ts';
import { rmsprop } from '../../src/train/optim.ts';
import { loadTfjs } from './tfjs.ts';
import { heapBytesAllocated, median } from '../harness.ts';
import { wasmHeap } from '../../src/backends/cpu/fast/heap.ts';
import { tfjsEfficientNetB0 } from './tfjs-efficientnet.ts';

const [engine, workload, repsArg] = process.argv.slice(2);
const onCommand = repsArg === 'lockstep';
const reps = onCommand ? 0 : Number(repsArg ?? 5);
if (!onCommand && !(reps >= 1)) throw new Error(`model-workload: REPS must be a count or 'lockstep', got '${repsArg}'`);
const m = /^(b0(?:-full-split)?)\/(train-step|inference|steady)-(\d+)x(\d+)(?:\+(\d+))?$/.exec(workload ?? '');
if (!m) throw new Error(`model-workload: unknown workload '${workload}'`);
const [, arch, kind, bs, ls, hs] = m;
if (onCommand && kind === 'steady') throw new Error(`model-workload: ${workload} runs its 200 steps alone, not in lockstep`);
const batch = Number(bs);
const low = Number(ls);
const high = hs ? Number(hs) : null;

/** Calls of the workload's function so far (warm-ups included), for per-step dispatch counts. */
let calls = 0;
/** One turn of the event loop (untimed), as a training loop that awaits its data makes: finalizers run there. */
const turn = () => new Promise<void>((r) => setImmediate(r));

/**
 * Untimed calls before the timed ones. One was not enough: on 2 cores the optimising compiler's thread competes with
 * the kernels' threads, and B0's 8×224 jitted step measured 413 or 656 ms in two runs of the same tree, the slower
 * run also allocating 2.5× the JS heap per step (code not yet optimised).
 */
const WARM_UP = 3;

async function time(fn: () => unknown | Promise<unknown>, n: number): Promise<number[]> {
  for (let i = 0; i < WARM_UP; i++) {
    calls++;
    await fn();
  }
  const ts: number[] = [];
  const timed = async () => {
    await turn();
    const t = performance.now();
    calls++;
    await fn();
    ts.push(performance.now() - t);
  };
  if (!onCommand) {
    for (let i = 0; i < n; i++) await timed();
    return ts;
  }
  console.log(JSON.stringify({ ready: true }));
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === 'end') break;
    if (line.trim() !== 'rep') throw new Error(`model-workload: unknown command '${line}' on stdin (rep | end)`);
    await timed();
    console.log(JSON.stringify({ ms: ts[ts.length - 1] }));
  }
  return ts;
}
const peakRssMb = () => process.resourceUsage().maxRSS / 1024;
const MB = 2 ** 20;
const round1 = (x: number) => Math.round(x * 10) / 10;
/** Memory after step 20, 100, 200, … of a steady run (`afterStep` is called after every train step). */
const memoryAt: Record<number, { rssMb: number; wasmHeapMb?: number; wasmHighWaterMb?: number; wasmAllocatedMb?: number; arenaMb: number }> = {};
function afterStep(step: number): void {
  if (kind !== 'steady' || step <= 0 || (step !== 20 && step % 100 !== 0)) return;
  const h = wasmHeap();
  memoryAt[step] = {
    rssMb: round1(process.memoryUsage().rss / MB),
    ...(h ? { wasmHeapMb: round1(h.byteLength / MB), wasmHighWaterMb: round1(h.highWater / MB), wasmAllocatedMb: round1(h.allocatedBytes() / MB) } : {}),
    arenaMb: round1(E.arenaBytes() / MB),
  };
}
/** cpu-jit extras: compile time of the first call and JS-heap bytes allocated per steady-state step. */
const jitStats: Record<string, unknown> = {};

let extra: Record<string, unknown> = {};

async function ours(backend: 'cpu' | 'gpu', compiled: boolean) {
  const b = E.setBackend(backend);
  if (backend === 'gpu') {
    const gpu = b as E.GpuBackend;
    extra = { mode: gpu.mode(), describe: gpu.describe!() };
    const d0 = gpu.dispatches();
    const ts = await oursOn(compiled);
    extra.dispatchesPerStep = (gpu.dispatches() - d0) / calls;
    return ts;
  }
  return oursOn(compiled);
}

/**
 * The high-res image as training feeds it: uint8 bytes on the cpu backend (the loader's highBytes, normalised in
 * the stochastic stem), float32 on the gpu backend (whose stochastic kernels read floats).
 */
function highImage(key: E.random.Key, shape: number[]): E.Tensor {
  const u = E.random.uniform(key, shape);
  return E.getBackend().name === 'cpu' ? E.tensor(Uint8Array.from(E.dataSync(u), (v) => Math.floor(v * 256)), shape) : E.sub(E.mul(u, E.scalar(4)), E.scalar(2));
}

async function oursOn(compiled: boolean) {
  const key = E.random.key(0);
  const model = E.nn.createModel(arch, { key, lowSize: low, ...(high ? { highSize: high } : {}) });
  const x = E.random.normal(E.random.foldIn(key, 1), [batch, 3, low, low]);
  const input = high ? { low: x, high: highImage(E.random.foldIn(key, 2), [batch, 3, high, high]) } : x;
  const y = E.tensor(Float32Array.from({ length: batch }, (_, i) => i % 2), [batch, 1]);
  if (kind === 'inference' && !compiled) return time(() => E.dataSync(E.nn.predict(model, input)), reps);
  if (kind === 'inference') {
    const fwd = E.jit((p: E.nn.Params, s: E.nn.State, x: typeof input) => E.nn.apply(model.config, p, s, x, { training: false, key })[0]);
    return timeCompiled(
      () => E.dataSync(fwd(model.params, model.state, input)),
      () => fwd.lower(model.params, model.state, input),
      () => fwd.profile(model.params, model.state, input).profile,
    );
  }
  const opt = rmsprop({ alpha: 0.99, eps: 1e-8 });
  if (compiled) return jitTrain(model, input, y, opt);
  let params = model.params;
  let state = model.state;
  let ostate = opt.init(params);
  let step = 0;
  const lossGrad = E.valueAndGrad(
    (p: E.nn.Params) => {
      const [logits, s] = E.nn.apply(model.config, p, state, input, { training: true, key: E.random.foldIn(key, 100 + step) });
      return [E.binaryCrossEntropyWithLogits(logits, y), s] as [E.Tensor, E.nn.State];
    },
    { hasAux: true },
  );
  const trainStep = () => {
    const [[loss, s], g] = lossGrad(params);
    [params, ostate] = opt.update(g, ostate, params, 1e-3);
    state = s;
    const l = E.item(loss);
    afterStep(step++ - WARM_UP + 1); // the last warm-up call is step 0
    return l;
  };
  return time(trainStep, kind === 'steady' ? 200 : reps);
}

/** Times a compiled workload: the first call (trace + compile + run) separately, then `reps` calls and the heap they allocate. */
async function timeCompiled(fn: () => unknown, lower: () => E.Lowered, profile?: () => E.Profile): Promise<number[]> {
  const t0 = performance.now();
  calls++;
  fn();
  jitStats.firstCallMs = performance.now() - t0;
  const l = lower();
  Object.assign(jitStats, { compileMs: l.stats.compileMs, arenaMb: l.memory.arenaBytes / 2 ** 20, intermediateMb: l.memory.intermediateBytes / 2 ** 20, unplannedMb: l.memory.unplannedBytes / 2 ** 20, fusedOps: l.stats.fusedOps, ownOutputOps: l.stats.ownOutputOps.join(' ') });
  const ts = await time(fn, reps);
  const n = Math.max(Math.min(ts.length, 20), 3);
  jitStats.heapBytesPerStep = Math.round(heapBytesAllocated(() => {
    for (let i = 0; i < n; i++, calls++) fn();
  }) / n);
  if (profile) {
    // One more call with every step timed: where the step's time goes, by category and largest operations.
    const p = profile();
    const brief = (r: E.ProfileRow) => ({ label: r.label, ms: +r.ms.toFixed(2), calls: r.calls });
    jitStats.profile = { totalMs: +p.totalMs.toFixed(1), categories: p.categories.map(brief), top: p.rows.slice(0, 10).map(brief) };
  }
  return ts;
}

/** The B0 train step (loss, gradients, RMSprop update) compiled as one graph, parameters and optimizer state donated. */
function jitTrain(model: E.nn.Model, input: E.nn.Input, y: E.Tensor, opt: ReturnType<typeof rmsprop>) {
  const key = E.random.key(0);
  const step = E.jit(
    (p: E.nn.Params, s: E.nn.State, slots: unknown, k: E.random.Key) => {
      const [[loss, ns], g] = E.valueAndGrad(
        (q: E.nn.Params) => {
          const [logits, st] = E.nn.apply(model.config, q, s, input, { training: true, key: k });
          return [E.binaryCrossEntropyWithLogits(logits, y), st] as [E.Tensor, E.nn.State];
        },
        { hasAux: true },
      )(p);
      // RMSprop does not read the step count: a fixed 0 keeps the signature the same every step.
      const [np, os] = opt.update(g, { name: 'rmsprop', step: 0, slots: slots as never }, p, 1e-3);
      return { loss, params: np, state: ns, slots: os.slots };
    },
    { donate: [0, 1, 2] },
  );
  let params = model.params;
  let state = model.state;
  let slots = opt.init(params).slots;
  let n = 0;
  const run = () => {
    const r = step(params, state, slots, E.random.foldIn(key, 100 + n++));
    [params, state, slots] = [r.params, r.state, r.slots];
    const l = E.item(r.loss);
    afterStep(n - 1 - WARM_UP); // n − 1 calls so far; the first (compiling) call and the warm-ups are steps ≤ 0
    return l;
  };
  const profiled = () => {
    const { result: r, profile } = step.profile(params, state, slots, E.random.foldIn(key, 100 + n++));
    [params, state, slots] = [r.params, r.state, r.slots];
    return profile;
  };
  // lower() after the first call finds the cached entry (the same signature).
  return timeCompiled(run, () => step.lower(params, state, slots, key), profiled);
}

async function tfjs(backend: 'cpu' | 'wasm' | 'webgpu') {
  const { tf, note } = await loadTfjs(backend);
  if (high) throw new Error('tfjs peer: no full-split model');
  const model = tfjsEfficientNetB0(tf, low, 1);
  const x = tf.randomNormal([batch, low, low, 3]);
  const y = tf.tensor2d(Float32Array.from({ length: batch }, (_, i) => i % 2), [batch, 1]);
  process.stderr.write(`${note}\n`);
  extra = { note };
  const countDispatches = backend === 'webgpu' ? webgpuDispatchCounter() : null;
  type T = import('@tensorflow/tfjs').Tensor;
  // tfjs-webgpu reads back only asynchronously in Node (its dataSync needs OffscreenCanvas); so does ours there.
  const read = async (t: T) => (backend === 'webgpu' ? await t.data() : t.dataSync());
  if (kind === 'inference') {
    const ts = await time(async () => {
      const out = tf.tidy(() => model.predict(x) as T);
      await read(out);
      out.dispose();
    }, reps);
    if (countDispatches) extra.dispatchesPerStep = countDispatches() / calls;
    return ts;
  }
  const opt = tf.train.rmsprop(1e-3, 0.99, 0, 1e-8);
  const ts = await time(async () => {
    const loss = opt.minimize(() => tf.losses.sigmoidCrossEntropy(y, model.apply(x, { training: true }) as T) as import('@tensorflow/tfjs').Scalar, true);
    if (loss) await read(loss);
    loss?.dispose();
  }, reps);
  if (countDispatches) extra.dispatchesPerStep = countDispatches() / calls;
  return ts;
}

/** Counts compute dispatches on the `webgpu` package's pass encoders (tfjs-webgpu records them on this thread). */
function webgpuDispatchCounter(): () => number {
  const proto = (globalThis as unknown as { GPUComputePassEncoder: { prototype: { dispatchWorkgroups: (...a: number[]) => void } } }).GPUComputePassEncoder.prototype;
  const dispatch = proto.dispatchWorkgroups;
  let n = 0;
  proto.dispatchWorkgroups = function (this: unknown, ...a: number[]) {
    n++;
    return dispatch.apply(this, a);
  };
  return () => n;
}

const run: Record<string, () => Promise<number[]>> = {
  cpu: () => ours('cpu', false),
  gpu: () => ours('gpu', false),
  'cpu-jit': () => ours('cpu', true),
  'gpu-jit': () => ours('gpu', true),
  'tfjs-wasm': () => tfjs('wasm'),
  'tfjs-cpu': () => tfjs('cpu'),
  'tfjs-webgpu': () => tfjs('webgpu'),
};
if (!run[engine]) throw new Error(`model-workload: unknown engine '${engine}' (${Object.keys(run).join(', ')})`);
const ts = await run[engine]();
const out: Record<string, unknown> = { medianMs: median(ts), samples: ts.length, peakRssMb: peakRssMb(), ...extra, ...jitStats };
if (kind === 'steady') {
  const k = 20;
  out.firstMedianMs = median(ts.slice(0, k));
  out.lastMedianMs = median(ts.slice(-k));
  out.rssMbAfter = process.memoryUsage().rss / MB;
  out.memoryAt = memoryAt;
  const last = ts.length, before = memoryAt[last - 100];
  if (before && memoryAt[last]) out.rssGrowthLast100Pct = round1(((memoryAt[last].rssMb - before.rssMb) / before.rssMb) * 100);
}
console.log(JSON.stringify(out));
process.exit(0);
