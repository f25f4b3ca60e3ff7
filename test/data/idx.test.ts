/** The IDX reader on generated files (gzip and plain, every element type) and on broken ones; batches with augmentation. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import * as E from 'fp-ts/lib/Either.js';
import { afterAll, describe, expect, it } from 'vitest';
import { dataSync, datasets, random } from '../../src/index.ts';
import { main } from '../../src/train/cli.ts';
import { runCli } from '../helpers/cli.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'idx-test-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** An IDX file: magic 0x00 0x00 type rank, big-endian uint32 dims, then `body`. */
function idx(type: number, dims: number[], body: Uint8Array): Uint8Array {
  const head = new DataView(new ArrayBuffer(4 + 4 * dims.length));
  head.setUint8(2, type);
  head.setUint8(3, dims.length);
  dims.forEach((d, i) => head.setUint32(4 + 4 * i, d, false));
  return Buffer.concat([new Uint8Array(head.buffer), body]);
}
const write = (name: string, bytes: Uint8Array) => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, bytes);
  return f;
};
const message = (r: E.Either<datasets.DataError, unknown>) => (E.isLeft(r) ? datasets.renderDataError(r.left) : 'Right');

// 3 images of 2×3 pixels: image n has pixels 10n + (0…5); labels 7, 8, 9.
const pixels = Uint8Array.from({ length: 18 }, (_, i) => 10 * Math.floor(i / 6) + (i % 6));
const images = idx(0x08, [3, 2, 3], pixels);
const labels = idx(0x08, [3], Uint8Array.from([7, 8, 9]));

