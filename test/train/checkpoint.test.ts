import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { dataSync, tensor } from '../../src/index.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';
import {
  loadCheckpoint,
  loadWeights,
  renderCheckpointError,
  resolveCheckpointDir,
  saveCheckpoint,
  type TrainerState,
} from '../../src/train/checkpoint.ts';
import { rmsprop } from '../../src/train/optim.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const vals = (t: unknown) => Array.from(dataSync(t as Tensor));
const make = (s: number) => ({
  params: { stem: { w: tensor([1 + s, 2, 3, 4], [2, 2]) }, blocks: [{ b: tensor([5 * s]) }, { b: tensor([6, 7]) }], head: tensor(new Float64Array([0.5, s])) },
  state: { bn: { mean: tensor([0.1 * s, 0.2]), var: tensor([1, 1]) } },
});
const trainer = (epoch: number): TrainerState => ({
  version: 1,
  epoch,
  stepInEpoch: 3,
  globalStep: 17,
  rngKey: [1337, 0],
  bestMetric: 0.75,
  bestEpoch: 1,
  weightsEpoch: null,
  partial: { lossSum: 1.5, count: 4, labels: [0, 1, 1, 0], scores: [0.1, 0.9, 0.4, 0.3], skipped: [] },
  model: { name: 'b0', options: { widthMult: 0.25 } },
  extra: { note: 'x' },
});

describe('checkpoints', () => {
  const opt = rmsprop({ momentum: 0.9 });

  it('round-trips weights, BN state, optimizer state and trainer state exactly', () => {
    const m = make(1);
    let o = opt.init(m.params);
    [, o] = opt.update(make(3).params, o, m.params, 0.1);
    const dir = path.join(tmp, 'a', 'last');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    expect(E.isRight(saveCheckpoint(dir, { ...m, opt: o, trainer: trainer(2) }))).toBe(true);
    const fresh = make(9);
    const r = loadCheckpoint(dir, { ...fresh, opt: opt.init(fresh.params) });
    if (E.isLeft(r)) throw new Error(renderCheckpointError(r.left));
    const ck = r.right;
    expect(vals((ck.params as typeof m.params).stem.w)).toEqual([2, 2, 3, 4]);
    expect(vals((ck.params as typeof m.params).blocks[0].b)).toEqual([5]);
    expect((ck.params as typeof m.params).head.dtype).toBe('float64');
    expect(vals((ck.state as typeof m.state).bn.mean)[0]).toBeCloseTo(0.1, 7);
    expect(ck.opt.step).toBe(1);
    expect(vals((ck.opt.slots.square_avg as typeof m.params).blocks[1].b)).toEqual(vals((o.slots.square_avg as typeof m.params).blocks[1].b));
    expect(vals((ck.opt.slots.momentum_buffer as typeof m.params).stem.w)).toEqual(vals((o.slots.momentum_buffer as typeof m.params).stem.w));
    expect(ck.trainer.partial).toEqual(trainer(2).partial);
    expect(ck.trainer.epoch).toBe(2);
    expect(ck.trainer.rngKey).toEqual([1337, 0]);
  });

  it('replaces an existing folder and leaves no temporary files', () => {
    const dir = path.join(tmp, 'b', 'last');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    const m = make(1);
    saveCheckpoint(dir, { ...m, opt: opt.init(m.params), trainer: trainer(1) });
    saveCheckpoint(dir, { ...m, opt: opt.init(m.params), trainer: trainer(5) });
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['last']);
    const r = loadCheckpoint(dir, { ...m, opt: opt.init(m.params) });
    expect(E.isRight(r) && r.right.trainer.epoch).toBe(5);
  });

  it('falls back to the old folder left by a crash between the renames', () => {
    const dir = path.join(tmp, 'c', 'last');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    const m = make(1);
    saveCheckpoint(dir, { ...m, opt: opt.init(m.params), trainer: trainer(4) });
    fs.renameSync(dir, `${dir}.old-123`);
    expect(resolveCheckpointDir(dir)).toBe(`${dir}.old-123`);
    const r = loadCheckpoint(dir, { ...m, opt: opt.init(m.params) });
    expect(E.isRight(r) && r.right.trainer.epoch).toBe(4);
  });

  it('reports a missing checkpoint, a shape mismatch and another optimizer as values', () => {
    const m = make(1);
    const missing = loadCheckpoint(path.join(tmp, 'nothing'), { ...m, opt: opt.init(m.params) });
    expect(E.isLeft(missing) && missing.left._tag).toBe('CheckpointMissing');
    const dir = path.join(tmp, 'd', 'last');
    fs.mkdirSync(path.dirname(dir), { recursive: true });
    saveCheckpoint(dir, { ...m, opt: opt.init(m.params), trainer: trainer(1) });
    const other = { ...m, params: { ...m.params, head: tensor([1, 2, 3]) } };
    const bad = loadWeights(dir, other);
    expect(E.isLeft(bad) && renderCheckpointError(bad.left)).toMatch(/'head' has shape \[2\] in the file but \[3\]/);
    const sg = rmsprop();
    const wrong = loadCheckpoint(dir, { ...m, opt: { ...sg.init(m.params), name: 'sgd' } });
    expect(E.isLeft(wrong) && renderCheckpointError(wrong.left)).toMatch(/rmsprop, not sgd/);
    fs.writeFileSync(path.join(dir, 'weights.safetensors'), 'garbage');
    const corrupt = loadWeights(dir, m);
    expect(E.isLeft(corrupt) && corrupt.left._tag).toBe('CheckpointCorrupt');
  });
});
