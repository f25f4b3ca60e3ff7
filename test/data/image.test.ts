import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as D from '../../src/data/index.ts';
import { key } from '../../src/tensor/random.ts';
import { left, right, tempDir, writeImage } from './fixtures.ts';

const { dir, cleanup } = tempDir('image');
afterAll(cleanup);


/** A square test card: gradient background and a bright 6×6 marker at (mx, my). */
function card(n: number, mx: number, my: number): D.RawImage {
  const data = new Uint8Array(n * n * 3);
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    const o = 3 * (y * n + x);
    const on = Math.abs(x - mx) < 3 && Math.abs(y - my) < 3;
    data[o] = on ? 255 : 20 + (x & 15);
    data[o + 1] = on ? 255 : 20 + (y & 15);
    data[o + 2] = on ? 255 : 30;
  }
  return { data, width: n, height: n };
}
/** Centroid of the (near-)white pixels. */
function marker(img: D.RawImage): [number, number] {
  let sx = 0, sy = 0, w = 0;
  for (let i = 0; i < img.width * img.height; i++) {
    const v = Math.min(img.data[3 * i], img.data[3 * i + 1], img.data[3 * i + 2]);
    if (v > 80) {
      const wt = v - 80;
      sx += wt * ((i % img.width) + 0.5);
      sy += wt * (Math.floor(i / img.width) + 0.5);
      w += wt;
    }
  }
  return [sx / w, sy / w];
}

beforeAll(async () => {
  await writeImage(join(dir, 'rgb.jpg'), { w: 48, h: 40 });
  const gray = new Uint8Array(32 * 24).map((_, i) => i & 255);
  await sharp(gray, { raw: { width: 32, height: 24, channels: 1 } }).jpeg().toFile(join(dir, 'gray.jpg'));
  await sharp(join(dir, 'rgb.jpg')).toColourspace('cmyk').jpeg().toFile(join(dir, 'cmyk.jpg'));
  const rgba = new Uint8Array(16 * 16 * 4).map((_, i) => (i % 4 === 3 ? (i < 512 ? 0 : 255) : 200));
  await sharp(rgba, { raw: { width: 16, height: 16, channels: 4 } }).png().toFile(join(dir, 'alpha.png'));
  await sharp(join(dir, 'rgb.jpg')).withMetadata({ orientation: 6 }).jpeg().toFile(join(dir, 'exif6.jpg'));
  await sharp(new Uint8Array(20 * 10 * 3).map((_, i) => i), { raw: { width: 20, height: 10, channels: 3 } }).toColourspace('rgb16').png().toFile(join(dir, 'deep.png'));
  const full = readFileSync(join(dir, 'rgb.jpg'));
  writeFileSync(join(dir, 'truncated.jpg'), full.subarray(0, Math.floor(full.length * 0.6)));
  writeFileSync(join(dir, 'garbage.jpg'), Buffer.from('this is not an image at all'));
});

describe('decodeImage', () => {
  it('gives 8-bit RGB for RGB, grayscale, CMYK and alpha inputs', async () => {
    const rgb = right(await D.decodeImage(join(dir, 'rgb.jpg'))());
    expect([rgb.width, rgb.height, rgb.data.length]).toEqual([48, 40, 48 * 40 * 3]);
    const g = right(await D.decodeImage(join(dir, 'gray.jpg'))());
    expect(g.data.length).toBe(32 * 24 * 3);
    for (let i = 0; i < 32 * 24; i++) expect(g.data[3 * i]).toBe(g.data[3 * i + 2]);
    const c = right(await D.decodeImage(join(dir, 'cmyk.jpg'))());
    expect(c.data.length).toBe(48 * 40 * 3);
    let diff = 0;
    for (let i = 0; i < c.data.length; i++) diff += Math.abs(c.data[i] - rgb.data[i]);
    expect(diff / c.data.length).toBeLessThan(25); // CMYK round trip through an ICC transform, not exact
    const a = right(await D.decodeImage(join(dir, 'alpha.png'))());
    expect(Array.from(a.data.subarray(0, 3))).toEqual([0, 0, 0]); // transparent → flattened on black
    expect(Array.from(a.data.subarray(a.data.length - 3))).toEqual([200, 200, 200]);
    const deep = right(await D.decodeImage(join(dir, 'deep.png'))()); // 16-bit PNG → 8-bit
    expect(Array.from(deep.data.subarray(0, 6))).toEqual([0, 1, 2, 3, 4, 5]);
  });
  it('honours EXIF orientation', async () => {
    const r = right(await D.decodeImage(join(dir, 'exif6.jpg'))());
    expect([r.width, r.height]).toEqual([40, 48]);
  });
  it('shrinks to a short side, squashes to a square, checks a minimum size', async () => {
    const s = right(await D.decodeImage(join(dir, 'rgb.jpg'), { shortSide: 20 })());
    expect([s.width, s.height]).toEqual([24, 20]);
    const q = right(await D.decodeImage(join(dir, 'rgb.jpg'), { square: 64 })());
    expect([q.width, q.height]).toEqual([64, 64]);
    const e = left(await D.decodeImage(join(dir, 'rgb.jpg'), { minSize: 41 })());
    expect(e).toMatchObject({ _tag: 'ImageTooSmall', width: 48, height: 40, min: 41 });
  });
  it('names the file of a truncated, corrupt or missing image', async () => {
    for (const f of ['truncated.jpg', 'garbage.jpg', 'missing.jpg']) {
      const e = left(await D.decodeImage(join(dir, f))());
      expect(e._tag).toBe('CorruptImage');
      expect(D.renderDataError(e)).toMatch(new RegExp(`cannot decode .*${f.replace('.', '\\.')}: \\S`));
      expect(D.renderDataError(e)).not.toContain('\n');
    }
  });
});

