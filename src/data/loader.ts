/**
 * Batches of tensors from image items: seeded shuffling (or class-balanced sampling), decoding and
 * augmentation in a pool of worker threads that works `prefetch` batches ahead of the consumer.
 * With an image cache, each file is decoded once (at the working size) and later epochs only
 * augment. Unreadable images are skipped and reported per batch (or thrown with `strict`); nothing
 * crashes mid-epoch.
 */
import { Worker } from 'node:worker_threads';
import * as E from 'fp-ts/lib/Either.js';
import { type Key, foldIn, key, keyData, permutation, uniformArray } from '../tensor/random.ts';
import { type Tensor, fromArray } from '../tensor/tensor.ts';
import { type DataError, DataErrorException, DataErrors } from './errors.ts';
import { type AugmentOptions, type ImageSides, type Kernel, type PipelineOptions, type Processed, type RawImage, checkSides, decodeOptionsFor, processWithSource } from './image.ts';
import type { ImageCache } from './imagecache.ts';
import type { Item } from './readers.ts';
import type { WorkerTask } from './worker.ts';

export interface LoaderOptions {
  readonly batchSize: number;
  /** The views each batch carries, by side: a model's `config.sides`, or e.g. `{ low: 224, high: null }`. */
  readonly sides: ImageSides;
  /** Random resized crop 0.6–1, flips, rotation ±180° (validation: false, unless reproducing the paper). */
  readonly augment: boolean;
  readonly seed: number;
  /** Worker threads (0: decode on the main thread). Default 1. */
  readonly workers?: number;
  /** Batches decoded ahead of the consumer. Default 2. */
  readonly prefetch?: number;
  /** Seeded shuffle per epoch. Default true. */
  readonly shuffle?: boolean;
  /** Class-balanced sampling: each draw picks a class uniformly, then an image of it (with replacement). */
  readonly balanced?: boolean;
  /** The epoch iterated by `for await (const b of loader)`; `loader.epoch(e)` picks another. Default 0. */
  readonly epoch?: number;
  /** Drop a last, incomplete batch. Default false. */
  readonly dropLast?: boolean;
  /** Throw (DataErrorException) on the first unreadable image instead of skipping it. */
  readonly strict?: boolean;
  /** Skip images whose shorter side is below this (e.g. the high-res side). */
  readonly minSize?: number;
  readonly kernel?: Kernel;
  readonly augmentOptions?: AugmentOptions;
  /** `high` as uint8 bytes rather than normalised float32 (PipelineOptions.highBytes): what full-split models train on. */
  readonly highBytes?: boolean;
  /**
   * A pool from `createPool` to share between loaders (train and validation): each worker thread
   * costs ~1 s of CPU to start (tsx). When given, `workers` is ignored and `close()` leaves it running.
   */
  readonly pool?: WorkerPool;
  /**
   * Decoded images kept between epochs (`createImageCache`; share one between a run's loaders).
   * Batches are the same with or without it.
   */
  readonly cache?: ImageCache;
}

/** One batch; `inputOf` from the nn module turns its views into a model's input. */
export interface Batch {
  /** [B, 3, low, low], ImageNet-normalised, when `sides.low` is a number. */
  readonly low?: Tensor;
  /** [B, 3, high, high] when `sides.high` is a number: ImageNet-normalised float32, or uint8 bytes with `highBytes`. */
  readonly high?: Tensor;
  readonly labels: Float32Array;
  readonly names: string[];
  /** Images of this batch that could not be read (the batch is smaller by as many). */
  readonly skipped: { name: string; path: string; error: DataError }[];
  /** Batch index within the epoch. */
  readonly index: number;
}

export interface Loader extends AsyncIterable<Batch> {
  /** Batches per epoch. */
  readonly numBatches: number;
  /** The batches of epoch `e` (same seed and epoch → same order and augmentations). */
  epoch(e: number): AsyncIterable<Batch>;
  /** Every image skipped so far (all epochs). */
  readonly skipped: readonly { name: string; path: string; error: DataError; epoch: number }[];
  /** Stops the worker threads. */
  close(): Promise<void>;
}

