import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as E from 'fp-ts/lib/Either.js';
import { dataSync, random } from '../../src/index.ts';
import { createModel } from '../../src/nn/model.ts';
import { toTorchvision } from '../../src/nn/torchvision.ts';
import { saveTree } from '../../src/io/safetensors.ts';
import { saveCheckpoint } from '../../src/train/checkpoint.ts';
import { rmsprop } from '../../src/train/optim.ts';
import { initFromWeights } from '../../src/train/run.ts';
import type { Tensor } from '../../src/tensor/tensor.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'train-init-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const same = (a: unknown, b: unknown) => expect(Array.from(dataSync(a as Tensor))).toEqual(Array.from(dataSync(b as Tensor)));

describe('--init-weights', () => {
  it('torchvision names initialise both backbones of b0-full-split (all but the classifier)', () => {
    const tv = createModel('b0', { key: random.key(5), numClasses: 1000, padding: 'symmetric', bnEps: 1e-5 });
    const file = path.join(tmp, 'tv.safetensors');
    saveTree(file, toTorchvision(tv));
    const fresh = createModel('b0-full-split', { key: random.key(6), lowSize: 64, highSize: 256 });
    const r = initFromWeights(file, fresh.config, fresh.params, fresh.state);
    if (E.isLeft(r)) throw new Error(r.left.message);
    const p = r.right.params as any;
    const s = r.right.state as any;
    const src = tv.params as any;
    same(p.low.blocks[3].dw.conv.w ?? p.low.blocks[3].dw.w, src.blocks[3].dw.conv.w ?? src.blocks[3].dw.w);
    same(p.stoch.blocks[3].project.conv.w ?? p.stoch.blocks[3].project.w, src.blocks[3].project.conv.w ?? src.blocks[3].project.w);
    same(p.stoch.stem.conv.w, src.stem.conv.w);
    same(s.low.head.mean ?? s.low.head.runningMean, (tv.state as any).head.mean ?? (tv.state as any).head.runningMean);
    // The 1-logit classifier cannot come from a 1000-class one.
    same(p.fc.w, (fresh.params as any).fc.w);
    expect(r.right.note).toMatch(/initialised \d+\/\d+ tensors .*torchvision names.*kept fresh: fc\./);
  }, 60_000);

  it('a checkpoint folder of ours restores every tensor; a mismatched one is a usage error', () => {
    const m = createModel('b0', { key: random.key(1), widthMult: 0.25, depthMult: 0.25, lowSize: 32 });
    const dir = path.join(tmp, 'ck');
    const opt = rmsprop();
    saveCheckpoint(dir, {
      params: m.params,
      state: m.state,
      opt: opt.init(m.params),
      trainer: {
        version: 1, epoch: 1, stepInEpoch: 0, globalStep: 1, rngKey: [0, 0], bestMetric: null, bestEpoch: null,
        weightsEpoch: 1, partial: null, model: { name: 'b0', options: {} }, extra: {},
      },
    });
    const other = createModel('b0', { key: random.key(2), widthMult: 0.25, depthMult: 0.25, lowSize: 32 });
    const r = initFromWeights(dir, other.config, other.params, other.state);
    if (E.isLeft(r)) throw new Error(r.left.message);
    same((r.right.params as any).stem.conv.w, (m.params as any).stem.conv.w);
    const wider = createModel('b0', { key: random.key(2), widthMult: 0.5, depthMult: 0.25, lowSize: 32 });
    const bad = initFromWeights(dir, wider.config, wider.params, wider.state);
    expect(E.isLeft(bad) && bad.left._tag).toBe('UsageError');
    const missing = initFromWeights(path.join(tmp, 'none.safetensors'), wider.config, wider.params, wider.state);
    expect(E.isLeft(missing) && missing.left.message).toMatch(/file not found/);
  });
});
