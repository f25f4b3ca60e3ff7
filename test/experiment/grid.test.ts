/** Experiment files: validation with the key at fault named, grid expansion and run names, run states. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { cellJobs, cellName, expandGrid, parseExperiment, presetFile, presetNames, readExperimentFile } from '../../src/experiment/grid.ts';
import { cellState } from '../../src/experiment/cell.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grid-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const parse = (json: unknown) => parseExperiment(json, 'x.json', 'x', '/work');
const ok = (json: unknown) => {
  const r = parse(json);
  if (E.isLeft(r)) throw new Error(r.left.message);
  return r.right;
};
const err = (json: unknown) => {
  const r = parse(json);
  return E.isLeft(r) ? r.left.message : 'no error';
};

describe('grid expansion and naming', () => {
  it('one cell per combination, the last axis slowest; names from the values in axis order', () => {
    const spec = ok({ name: 'demo', base: { epochs: 8, imgSize: 64 }, grid: { model: ['b0', 'b0-full-split'], seed: [1, 2, 3] } });
    const cells = expandGrid(spec);
    if (E.isLeft(cells)) throw new Error(cells.left.message);
    expect(cells.right.map((c) => c.name)).toEqual([
      'b0_seed-1', 'b0-full-split_seed-1', 'b0_seed-2', 'b0-full-split_seed-2', 'b0_seed-3', 'b0-full-split_seed-3',
    ]);
    expect(cells.right[1].config).toEqual({ epochs: 8, imgSize: 64, model: 'b0-full-split', seed: 1 });
    expect(cells.right[1].axes).toEqual({ model: 'b0-full-split', seed: 1 });
    const jobs = cellJobs(spec, cells.right, '/exp');
    expect(jobs[0]).toMatchObject({ experiment: 'demo', name: 'b0_seed-1', dir: '/exp/b0_seed-1', epochs: 8, patience: null });
  });

  it('names are file-name safe: numbers as written, paths by their last component, kebab keys kept', () => {
    expect(cellName({ lr: 1e-3, 'batch-size': 16, data: ['/d/isic-2019', '/d/isic 2020'] })).toBe('lr-0.001_batch-size-16_data-isic-2019+isic-2020');
    expect(cellName({ model: 'b0', posWeight: 'auto' })).toBe('b0_posWeight-auto');
  });

  it('the same names every time (a restarted experiment finds its runs)', () => {
    const json = { base: { epochs: 2 }, grid: { lr: [0.01, 0.001], model: ['b0'] } };
    const names = () => (expandGrid(ok(json)) as E.Right<{ name: string }[]>).right.map((c) => c.name);
    expect(names()).toEqual(['lr-0.01_b0', 'lr-0.001_b0']);
    expect(names()).toEqual(names());
  });

  it('paths in the config are made absolute (workers may start elsewhere)', () => {
    const spec = ok({ base: { data: ['../shared/data/isic-sample'] }, grid: { seed: [1] } });
    expect(spec.base.data).toEqual(['/shared/data/isic-sample']);
  });
});

describe('validation: the key or value at fault is named', () => {
  const cases: [string, unknown, RegExp][] = [
    ['not an object', [], /x\.json: must hold a JSON object/],
    ['unknown top-level key', { base: {}, grid: { seed: [1] }, axes: {} }, /unknown key 'axes'/],
    ['unknown config key in base', { base: { learningRate: 1 }, grid: { seed: [1] } }, /unknown key 'learningRate' in x\.json \(base\.learningRate\)/],
    ['unknown config key in grid', { grid: { modle: ['b0'] } }, /unknown key 'modle' in x\.json \(grid\.modle\[0\]\)/],
    ['bad value type', { base: { epochs: 'many' }, grid: { seed: [1] } }, /invalid value 'many' for --epochs in x\.json \(base\.epochs\)/],
    ['bad value in an axis', { grid: { seed: [1, -2] } }, /invalid value '-2' for --seed in x\.json \(grid\.seed\[1\]\): must be an integer ≥ 0/],
    ['empty axis', { grid: { seed: [] } }, /grid\.seed is empty/],
    ['axis not a list', { grid: { seed: 3 } }, /grid\.seed must be a list/],
    ['no axes', { base: {}, grid: {} }, /"grid" has no axes/],
    ['a key the experiment sets', { base: { out: 'x' }, grid: { seed: [1] } }, /'out' in base\.out is set by the experiment/],
    ['a key in base and grid', { base: { seed: 1 }, grid: { seed: [1, 2] } }, /grid\.seed sets 'seed', which base\.seed already sets/],
    ['a value twice', { grid: { seed: [1, 1] } }, /grid\.seed lists a value twice/],
    ['unknown model', { grid: { model: ['b0', 'b9-turbo'] } }, /run b9-turbo: unknown model 'b9-turbo'/],
    ['inconsistent cell', { base: { loss: 'ce' }, grid: { seed: [1] } }, /run seed-1: --loss ce needs --task multiclass/],
    ['names that collide', { grid: { data: [['/a/x'], ['/b/x']] } }, /get the same run name 'data-x'/],
  ];
  for (const [name, json, msg] of cases) it(name, () => expect(err(json)).toMatch(msg));

  it('a missing file, and an unknown preset, are named', () => {
    expect(E.isLeft(readExperimentFile('/nonexistent.json')) && (readExperimentFile('/nonexistent.json') as E.Left<{ message: string }>).left.message).toMatch(/experiment file not found: \/nonexistent\.json/);
    expect((presetFile('nope') as E.Left<{ message: string }>).left.message).toMatch(/unknown preset 'nope' \(committed presets: isic-sample, thesis-synthetic\)/);
  });

  it('the committed presets are valid: thesis-synthetic (4 models × 3 seeds), isic-sample (2 × 3)', () => {
    expect(presetNames()).toEqual(['isic-sample', 'thesis-synthetic']);
    const sizes = presetNames().map((n) => {
      const spec = readExperimentFile((presetFile(n) as E.Right<string>).right);
      if (E.isLeft(spec)) throw new Error(spec.left.message);
      return [n, (expandGrid(spec.right) as E.Right<unknown[]>).right.length, spec.right.grid.model];
    });
    expect(sizes).toEqual([
      ['isic-sample', 6, ['b0', 'b0-full-split']],
      ['thesis-synthetic', 12, ['b0', 'b0-stochastic-stem', 'b0-full-split', 'b0-pure-stochastic']],
    ]);
  });
});

describe('run state from the last checkpoint', () => {
  const dir = path.join(tmp, 'run');
  const trainer = (t: object) => {
    fs.mkdirSync(path.join(dir, 'last'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'last', 'trainer.json'), JSON.stringify(t));
  };
  it('new, partial (mid-epoch or fewer epochs), complete (all epochs, or stopped early by patience)', () => {
    expect(cellState({ dir, epochs: 3, patience: null })).toEqual({ kind: 'new' });
    trainer({ epoch: 1, stepInEpoch: 2, bestEpoch: 1 });
    expect(cellState({ dir, epochs: 3, patience: null })).toEqual({ kind: 'partial', epochsDone: 1, stepInEpoch: 2 });
    trainer({ epoch: 2, stepInEpoch: 0, bestEpoch: 1 });
    expect(cellState({ dir, epochs: 3, patience: null }).kind).toBe('partial');
    expect(cellState({ dir, epochs: 3, patience: 1 })).toEqual({ kind: 'complete', epochsDone: 2 });
    trainer({ epoch: 3, stepInEpoch: 0, bestEpoch: 3 });
    expect(cellState({ dir, epochs: 3, patience: null })).toEqual({ kind: 'complete', epochsDone: 3 });
  });
});
