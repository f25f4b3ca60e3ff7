/**
 * The local web demo: a static page and `POST /api/predict`, which takes a JPEG or PNG as the
 * request body (Content-Type image/jpeg, image/png or application/octet-stream) or as the
 * multipart/form-data field `image`, and answers `{ probability, … }` with the Grad-CAM overlay and,
 * for stochastic models, the window map as PNG data URLs. Inference runs one request at a time
 * (a FIFO queue) in a worker thread (inference.ts), so the page and /api/info answer while an image
 * is being explained; bad uploads get a 4xx JSON `{ error }` naming what was wrong, and a worker
 * that dies gets a 500 and is replaced.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import busboy from 'busboy';
import type { ModelConfig } from '../nn/efficientnet.ts';
import { InferenceWorker } from './inference.ts';
import { HttpError, sniffImage } from './predict.ts';

export { sniffImage } from './predict.ts';

/** The checkpoint the inference worker restores, and its model's configuration (for /api/info). */
export interface ServeModel {
  /** A checkpoint folder or a run folder (as `restore` takes it). */
  readonly checkpoint: string;
  readonly config: ModelConfig;
  /** Backend of the inference worker (default cpu). */
  readonly backend?: 'cpu' | 'gpu';
}

export interface ServeOptions {
  /** Largest accepted upload in MiB (default 20). */
  readonly maxUploadMb?: number;
  /** The seed of the stochastic windows (a run's seed, as `npm run predict` uses). */
  readonly seed: number;
  /** Class name of the one-output model's positive class (default 'melanoma'). */
  readonly className?: string;
  /** Largest TTA a request may ask for (default 8). */
  readonly maxTta?: number;
  /** Requests waiting beyond this many get 503 (default 64). */
  readonly maxQueue?: number;
}

/** The HTTP server with its inference thread (stopped when the server closes). */
export type Server = http.Server & { readonly inference: InferenceWorker };

const PAGE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public', 'index.html');

const send = (res: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
};

const RAW_TYPES = new Set(['image/jpeg', 'image/jpg', 'image/png', 'application/octet-stream']);

/** Reads the upload (raw body or multipart field `image`) up to `limit` bytes; 4xx errors for everything else. */
function readUpload(req: http.IncomingMessage, limit: number): Promise<{ bytes: Buffer; fields: Record<string, string> }> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  const declared = Number(req.headers['content-length'] ?? NaN);
  const mb = String(Number((limit / 2 ** 20).toFixed(2)));
  if (Number.isFinite(declared) && declared > limit + (type === 'multipart/form-data' ? 64 * 1024 : 0)) {
    return Promise.reject(new HttpError(413, `the upload is ${(declared / 2 ** 20).toFixed(1)} MiB, over the ${mb} MiB limit (--max-upload-mb)`));
  }
  if (type === 'multipart/form-data') {
    return new Promise((resolve, reject) => {
      let bb: busboy.Busboy;
      try {
        bb = busboy({ headers: req.headers, limits: { fileSize: limit, files: 1, fields: 8 } });
      } catch (e) {
        reject(new HttpError(400, `malformed multipart body: ${(e as Error).message}`));
        return;
      }
      const fields: Record<string, string> = {};
      let bytes: Buffer | null = null;
      let failed: HttpError | null = null;
      bb.on('field', (name, value) => (fields[name] = value));
      bb.on('file', (name, stream) => {
        const chunks: Buffer[] = [];
        if (name !== 'image') {
          stream.resume();
          return;
        }
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('limit', () => (failed = new HttpError(413, `the image is over the ${mb} MiB limit (--max-upload-mb)`)));
        stream.on('end', () => (bytes = Buffer.concat(chunks)));
      });
      bb.on('error', (e: Error) => reject(new HttpError(400, `malformed multipart body: ${e.message}`)));
      bb.on('close', () => {
        if (failed) reject(failed);
        else if (bytes === null) reject(new HttpError(400, "no file field 'image' in the multipart form"));
        else resolve({ bytes, fields });
      });
      req.pipe(bb);
    });
  }
  if (!RAW_TYPES.has(type)) {
    req.resume();
    return Promise.reject(new HttpError(415, `unsupported content type '${type || '(none)'}': send the image as image/jpeg, image/png or application/octet-stream, or as the multipart/form-data field 'image'`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) over = true;
      else chunks.push(c);
    });
    req.on('end', () => (over ? reject(new HttpError(413, `the image is over the ${mb} MiB limit (--max-upload-mb)`)) : resolve({ bytes: Buffer.concat(chunks), fields: {} })));
    req.on('error', reject);
  });
}

