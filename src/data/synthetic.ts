/**
 * The built-in data set: deterministic synthetic "lesions" (irregular pigmented blobs on varied
 * skin tones, with hairs, sensor noise and vignetting) where the class lives only in a fine texture
 * — a grating or dot lattice with a period of 3–5 pixels over the whole field of view, skin and
 * lesion alike, so that any window of the full-resolution image shows it — which a resize to the
 * low-res input averages away. Classes 0 and 1 draw colour, shape, position, hairs and vignetting
 * from the same distributions, and the texture is zero-mean (a multiplicative swing of up to 25–35 %
 * that never clips), so the low-res view carries no signal: the benchmark on which the stochastic
 * (high-res) branches can show their point. test/data/synthetic.test.ts measures both sides. The
 * texture lives at the image's own pixel scale, so train with highSize equal to the generated
 * size (shrinking the high-res view by 2× destroys it too).
 *
 * Same seed, count and size → byte-identical PNGs (per-image parameters from Threefry keys,
 * per-pixel noise from a seeded mulberry32 stream, sharp's PNG encoder with fixed settings).
 */
import * as TE from 'fp-ts/lib/TaskEither.js';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { type Key, foldIn, key, permutation, uniformArray } from '../tensor/random.ts';
import { type DataError, DataErrors } from './errors.ts';
import type { SyntheticJob } from './synthetic-worker.ts';

export interface SyntheticOptions {
  /** Output folder; default `<project>/.cache/synthetic-<seed>-<count>-<size>`. */
  readonly dir?: string;
  /** Number of images (half of each class). Default 240. */
  readonly count?: number;
  /** Side in pixels (≥ 64; the issue's default 1024). */
  readonly size?: number;
  readonly seed?: number;
  /** Texture period range in pixels. Default [3, 5]. */
  readonly period?: readonly [number, number];
  /**
   * Generator threads (default 1: rendering on one thread already overlaps with PNG encoding in
   * sharp's pool, which is the larger cost, and each extra thread pays ~1 s to load tsx). The
   * bytes do not depend on it.
   */
  readonly workers?: number;
}

/** The generator's defaults: full-resolution 1024-px images, like the paper's high-resolution input. */
export const SYNTHETIC_DEFAULTS = { count: 240, size: 1024, seed: 1337, period: [3, 5] as const };
/**
 * What the built-in training run uses so it finishes in minutes on 2 CPU cores: 256-px images, the
 * high-res branch at 256 (the texture needs the full resolution) and the low-res input at 32 (8×
 * smaller: the texture is gone).
 */
export const SYNTHETIC_TRAIN_DEFAULTS = { count: 960, size: 256, seed: 1337, highSize: 256, lowSize: 32 } as const;

/** Bumped whenever the renderer changes, so stale caches are regenerated. */
const GENERATOR_VERSION = 5;
const PROJECT_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const syntheticDir = (seed: number, count: number, size: number): string => join(PROJECT_ROOT, '.cache', `synthetic-${seed}-${count}-${size}`);

