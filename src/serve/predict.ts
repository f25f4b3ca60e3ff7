/**
 * One upload through the model, as the inference worker runs it: the image decoded through the
 * evaluation pipeline (so the probability equals `npm run predict`'s), explained, and drawn as the
 * JSON body `POST /api/predict` answers.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { renderDataError } from '../data/errors.ts';
import { resizeRaw } from '../data/image.ts';
import { emptyNote, explainInput, loadImageInput } from '../inspect/explain.ts';
import { normaliseMap, resizeArea } from '../inspect/maps.ts';
import { overlayHeat, rawPng } from '../inspect/render.ts';
import type { Model } from '../nn/model.ts';

/** An HTTP failure with its status and message for the client. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** JPEG (FF D8 FF) or PNG (89 50 4E 47) by their signatures. */
export function sniffImage(b: Uint8Array): 'jpeg' | 'png' | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'png';
  return null;
}

/** What the predictions are drawn with: the windows' seed (a run's, as `npm run predict` uses) and the class name. */
export interface PredictOptions {
  readonly seed: number;
  readonly className: string;
}

/** The answer of `POST /api/predict`: probability, overlays (PNG data URLs) and what produced them. */
export interface PredictBody {
  readonly probability: number;
  readonly className: string;
  readonly model: string;
  readonly passes: number;
  /** The Grad-CAM layer. */
  readonly layer: string | null;
  readonly image: string;
  readonly overlay: string | null;
  readonly windowMap: string | null;
  /** ' (no positive evidence)' when a map is zero everywhere, else ''. */
  readonly overlayNote: string;
  readonly windowMapNote: string;
  readonly windows: readonly { row: number; col: number; side: number; importance: number }[];
}

const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;

/** Explains one uploaded image with `tta` window draws; a file that does not decode is a 422. */
export async function predictBytes(model: Model, bytes: Uint8Array, tta: number, opts: PredictOptions): Promise<PredictBody> {
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
      className: opts.className,
      model: e.model,
      passes: e.passes,
      layer: e.layer,
      image: dataUrl(await rawPng(e.image, S)),
      overlay,
      windowMap,
      overlayNote: e.heat ? emptyNote(e.heat) : '',
      windowMapNote: e.highHeat ? emptyNote(e.highHeat) : '',
      windows: e.topWindows.map((w) => ({ row: w.row, col: w.col, side: e.slice, importance: w.importance })),
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
