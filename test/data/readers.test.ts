import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as D from '../../src/data/index.ts';
import { SAMPLE_HERE, SHARED_SAMPLE, sampleTitle, left, right, tempDir, writeImage, writeText } from './fixtures.ts';

const { dir: root, cleanup } = tempDir('readers');
afterAll(cleanup);

const load = async (dirs: string[], opts: D.LoadOptions) => D.loadDataset(dirs, opts)();

const names = (n: number, p = 'ISIC_00') => Array.from({ length: n }, (_, i) => `${p}${String(i).padStart(5, '0')}`);

beforeAll(async () => {
  // ISIC 2020: train.csv + jpeg/train, plus test.csv and a submission file that must be ignored.
  const d20 = join(root, 'isic2020');
  const n20 = names(6, 'ISIC_20');
  writeText(join(d20, 'train.csv'), `image_name,patient_id,sex,diagnosis,benign_malignant,target\n${n20.map((n, i) => `${n},P1,male,${i % 3 === 0 ? 'melanoma' : 'nevus'},x,${i % 3 === 0 ? 1 : 0}`).join('\n')}\n`);
  writeText(join(d20, 'sample_submission.csv'), 'image_name,target\nISIC_X,0\n');
  for (const [i, n] of n20.entries()) await writeImage(join(d20, 'jpeg', 'train', `${n}.jpg`), { seed: i });
  // labels.csv style (like isic-sample), images in images/
  const dl = join(root, 'labels');
  writeText(join(dl, 'labels.csv'), 'image_name,diagnosis,target\nISIC_L0,melanoma,1\nISIC_L1,nevus,0\nISIC_2000000,nevus,0\n');
  for (const n of ['ISIC_L0', 'ISIC_L1', 'ISIC_2000000']) await writeImage(join(dl, 'images', `${n}.jpg`));
  // ISIC 2019 one-hot
  const d19 = join(root, 'isic2019');
  writeText(join(d19, 'ISIC_2019_Training_GroundTruth.csv'), 'image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK\nISIC_19A,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\nISIC_19B,0.0,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0\nISIC_19C,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0\n');
  for (const n of ['ISIC_19A', 'ISIC_19B', 'ISIC_19C']) await writeImage(join(d19, 'ISIC_2019_Training_Input', `${n}.jpg`));
  // ISIC 2018 one-hot
  const d18 = join(root, 'isic2018');
  writeText(join(d18, 'ISIC2018_Task3_Training_GroundTruth.csv'), 'image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_18A,0.0,0.0,0.0,1.0,0.0,0.0,0.0\nISIC_18B,1.0,0.0,0.0,0.0,0.0,0.0,0.0\n');
  for (const n of ['ISIC_18A', 'ISIC_18B']) await writeImage(join(d18, 'ISIC2018_Task3_Training_Input', `${n}.jpg`));
  // HAM10000 metadata (dx)
  const dh = join(root, 'ham');
  writeText(join(dh, 'HAM10000_metadata.csv'), 'lesion_id,image_id,dx,dx_type,age,sex,localization\nHAM_1,ISIC_H1,bkl,histo,80,male,scalp\nHAM_2,ISIC_H2,mel,histo,60,female,back\n');
  for (const n of ['ISIC_H1', 'ISIC_H2']) await writeImage(join(dh, 'HAM10000_images_part_1', `${n}.jpg`));
  // ISIC 2017 part 3
  const d17 = join(root, 'isic2017');
  writeText(join(d17, 'ISIC-2017_Training_Part3_GroundTruth.csv'), 'image_id,melanoma,seborrheic_keratosis\nISIC_17A,0.0,1.0\nISIC_17B,1.0,0.0\nISIC_17C,0.0,0.0\n');
  for (const n of ['ISIC_17A', 'ISIC_17B', 'ISIC_17C']) await writeImage(join(d17, `${n}.jpg`));
  // ISIC 2016 part 3: no header, benign/malignant
  const d16 = join(root, 'isic2016');
  writeText(join(d16, 'ISBI2016_ISIC_Part3_Training_GroundTruth.csv'), 'ISIC_16A,benign\nISIC_16B,malignant\n');
  for (const n of ['ISIC_16A', 'ISIC_16B']) await writeImage(join(d16, 'images', `${n}.png`));
  // the seed project's CSV
  const ds = join(root, 'seed');
  writeText(join(ds, 'data.csv'), 'filename,target\nimg_a.jpg,1\nimg_b.jpg,0\n');
  for (const n of ['img_a', 'img_b']) await writeImage(join(ds, 'train', `${n}.jpg`));
  // folder per class
  const df = join(root, 'folders');
  await writeImage(join(df, 'melanoma', 'f1.jpg'));
  await writeImage(join(df, 'nevus', 'f2.png'));
  await writeImage(join(df, 'nevus', 'f3.jpg'));
});