/** A processed image, with the decoded source when the task asked for it (`keepSource`). */
type Result = { ok: true; value: Processed; source?: RawImage } | { ok: false; error: DataError };

interface Job {
  readonly task: Omit<WorkerTask, 'id'>;
  readonly gen: number;
  resolve(r: Result): void;
}

/** Worker threads that decode and augment for one or more loaders; `close()` stops them. */
export interface WorkerPool {
  readonly size: number;
  close(): Promise<void>;
}

/** Starts `size` worker threads to share between loaders (see LoaderOptions.pool). */
export const createPool = (size: number): WorkerPool => {
  if (!(Number.isInteger(size) && size >= 1)) throw new Error(`createPool: size must be an integer ≥ 1, got ${size}`);
  return new Pool(size);
};

/** A fixed set of worker threads with a FIFO queue; a dead worker's task fails and it is replaced. */
class Pool implements WorkerPool {
  private readonly slots: { worker: Worker; job: Job | null; id: number }[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  constructor(readonly size: number) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  private spawn(): { worker: Worker; job: Job | null; id: number } {
    const worker = new Worker(new URL('./worker-boot.mjs', import.meta.url), {
      workerData: { entry: new URL('./worker.ts', import.meta.url).href },
    });
    const slot = { worker, job: null as Job | null, id: 0 };
    worker.unref();
    type Message = { id: number; error?: DataError; low?: Float32Array | null; high?: Float32Array | Uint8Array | null; params?: Processed['params']; source?: RawImage };
    worker.on('message', (m: Message) => {
      const job = slot.job;
      if (!job || m.id !== slot.id) return;
      slot.job = null;
      const value = { low: m.low ?? null, high: m.high ?? null, params: m.params ?? null };
      job.resolve(m.error ? { ok: false, error: m.error } : { ok: true, value, ...(m.source ? { source: m.source } : {}) });
      this.pump();
    });
    worker.on('error', (e) => this.replace(slot, e));
    worker.on('exit', (code) => {
      if (!this.closed) this.replace(slot, new Error(`worker exited with code ${code}`));
    });
    return slot;
  }

  private replace(slot: { worker: Worker; job: Job | null; id: number }, e: Error): void {
    const i = this.slots.indexOf(slot);
    if (i < 0 || this.closed) return;
    const job = slot.job;
    slot.job = null;
    slot.worker.removeAllListeners();
    void slot.worker.terminate();
    this.slots[i] = this.spawn();
    if (job) job.resolve({ ok: false, error: DataErrors.corruptImage(job.task.path, `worker failed: ${e.message}`) });
    this.pump();
  }

  run(task: Omit<WorkerTask, 'id'>, gen: number): Promise<Result> {
    if (this.closed) return Promise.resolve({ ok: false, error: DataErrors.io(task.path, 'read', 'loader closed') });
    return new Promise((resolve) => {
      this.queue.push({ task, gen, resolve });
      this.pump();
    });
  }

  /** Drops queued (not yet started) jobs of an abandoned iteration. */
  cancel(gen: number): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      if (this.queue[i].gen === gen) {
        this.queue[i].resolve({ ok: false, error: DataErrors.io(this.queue[i].task.path, 'read', 'cancelled') });
        this.queue.splice(i, 1);
      }
    }
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.job || this.queue.length === 0) continue;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.id = this.nextId++;
      slot.worker.postMessage({ ...job.task, id: slot.id });
    }
    // Keep the process alive only while work is outstanding.
    for (const s of this.slots) (s.job ? s.worker.ref() : s.worker.unref());
  }

  async close(): Promise<void> {
    this.closed = true;
    const running = this.slots.flatMap((s) => (s.job ? [s.job] : []));
    for (const j of [...this.queue.splice(0), ...running]) j.resolve({ ok: false, error: DataErrors.io(j.task.path, 'read', 'loader closed') });
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}