describe('augmentation', () => {
  it('draws parameters from the key: crops inside the image with area 0.6–1, angles within ±180°', () => {
    for (let s = 0; s < 200; s++) {
      const p = D.sampleAugment(key(s), 300, 200);
      expect(p.crop.x).toBeGreaterThanOrEqual(0);
      expect(p.crop.y).toBeGreaterThanOrEqual(0);
      expect(p.crop.x + p.crop.w).toBeLessThanOrEqual(300);
      expect(p.crop.y + p.crop.h).toBeLessThanOrEqual(200);
      const area = (p.crop.w * p.crop.h) / (300 * 200);
      expect(area).toBeGreaterThan(0.58);
      expect(area).toBeLessThan(1.02);
      expect(Math.abs(p.angle)).toBeLessThanOrEqual(180);
      expect(D.sampleAugment(key(s), 300, 200)).toEqual(p);
    }
  });
  it('identity, flips and quarter turns are exact', () => {
    const n = 24;
    const src = card(n, 5, 8);
    const id = D.identityParams(n, n);
    expect(D.warp(src, id, n).data).toEqual(src.data);
    const h = D.warp(src, { ...id, hflip: true }, n);
    const v = D.warp(src, { ...id, vflip: true }, n);
    const r = D.warp(src, { ...id, angle: 90 }, n);
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) for (let c = 0; c < 3; c++) {
      expect(h.data[3 * (y * n + x) + c]).toBe(src.data[3 * (y * n + (n - 1 - x)) + c]);
      expect(v.data[3 * (y * n + x) + c]).toBe(src.data[3 * ((n - 1 - y) * n + x) + c]);
      // +90° turns clockwise on screen (y down): out(x, y) = src(col y, row n − 1 − x)
      expect(r.data[3 * (y * n + x) + c]).toBe(src.data[3 * ((n - 1 - x) * n + y) + c]);
    }
  });
  it('high and low views share one geometry', async () => {
    const src = card(160, 50, 110);
    for (let s = 0; s < 6; s++) {
      let p = D.sampleAugment(key(100 + s), 160, 160);
      // keep the marker inside the crop so it is visible in both views
      p = { ...p, crop: { x: 20, y: 40, w: 120, h: 100 } };
      const { high, low } = await D.augmentPair(src, p, { highSize: 128, lowSize: 32 });
      expect([high.width, low.width]).toEqual([128, 32]);
      const [hx, hy] = marker(high);
      const [lx, ly] = marker(low);
      expect(Math.abs(lx * 4 - hx)).toBeLessThan(3);
      expect(Math.abs(ly * 4 - hy)).toBeLessThan(3);
      // and the marker went where the parameters say: undo rotation and flips, then the crop
      const c = 64;
      const th = (p.angle * Math.PI) / 180;
      let xr = c + Math.cos(th) * (hx - c) + Math.sin(th) * (hy - c);
      let yr = c - Math.sin(th) * (hx - c) + Math.cos(th) * (hy - c);
      if (p.hflip) xr = 128 - xr;
      if (p.vflip) yr = 128 - yr;
      expect(Math.abs(20 + (xr * 120) / 128 - 50)).toBeLessThan(1.5);
      expect(Math.abs(40 + (yr * 100) / 128 - 110)).toBeLessThan(1.5);
    }
  });
  it('normalises with the ImageNet mean/std into planar float32', () => {
    const img = { data: new Uint8Array([255, 0, 128, 0, 255, 128]), width: 2, height: 1 };
    const out = Array.from(D.normalise(img));
    const f = (v: number, c: number) => (v / 255 - D.IMAGENET_MEAN[c]) / D.IMAGENET_STD[c];
    const want = [f(255, 0), f(0, 0), f(0, 1), f(255, 1), f(128, 2), f(128, 2)];
    out.forEach((v, i) => expect(v).toBeCloseTo(want[i], 5));
  });
  it('processImage: shapes, value range, determinism per key, no augmentation on request', async () => {
    const path = await writeImage(join(dir, 'p.png'), { w: 80, h: 64, seed: 3 });
    const opts = { sides: { low: 16, high: 64 }, augment: true } as const;
    const a = right(await D.processImage(path, key(7), opts)());
    expect(a.low!.length).toBe(3 * 16 * 16);
    expect(a.high!.length).toBe(3 * 64 * 64);
    const lo = Math.min(...[0, 1, 2].map((c) => -D.IMAGENET_MEAN[c] / D.IMAGENET_STD[c]));
    const hi = Math.max(...[0, 1, 2].map((c) => (1 - D.IMAGENET_MEAN[c]) / D.IMAGENET_STD[c]));
    for (const v of [...a.low!, ...a.high!]) {
      expect(v).toBeGreaterThanOrEqual(lo - 1e-6);
      expect(v).toBeLessThanOrEqual(hi + 1e-6);
    }
    expect(right(await D.processImage(path, [...[key(7).k0, key(7).k1]] as [number, number], opts)()).high).toEqual(a.high);
    expect(right(await D.processImage(path, key(8), opts)()).high).not.toEqual(a.high);
    const plain = right(await D.processImage(path, key(7), { ...opts, augment: false })());
    expect(plain.params).toBeNull();
    expect(right(await D.processImage(path, key(9), { ...opts, augment: false })()).high).toEqual(plain.high);
    const views = right(await D.augmentedViews(path, 3, 5, opts)());
    expect(views).toHaveLength(3);
    expect(views[1].high).not.toEqual(views[0].high);
    expect(right(await D.augmentedViews(path, 3, 5, opts)())[2].high).toEqual(views[2].high);
    const single = right(await D.processImage(path, key(7), { sides: { low: 24, high: null }, augment: true })());
    expect([single.low!.length, single.high]).toEqual([3 * 24 * 24, null]);
    // A high-res view alone (a pure-stochastic model's input) is the same warp, under its own name.
    const highOnly = right(await D.processImage(path, key(7), { sides: { low: null, high: 24 }, augment: true })());
    expect([highOnly.low, highOnly.high]).toEqual([null, single.low]);
    expect(() => D.processImage(path, key(7), { sides: { low: null, high: null }, augment: true })).toThrow(/processImage: sides must be .* at least one given/);
  });
});

