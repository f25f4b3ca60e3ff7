import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as D from '../../src/data/index.ts';
import { dataSync } from '../../src/tensor/tensor.ts';
import { SAMPLE_HERE, SHARED_SAMPLE, sampleTitle, tempDir, writeImage } from './fixtures.ts';

const { dir, cleanup } = tempDir('loader');
afterAll(cleanup);

let items: D.Item[] = [];
beforeAll(async () => {
  items = await Promise.all(Array.from({ length: 10 }, async (_, i) => ({
    path: await writeImage(join(dir, `im${i}.${i % 2 ? 'png' : 'jpg'}`), { w: 48, h: 40, seed: i }),
    name: `im${i}`,
    label: i < 3 ? 1 : 0,
    source: dir,
  })));
});

const opts = { batchSize: 4, sides: { low: 8, high: 24 }, augment: true, seed: 11 } as const;

async function collect(loader: D.Loader, epoch = 0) {
  const out: { low: number[]; high: number[]; labels: number[]; names: string[]; skipped: string[] }[] = [];
  for await (const b of loader.epoch(epoch)) {
    expect(b.low!.shape).toEqual([b.names.length, 3, 8, 8]);
    expect(b.high!.shape).toEqual([b.names.length, 3, 24, 24]);
    out.push({ low: Array.from(dataSync(b.low!)), high: Array.from(dataSync(b.high!)), labels: Array.from(b.labels), names: b.names, skipped: b.skipped.map((s) => s.name) });
  }
  return out;
}