/** The item order of one epoch: shuffled, balanced, or as given. */
export function epochOrder(items: readonly { label: number }[], opts: { seed: number; epoch: number; shuffle?: boolean; balanced?: boolean }): Int32Array {
  const ek = foldIn(key(opts.seed), opts.epoch);
  const n = items.length;
  if (opts.balanced) {
    const byClass = new Map<number, number[]>();
    items.forEach((it, i) => byClass.set(it.label, [...(byClass.get(it.label) ?? []), i]));
    const classes = [...byClass.keys()].sort((a, b) => a - b);
    const u = uniformArray(foldIn(ek, 1), 2 * n);
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const members = byClass.get(classes[Math.floor(u[2 * i] * classes.length)])!;
      out[i] = members[Math.floor(u[2 * i + 1] * members.length)];
    }
    return out;
  }
  if (opts.shuffle ?? true) return permutation(foldIn(ek, 0), n);
  return Int32Array.from({ length: n }, (_, i) => i);
}

/** The views of one side stacked into [B, 3, side, side] (undefined when the side was not asked for). */
function stackViews(side: number | null, views: readonly (Float32Array | Uint8Array | null)[]): Tensor | undefined {
  if (side === null) return undefined;
  const len = 3 * side * side;
  const out = views[0] instanceof Uint8Array ? new Uint8Array(views.length * len) : new Float32Array(views.length * len);
  views.forEach((v, i) => out.set(v!, i * len));
  return fromArray(out, [views.length, 3, side, side]);
}

/** The augmentation key of the image at `position` in epoch `epoch`'s order. */
export const sampleKey = (seed: number, epoch: number, position: number): Key => foldIn(foldIn(foldIn(key(seed), epoch), 2), position);

/**
 * Creates a loader. Iterate it (epoch `opts.epoch`) or `loader.epoch(e)`; call `close()` at the end.
 * @example
 * const loader = createLoader(split.train, { batchSize: 16, sides: { low: 64, high: 512 }, augment: true, seed: 1, workers: 2 });
 * for (let e = 0; e < 3; e++) for await (const b of loader.epoch(e)) step(b.low!, b.high!, b.labels);
 * await loader.close();
 */