describe('detectDataset', () => {
  it.each([
    ['isic2020', 'isic2020'], ['labels', 'isic2020'], ['isic2019', 'isic2019'], ['isic2018', 'isic2018'], ['ham', 'ham10000'],
    ['isic2017', 'isic2017'], ['isic2016', 'isic2016'], ['seed', 'seed'], ['folders', 'folders'],
  ])('%s → %s', async (sub, format) => {
    expect(right(await D.detectDataset(join(root, sub))()).format).toBe(format);
  });
  it('takes train.csv over the submission file', async () => {
    expect(right(await D.detectDataset(join(root, 'isic2020'))()).labelFile).toMatch(/train\.csv$/);
  });
  it('errors: missing folder, no label file, unknown format', async () => {
    expect(left(await D.detectDataset(join(root, 'nope'))())).toMatchObject({ _tag: 'MissingFolder' });
    const empty = join(root, 'empty');
    writeText(join(empty, 'notes.csv'), 'a,b\n1,2\n');
    expect(left(await D.detectDataset(empty)())).toMatchObject({ _tag: 'NoLabelFile' });
    expect(left(await D.detectDataset(root, { format: 'isic2099' })())).toMatchObject({ _tag: 'UnknownFormat' });
    expect(D.renderDataError(left(await D.detectDataset(empty)()))).toMatch(/no recognisable label file in .*empty/);
  });
});