/** mulberry32: a fast 32-bit stream for per-pixel noise, seeded from a Threefry key. */
function mulberry(k: Key): () => number {
  let a = (k.k0 ^ Math.imul(k.k1, 0x9e3779b1)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const lerp = (a: number, b: number, t: number) => a + (b - a) * t;
/** The texture is a brownish modulation, added (zero mean) to the pigment. */
const TEX_TINT = [1, 0.8, 0.65];
/** The largest texture amplitude (relative to the local brightness), before the lattice's peak factor √2. */
const TEX_MAX = 0.35;

/** Smooth field Σ c·cos(fx·x + φx)·cos(fy·y + φy)/Σc in [−1, 1], as per-axis tables (no per-pixel trig). */
interface Field {
  readonly cols: readonly Float32Array[];
  readonly rows: readonly Float32Array[];
}
function smoothField(u: Float64Array, off: number, terms: number, size: number, minPeriod: number, maxPeriod: number): Field {
  const cols: Float32Array[] = [];
  const rows: Float32Array[] = [];
  let norm = 0;
  const amps: number[] = [];
  for (let t = 0; t < terms; t++) amps.push(0.5 + 0.5 * u[off + 5 * t + 4]);
  for (const a of amps) norm += a;
  for (let t = 0; t < terms; t++) {
    const q = off + 5 * t;
    const px = lerp(minPeriod, maxPeriod, u[q]);
    const py = lerp(minPeriod, maxPeriod, u[q + 1]);
    const cx = new Float32Array(size);
    const cy = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      cx[i] = Math.cos((2 * Math.PI * i) / px + 2 * Math.PI * u[q + 2]);
      cy[i] = (amps[t] / norm) * Math.cos((2 * Math.PI * i) / py + 2 * Math.PI * u[q + 3]);
    }
    cols.push(cx);
    rows.push(cy);
  }
  return { cols, rows };
}

/** Row y of a field, into `out`. */
function fieldRow(f: Field, y: number, out: Float32Array): Float32Array {
  out.fill(0);
  for (let t = 0; t < f.cols.length; t++) {
    const c = f.cols[t];
    const r = f.rows[t][y];
    for (let x = 0; x < out.length; x++) out[x] += r * c[x];
  }
  return out;
}

/**
 * Renders one image as interleaved 8-bit RGB. `label` switches only the texture; every other
 * parameter comes from `k` alone, so an image's twin of the other class differs only by the texture.
 */
export function renderLesion(k: Key, label: 0 | 1, size: number, period: readonly [number, number] = SYNTHETIC_DEFAULTS.period): Uint8Array {
  const S = size;
  const u = uniformArray(k, 128);
  // Per-pixel noise: an inline xorshift32 stream seeded from the key (fast; statistical quality is ample for sensor noise).
  let xs = (mulberry(foldIn(k, 1))() * 4294967296) >>> 0 || 0x9e3779b9;
  const out = new Uint8Array(S * S * 3);

  // Skin: a tone between light and dark, smooth mottling.
  const tone = u[0];
  const skin = [lerp(212, 125, tone), lerp(180, 84, tone), lerp(160, 62, tone)];
  const mottle = smoothField(u, 60, 3, S, S / 2.5, S * 1.2);
  // Lesion shape: centre, radius with a few harmonics, soft edge.
  const cx = S * (0.5 + 0.2 * (u[1] - 0.5));
  const cy = S * (0.5 + 0.2 * (u[2] - 0.5));
  const R = S * lerp(0.17, 0.3, u[3]);
  const harm = Array.from({ length: 5 }, (_, h) => ({ k: h + 2, a: (0.16 * u[4 + 2 * h]) / (h + 1), phi: 2 * Math.PI * u[5 + 2 * h] }));
  // Radius by "diamond angle" (a monotone stand-in for atan2 in [0, 4)), tabulated.
  const NB = 4096;
  const radius = new Float32Array(NB + 1);
  for (let b = 0; b <= NB; b++) {
    const da = (4 * b) / NB;
    const [ux, uy] = da < 1 ? [1 - da, da] : da < 2 ? [1 - da, 2 - da] : da < 3 ? [da - 3, 2 - da] : [da - 3, da - 4];
    const th = Math.atan2(uy, ux);
    radius[b] = R * (1 + harm.reduce((s, h) => s + h.a * Math.cos(h.k * th + h.phi), 0));
  }
  const edge = S * lerp(0.006, 0.03, u[14]);
  // Pigment: colour, density with blotches, a darker or lighter rim.
  const dark = u[15];
  const pigment = [lerp(120, 45, dark), lerp(72, 26, dark), lerp(48, 20, dark)];
  const blotch = smoothField(u, 75, 3, S, S / 9, S / 3);
  const blotchAmp = lerp(0.1, 0.35, u[16]);
  const rim = lerp(-0.25, 0.25, u[17]);
  // Class texture (label 1): zero-mean grating or dot lattice, period 3–5 px, random orientation, everywhere.
  const p = lerp(period[0], period[1], u[18]);
  const alpha = Math.PI * u[19];
  const lattice = u[20] < 0.5;
  const texAmp = lerp(0.25, 0.35, u[21]); // relative to the local brightness
  const fx = (2 * Math.PI * Math.cos(alpha)) / p;
  const fy = (2 * Math.PI * Math.sin(alpha)) / p;
  const gcx = new Float32Array(S), gsx = new Float32Array(S), gcy = new Float32Array(S), gsy = new Float32Array(S);
  // Second axis of the lattice (perpendicular): cos(−fy·x + fx·y).
  const hcx = new Float32Array(S), hsx = new Float32Array(S), hcy = new Float32Array(S), hsy = new Float32Array(S);
  for (let i = 0; i < S; i++) {
    gcx[i] = Math.cos(fx * i); gsx[i] = Math.sin(fx * i);
    gcy[i] = Math.cos(fy * i + 2 * Math.PI * u[22]); gsy[i] = Math.sin(fy * i + 2 * Math.PI * u[22]);
    hcx[i] = Math.cos(-fy * i); hsx[i] = Math.sin(-fy * i);
    hcy[i] = Math.cos(fx * i + 2 * Math.PI * u[23]); hsy[i] = Math.sin(fx * i + 2 * Math.PI * u[23]);
  }
  const texEnvelope = smoothField(u, 90, 2, S, S / 4, S / 1.5);
  // Vignetting and an optional dermoscope ring.
  const vig = lerp(0.15, 0.5, u[24]);
  const ring = u[25] < 0.4 ? S * lerp(0.5, 0.62, u[26]) : Infinity;
  const sigma = lerp(1, 2.5, u[27]);

  const half = S / 2;
  // Shading by squared radius from the image centre (vignetting, ring), as a table.
  const NV = 4096;
  const shadeLut = new Float32Array(NV + 1);
  for (let i = 0; i <= NV; i++) {
    const vr2 = (2 * i) / NV;
    shadeLut[i] = Math.sqrt(vr2) * half > ring ? 0.04 : 1 - vig * 0.6 * vr2 * Math.sqrt(Math.sqrt(vr2));
  }
  const mot = new Float32Array(S), blo = new Float32Array(S), env = new Float32Array(S);
  const noiseScale = sigma / 104.5; // a sum of two uniform bytes has std 104.5
  const lim2 = (R * 1.8) ** 2;
  for (let y = 0; y < S; y++) {
    // The smooth fields have periods ≥ S/9: refreshing them every 4th row is invisible.
    if ((y & 3) === 0) {
      fieldRow(mottle, y, mot);
      fieldRow(blotch, y, blo);
      if (label === 1) fieldRow(texEnvelope, y, env);
    }
    const dy = y + 0.5 - cy;
    const vy = (y + 0.5 - half) / half;
    const gy0 = gcy[y], gy1 = gsy[y], hy0 = hcy[y], hy1 = hsy[y];
    for (let x = 0; x < S; x++) {
      const dx = x + 0.5 - cx;
      const r2 = dx * dx + dy * dy;
      let m = 0;
      let r = 0;
      if (r2 < lim2) {
        r = Math.sqrt(r2);
        const ax = dx < 0 ? -dx : dx;
        const ay = dy < 0 ? -dy : dy;
        const q = dy / (ax + ay);
        const da = dy >= 0 ? (dx >= 0 ? q : 2 - q) : dx < 0 ? 2 - q : 4 + q;
        const rb = radius[(da * (NB / 4) + 0.5) | 0];
        const t = (rb - r) / edge;
        m = t >= 1 ? 1 : t <= -1 ? 0 : 0.5 + 0.5 * Math.sin((t * Math.PI) / 2);
      }
      const sk = 1 + 0.05 * mot[x];
      let d = 0;
      let tex = 0;
      if (m > 0) {
        const rr = r / (R * 1.3);
        d = m * (0.75 + blotchAmp * blo[x] + rim * rr * rr);
        if (d > 1) d = 1;
      }
      if (label === 1) {
        let g = gcx[x] * gy0 - gsx[x] * gy1; // cos(fx·x + fy·y + φ)
        if (lattice) g *= Math.SQRT2 * (hcx[x] * hy0 - hsx[x] * hy1);
        tex = texAmp * (0.7 + 0.3 * env[x]) * g;
      }
      const vx = (x + 0.5 - half) / half;
      const vr2 = vx * vx + vy * vy;
      const shade = shadeLut[vr2 >= 2 ? NV : ((vr2 * NV) / 2) | 0];
      const o = 3 * (y * S + x);
      // Triangular noise per channel: the sum of two uniform bytes of the stream, std ≈ sigma.
      xs ^= xs << 13; xs ^= xs >>> 17; xs ^= xs << 5;
      const w1 = xs >>> 0;
      xs ^= xs << 13; xs ^= xs >>> 17; xs ^= xs << 5;
      const w2 = xs >>> 0;
      for (let ch = 0; ch < 3; ch++) {
        const plain = skin[ch] * sk + (pigment[ch] - skin[ch] * sk) * d;
        // Multiplicative, with the swing capped where it would clip at 255 (a smooth function of
        // the plain value, so the texture stays zero-mean).
        const swing = Math.min(TEX_TINT[ch] * plain, (250 - plain) / (Math.SQRT2 * TEX_MAX));
        const base = plain + tex * swing;
        const bits = ch === 0 ? w1 : ch === 1 ? w1 >>> 16 : w2;
        const v = base * shade + ((bits & 0xff) + ((bits >>> 8) & 0xff) - 255) * noiseScale;
        out[o + ch] = v < 0 ? 0 : v > 255 ? 255 : v + 0.5;
      }
    }
  }
  drawHairs(out, S, u, foldIn(k, 2));
  return out;
}

/** 0–3 dark hairs: quadratic Bézier curves, 1–2.5 px wide (at 512 px), soft edges. */
function drawHairs(img: Uint8Array, S: number, u: Float64Array, k: Key): void {
  const n = Math.floor(u[30] * 4);
  const h = uniformArray(k, n * 10);
  const scale = S / 512;
  for (let i = 0; i < n; i++) {
    const q = 10 * i;
    const p0 = [h[q] * S, -0.05 * S], p2 = [h[q + 1] * S, 1.05 * S];
    const p1 = [lerp(-0.2, 1.2, h[q + 2]) * S, lerp(0.2, 0.8, h[q + 3]) * S];
    if (h[q + 4] < 0.5) { // horizontal-ish instead of vertical-ish
      [p0[0], p0[1]] = [p0[1], p0[0]]; [p1[0], p1[1]] = [p1[1], p1[0]]; [p2[0], p2[1]] = [p2[1], p2[0]];
    }
    const w = scale * lerp(0.5, 1.25, h[q + 5]);
    const col = [lerp(20, 70, h[q + 6]), lerp(14, 45, h[q + 6]), lerp(10, 30, h[q + 6])];
    const opacity = lerp(0.6, 0.95, h[q + 7]);
    const steps = Math.ceil(3 * S);
    const stamped = new Uint8Array(S * S);
    for (let s = 0; s <= steps; s++) {
      const t = s / steps;
      const x = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0];
      const y = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1];
      const rad = Math.ceil(w + 1);
      for (let yy = Math.floor(y) - rad; yy <= Math.floor(y) + rad; yy++) {
        if (yy < 0 || yy >= S) continue;
        for (let xx = Math.floor(x) - rad; xx <= Math.floor(x) + rad; xx++) {
          if (xx < 0 || xx >= S || stamped[yy * S + xx]) continue;
          const ex = xx + 0.5 - x;
          const ey = yy + 0.5 - y;
          const dist = Math.sqrt(ex * ex + ey * ey);
          if (dist > w + 0.5) continue;
          if (dist <= w - 0.5) stamped[yy * S + xx] = 1; // fully covered: done for this hair
          const cov = opacity * Math.min(1, w + 0.5 - dist);
          const o = 3 * (yy * S + xx);
          for (let ch = 0; ch < 3; ch++) img[o + ch] = Math.round(img[o + ch] + cov * (col[ch] - img[o + ch]));
        }
      }
    }
  }
}