/** The server (not yet listening). */
export function createServer(model: ServeModel, opts: ServeOptions): Server {
  const className = opts.className ?? 'melanoma';
  const inference = new InferenceWorker({ checkpoint: model.checkpoint, backend: model.backend ?? 'cpu', seed: opts.seed, className });
  // Restore the model now, so the first upload does not wait for it.
  void inference.start().catch(() => undefined);
  const limit = Math.round((opts.maxUploadMb ?? 20) * 2 ** 20);
  const maxTta = opts.maxTta ?? 8;
  const maxQueue = opts.maxQueue ?? 64;
  let queue: Promise<unknown> = Promise.resolve();
  let waiting = 0;
  // Inferences running now and the most ever seen at once (reported by /api/info; the queue keeps it at 1).
  let active = 0;
  let maxActive = 0;
  /** Runs `task` after every earlier one (one inference at a time). */
  const enqueue = <T>(task: () => Promise<T>): Promise<T> => {
    if (waiting >= maxQueue) return Promise.reject(new HttpError(503, `busy: ${waiting} requests are queued; try again shortly`));
    waiting++;
    const counted = async () => {
      maxActive = Math.max(maxActive, ++active);
      try {
        return await task();
      } finally {
        active--;
      }
    };
    const run = queue.then(counted, counted);
    queue = run.catch(() => undefined).finally(() => waiting--);
    return run;
  };
  const stochastic = model.config.stochOutSize !== null;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}`);
      const page = fs.readFileSync(PAGE);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': page.length });
      res.end(req.method === 'HEAD' ? undefined : page);
      return;
    }
    if (url.pathname === '/api/info') {
      send(res, 200, { model: model.config.name, stochastic, maxTta, maxUploadMb: limit / 2 ** 20, className, queued: waiting, maxConcurrentInferences: maxActive, workerRestarts: inference.starts - 1 });
      return;
    }
    if (url.pathname !== '/api/predict') throw new HttpError(404, `no such page: ${url.pathname}`);
    if (req.method !== 'POST') throw new HttpError(405, `use POST on /api/predict (got ${req.method})`);
    const { bytes, fields } = await readUpload(req, limit);
    if (bytes.length === 0) throw new HttpError(400, 'the upload is empty');
    if (!sniffImage(bytes)) throw new HttpError(415, 'the upload is not a JPEG or PNG image');
    const rawTta = url.searchParams.get('tta') ?? fields.tta ?? '1';
    const tta = Number(rawTta);
    if (!Number.isInteger(tta) || tta < 1 || tta > maxTta) throw new HttpError(400, `tta must be an integer from 1 to ${maxTta}, got '${rawTta}'`);
    send(res, 200, await enqueue(() => inference.run(bytes, tta)));
  };
  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) process.stderr.write(`serve: ${e instanceof HttpError ? e.message : ((e as Error)?.stack ?? String(e))}\n`);
      if (!res.headersSent) send(res, status, { error: e instanceof Error ? e.message : String(e) });
      else res.end();
      // Drain what the client still sends so it reads the answer instead of a reset connection.
      req.resume();
    });
  });
  server.on('close', () => void inference.close());
  return Object.assign(server, { inference });
}
