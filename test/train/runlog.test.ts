/** RunLog: the run folder's tables, their columns, and what a resume keeps of them. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RunLog, predictionsCsv } from '../../src/train/runlog.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'runlog-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const read = (f: string) => fs.readFileSync(f, 'utf8');
const row = (epoch: number, auc: number) => ({ Epoch: epoch, 'Train Loss': 0.5 / epoch, 'Val Loss': 0.6, 'Train RoC': 0.7, 'Val RoC': auc, LR: 1e-3 });

describe('RunLog', () => {
  it('writes the tables with their columns; an epoch written again replaces its row', () => {
    const log = new RunLog(path.join(tmp, 'a'));
    log.batch(1, 0.75);
    log.batch(2, NaN);
    log.epoch(row(1, 0.5));
    log.epoch(row(2, Infinity));
    log.epoch(row(2, 0.8));
    log.timingRow(1, 12.34567, 10, 2.3456, 3.14159);
    expect(read(log.perBatch)).toBe('Batch,Train Loss\n1,0.75\n2,NaN\n');
    expect(read(log.perEpoch)).toBe('Epoch,Train Loss,Val Loss,Train RoC,Val RoC,LR\n1,0.5,0.6,0.7,0.5,0.001\n2,0.25,0.6,0.7,0.8,0.001\n');
    expect(read(log.timing)).toBe('Epoch,Seconds,Train Seconds,Val Seconds,Train Images/s\n1,12.346,10,2.346,3.142\n');
    expect(log.curves()).toEqual({ epochs: [1, 2], trainLoss: [0.5, 0.25], valLoss: [0.6, 0.6], trainAuc: [0.7, 0.7], valAuc: [0.5, 0.8] });
  });

  it('lists each skipped image once, quoting what needs it', () => {
    const log = new RunLog(path.join(tmp, 'b'));
    const r = ['x,1', '/d/x,1.jpg', 'corrupt: "bad"\r\nheader'] as const;
    log.skipped([r, ['y', '/d/y.jpg', 'too small']]);
    log.skipped([r]);
    expect(read(log.skippedFile)).toBe('image_name,path,reason\n"x,1","/d/x,1.jpg","corrupt: ""bad""\r\nheader"\ny,/d/y.jpg,too small\n');
  });

  it('resumeAt keeps exactly the rows written before the checkpoint, and the skipped list', () => {
    const dir = path.join(tmp, 'c');
    const log = new RunLog(dir);
    for (let s = 1; s <= 6; s++) log.batch(s, s / 10);
    for (let e = 1; e <= 3; e++) {
      log.epoch(row(e, 0.5 + e / 10));
      log.timingRow(e, e, e, 0, 1);
    }
    log.skipped([['a', '/a', 'why, "so"']]);
    // A crash after epoch 3's rows but before its checkpoint: the checkpoint says 2 epochs, 4 steps.
    const again = new RunLog(dir);
    again.resumeAt(2, 4);
    expect(read(again.perBatch).trim().split('\n')).toHaveLength(1 + 4);
    expect(read(again.timing).trim().split('\n').map((l) => l.split(',')[0])).toEqual(['Epoch', '1', '2']);
    expect(again.curves()!.epochs).toEqual([1, 2]);
    again.skipped([['a', '/a', 'why, "so"']]);
    again.epoch(row(3, 0.9));
    expect(again.curves()!.valAuc.at(-1)).toBe(0.9);
    expect(read(again.skippedFile).trim().split('\n')).toHaveLength(2);
  });

  it('reset removes an earlier run\'s tables', () => {
    const log = new RunLog(path.join(tmp, 'c'));
    log.reset();
    expect(fs.readdirSync(log.dir).filter((f) => f.endsWith('.csv'))).toEqual([]);
  });
});

describe('predictions.csv', () => {
  it('binary with labels; multiclass without labels names the predicted class', () => {
    expect(predictionsCsv({ names: ['a', 'b,c'], labels: [1, 0], probs: [0.9, 0.25] }, ['other', 'melanoma'], 1)).toBe('image_name,label,prob\na,1,0.9\n"b,c",0,0.25\n');
    expect(predictionsCsv({ names: ['a'], labels: null, probs: [0.2, 0.7, 0.1] }, ['x', 'y', 'z'], 3)).toBe('image_name,pred,prob_x,prob_y,prob_z\na,y,0.2,0.7,0.1\n');
  });
});