describe('createLoader', () => {
  it('gives the same labelled batches with and without worker threads', async () => {
    const inline = D.createLoader(items, { ...opts, workers: 0 });
    const pooled = D.createLoader(items, { ...opts, workers: 2, prefetch: 1 });
    const a = await collect(inline);
    const b = await collect(pooled);
    expect(a.map((x) => x.names.length)).toEqual([4, 4, 2]);
    expect(b).toEqual(a);
    for (const batch of a) batch.names.forEach((n, i) => expect(batch.labels[i]).toBe(items.find((it) => it.name === n)!.label));
    expect(new Set(a.flatMap((x) => x.names)).size).toBe(10);
    // another epoch: another order and other augmentations; the same epoch again: identical
    const e1 = await collect(pooled, 1);
    expect(e1.flatMap((x) => x.names)).not.toEqual(a.flatMap((x) => x.names));
    expect(await collect(pooled, 0)).toEqual(a);
    await inline.close();
    await pooled.close();
  });

  it('skips an unreadable image, reports it with its batch and overall, or throws in strict mode', async () => {
    const bad = join(dir, 'broken.jpg');
    writeFileSync(bad, 'not a jpeg');
    const withBad = [...items.slice(0, 5), { path: bad, name: 'broken', label: 0, source: dir }];
    const loader = D.createLoader(withBad, { ...opts, shuffle: false, workers: 1 });
    const got = await collect(loader);
    expect(got.map((b) => b.names.length)).toEqual([4, 1]);
    expect(got[1].skipped).toEqual(['broken']);
    expect(loader.skipped).toHaveLength(1);
    expect(loader.skipped[0].error).toMatchObject({ _tag: 'CorruptImage', file: bad });
    await loader.close();
    const strict = D.createLoader(withBad, { ...opts, shuffle: false, workers: 0, strict: true });
    await expect(collect(strict)).rejects.toThrow(/cannot decode .*broken\.jpg/);
    await strict.close();
  });

  it('loaders can share one worker pool', async () => {
    const pool = D.createPool(1);
    const a = D.createLoader(items.slice(0, 4), { ...opts, pool });
    const b = D.createLoader(items.slice(4, 8), { ...opts, augment: false, shuffle: false, pool });
    const ra = await collect(a);
    await a.close(); // leaves the shared pool running
    const rb = await collect(b);
    expect(rb.flatMap((x) => x.names)).toEqual(['im4', 'im5', 'im6', 'im7']);
    const inline = await collect(D.createLoader(items.slice(0, 4), { ...opts, workers: 0 }));
    expect(ra).toEqual(inline);
    await b.close();
    await pool.close();
  });

  it('stops cleanly when the consumer breaks early', async () => {
    const loader = D.createLoader(items, { ...opts, batchSize: 2, workers: 1, prefetch: 3 });
    let n = 0;
    for await (const b of loader) {
      n += b.names.length;
      break;
    }
    expect(n).toBe(2);
    await loader.close();
  });

  it('single-input mode (a low-res or a high-res view alone), no augmentation', async () => {
    const loader = D.createLoader(items.slice(0, 3), { batchSize: 3, sides: { low: 12, high: null }, augment: false, seed: 1, workers: 0 });
    for await (const b of loader) {
      expect(b.low!.shape).toEqual([3, 3, 12, 12]);
      expect(b.high).toBeUndefined();
    }
    expect(loader.numBatches).toBe(1);
    const highOnly = D.createLoader(items.slice(0, 3), { batchSize: 3, sides: { low: null, high: 12 }, augment: false, seed: 1, workers: 0 });
    for await (const b of highOnly) {
      expect(b.high!.shape).toEqual([3, 3, 12, 12]);
      expect(b.low).toBeUndefined();
    }
    expect(() => D.createLoader(items, { batchSize: 3, sides: { low: 16, high: 8 }, augment: false, seed: 1 })).toThrow(/createLoader: sides .* high ≥ low; got low 16, high 8/);
  });

  it('highBytes: the high view as uint8 bytes that normalise to the float view, through worker threads too', async () => {
    const float = await collect(D.createLoader(items, { ...opts, workers: 0 }));
    for (const workers of [0, 1]) {
      const loader = D.createLoader(items, { ...opts, workers, highBytes: true });
      let b = 0;
      for await (const batch of loader) {
        expect(batch.high!.dtype).toBe('uint8');
        expect(batch.low!.dtype).toBe('float32');
        expect(Array.from(dataSync(batch.low!))).toEqual(float[b].low);
        const bytes = dataSync(batch.high!), plane = 24 * 24;
        const normalised = Array.from(bytes, (v, i) => Math.fround((v / 255 - D.IMAGENET_MEAN[Math.floor(i / plane) % 3]) / D.IMAGENET_STD[Math.floor(i / plane) % 3]));
        expect(normalised).toEqual(float[b].high);
        b++;
      }
      expect(b).toBe(3);
      await loader.close();
    }
  });

  it('class-balanced sampling draws the classes about equally', () => {
    const many = Array.from({ length: 1000 }, (_, i) => ({ label: i < 100 ? 1 : 0 }));
    const order = D.epochOrder(many, { seed: 3, epoch: 0, balanced: true });
    const pos = Array.from(order).filter((i) => many[i].label === 1).length;
    expect(pos).toBeGreaterThan(430);
    expect(pos).toBeLessThan(570);
    const shuffled = D.epochOrder(many, { seed: 3, epoch: 0 });
    expect([...shuffled].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});

describe('isic-sample loader (real images)', () => {
  it.skipIf(!SAMPLE_HERE)(sampleTitle('yields correctly labelled, augmented {low, high} batches'), async () => {
    const ds = await D.loadDataset([SHARED_SAMPLE], { task: 'binary' })();
    if (ds._tag === 'Left') throw new Error(D.renderDataError(ds.left));
    const truth = new Map(ds.right.items.map((i) => [i.name, i.label]));
    const pick = [...ds.right.items.filter((i) => i.label === 1).slice(0, 2), ...ds.right.items.filter((i) => i.label === 0).slice(0, 2)];
    const loader = D.createLoader(pick, { batchSize: 4, sides: { low: 32, high: 128 }, augment: true, seed: 1, workers: 1 });
    for await (const b of loader) {
      expect(b.high!.shape).toEqual([4, 3, 128, 128]);
      expect(b.low!.shape).toEqual([4, 3, 32, 32]);
      b.names.forEach((n, i) => expect(b.labels[i]).toBe(truth.get(n)));
      expect(Array.from(b.labels).sort()).toEqual([0, 0, 1, 1]);
      const hi = dataSync(b.high!);
      let mean = 0;
      for (const v of hi) mean += v / hi.length;
      expect(Math.abs(mean)).toBeLessThan(2.5);
    }
    await loader.close();
  });
});

describe('image cache', () => {
  // The 48×40 fixtures decode shrunk to the working side (the high view, 24): 29×24 RGB.
  const decodedBytes = 29 * 24 * 3;

  it('decodes each file once at the working size; later epochs hit the cache and give the same batches', async () => {
    const reference = D.createLoader(items, { ...opts, workers: 0 });
    const want = [await collect(reference, 0), await collect(reference, 1)];
    await reference.close();
    for (const workers of [0, 1]) {
      const cache = D.createImageCache(2 ** 20);
      const loader = D.createLoader(items, { ...opts, workers, cache });
      expect(await collect(loader, 0)).toEqual(want[0]);
      expect(cache.stats).toMatchObject({ hits: 0, misses: 10, entries: 10, bytes: 10 * decodedBytes });
      expect(await collect(loader, 1)).toEqual(want[1]);
      expect(cache.stats).toMatchObject({ hits: 10, misses: 10, entries: 10 });
      await loader.close();
    }
  });

  it('keeps images up to its byte budget (none at 0) and a loader of another working size does not reuse them', async () => {
    const cache = D.createImageCache(4 * decodedBytes + 1);
    const loader = D.createLoader(items, { ...opts, workers: 1, cache });
    await collect(loader, 0);
    expect(cache.stats).toMatchObject({ entries: 4, bytes: 4 * decodedBytes });
    expect(cache.accepting).toBe(false);
    await collect(loader, 1);
    expect(cache.stats.hits).toBe(4);
    await loader.close();
    const other = D.createLoader(items.slice(0, 2), { ...opts, sides: { low: 8, high: 16 }, workers: 0, cache });
    for await (const b of other) expect(b.high!.shape).toEqual([2, 3, 16, 16]);
    expect(cache.stats.hits).toBe(4);
    const none = D.createImageCache(0);
    await collect(D.createLoader(items.slice(0, 4), { ...opts, workers: 0, cache: none }));
    expect(none.stats).toMatchObject({ entries: 0, bytes: 0, misses: 4 });
    expect(() => D.createImageCache(-1)).toThrow(/maxBytes/);
  });
});
