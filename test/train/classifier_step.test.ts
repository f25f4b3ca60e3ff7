/**
 * classifier's training step and resumable runs on a small synthetic image set (no dataset needed):
 * the jitted forward/backward pass gives the eager one's loss, gradients and BN state (and the
 * jitted evaluation the eager one's numbers); a run
 * checkpointed after epoch 1 (saveRun) and resumed (loadRun → fit's `resume`) ends with the same
 * weights and accuracy as an uninterrupted one; a checkpoint of other settings is refused by name.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nn, random } from '../../src/index.ts';
import { flatten } from '../../src/autograd/pytree.ts';
import type { IdxImageSet } from '../../src/data/idx.ts';
import { idxBatch } from '../../src/data/idx.ts';
import { adam, evaluate, fit, gradStep, loadRun, oneHot, saveRun } from '../../src/train/classifier.ts';
import { jit } from '../../src/jit/jit.ts';
import { dataSync, item } from '../../src/tensor/tensor.ts';

/** n 10×10 images whose label is the brightest quadrant-ish band (learnable, 4 classes). */
function synthetic(n: number, seed: number): IdxImageSet {
  const u = random.uniformArray(random.key(seed), n * 100);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 4);
  const images = Uint8Array.from(u, (v, j) => {
    const i = Math.floor(j / 100);
    const row = Math.floor((j % 100) / 10);
    return Math.floor(v * 120) + (Math.floor(row / 2.5) === labels[i] ? 120 : 0);
  });
  return { images, labels, count: n, rows: 10, cols: 10 };
}

const { sequential, convBnAct, depthwiseSeparable, globalAvgPool, dropout, dense } = nn.layers;
const makeNet = () =>
  nn.createNetwork(sequential(convBnAct(1, 8, 3), depthwiseSeparable(8, 16, { stride: 2, dilation: 1 }), depthwiseSeparable(16, 16, { dilation: 2 }), globalAvgPool(), dropout(0.1), dense(16, 4)), {
    key: random.key(3),
    inputShape: [1, 1, 10, 10],
  });
const leaves = (t: unknown) => flatten(t)[0].map((x) => Array.from(dataSync(x)));
const maxDiff = (a: number[][], b: number[][]) => Math.max(...a.map((r, i) => Math.max(...r.map((v, j) => Math.abs(v - b[i][j])))));

describe('classifier training step', () => {
  it('the jitted forward and backward pass gives the eager loss, gradients and BN state', () => {
    const net = makeNet();
    const set = synthetic(16, 1);
    const { x, labels } = idxBatch(set, Int32Array.from({ length: 16 }, (_, i) => i), { flip: true, key: random.key(5) });
    const f = gradStep(net);
    const args = [net.params, net.state, x, oneHot(labels, 4), random.key(7)] as const;
    const eager = f(...args);
    const compiled = jit(f)(...args);
    // Measured: loss equal, gradients within 7e-8, BN statistics within 1.2e-7 (float32, fused loops).
    expect(Math.abs(item(compiled.loss) - item(eager.loss))).toBeLessThan(1e-6);
    expect(maxDiff(leaves(compiled.grads), leaves(eager.grads))).toBeLessThan(1e-6);
    expect(maxDiff(leaves(compiled.state), leaves(eager.state))).toBeLessThan(1e-6);
  });

  it('the jitted evaluation gives the eager accuracy, loss and confusion matrix', () => {
    const net = makeNet();
    const set = synthetic(40, 6);
    const [compiled, eager] = [true, false].map((j) => evaluate(net, net.params, net.state, set, { classes: 4, batchSize: 16, jit: j }));
    // Measured: the same confusion matrix and the same mean loss to the last bit.
    expect(compiled.confusion).toEqual(eager.confusion);
    expect(Math.abs(compiled.loss - eager.loss)).toBeLessThan(1e-6);
  });

  it('oneHot names a label out of range', () => {
    expect(() => oneHot(Int32Array.from([0, 4]), 4)).toThrow(/label 4 of image 1 is out of range for 4 classes/);
  });
});

describe('classifier runs resumed from a checkpoint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'classifier-run-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const train = synthetic(48, 1);
  const test = synthetic(32, 2);
  const opts = { epochs: 2, batchSize: 16, lr: 0.01, flip: true, padCrop: 1, seed: 4, classes: 4 };
  const settings = { epochs: 2, batchSize: 16, lr: 0.01 };

  it('continues after the saved epoch with the numbers of an uninterrupted run', () => {
    const whole = fit(makeNet(), train, test, opts);
    const ck = join(dir, 'ck');
    const net = makeNet();
    const optimizer = adam();
    expect(loadRun(ck, net, optimizer, settings)).toBeNull();
    // Interrupted after the first epoch: its onEpoch saved the state.
    const first = fit(net, train, test, { ...opts, optimizer, onEpoch: (r, ts) => r.epoch === 1 && saveRun(ck, { ts, epoch: 1, wallSeconds: 5, settings, last: r.test }) });
    expect(first.history[0].test.accuracy).toBe(whole.history[0].test.accuracy);
    const fresh = makeNet();
    const resume = loadRun(ck, fresh, optimizer, settings)!;
    expect([resume.epoch, resume.wallSeconds, resume.ts.opt.step]).toEqual([1, 5, 3]);
    const rest = fit(fresh, train, test, { ...opts, optimizer, resume });
    expect(rest.history.map((h) => h.epoch)).toEqual([2]);
    expect(rest.history[0].test.accuracy).toBe(whole.history[1].test.accuracy);
    expect(maxDiff(leaves(rest.ts.params), leaves(whole.ts.params))).toBe(0);
  });

  it('refuses a checkpoint saved under other settings, naming the setting', () => {
    expect(() => loadRun(join(dir, 'ck'), makeNet(), adam(), { ...settings, lr: 0.02 })).toThrow(/saved with lr = 0.01, but this run has lr = 0.02/);
    expect(() => fit(makeNet(), train, test, { ...opts, resume: { ts: null as never, epoch: 3 } })).toThrow(/resume.epoch must be an integer in \[0, 2\], got 3/);
  });
});
