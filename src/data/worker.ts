/** Loader worker thread: runs `processImage` for each task and sends the arrays back (transferred). */
import { parentPort } from 'node:worker_threads';
import sharp from 'sharp';
import { type PipelineOptions, processImage } from './image.ts';

/** A task as posted by the pool. */
export interface WorkerTask {
  readonly id: number;
  readonly path: string;
  readonly key: readonly [number, number];
  readonly opts: PipelineOptions;
}

// One libvips thread per worker: the pool is the parallelism. No operation cache: every file is new.
sharp.concurrency(1);
sharp.cache(false);

const port = parentPort;
if (!port) throw new Error('data/worker.ts must run in a worker thread');
port.on('message', async (t: WorkerTask) => {
  const r = await processImage(t.path, t.key, t.opts)();
  if (r._tag === 'Left') {
    port.postMessage({ id: t.id, error: r.left });
    return;
  }
  const { low, high, params } = r.right;
  const transfer = [low, high].flatMap((v) => (v ? [v.buffer as ArrayBuffer] : []));
  port.postMessage({ id: t.id, low, high, params }, transfer);
});