describe('IDX reader', () => {
  it('reads uint8 images and labels, plain and gzipped alike', () => {
    for (const gz of [false, true]) {
      const f = (b: Uint8Array) => (gz ? gzipSync(b) : b);
      const r = datasets.readIdxImages(write(`im${gz}`, f(images)), write(`lb${gz}`, f(labels)));
      if (E.isLeft(r)) throw new Error(message(r));
      expect({ count: r.right.count, rows: r.right.rows, cols: r.right.cols }).toEqual({ count: 3, rows: 2, cols: 3 });
      expect([...r.right.images]).toEqual([...pixels]);
      expect([...r.right.labels]).toEqual([7, 8, 9]);
    }
  });

  it('decodes the wider types from big-endian', () => {
    const be = (n: number, set: (v: DataView, o: number, x: number) => void, xs: number[]) => {
      const v = new DataView(new ArrayBuffer(n * xs.length));
      xs.forEach((x, i) => set(v, i * n, x));
      return new Uint8Array(v.buffer);
    };
    const cases: [number, number, (v: DataView, o: number, x: number) => void, number[]][] = [
      [0x0b, 2, (v, o, x) => v.setInt16(o, x, false), [-300, 2, 32767]],
      [0x0c, 4, (v, o, x) => v.setInt32(o, x, false), [-70000, 1, 2 ** 30]],
      [0x0d, 4, (v, o, x) => v.setFloat32(o, x, false), [1.5, -0.25, 3]],
      [0x0e, 8, (v, o, x) => v.setFloat64(o, x, false), [Math.PI, -1e300, 0]],
    ];
    for (const [type, n, set, xs] of cases) {
      const r = datasets.decodeIdx(idx(type, [3], be(n, set, xs)), `t${type}`);
      if (E.isLeft(r)) throw new Error(message(r));
      expect([...r.right.data]).toEqual(xs);
    }
    const i8 = datasets.decodeIdx(idx(0x09, [2], Uint8Array.from([0xff, 5])), 'i8');
    expect(E.isRight(i8) && [...i8.right.data]).toEqual([-1, 5]);
  });

  it('rejects a wrong magic number, naming the file and the bytes', () => {
    const bad = Uint8Array.from(images);
    bad[0] = 0x1a;
    expect(message(datasets.readIdx(write('magic', bad)))).toMatch(/magic\b.*is not a valid IDX file: magic number: expected 0x00 0x00 <type> <rank>, got 0x1a 0x00 0x08 0x03/);
    const type = Uint8Array.from(images);
    type[2] = 0x07;
    expect(message(datasets.readIdx(write('type', type)))).toMatch(/type byte: expected 0x08\/0x09\/0x0b\/0x0c\/0x0d\/0x0e, got 0x07/);
  });

  it('rejects truncated files and short headers, with expected and actual sizes', () => {
    expect(message(datasets.readIdx(write('trunc', images.subarray(0, images.length - 1))))).toMatch(/trunc is not a valid IDX file: size: expected 34 bytes \(header 16 \+ 3×2×3 × 1\), got 33 bytes \(truncated\)/);
    expect(message(datasets.readIdx(write('long', Buffer.concat([images, Uint8Array.from([0])]))))).toMatch(/size: expected 34 bytes .*, got 35 bytes$/);
    expect(message(datasets.readIdx(write('head', images.subarray(0, 9))))).toMatch(/header: expected 16 bytes for 3 dimensions, got 9 bytes/);
    expect(message(datasets.readIdx(write('gz', gzipSync(images).subarray(0, 20))))).toMatch(/gz is not a valid IDX file: gzip stream/);
    expect(message(datasets.readIdx(path.join(dir, 'absent')))).toMatch(/cannot read .*absent/);
  });

  it('rejects a label count that differs from the image count, and swapped files', () => {
    const two = write('two-labels', idx(0x08, [2], Uint8Array.from([1, 2])));
    expect(message(datasets.readIdxImages(write('im', images), two))).toMatch(/two-labels is not a valid IDX file: label count: expected 3 \(the images in .*im\), got 2/);
    expect(message(datasets.readIdxImages(write('lb', labels), write('im2', images)))).toMatch(/lb is not a valid IDX file: images: expected uint8 \(N, rows, cols\)/);
  });

  it('finds the split files of an MNIST-style folder and names the missing ones', () => {
    const ds = path.join(dir, 'ds');
    fs.mkdirSync(ds);
    fs.writeFileSync(path.join(ds, 'train-images-idx3-ubyte.gz'), gzipSync(images));
    expect(datasets.isIdxFolder(ds)).toBe(false);
    fs.writeFileSync(path.join(ds, 'train-labels-idx1-ubyte'), labels);
    expect(datasets.isIdxFolder(ds)).toBe(true);
    const r = datasets.loadIdxSplit(ds, 'train');
    expect(E.isRight(r) && r.right.count).toBe(3);
    expect(message(datasets.loadIdxSplit(ds, 'test'))).toMatch(/t10k-images-idx3-ubyte\.gz.*t10k-labels-idx1-ubyte\.gz/);
    expect(message(datasets.loadIdxSplit(path.join(dir, 'nope'), 'train'))).toMatch(/folder not found: .*nope/);
  });

  it('is trained on by the train CLI (dwsnet, multiclass), resumed by the same command, and other flags are named', async () => {
    // 24 training and 10 test images of 12×12, labels 0–9.
    const ds = path.join(dir, 'cli');
    fs.mkdirSync(ds);
    const set = (prefix: string, n: number, seed: number) => {
      const px = Uint8Array.from(random.uniformArray(random.key(seed), n * 144), (v) => Math.floor(v * 256));
      fs.writeFileSync(path.join(ds, `${prefix}-images-idx3-ubyte.gz`), gzipSync(idx(0x08, [n, 12, 12], px)));
      fs.writeFileSync(path.join(ds, `${prefix}-labels-idx1-ubyte`), idx(0x08, [n], Uint8Array.from({ length: n }, (_, i) => i % 10)));
    };
    set('train', 24, 1);
    set('t10k', 10, 2);
    const out = path.join(dir, 'cli-run');
    const args = ['--data', ds, '--model', 'dwsnet', '--task', 'multiclass', '--epochs', '2', '--batch-size', '12', '--out', out];
    const first = await runCli(main, args);
    expect(first.code, first.err).toBe(0);
    expect(first.out).toMatch(/Total params: 75,850/);
    expect(first.out).toMatch(/epoch 2: train loss [\d.]+, test loss [\d.]+, test accuracy [\d.]+/);
    expect(first.out).toContain('per-class accuracy');
    const log = fs.readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log.map((l) => l.epoch)).toEqual([undefined, 1, 2]);
    const again = await runCli(main, args);
    expect(again.code, again.err).toBe(0);
    expect(again.out).toContain(`resuming from ${path.join(out, 'checkpoint')} after epoch 2 of 2`);
    const accuracy = (o: string) => o.match(/\ntest accuracy: ([\d.]+)% after 2 epochs/)?.[1];
    expect(accuracy(again.out)).toBe(accuracy(first.out));
    expect(accuracy(first.out)).toBeDefined();
    const bad = await runCli(main, ['--data', ds, '--img-size', '64', '--optimizer', 'sgd']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/is an IDX folder, on which the CLI trains dwsnet .*; not --img-size, --optimizer/);
    expect((await runCli(main, ['--data', ds, '--model', 'b0'])).err).toMatch(/--model b0: on the IDX folder .* trains dwsnet/);
    expect((await runCli(main, ['--data', ds, '--task', 'binary'])).err).toMatch(/--task binary: IDX labels are classes/);
  }, 120_000);
});

