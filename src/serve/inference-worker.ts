/**
 * Inference worker thread of `npm run serve`: restores the checkpoint once, then answers each
 * `{ id, bytes, tta }` with `{ id, ok: true, body }` or `{ id, ok: false, status, error }`. Started
 * through data/worker-boot.mjs (tsx in the thread) by inference.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as E from 'fp-ts/lib/Either.js';
import { restore } from '../train/restore.ts';
import { HttpError, type PredictOptions, predictBytes } from './predict.ts';

/** What the thread is started with (its workerData besides `entry`). */
export interface InferenceWorkerData extends PredictOptions {
  readonly checkpoint: string;
  readonly backend: 'cpu' | 'gpu';
}

/** A request from the server. */
export interface InferenceRequest {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly tta: number;
}

const port = parentPort;
if (!port) throw new Error('serve/inference-worker.ts must run in a worker thread');
const spec = workerData as InferenceWorkerData;
const r = await restore(spec.checkpoint, spec.backend);
if (E.isLeft(r)) port.postMessage({ type: 'failed', error: r.left.message });
else {
  const model = { config: r.right.mc, params: r.right.params, state: r.right.state };
  port.on('message', async ({ id, bytes, tta }: InferenceRequest) => {
    try {
      port.postMessage({ id, ok: true, body: await predictBytes(model, bytes, tta, spec) });
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      port.postMessage({ id, ok: false, status, error: e instanceof Error ? e.message : String(e), stack: status === 500 ? (e as Error)?.stack : undefined });
    }
  });
  port.postMessage({ type: 'ready' });
}
