/**
 * Data pipeline throughput: images/s decoded + augmented (random resized crop, flips, rotation),
 * 1024-px JPEG sources → high 1024 + low 224 views, normalised NCHW float32, with 1 and 2 worker
 * threads. Sources: 32 isic-sample images pre-resized to 1024² when ../shared/data is present,
 * else 16 synthetic 1024-px lesions as JPEG (both cached under .cache/).
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import * as D from '../../src/data/index.ts';
import { type Row, type Suite, matches, median } from '../harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SAMPLE = join(ROOT, '..', 'shared', 'data', 'isic-sample');

async function sources(): Promise<{ items: D.Item[]; source: string }> {
  const cache = join(ROOT, '.cache');
  if (existsSync(join(SAMPLE, 'labels.csv'))) {
    const out = join(cache, 'bench-isic-1024');
    const ds = await D.loadDataset([SAMPLE], { task: 'binary' })();
    if (ds._tag === 'Left') throw new Error(D.renderDataError(ds.left));
    const pick = ds.right.items.slice(0, 32);
    mkdirSync(out, { recursive: true });
    for (const it of pick) {
      const dst = join(out, `${it.name}.jpg`);
      if (!existsSync(dst)) await sharp(it.path).rotate().resize(1024, 1024, { fit: 'fill' }).jpeg({ quality: 95 }).toFile(dst);
    }
    return { items: pick.map((it) => ({ ...it, path: join(out, `${it.name}.jpg`) })), source: 'isic-sample→1024² JPEG' };
  }
  const syn = await D.ensureSynthetic({ count: 16, size: 1024, seed: 7 })();
  if (syn._tag === 'Left') throw new Error(D.renderDataError(syn.left));
  const out = join(cache, 'bench-synthetic-1024-jpeg');
  mkdirSync(out, { recursive: true });
  const files = readdirSync(join(syn.right, 'images')).sort();
  const items: D.Item[] = [];
  for (const [i, f] of files.entries()) {
    const dst = join(out, f.replace(/\.png$/, '.jpg'));
    if (!existsSync(dst)) await sharp(join(syn.right, 'images', f)).jpeg({ quality: 95 }).toFile(dst);
    items.push({ path: dst, name: f, label: i % 2, source: out });
  }
  return { items, source: 'synthetic 1024 JPEG' };
}

/** Median wall time between consecutive batches once the pool is warm (the consumer does nothing). */
async function perBatch(items: D.Item[], workers: number, batchSize: number, epochs: number): Promise<{ medianMs: number; samples: number; cpuMsPerImage: number }> {
  const loader = D.createLoader(items, { batchSize, sides: { low: 224, high: 1024 }, augment: true, seed: 1, workers, prefetch: 2, dropLast: true });
  try {
    for await (const _ of loader.epoch(0)) void _; // warm-up: worker start, JIT
    const times: number[] = [];
    const cpu0 = process.cpuUsage();
    for (let e = 1; e <= epochs; e++) {
      let t = performance.now();
      for await (const b of loader.epoch(e)) {
        if (b.skipped.length) throw new Error(`bench: skipped ${b.skipped[0].name}`);
        const now = performance.now();
        times.push(now - t);
        t = now;
      }
    }
    // CPU time of all threads per image: what the pipeline costs, whatever else the machine runs.
    const cpu = process.cpuUsage(cpu0);
    const cpuMsPerImage = (cpu.user + cpu.system) / 1000 / (times.length * batchSize);
    return { medianMs: median(times), samples: times.length, cpuMsPerImage };
  } finally {
    await loader.close();
  }
}

export const data: Suite = {
  name: 'data',
  description: 'decode + augment throughput, 1024 → 224 + 1024, 1 and 2 worker threads (cpu)',
  async run({ filter, quick }) {
    const rows: Row[] = [];
    const name = 'decode+augment-1024→224+1024';
    const wanted = [1, 2].filter((w) => matches(filter, 'data', name, 'cpu', 'throughput', `workers=${w}`));
    if (wanted.length === 0) return rows;
    const { items, source } = await sources();
    const batchSize = 8;
    for (const workers of wanted) {
      const r = await perBatch(items, workers, batchSize, quick ? 1 : 3);
      rows.push({ suite: 'data', name: `${name} workers=${workers}`, backend: 'cpu', pass: 'throughput', ...r, imagesPerSec: (1000 * batchSize) / r.medianMs, workers, batchSize, source });
    }
    return rows;
  },
};