describe('loadDataset', () => {
  it('ISIC 2020 binary: labels from target, images found under jpeg/train', async () => {
    const ds = right(await load([join(root, 'isic2020')], { task: 'binary' }));
    expect(ds.items.map((i) => i.label)).toEqual([1, 0, 0, 1, 0, 0]);
    expect(ds.items[0].path).toMatch(/jpeg\/train\/ISIC_2000000\.jpg$/);
    expect(ds.classes).toEqual(['other', 'melanoma']);
  });
  it('ISIC 2020 multiclass uses the diagnosis column (ISIC 2019 names)', async () => {
    const ds = right(await load([join(root, 'isic2020')], { task: 'multiclass' }));
    expect(ds.classes).toEqual(['MEL', 'NV']);
    expect(ds.items.map((i) => ds.classes[i.label])).toEqual(['MEL', 'NV', 'NV', 'MEL', 'NV', 'NV']);
  });
  it('one-hot 2019/2018, HAM dx, 2017, 2016, seed CSV, folders', async () => {
    const b = async (sub: string) => right(await load([join(root, sub)], { task: 'binary' })).items.map((i) => `${i.name}:${i.label}`);
    expect(await b('isic2019')).toEqual(['ISIC_19A:1', 'ISIC_19B:0', 'ISIC_19C:0']);
    expect(await b('isic2018')).toEqual(['ISIC_18A:0', 'ISIC_18B:1']);
    expect(await b('ham')).toEqual(['ISIC_H1:0', 'ISIC_H2:1']);
    expect(await b('isic2017')).toEqual(['ISIC_17A:0', 'ISIC_17B:1', 'ISIC_17C:0']);
    expect(await b('isic2016')).toEqual(['ISIC_16A:0', 'ISIC_16B:1']);
    expect(await b('seed')).toEqual(['img_a:1', 'img_b:0']);
    expect(await b('folders')).toEqual(['f1:1', 'f2:0', 'f3:0']);
    const m = async (sub: string) => {
      const ds = right(await load([join(root, sub)], { task: 'multiclass' }));
      return ds.items.map((i) => `${i.name}:${ds.classes[i.label]}`);
    };
    expect(await m('isic2019')).toEqual(['ISIC_19A:MEL', 'ISIC_19B:BCC', 'ISIC_19C:NV']);
    expect(await m('ham')).toEqual(['ISIC_H1:BKL', 'ISIC_H2:MEL']);
    expect(await m('isic2017')).toEqual(['ISIC_17A:SK', 'ISIC_17B:MEL', 'ISIC_17C:NV']);
    expect(await m('folders')).toEqual(['f1:melanoma', 'f2:nevus', 'f3:nevus']);
    expect(right(await load([join(root, 'isic2019')], { task: 'multiclass' })).classes).toEqual(['MEL', 'NV', 'BCC', 'AK', 'BKL', 'DF', 'VASC', 'SCC', 'UNK']);
  });
  it('merges folders, reports and drops duplicate names, unions the classes', async () => {
    const ds = right(await load([join(root, 'isic2020'), join(root, 'labels'), join(root, 'isic2018')], { task: 'multiclass' }));
    expect(ds.duplicates).toEqual(['ISIC_2000000']);
    expect(ds.items.filter((i) => i.name === 'ISIC_2000000')).toHaveLength(1);
    expect(ds.items.find((i) => i.name === 'ISIC_2000000')!.source).toBe(join(root, 'isic2020'));
    expect(ds.classes).toEqual(['MEL', 'NV', 'BCC', 'AKIEC', 'BKL', 'DF', 'VASC']);
    expect(ds.items).toHaveLength(6 + 2 + 2);
  });
  it('bad input: missing column, label outside 0/1, non one-hot row, missing image (skipped or strict), minResolution', async () => {
    const bad = join(root, 'bad');
    writeText(join(bad, 'col', 'train.csv'), 'image_name,label\nA,1\n');
    expect(left(await load([join(bad, 'col')], { task: 'binary', format: 'isic2020' }))).toMatchObject({ _tag: 'NoLabelFile' });
    writeText(join(bad, 'col2', 'ISIC_2019_Training_GroundTruth.csv'), 'image,MEL,NV,BCC,AK,BKL,DF,SCC,UNK\nA,1,0,0,0,0,0,0,0\n');
    const e1 = left(await load([join(bad, 'col2')], { task: 'binary' }));
    expect(e1).toMatchObject({ _tag: 'MissingColumn', column: 'VASC' });
    expect(D.renderDataError(e1)).toMatch(/ISIC_2019_Training_GroundTruth\.csv has no column 'VASC'/);
    writeText(join(bad, 'lab', 'labels.csv'), 'image_name,target\nA,1\nB,2\n');
    const e2 = left(await load([join(bad, 'lab')], { task: 'binary' }));
    expect(e2).toMatchObject({ _tag: 'BadLabel', line: 3, column: 'target', value: '2' });
    expect(D.renderDataError(e2)).toMatch(/labels\.csv line 3, column 'target': label '2' is not 0 or 1/);
    writeText(join(bad, 'hot', 'ISIC2018_Task3_Training_GroundTruth.csv'), 'image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nA,1,1,0,0,0,0,0\n');
    expect(left(await load([join(bad, 'hot')], { task: 'binary' }))).toMatchObject({ _tag: 'BadLabel', expected: 'one-hot' });
    const miss = join(bad, 'miss');
    writeText(join(miss, 'labels.csv'), 'image_name,target\nHERE,1\nGONE,0\n');
    await writeImage(join(miss, 'HERE.jpg'), { w: 40, h: 24 });
    const ds = right(await load([miss], { task: 'binary' }));
    expect(ds.items.map((i) => i.name)).toEqual(['HERE']);
    expect(ds.skipped).toHaveLength(1);
    expect(ds.skipped[0].error).toMatchObject({ _tag: 'MissingImage', name: 'GONE' });
    expect(D.renderDataError(ds.skipped[0].error)).toMatch(/image 'GONE' listed in .*labels\.csv not found/);
    expect(left(await load([miss], { task: 'binary', strict: true }))).toMatchObject({ _tag: 'MissingImage', name: 'GONE' });
    const tiny = left(await load([miss], { task: 'binary', minResolution: 30 }));
    expect(D.renderDataError(tiny)).toMatch(/no images in .*miss: all 2 listed images were skipped/);
    const res = join(bad, 'res');
    writeText(join(res, 'labels.csv'), 'image_name,target\nSMALL,1\nBIG,0\n');
    await writeImage(join(res, 'SMALL.jpg'), { w: 40, h: 24 });
    await writeImage(join(res, 'BIG.png'), { w: 48, h: 40 });
    const big = right(await load([res], { task: 'binary', minResolution: 30 }));
    expect(big.items.map((i) => i.name)).toEqual(['BIG']);
    expect(big.skipped[0].error).toEqual({ _tag: 'ImageTooSmall', file: join(res, 'SMALL.jpg'), width: 40, height: 24, min: 30 });
    expect(D.renderDataError(big.skipped[0].error)).toMatch(/SMALL\.jpg is 40×24, smaller than the required 30×30/);
  });
  it('binary folders need a positive class folder; a missing folder is a Left', async () => {
    const f = join(root, 'bad', 'folders');
    await writeImage(join(f, 'cats', 'a.jpg'));
    expect(D.renderDataError(left(await load([f], { task: 'binary' })))).toMatch(/positive class folder/);
    expect(left(await load([join(root, 'missing')], { task: 'binary' }))).toMatchObject({ _tag: 'MissingFolder' });
  });
});

