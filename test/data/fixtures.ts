/** Tiny generated images and label files for the data tests (built in a temp folder per test file). */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { type DataError, renderDataError } from '../../src/data/index.ts';

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `stochconv-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A w×h RGB gradient (distinct per `seed`) written as JPEG or PNG. */
export async function writeImage(path: string, opts: { w?: number; h?: number; seed?: number; format?: 'jpeg' | 'png' } = {}): Promise<string> {
  const w = opts.w ?? 32;
  const h = opts.h ?? 32;
  const s = opts.seed ?? 0;
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const o = 3 * (y * w + x);
    data[o] = (x * 7 + s * 31) & 255;
    data[o + 1] = (y * 5 + s * 17) & 255;
    data[o + 2] = (x + y + s * 53) & 255;
  }
  mkdirSync(dirname(path), { recursive: true });
  const img = sharp(data, { raw: { width: w, height: h, channels: 3 } });
  await ((opts.format ?? (path.endsWith('.png') ? 'png' : 'jpeg')) === 'png' ? img.png() : img.jpeg({ quality: 90 })).toFile(path);
  return path;
}

export function writeText(path: string, text: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
  return path;
}

/** ../shared/data/isic-sample beside the repository (real ISIC images; absent on some machines). */
export const SHARED_SAMPLE = fileURLToPath(new URL('../../../shared/data/isic-sample', import.meta.url));
/** Whether it is here, and the reason a test names when it is skipped. */
export const SAMPLE_HERE = existsSync(join(SHARED_SAMPLE, 'labels.csv'));
export const sampleTitle = (title: string): string => (SAMPLE_HERE ? title : `${title} (skipped: ${SHARED_SAMPLE}/labels.csv not found)`);

type Result<A> = { _tag: 'Left'; left: DataError } | { _tag: 'Right'; right: A };
/** The Right of an Either, or a failure that renders the DataError. */
export const right = <A>(e: Result<A>): A => {
  if (e._tag === 'Left') throw new Error(renderDataError(e.left));
  return e.right;
};
/** The Left of an Either (the test expects a failure). */
export const left = <A>(e: Result<A>): DataError => {
  if (e._tag === 'Right') throw new Error('expected a Left');
  return e.left;
};
