/**
 * The server's inference thread: one worker (data/worker-boot.mjs running inference-worker.ts under
 * tsx) that holds the model and answers one request at a time, so the HTTP thread stays free for
 * the page, /api/info and reading uploads while an image is being explained. A worker that dies
 * (an uncaught error, running out of memory, an exit) fails the request in flight with a 500 and is
 * replaced by a fresh one for the next request.
 */
import { Worker } from 'node:worker_threads';
import type { InferenceWorkerData } from './inference-worker.ts';
import { HttpError, type PredictBody } from './predict.ts';

interface Job {
  readonly id: number;
  readonly resolve: (b: PredictBody) => void;
  readonly reject: (e: Error) => void;
}

type Reply = { type: 'ready' } | { type: 'failed'; error: string } | { id: number; ok: true; body: PredictBody } | { id: number; ok: false; status: number; error: string; stack?: string };

export class InferenceWorker {
  private worker: Worker | null = null;
  private ready: Promise<void> = Promise.resolve();
  /** Fails a start() still waiting for the model (when the server closes first). */
  private abortStart: ((e: Error) => void) | null = null;
  private job: Job | null = null;
  private nextId = 1;
  private closed = false;
  /** Worker threads started so far: 1, plus one per replaced worker. */
  starts = 0;

  constructor(private readonly spec: InferenceWorkerData) {}

  /** Starts the worker unless one is alive; resolves once it has restored the model. */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new HttpError(503, 'the server is shutting down'));
    if (this.worker) return this.ready;
    const worker = new Worker(new URL('../data/worker-boot.mjs', import.meta.url), {
      workerData: { entry: new URL('./inference-worker.ts', import.meta.url).href, ...this.spec },
    });
    this.worker = worker;
    this.starts++;
    // The HTTP server keeps the process alive; an idle inference thread must not.
    worker.unref();
    this.ready = new Promise<void>((resolve, reject) => {
      this.abortStart = reject;
      let served = false;
      worker.on('message', (m: Reply) => {
        if ('type' in m) {
          if (m.type === 'ready') {
            served = true;
            resolve();
          } else {
            reject(new HttpError(500, `the inference worker cannot load the model: ${m.error}`));
            this.drop(worker);
          }
          return;
        }
        const job = this.job;
        if (!job || job.id !== m.id) return;
        this.job = null;
        if (m.ok) job.resolve(m.body);
        else {
          if (m.stack) process.stderr.write(`serve: inference failed: ${m.stack}\n`);
          job.reject(new HttpError(m.status, m.error));
        }
      });
      const died = (why: string) => {
        if (this.worker !== worker) return;
        const e = new HttpError(500, `the inference worker ${why}; a fresh worker serves the next request`);
        reject(e);
        this.drop(worker);
        this.job?.reject(e);
        this.job = null;
        // A worker that had loaded the model is replaced now; one that died while starting is
        // retried by the next request rather than in a loop.
        if (served && !this.closed) void this.start().catch(() => undefined);
      };
      worker.on('error', (e) => died(`crashed (${e.message})`));
      worker.on('exit', (code) => died(`exited with code ${code}`));
    });
    // Nobody may be waiting yet (the server starts the worker eagerly): a failure is reported by run().
    this.ready.catch(() => undefined);
    return this.ready;
  }

  /** Forgets `worker` (it is stopped; the next start() spawns another). */
  private drop(worker: Worker): void {
    if (this.worker !== worker) return;
    this.worker = null;
    worker.removeAllListeners('exit');
    worker.removeAllListeners('error');
    worker.on('error', () => undefined);
    void worker.terminate();
  }

  /** Explains one image in the worker. The caller runs one at a time (the server's queue). */
  async run(bytes: Uint8Array, tta: number): Promise<PredictBody> {
    await this.start();
    const worker = this.worker;
    if (!worker) throw new HttpError(500, 'the inference worker stopped before the request was sent; a fresh worker serves the next request');
    if (this.job) throw new Error('InferenceWorker.run: one request at a time');
    return new Promise<PredictBody>((resolve, reject) => {
      this.job = { id: this.nextId++, resolve, reject };
      worker.postMessage({ id: this.job.id, bytes, tta });
    });
  }

  /** Stops the worker; a request in flight, or waiting for the model, fails with 503. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.abortStart?.(new HttpError(503, 'the server is shutting down'));
    this.job?.reject(new HttpError(503, 'the server is shutting down'));
    this.job = null;
    if (worker) {
      this.drop(worker);
      await worker.terminate();
    }
  }

  /** Stops the worker thread as a crash would: the request in flight gets the 500, the next one a fresh worker (the tests' way to exercise recovery). */
  kill(): Promise<number> {
    return this.worker ? this.worker.terminate() : Promise.resolve(0);
  }
}
