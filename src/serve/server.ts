/**
 * The local web demo: a static page and `POST /api/predict`, which takes a JPEG or PNG as the
 * request body (Content-Type image/jpeg, image/png or application/octet-stream) or as the
 * multipart/form-data field `image`, and answers `{ probability, … }` with the Grad-CAM overlay and,
 * for stochastic models, the window map as PNG data URLs. Inference runs one request at a time
 * (a FIFO queue); bad uploads get a 4xx JSON `{ error }` naming what was wrong.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import busboy from 'busboy';
import * as E from 'fp-ts/lib/Either.js';
import { renderDataError } from '../data/errors.ts';
import { emptyNote, explainInput, loadImageInput } from '../inspect/explain.ts';
import { overlayHeat, rawPng } from '../inspect/render.ts';
import { normaliseMap, resizeArea } from '../inspect/maps.ts';
import { resizeRaw } from '../data/image.ts';
import type { Model } from '../nn/model.ts';

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

const PAGE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'public', 'index.html');

/** An HTTP failure with its status and message for the client. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const send = (res: http.ServerResponse, status: number, body: unknown) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
};

/** JPEG (FF D8 FF) or PNG (89 50 4E 47) by their signatures. */
export function sniffImage(b: Buffer): 'jpeg' | 'png' | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b.readUInt32BE(0) === 0x89504e47 && b.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  return null;
}

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

const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;

/** The JSON answer for one image: probability, overlays (data URLs) and what produced them. */
async function predictBytes(model: Model, bytes: Buffer, tta: number, opts: ServeOptions) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stochconv-serve-'));
  const file = path.join(tmp, sniffImage(bytes) === 'png' ? 'upload.png' : 'upload.jpg');
  try {
    fs.writeFileSync(file, bytes);
    const img = await loadImageInput(file, model.config)();
    if (E.isLeft(img)) throw new HttpError(422, renderDataError(img.left).replace(file, 'the upload').replace(/^data: /, ''));
    const e = explainInput(model, img.right, { tta, seed: opts.seed });
    const S = 320;
    const overlay = e.heat ? dataUrl(await rawPng(overlayHeat(e.image, e.heat), S)) : null;
    let windowMap: string | null = null;
    if (e.high && e.highHeat) {
      const H = e.high.width;
      const small = H > 2 * S ? await resizeRaw(e.high, 2 * S) : e.high;
      windowMap = dataUrl(await rawPng(overlayHeat(small, normaliseMap(resizeArea(e.highHeat, H, H, small.width, small.width)).map), S));
    }
    return {
      probability: e.probability,
      className: opts.className ?? 'melanoma',
      model: e.model,
      passes: e.passes,
      layer: e.layer,
      image: dataUrl(await rawPng(e.image, S)),
      overlay,
      windowMap,
      // ' (no positive evidence)' when a map is zero everywhere, else ''.
      overlayNote: e.heat ? emptyNote(e.heat) : '',
      windowMapNote: e.highHeat ? emptyNote(e.highHeat) : '',
      windows: e.topWindows.map((w) => ({ row: w.row, col: w.col, side: e.slice, importance: w.importance })),
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** The server (not yet listening). */
export function createServer(model: Model, opts: ServeOptions): http.Server {
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
      send(res, 200, { model: model.config.name, stochastic, maxTta, maxUploadMb: limit / 2 ** 20, className: opts.className ?? 'melanoma', queued: waiting, maxConcurrentInferences: maxActive });
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
    send(res, 200, await enqueue(() => predictBytes(model, bytes, tta, opts)));
  };
  return http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) process.stderr.write(`serve: ${(e as Error)?.stack ?? String(e)}\n`);
      if (!res.headersSent) send(res, status, { error: e instanceof Error ? e.message : String(e) });
      else res.end();
      // Drain what the client still sends so it reads the answer instead of a reset connection.
      req.resume();
    });
  });
}