export function createLoader(items: readonly Item[], opts: LoaderOptions): Loader {
  if (!(opts.batchSize >= 1)) throw new Error(`createLoader: batchSize must be ≥ 1, got ${opts.batchSize}`);
  checkSides('createLoader', opts.sides);
  const workers = opts.workers ?? 1;
  const prefetch = Math.max(0, opts.prefetch ?? 2);
  const shared = opts.pool instanceof Pool ? opts.pool : null;
  if (opts.pool && !shared) throw new Error('createLoader: pool must come from createPool');
  const pool = shared ?? (workers > 0 ? new Pool(workers) : null);
  const pipeline: PipelineOptions = {
    sides: opts.sides,
    augment: opts.augment,
    ...(opts.kernel ? { kernel: opts.kernel } : {}),
    ...(opts.minSize !== undefined ? { minSize: opts.minSize } : {}),
    ...(opts.augmentOptions ? { augmentOptions: opts.augmentOptions } : {}),
    ...(opts.highBytes ? { highBytes: true } : {}),
  };
  const numBatches = opts.dropLast ? Math.floor(items.length / opts.batchSize) : Math.ceil(items.length / opts.batchSize);
  const allSkipped: { name: string; path: string; error: DataError; epoch: number }[] = [];
  let gens = 0;
  let closed = false;

  // Inline mode runs one image at a time on this thread (sharp still uses its own threads).
  let inlineChain: Promise<unknown> = Promise.resolve();
  const abandoned = new Set<number>();
  const runTask = (task: Omit<WorkerTask, 'id'>, gen: number): Promise<Result> => {
    if (pool) return pool.run(task, gen);
    const p = inlineChain.then(async (): Promise<Result> => {
      if (abandoned.has(gen) || closed) return { ok: false, error: DataErrors.io(task.path, 'read', 'cancelled') };
      const r = await processWithSource(task.path, task.source, task.key, task.opts)();
      if (E.isLeft(r)) return { ok: false, error: r.left };
      return { ok: true, value: r.right.processed, ...(task.keepSource ? { source: r.right.source } : {}) };
    });
    inlineChain = p;
    return p;
  };
  // The image cache's key: the file and how it is decoded (two loaders may share a cache).
  const decodeKey = JSON.stringify(decodeOptionsFor(pipeline));
  const runOne = async (path: string, key: readonly [number, number], gen: number): Promise<Result> => {
    const cache = opts.cache;
    if (!cache) return runTask({ path, key, opts: pipeline }, gen);
    const ck = `${decodeKey}${path}`;
    const source = cache.get(ck);
    const r = await runTask({ path, key, opts: pipeline, ...(source ? { source } : { keepSource: cache.accepting }) }, gen);
    if (r.ok && r.source) cache.put(ck, r.source);
    return r;
  };

  const epoch = (e: number): AsyncIterable<Batch> => ({
    [Symbol.asyncIterator](): AsyncIterator<Batch> {
      if (closed) throw new Error('createLoader: loader is closed');
      const gen = gens++;
      const order = epochOrder(items, { seed: opts.seed, epoch: e, shuffle: opts.shuffle, balanced: opts.balanced });
      const pending = new Map<number, Promise<Result[]>>();
      const schedule = (b: number) => {
        if (b >= numBatches || pending.has(b)) return;
        const start = b * opts.batchSize;
        const end = Math.min(start + opts.batchSize, order.length);
        const jobs: Promise<Result>[] = [];
        for (let pos = start; pos < end; pos++) {
          const it = items[order[pos]];
          jobs.push(runOne(it.path, keyData(sampleKey(opts.seed, e, pos)), gen));
        }
        pending.set(b, Promise.all(jobs));
      };
      let b = 0;
      let carried: Batch['skipped'] = [];
      const next = async (): Promise<IteratorResult<Batch>> => {
        while (b < numBatches) {
          for (let k = b; k <= b + prefetch; k++) schedule(k);
          const results = await pending.get(b)!;
          pending.delete(b);
          const index = b++;
          const start = index * opts.batchSize;
          const okIdx: number[] = [];
          const skipped = carried;
          carried = [];
          results.forEach((r, j) => {
            const it = items[order[start + j]];
            if (r.ok) okIdx.push(j);
            else {
              if (opts.strict) throw new DataErrorException(r.error);
              skipped.push({ name: it.name, path: it.path, error: r.error });
              allSkipped.push({ name: it.name, path: it.path, error: r.error, epoch: e });
            }
          });
          if (okIdx.length === 0) {
            carried = skipped; // reported with the next non-empty batch
            continue;
          }
          const values = okIdx.map((j) => (results[j] as { ok: true; value: Processed }).value);
          const low = stackViews(opts.sides.low, values.map((v) => v.low));
          const high = stackViews(opts.sides.high, values.map((v) => v.high));
          const its = okIdx.map((j) => items[order[start + j]]);
          const batch: Batch = {
            ...(low ? { low } : {}),
            ...(high ? { high } : {}),
            labels: Float32Array.from(its, (it) => it.label),
            names: its.map((it) => it.name),
            skipped,
            index,
          };
          return { value: batch, done: false };
        }
        return { value: undefined, done: true };
      };
      const stop = async (): Promise<IteratorResult<Batch>> => {
        b = numBatches;
        pool?.cancel(gen);
        abandoned.add(gen);
        pending.clear();
        return { value: undefined, done: true };
      };
      return {
        next: () => next().catch(async (err) => {
          await stop();
          throw err;
        }),
        return: stop,
      };
    },
  });

  return {
    numBatches,
    epoch,
    get skipped() {
      return allSkipped;
    },
    [Symbol.asyncIterator]: () => epoch(opts.epoch ?? 0)[Symbol.asyncIterator](),
    async close() {
      closed = true;
      if (!shared) await pool?.close();
    },
  };
}
