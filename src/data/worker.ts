/**
 * Loader worker thread: decodes each task's file (or takes the decoded image the task carries) and
 * runs the rest of the pipeline, sending the arrays back (transferred), and the decoded image too
 * when the task asks for it (for the loader's image cache).
 */
import { parentPort } from 'node:worker_threads';
import * as E from 'fp-ts/lib/Either.js';
import sharp from 'sharp';
import { type PipelineOptions, type RawImage, processWithSource } from './image.ts';

/** A task as posted by the pool. */
export interface WorkerTask {
  readonly id: number;
  readonly path: string;
  readonly key: readonly [number, number];
  readonly opts: PipelineOptions;
  /** The file already decoded with `decodeOptionsFor(opts)` (from the image cache): no decode. */
  readonly source?: RawImage;
  /** Send the decoded image back with the result. */
  readonly keepSource?: boolean;
}

// One libvips thread per worker: the pool is the parallelism. No operation cache: every file is new.
sharp.concurrency(1);
sharp.cache(false);

const port = parentPort;
if (!port) throw new Error('data/worker.ts must run in a worker thread');
port.on('message', async (t: WorkerTask) => {
  const r = await processWithSource(t.path, t.source, t.key, t.opts)();
  if (E.isLeft(r)) {
    port.postMessage({ id: t.id, error: r.left });
    return;
  }
  const { low, high, params } = r.right.processed;
  // The decoded image as an own buffer (sharp's may be a view into a pooled one), transferred.
  const src = r.right.source;
  const source = t.keepSource && !t.source ? { ...src, data: src.data.slice() } : undefined;
  const transfer = [low, high, source?.data].flatMap((v) => (v ? [v.buffer as ArrayBuffer] : []));
  port.postMessage({ id: t.id, low, high, params, source }, transfer);
});
