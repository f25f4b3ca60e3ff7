/** Shared bench plumbing: tinybench medians as uniform JSON rows. */
import v8 from 'node:v8';
import { Bench } from 'tinybench';

export type Pass = 'forward' | 'forward+backward' | 'train-step' | 'inference' | 'throughput';

export interface Row {
  readonly suite: string;
  readonly name: string;
  readonly backend: string;
  readonly pass: Pass;
  readonly medianMs: number;
  readonly samples: number;
  readonly [extra: string]: unknown;
}

export interface Suite {
  readonly name: string;
  readonly description: string;
  /** Runs the cases whose full name (`suite/name backend pass`) contains `filter`. */
  run(opts: { filter?: string; quick?: boolean; backend?: string }): Promise<Row[]>;
}

export interface MeasureOptions {
  /** Minimum time to spend (ms) and minimum samples; the median is reported. */
  readonly time?: number;
  readonly iterations?: number;
  readonly warmup?: number;
}

/** The median of `xs` (the mean of the two middle values for an even count); NaN for none. */
export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Median wall time of `fn` in ms (tinybench, with warm-up). */
export async function measure(fn: () => unknown | Promise<unknown>, opts: MeasureOptions = {}): Promise<{ medianMs: number; samples: number }> {
  const bench = new Bench({
    time: opts.time ?? 500,
    iterations: opts.iterations ?? 5,
    warmup: true,
    warmupIterations: opts.warmup ?? 1,
    warmupTime: 0,
  });
  // The event loop turns between iterations (outside the timing), as in a program's loop that awaits its data: the
  // GC's finalizers run there, e.g. the ones that return collected tensors' wasm-heap storage (cpu fast/heap.ts).
  bench.add('case', fn, { afterEach: () => new Promise<void>((r) => setImmediate(r)) });
  await bench.run();
  const r = bench.tasks[0].result as any;
  if (!r || r.error || r.state === 'errored') throw r?.error ?? new Error('bench case failed');
  const lat = r.latency ?? r;
  const samples: number[] | undefined = lat.samples;
  const mid = lat.p50 ?? lat.median ?? (samples ? median(samples) : NaN);
  return { medianMs: mid, samples: lat.samplesCount ?? samples?.length ?? 0 };
}

/** What `measurePaired` measured: each function's median, and the first's time ÷ the second's per pair, in order. */
export interface Paired {
  readonly a: { medianMs: number; samples: number };
  readonly b: { medianMs: number; samples: number };
  readonly ratios: number[];
}

/**
 * `a` and `b` timed in turns in this process, after their warm-ups: pair k times both, one right after the other
 * (a first in even pairs, b first in odd ones, so neither always inherits the other's collector debt), until
 * `opts.time` ms have passed and at least `opts.iterations` pairs are taken. The per-pair ratios do not depend on
 * how fast the machine is that second, where two medians taken minutes apart do. The event loop turns after each
 * call, outside the timing, as in `measure`.
 */
export async function measurePaired(a: () => unknown, b: () => unknown, opts: MeasureOptions = {}): Promise<Paired> {
  const turn = () => new Promise<void>((r) => setImmediate(r));
  const timed = async (fn: () => unknown) => {
    const t0 = performance.now();
    await fn();
    const ms = performance.now() - t0;
    await turn();
    return ms;
  };
  for (let k = 0; k < (opts.warmup ?? 1); k++) for (const fn of [a, b]) await timed(fn);
  const as: number[] = [], bs: number[] = [];
  const t0 = performance.now();
  for (let k = 0; k < (opts.iterations ?? 5) || performance.now() - t0 < (opts.time ?? 500); k++) {
    if (k % 2 === 0) {
      as.push(await timed(a));
      bs.push(await timed(b));
    } else {
      bs.push(await timed(b));
      as.push(await timed(a));
    }
  }
  return { a: { medianMs: median(as), samples: as.length }, b: { medianMs: median(bs), samples: bs.length }, ratios: as.map((x, k) => x / bs[k]) };
}

/** Whether a row (its suite, name, backend, pass) is selected by `--filter`: a comma-separated list, any of which it contains. */
export function matches(filter: string | undefined, ...parts: string[]): boolean {
  const row = parts.join(' ').toLowerCase();
  return !filter || filter.split(',').some((f) => f.trim() !== '' && row.includes(f.trim().toLowerCase()));
}

/**
 * Bytes `fn` allocated on the JS heap, garbage included: the growth of the used heap plus what each garbage
 * collection during `fn` freed (v8.GCProfiler). A difference of `heapUsed` alone misses every collection in between.
 * An upper bound: garbage left before `fn` that a collection during it frees counts too (take the least of a few
 * measurements where that matters).
 */
export function heapBytesAllocated(fn: () => void): number {
  const profiler = new v8.GCProfiler();
  profiler.start();
  const before = v8.getHeapStatistics().used_heap_size;
  fn();
  const after = v8.getHeapStatistics().used_heap_size;
  let freed = 0;
  for (const gc of profiler.stop().statistics) freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
  return after - before + freed;
}