/** PNG with fixed settings (deterministic bytes). */
const encodePng = (rgb: Uint8Array, size: number): Promise<Buffer> =>
  sharp(rgb, { raw: { width: size, height: size, channels: 3 } }).png({ compressionLevel: 3, adaptiveFiltering: false, palette: false }).toBuffer();

const syntheticName = (i: number) => `syn_${String(i).padStart(5, '0')}`;

/** Renders and writes images i ≡ part (mod parts) into `<dir>/images` (what each generator thread runs). */
export async function writeSyntheticImages(job: SyntheticJob): Promise<void> {
  const inflight = new Set<Promise<void>>();
  for (let i = job.part; i < job.labels.length; i += job.parts) {
    const rgb = renderLesion(syntheticKey(job.seed, i), job.labels[i] as 0 | 1, job.size, job.period);
    // Let up to 2 PNG encodes run in sharp's pool while the next image renders.
    const p: Promise<void> = encodePng(rgb, job.size).then((png) => writeFile(join(job.dir, 'images', `${syntheticName(i)}.png`), png)).finally(() => inflight.delete(p));
    inflight.add(p);
    if (inflight.size >= 2) await Promise.race(inflight);
  }
  await Promise.all(inflight);
}

/** The labels of a synthetic set: exactly half are class 1, in a seeded order. */
export function syntheticLabels(seed: number, count: number): Uint8Array {
  const perm = permutation(foldIn(key(seed), 0x5e7), count);
  const labels = new Uint8Array(count);
  for (let i = 0; i < Math.floor(count / 2); i++) labels[perm[i]] = 1;
  return labels;
}

