/**
 * Pre-resizing a dataset into a cache, as the paper did: images larger than 3048 px are
 * centre-cropped to 2048, then every image is resized to 1024×1024 — so full ISIC epochs do not
 * decode 4000-px JPEGs every time. The folder layout and label files are kept, so the output is a
 * drop-in dataset folder; up-to-date outputs are reused.
 */
import * as TE from 'fp-ts/lib/TaskEither.js';
import { copyFile, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, extname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import { type DataError, DataErrors } from './errors.ts';
import type { Kernel } from './image.ts';

export interface PreResizeOptions {
  /** Output side (square). Default 1024. */
  readonly size?: number;
  /** Images whose longer side exceeds this are centre-cropped first. Default 3048. */
  readonly centerCropAbove?: number;
  /** The centre crop's side. Default 2048. */
  readonly cropTo?: number;
  /** JPEG quality of the outputs (PNGs stay PNG, losslessly). Default 95. */
  readonly quality?: number;
  readonly kernel?: Kernel;
  /** Parallel encodes. Default 2. */
  readonly concurrency?: number;
}

export interface PreResizeReport {
  readonly written: number;
  readonly reused: number;
  readonly copied: number;
  readonly failed: readonly { path: string; error: DataError }[];
}

const IMAGE = /\.(jpe?g|png)$/i;

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

/**
 * @example await preResize('data/isic2020', '.cache/isic2020-1024')();
 */
export function preResize(dirIn: string, dirOut: string, opts: PreResizeOptions = {}): TE.TaskEither<DataError, PreResizeReport> {
  const src = resolve(dirIn);
  const dst = resolve(dirOut);
  const size = opts.size ?? 1024;
  const above = opts.centerCropAbove ?? 3048;
  const cropTo = opts.cropTo ?? 2048;
  return TE.tryCatch(
    async () => {
      try {
        if (!(await stat(src)).isDirectory()) throw new Error('not a folder');
      } catch {
        throw DataErrors.missingFolder(src);
      }
      const files = (await walk(src)).sort();
      let written = 0;
      let reused = 0;
      let copied = 0;
      const failed: { path: string; error: DataError }[] = [];
      let next = 0;
      const one = async (file: string) => {
        const out = join(dst, relative(src, file));
        const [si, so] = await Promise.all([stat(file), stat(out).catch(() => null)]);
        if (so && so.mtimeMs >= si.mtimeMs) {
          reused++;
          return;
        }
        await mkdir(dirname(out), { recursive: true });
        if (!IMAGE.test(file)) {
          await copyFile(file, out);
          copied++;
          return;
        }
        try {
          const oriented = sharp(file, { failOn: 'truncated' }).rotate();
          const { data, info } = await oriented.flatten({ background: { r: 0, g: 0, b: 0 } }).toColourspace('srgb').removeAlpha().raw().toBuffer({ resolveWithObject: true });
          let img = sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } });
          if (Math.max(info.width, info.height) > above) {
            const w = Math.min(cropTo, info.width);
            const h = Math.min(cropTo, info.height);
            img = sharp(await img.extract({ left: (info.width - w) >> 1, top: (info.height - h) >> 1, width: w, height: h }).raw().toBuffer(), { raw: { width: w, height: h, channels: 3 } });
          }
          img = img.resize(size, size, { fit: 'fill', kernel: opts.kernel ?? 'lanczos3' });
          const buf = extname(file).toLowerCase() === '.png' ? await img.png({ compressionLevel: 6 }).toBuffer() : await img.jpeg({ quality: opts.quality ?? 95 }).toBuffer();
          await writeFile(out, buf);
          written++;
        } catch (e) {
          failed.push({ path: file, error: DataErrors.corruptImage(file, (e instanceof Error ? e.message : String(e)).split('\n')[0]) });
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 2) }, async () => {
        while (next < files.length) await one(files[next++]);
      }));
      return { written, reused, copied, failed };
    },
    (e) => (typeof e === 'object' && e !== null && '_tag' in e ? (e as DataError) : DataErrors.io(dst, 'write', e)),
  );
}
