/**
 * Architectures as data (src/nn/archs.ts): every model's summary rows, parameter and state names,
 * initial weights, outputs and tap names equal the snapshot written before architectures became
 * data (test/fixtures/arch-snapshot.json, scripts/fixtures/arch_snapshot.ts), and a new entry is a
 * working model.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import { NAMES, TINY, TINY_NAMES, snapshot } from '../../scripts/fixtures/arch_snapshot.ts';
import { setFma } from '../../src/backends/cpu/fast/fma.ts';

const { nn, random } = E;
const fixture = JSON.parse(readFileSync(new URL('../fixtures/arch-snapshot.json', import.meta.url), 'utf8')) as ReturnType<typeof snapshot>;

describe('architectures as data keep every model as it was', () => {
  // The snapshot's engine had no fused multiply-add (relaxed SIMD off in Node 20): this file's kernels neither
  // (each test file runs in a process of its own, so none were generated before this).
  setFma(false);
  const now = snapshot(E);
  it('covers every registered model', () => {
    for (const name of nn.modelNames) expect(NAMES, name).toContain(name);
  });
  for (const name of NAMES) {
    it(`${name}: summary rows, parameter count and mult-adds`, () => expect(now.full[name]).toEqual(fixture.full[name]));
  }
  for (const name of TINY_NAMES) {
    it(`${name} (tiny): summary, parameter/state names, initial weights, logits, new state, tap names`, () => expect(now.tiny[name]).toEqual(fixture.tiny[name]));
  }
});

describe('the registry', () => {
  it('b2-stochastic-stem is one entry: B2 stages, a 32 + 32-channel merge, a working forward pass', () => {
    expect(nn.MODELS['b2-stochastic-stem']).toEqual({ variant: 'b2', arch: 'stochastic-stem' });
    const cfg = nn.modelConfig('b2-stochastic-stem');
    const b2 = nn.modelConfig('b2');
    expect(cfg.blocks.map((b) => b.outCh)).toEqual(b2.blocks.map((b) => b.outCh));
    expect(cfg.blocks[0].inCh).toBe(2 * b2.stemCh);
    // B2 plus the stochastic stem, with a first block that takes 64 channels instead of 32.
    const extra = nn.convBn.paramCount(nn.efficientnet.stochStemConfig(cfg)) + nn.mbconv.paramCount(cfg.blocks[0]) - nn.mbconv.paramCount(b2.blocks[0]);
    expect(nn.configParameterCount(cfg)).toBe(nn.configParameterCount(b2) + extra);
    const m = nn.createModel('b2-stochastic-stem', { key: random.key(0), ...TINY });
    const y = nn.predict(m, { low: random.normal(random.key(1), [2, 3, 32, 32]), high: random.normal(random.key(2), [2, 3, 48, 48]) }, random.key(3));
    expect(y.shape).toEqual([2, TINY.numClasses]);
  });
  it('any variant takes any architecture by name; unknown names list the models and architectures', () => {
    expect(nn.modelConfig('b3-full-split').blocks).toEqual(nn.modelConfig('b3').blocks);
    expect(() => nn.modelConfig('b0-turbo')).toThrow(/unknown model 'b0-turbo'; models: b0, b1.*b2-stochastic-stem.*\(or bN-<architecture>: plain, stochastic-stem, stochastic-skip, full-split, pure-stochastic\)/);
  });
  it('the image sides are named by image: a pure-stochastic model reads only a high-res image', () => {
    expect(nn.modelConfig('b0-pure-stochastic').sides).toEqual({ low: null, high: 1024 });
    expect(nn.modelConfig('b0-full-split', { lowSize: 64, highSize: 256 }).sides).toEqual({ low: 64, high: 256 });
    expect(nn.modelConfig('b4').sides).toEqual({ low: 380, high: null });
    // A side option for an image the model does not read is ignored, not moved to the other image.
    expect(nn.modelConfig('b0-pure-stochastic', { lowSize: 64 }).sides).toEqual({ low: null, high: 1024 });
    expect(nn.modelConfig('b0', { highSize: 512 }).sides).toEqual({ low: 224, high: null });
    // The input from images by name: the pair, or the one image there is.
    expect(nn.inputOf({ low: 'l', high: 'h' })).toEqual({ low: 'l', high: 'h' });
    expect([nn.inputOf({ low: null, high: 'h' }), nn.inputOf({ low: 'l' })]).toEqual(['h', 'l']);
    expect(() => nn.inputOf({})).toThrow(/neither a low-res nor a high-res image/);
  });
  it('skipStages moves the merge of stochastic-skip: both copies own the first stages, the merged block takes twice the channels', () => {
    const cfg = nn.modelConfig('b0-stochastic-skip', { skipStages: 2 });
    expect(cfg.ownBlocks).toBe(3);
    expect(cfg.blocks[3].inCh).toBe(2 * cfg.blocks[2].outCh);
    expect(() => nn.modelConfig('b0-stochastic-skip', { skipStages: 7 })).toThrow(/skipStages must be an integer in \[1, 6\], got 7/);
  });
  it('inspection reads layer roles off the architecture: the default Grad-CAM layer, the stochastic stem, each layer\'s image', () => {
    const roles = (name: string) => {
      const cfg = nn.modelConfig(name);
      return [E.inspect.defaultLayer(cfg), E.inspect.stochasticStemLayer(cfg), ['stem', 'stochStem', 'lowBlocks.0', 'stochBlocks.0', 'low.head', 'stoch.blocks.1', 'blocks.3', 'head'].map((l) => nn.efficientnet.layerImage(cfg, l)).join(' ')];
    };
    expect(roles('b0')).toEqual(['head', null, 'low low low low low low low low']);
    expect(roles('b0-stochastic-stem')).toEqual(['head', 'stochStem', 'low high low low low low low low']);
    expect(roles('b0-stochastic-skip')).toEqual(['head', 'stochStem', 'low high low high low low low low']);
    expect(roles('b0-full-split')).toEqual(['low.head', 'stoch.stem', 'low low low low low high low low']);
    expect(roles('b0-pure-stochastic')).toEqual(['stochStem', 'stochStem', 'high high high high high high high high']);
  });
});