/** The key of image i (independent of count, so a larger set extends a smaller one). */
export const syntheticKey = (seed: number, i: number): Key => foldIn(foldIn(key(seed), 0x1e5), i);

/**
 * Generates the set if its folder is not already complete, and returns the folder
 * (`labels.csv` with image_name,target + `images/syn_00000.png` …; read it with loadDataset).
 * @example const dir = await ensureSynthetic({ count: 240, size: 512, seed: 1337 })();
 */
export function ensureSynthetic(opts: SyntheticOptions = {}): TE.TaskEither<DataError, string> {
  const count = opts.count ?? SYNTHETIC_DEFAULTS.count;
  const size = opts.size ?? SYNTHETIC_DEFAULTS.size;
  const seed = opts.seed ?? SYNTHETIC_DEFAULTS.seed;
  const period = opts.period ?? SYNTHETIC_DEFAULTS.period;
  if (!(Number.isInteger(count) && count >= 2)) throw new Error(`ensureSynthetic: count must be an integer ≥ 2, got ${count}`);
  if (!(Number.isInteger(size) && size >= 64)) throw new Error(`ensureSynthetic: size must be an integer ≥ 64, got ${size}`);
  const dir = resolve(opts.dir ?? syntheticDir(seed, count, size));
  const meta = JSON.stringify({ generator: GENERATOR_VERSION, seed, count, size, period }, null, 1);
  return TE.tryCatch(
    async () => {
      const metaFile = join(dir, 'synthetic.json');
      if (existsSync(metaFile) && (await readFile(metaFile, 'utf8')) === meta) return dir;
      const tmp = `${dir}.tmp-${process.pid}`;
      await rm(tmp, { recursive: true, force: true });
      await mkdir(join(tmp, 'images'), { recursive: true });
      const labels = syntheticLabels(seed, count);
      const names = Array.from({ length: count }, (_, i) => syntheticName(i));
      const parts = Math.max(1, Math.min(opts.workers ?? 1, Math.ceil(count / 8)));
      if (parts === 1) await writeSyntheticImages({ dir: tmp, seed, size, period, labels, part: 0, parts: 1 });
      else {
        await Promise.all(Array.from({ length: parts }, (_, part) => new Promise<void>((res, rej) => {
          const job: SyntheticJob = { dir: tmp, seed, size, period, labels, part, parts };
          const w = new Worker(new URL('./worker-boot.mjs', import.meta.url), { workerData: { entry: new URL('./synthetic-worker.ts', import.meta.url).href, job } });
          w.once('message', (m: { ok: boolean; error?: string }) => (m.ok ? res() : rej(new Error(m.error))));
          w.once('error', rej);
          w.once('exit', (code) => (code === 0 ? res() : rej(new Error(`synthetic worker exited with code ${code}`))));
        })));
      }
      await writeFile(join(tmp, 'labels.csv'), `image_name,target\n${names.map((n, i) => `${n},${labels[i]}`).join('\n')}\n`);
      await writeFile(join(tmp, 'synthetic.json'), meta);
      await rm(dir, { recursive: true, force: true });
      await rename(tmp, dir);
      return dir;
    },
    (e) => DataErrors.io(dir, 'write', e),
  );
}