describe('split', () => {
  const items = Array.from({ length: 103 }, (_, i) => ({ path: `/x/${i}.jpg`, name: `im${i}`, label: i % 5 === 0 ? 1 : 0, source: '/x' }));
  it('is stratified, seeded and complete', () => {
    const s = right(D.splitDataset({ items }, { valFraction: 0.2, seed: 1337 }));
    expect(s.train.length + s.val.length).toBe(103);
    expect(new Set([...s.train, ...s.val].map((i) => i.name)).size).toBe(103);
    expect(s.val.filter((i) => i.label === 1)).toHaveLength(Math.round(21 * 0.2));
    expect(s.val.filter((i) => i.label === 0)).toHaveLength(Math.round(82 * 0.2));
    expect(right(D.splitDataset({ items }, { seed: 1337 }))).toEqual(s);
    expect(right(D.splitDataset({ items }, { seed: 1 })).val).not.toEqual(s.val);
  });
  it('round-trips through the run folder; a validation CSV overrides', async () => {
    const s = right(D.splitDataset({ items }, {}));
    const run = join(root, 'run');
    const file = right(await D.writeSplit(run, s)());
    expect(existsSync(file)).toBe(true);
    expect(right(await D.readSplit(run)())).toEqual(s);
    const v = writeText(join(root, 'val.csv'), 'image_name\nim3\nim7.jpg\n');
    const g = right(D.splitDataset({ items }, { valCsv: v }));
    expect(g.val.map((i) => i.name)).toEqual(['im3', 'im7']);
    expect(g.train).toHaveLength(101);
    writeText(v, 'image_name\nim3\nnobody\n');
    expect(left(D.splitDataset({ items }, { valCsv: v }))).toMatchObject({ _tag: 'UnknownImages', names: ['nobody'] });
    const sk = right(await D.writeSkipped(run, [{ name: 'a', path: '/a.jpg', error: { _tag: 'CorruptImage', file: '/a.jpg', reason: 'bad, "truncated"' } }])());
    expect(existsSync(sk)).toBe(true);
  });
  it('class counts and weights', () => {
    expect(D.classCounts(items)).toEqual([82, 21]);
    expect(D.posWeight(items)).toBeCloseTo(82 / 21);
    const w = D.classWeights(items);
    expect((w[0] * 82 + w[1] * 21) / 103).toBeCloseTo(1);
  });
});

describe('isic-sample (real images)', () => {
  it.skipIf(!SAMPLE_HERE)(sampleTitle('reads 347 labelled images and splits 80/20'), async () => {
    const ds = right(await load([SHARED_SAMPLE], { task: 'binary' }));
    expect(ds.items).toHaveLength(347);
    expect(ds.items.filter((i) => i.label === 1)).toHaveLength(119);
    expect(ds.skipped).toHaveLength(0);
    const s = right(D.splitDataset(ds, {}));
    expect(s.val.length).toBe(Math.round(119 * 0.2) + Math.round(228 * 0.2));
  });
});