describe('preResize', () => {
  it('centre-crops big images, resizes all to a square, keeps label files, reuses outputs', async () => {
    const src = join(dir, 'pre-in');
    await writeImage(join(src, 'images', 'big.jpg'), { w: 120, h: 90 });
    await writeImage(join(src, 'images', 'small.png'), { w: 40, h: 30 });
    writeFileSync(join(src, 'labels.csv'), 'image_name,target\nbig,1\nsmall,0\n');
    writeFileSync(join(src, 'images', 'bad.jpg'), 'nope');
    const out = join(dir, 'pre-out');
    const r = right(await D.preResize(src, out, { size: 32, centerCropAbove: 100, cropTo: 60 })());
    expect(r).toMatchObject({ written: 2, copied: 1 });
    expect(r.failed.map((f) => f.error._tag)).toEqual(['CorruptImage']);
    const m = await sharp(join(out, 'images', 'big.jpg')).metadata();
    expect([m.width, m.height]).toEqual([32, 32]);
    expect(readFileSync(join(out, 'labels.csv'), 'utf8')).toContain('big,1');
    const again = right(await D.preResize(src, out, { size: 32, centerCropAbove: 100, cropTo: 60 })());
    expect(again).toMatchObject({ written: 0, reused: 3 });
    expect(left(await D.preResize(join(dir, 'nowhere'), out)())).toMatchObject({ _tag: 'MissingFolder' });
  });
});