describe('idxBatch', () => {
  const set = datasets.readIdxImages(write('b-im', images), write('b-lb', labels));
  if (E.isLeft(set)) throw new Error(message(set));
  const s = set.right;

  it('scales, normalises and picks the labels of the indices', () => {
    const { x, labels: y } = datasets.idxBatch(s, [2, 0], { mean: 0.5, std: 2 });
    expect(x.shape).toEqual([2, 1, 2, 3]);
    expect([...y]).toEqual([9, 7]);
    expect(dataSync(x)[0]).toBeCloseTo((20 / 255 - 0.5) / 2, 6);
    expect(dataSync(x)[6]).toBeCloseTo((0 - 0.5) / 2, 6);
  });

  it('flips horizontally (about half the images) and crops after padding', () => {
    const idxs = Int32Array.from({ length: 200 }, (_, i) => i % 3);
    const plain = dataSync(datasets.idxBatch(s, idxs).x);
    const flipped = dataSync(datasets.idxBatch(s, idxs, { flip: true, key: random.key(1) }).x);
    let n = 0;
    for (let b = 0; b < 200; b++) {
      const row = (a: ArrayLike<number>) => [...Array.from(a).slice(b * 6, b * 6 + 3)];
      if (row(flipped).join() !== row(plain).join()) {
        expect(row(flipped)).toEqual(row(plain).reverse());
        n++;
      }
    }
    expect(n).toBeGreaterThan(70);
    expect(n).toBeLessThan(130);
    const crop = dataSync(datasets.idxBatch(s, idxs, { padCrop: 1, key: random.key(2) }).x);
    const shifted = Array.from({ length: 200 }, (_, b) => Array.from(crop).slice(b * 6, b * 6 + 6).join() !== Array.from(plain).slice(b * 6, b * 6 + 6).join()).filter(Boolean).length;
    expect(shifted).toBeGreaterThan(120); // 8 of 9 offsets move the image
    expect(() => datasets.idxBatch(s, [0], { flip: true })).toThrow(/needs a random key/);
    expect(() => datasets.idxBatch(s, [3])).toThrow(/index 3 is outside the set of 3 images/);
  });

  it('covers every index once per epoch, shuffled with a key', () => {
    const bs = datasets.idxBatches(10, 4, random.key(0));
    expect(bs.map((b) => b.length)).toEqual([4, 4, 2]);
    expect(bs.flatMap((b) => [...b]).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});
