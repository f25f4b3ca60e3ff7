/** EfficientNet family and the paper's architectures: configs, parameter table, forward contract, errors, overfitting. */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Tensor, add, binaryCrossEntropyWithLogits, dataSync, div, io, item, mul, nn, random, sqrt, sub, tensor, treeLeaves, treeMap, valueAndGrad } from '../../src/index.ts';

/** Tiny versions of every architecture (fast on CPU): width 0.25, depth 0.25, 32 px low-res, 48 px high-res. */
const TINY = { widthMult: 0.25, depthMult: 0.25, lowSize: 32, highSize: 48, stochOutSize: 16 } as const;
const low = random.normal(random.key(1), [2, 3, 32, 32]);
const high = random.normal(random.key(2), [2, 3, 48, 48]);
const inputFor = (m: nn.Model): nn.Input => (nn.inputKind(m.config) === 'pair' ? { low, high } : m.config.arch === 'pure-stochastic' ? high : low);

describe('compound scaling', () => {
  it('rounds channels to multiples of 8, never below 90 %, and repeats up', () => {
    expect(nn.roundFilters(32, 1.4)).toBe(48);
    expect(nn.roundFilters(40, 1.4)).toBe(56);
    expect(nn.roundFilters(1280, 1.4)).toBe(1792);
    expect(nn.roundFilters(16, 0.25)).toBe(8);
    expect(nn.roundFilters(40, 0.95)).toBe(40); // 38 → 40
    expect(nn.roundFilters(20, 1)).toBe(24); // 20 → nearest 24 (rounds half up)
    expect(nn.roundRepeats(3, 1.8)).toBe(6);
    expect(nn.roundRepeats(1, 3.1)).toBe(4);
  });
  it('B4: stem 48, stages 24,32,56,112,160,272,448 × 2,4,4,6,6,8,2, head 1792', () => {
    const c = nn.modelConfig('b4');
    expect(c.stemCh).toBe(48);
    expect(c.headCh).toBe(1792);
    const stages = new Map<number, { out: number; n: number }>();
    for (const b of c.blocks) stages.set(b.stage, { out: b.outCh, n: (stages.get(b.stage)?.n ?? 0) + 1 });
    expect([...stages.values()].map((s) => s.out)).toEqual([24, 32, 56, 112, 160, 272, 448]);
    expect([...stages.values()].map((s) => s.n)).toEqual([2, 4, 4, 6, 6, 8, 2]);
  });
  it('drop-connect rates rise linearly with the block index up to 0.2; only the first block of a stage strides', () => {
    const c = nn.modelConfig('b0');
    c.blocks.forEach((b, i) => expect(b.dropRate).toBeCloseTo((0.2 * i) / 16, 12));
    expect(c.blocks.filter((b) => b.stride === 2).every((b) => b.index === 0)).toBe(true);
  });
  it('the paper architectures have the stated channel joins', () => {
    expect(nn.modelConfig('b0-64').blocks[0].inCh).toBe(64);
    expect(nn.modelConfig('b0-stochastic-stem').blocks[0].inCh).toBe(64);
    expect(nn.modelConfig('b4-stochastic-stem').blocks[0].inCh).toBe(96);
    const skip = nn.modelConfig('b0-stochastic-skip');
    expect(skip.ownBlocks).toBe(5);
    expect(skip.blocks[4].outCh).toBe(40);
    expect(skip.blocks[5].inCh).toBe(80);
    expect(nn.modelConfig('b0-stochastic-stem').stochOutSize).toBe(112);
    expect(nn.modelConfig('b4-stochastic-stem').stochOutSize).toBe(190);
    expect(nn.defaultSizes('b0-full-split')).toEqual({ low: 224, high: 1024 });
    expect(nn.defaultSizes('b4')).toEqual({ low: 380, high: null });
    expect(nn.defaultSizes('b0-pure-stochastic')).toEqual({ low: null, high: 1024 });
  });
});

describe('the architecture table (docs/models.md)', () => {
  // One output; pinned so any change to the builder shows up here and in the README table.
  const PINNED: Record<string, number> = {
    b0: 4_008_829,
    b1: 6_514_465,
    b2: 7_702_403,
    b3: 10_697_769,
    b4: 17_550_409,
    b5: 28_342_833,
    b6: 40_738_009,
    b7: 63_789_521,
    'b0-64': 4_012_197,
    'b0-stochastic-stem': 4_012_197,
    'b2-stochastic-stem': 7_705_771,
    'b4-stochastic-stem': 17_556_997,
    'b0-stochastic-skip': 4_140_329,
    'b0-full-split': 8_017_657,
    'b4-full-split': 35_100_817,
    'b0-pure-stochastic': 4_008_829,
  };
  it('pins every paper model’s parameter count', () => {
    expect([...nn.modelNames].sort()).toEqual(Object.keys(PINNED).sort());
    for (const name of nn.modelNames) expect(nn.configParameterCount(nn.modelConfig(name)), name).toBe(PINNED[name]);
  });
  it('docs/models.md and the README show the current table', () => {
    const doc = readFileSync(new URL('../../docs/models.md', import.meta.url), 'utf8');
    expect(doc).toContain(nn.modelTable());
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(nn.modelTable());
  });
  it('a real B0 is built with 4,008,829 parameters, each repeated block with its own weights', () => {
    const m = nn.createModel('b0', { key: random.key(0) });
    expect(nn.parameterCount(m)).toBe(4_008_829);
    const blocks = (m.params as any).blocks as any[];
    const a = dataSync(blocks[6].dw.conv.w);
    const b = dataSync(blocks[7].dw.conv.w);
    expect(blocks[6].dw.conv.w).not.toBe(blocks[7].dw.conv.w);
    expect(a.some((v, i) => v !== b[i])).toBe(true);
  });
});

describe('forward contract on tiny models', () => {
  for (const name of nn.modelNames.filter((n) => !/^b[1-7]$/.test(n) && n !== 'b4-full-split')) {
    it(`${name}: logits (N, classes), new state of the same structure, counts agree with the summary`, () => {
      const m = nn.createModel(name, { key: random.key(3), numClasses: 3, ...TINY });
      const x = inputFor(m);
      const [y, s] = nn.forward(m, x, { training: true, key: random.key(4) });
      expect(y.shape).toEqual([2, 3]);
      expect(treeLeaves(s).map((t) => t.shape)).toEqual(treeLeaves(m.state).map((t) => t.shape));
      expect(nn.parameterCount(m)).toBe(nn.configParameterCount(m.config));
      const sd = nn.summaryData(m, nn.inputKind(m.config) === 'pair' ? { low: low.shape, high: high.shape } : (x as Tensor).shape);
      expect(sd.totalParams).toBe(nn.parameterCount(m));
      expect(sd.rows[sd.rows.length - 1].out).toEqual([2, 3]);
      const yEval = nn.predict(m, x, random.key(5));
      expect(yEval.shape).toEqual([2, 3]);
      expect(dataSync(yEval).every(Number.isFinite)).toBe(true);
    });
  }

  it('is pure: training returns new running statistics and leaves the model’s untouched', () => {
    const m = nn.createModel('b0', { key: random.key(3), ...TINY });
    const before = treeLeaves(m.state).map((t) => [...dataSync(t)]);
    const [, s] = nn.forward(m, low, { training: true, key: random.key(4) });
    expect(treeLeaves(m.state).map((t) => [...dataSync(t)])).toEqual(before);
    expect(dataSync((s as any).stem.mean).some((v) => v !== 0)).toBe(true);
    const [, s2] = nn.forward(m, low, { training: false });
    expect(s2).toEqual(m.state);
  });

  it('stochastic windows are random in eval too: a key gives the same logits, another key others; plain models ignore the key', () => {
    const m = nn.createModel('b0-stochastic-stem', { key: random.key(3), ...TINY });
    const a = dataSync(nn.predict(m, { low, high }, random.key(10)));
    expect([...dataSync(nn.predict(m, { low, high }, random.key(10)))]).toEqual([...a]);
    const b = dataSync(nn.predict(m, { low, high }, random.key(11)));
    expect(a.some((v, i) => v !== b[i])).toBe(true);
    expect(() => nn.forward(m, { low, high }, { training: false })).toThrow(/pass ctx.key/);
    const p = nn.createModel('b0', { key: random.key(3), ...TINY });
    expect([...dataSync(nn.predict(p, low, random.key(1)))]).toEqual([...dataSync(nn.predict(p, low, random.key(2)))]);
  });

  it('per-batch windows (perImage: false) work too', () => {
    const m = nn.createModel('b0-full-split', { key: random.key(3), perImage: false, ...TINY });
    expect(nn.predict(m, { low, high }, random.key(1)).shape).toEqual([2, 1]);
  });

  it('params and state survive a safetensors round trip (same predictions)', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nn-st-'));
    try {
      const m = nn.createModel('b0-stochastic-skip', { key: random.key(3), ...TINY });
      io.saveTree(path.join(dir, 'p.safetensors'), { params: m.params, state: m.state }, { model: m.config.name });
      const back = io.loadTree(path.join(dir, 'p.safetensors')).tree as any;
      const m2 = { config: m.config, params: back.params, state: back.state };
      expect([...dataSync(nn.predict(m2, { low, high }, random.key(1)))]).toEqual([...dataSync(nn.predict(m, { low, high }, random.key(1)))]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bad input names the expected input', () => {
  const single = nn.createModel('b0', { key: random.key(0), ...TINY });
  const pair = nn.createModel('b0-stochastic-stem', { key: random.key(0), ...TINY });
  it('wrong channels', () => {
    expect(() => nn.predict(single, random.normal(random.key(0), [1, 1, 32, 32]))).toThrow(/b0: expected a tensor \(N, 3, H, W\).*got input of shape \[1,1,32,32\]/);
  });
  it('too small an image', () => {
    expect(() => nn.predict(single, random.normal(random.key(0), [1, 3, 16, 16]))).toThrow(/at least 32 px.*\(too small\)/);
    expect(() => nn.predict(pair, { low, high: random.normal(random.key(0), [2, 3, 24, 24]) })).toThrow(/high: \(N, 3, 48, 48\) \(at least 33 px\).*too small/);
  });
  it('a single tensor for a two-input model, and mismatched low-res size', () => {
    expect(() => nn.predict(pair, low)).toThrow(/expected \{ low: \(N, 3, 32, 32\).*got a single tensor/);
    expect(() => nn.predict(pair, { low: random.normal(random.key(0), [2, 3, 40, 40]), high })).toThrow(/stem output 20×20 cannot be concatenated with the stochastic stem's 16×16/);
  });
  it('unknown names and a high-res image too small for the stochastic stem at creation', () => {
    expect(() => nn.createModel('b9', { key: random.key(0) })).toThrow(/unknown model 'b9'/);
    expect(() => nn.createModel('b0-full-split', { key: random.key(0), highSize: 200 })).toThrow(/needs windows of 225 px but the high-res image is only 200 px/);
  });
});

describe('a tiny model overfits a fixed batch', () => {
  /** Adam (β = 0.9, 0.999) over the params tree. */
  function adam(lr: number) {
    let t = 0;
    let m: any = null;
    let v: any = null;
    return (params: any, g: any) => {
      t++;
      m = treeMap((gg: Tensor, mm?: Tensor) => add(mul(mm ?? mul(gg, 0), 0.9), mul(gg, 0.1)), g, ...(m ? [m] : []));
      v = treeMap((gg: Tensor, vv?: Tensor) => add(mul(vv ?? mul(gg, 0), 0.999), mul(mul(gg, gg), 0.001)), g, ...(v ? [v] : []));
      const [c1, c2] = [1 - 0.9 ** t, 1 - 0.999 ** t];
      return treeMap((p: Tensor, mm: Tensor, vv: Tensor) => sub(p, mul(div(div(mm, c1), add(sqrt(div(vv, c2)), 1e-8)), lr)), params, m, v);
    };
  }
  for (const name of ['b0', 'b0-full-split']) {
    it(`${name}: BCE falls below 0.05 in 8 Adam steps`, () => {
      const model = nn.createModel(name, { key: random.key(0), ...TINY, dropout: 0, dropConnectRate: 0 });
      const x = nn.inputKind(model.config) === 'pair' ? { low: random.normal(random.key(1), [4, 3, 32, 32]), high: random.normal(random.key(2), [4, 3, 48, 48]) } : random.normal(random.key(1), [4, 3, 32, 32]);
      const y = tensor([1, 0, 1, 0], [4, 1]);
      const step = adam(0.01);
      let [params, state] = [model.params, model.state];
      const losses: number[] = [];
      for (let i = 0; i < 8; i++) {
        const [[loss, s], g] = valueAndGrad(
          (p: nn.Params) => {
            const [logits, st] = nn.apply(model.config, p, state, x, { training: true, key: random.key(100 + i) });
            return [binaryCrossEntropyWithLogits(logits, y), st] as [Tensor, nn.State];
          },
          { hasAux: true },
        )(params);
        losses.push(item(loss));
        params = step(params, g);
        state = s;
      }
      expect(losses[0]).toBeGreaterThan(0.3);
      expect(losses[losses.length - 1]).toBeLessThan(0.05);
    });
  }
});

describe('summary', () => {
  it('b0-full-split prints a torchinfo-like table with totals and receptive fields', () => {
    const m = nn.createModel('b0-full-split', { key: random.key(0) });
    const s = nn.summary(m);
    expect(s).toMatch(/Layer \(type\)\s+Output Shape\s+Param #\s+Mult-Adds/);
    expect(s).toMatch(/low\.stem \(Conv3x3 s2 \+ BN \+ SiLU\)\s+\[1,32,112,112\]\s+928\s+10,838,016/);
    expect(s).toMatch(/stoch\.stem \(StochasticConv3x3 s2 \(225² windows, per image\) \+ BN \+ SiLU\)\s+\[1,32,112,112\]\s+928/);
    expect(s).toMatch(/low\.head \(Conv1x1 \+ BN \+ SiLU\)\s+\[1,1280,7,7\]\s+412,160/);
    expect(s).toMatch(/pool \(GlobalAvgPool ×2 \+ Concat\)\s+\[1,2560\]/);
    expect(s).toMatch(/fc \(Linear\)\s+\[1,1\]\s+2,561\s+2,560/);
    expect(s).toContain('Total params: 8,017,657');
    expect(s).toContain('Total mult-adds: 769.07 M');
    expect(s).toMatch(/Receptive field \(low-res path\): 851 × 851 px of the low-res image \(jump 32/);
    expect(s).toMatch(/Receptive field \(stochastic path\): 851 × 851 px in window coordinates/);
    // B0's mult-adds agree with the commonly quoted 0.39 G per 224-px image; the split is two of them.
    const b0 = nn.configSummary(nn.modelConfig('b0')).totalMacs;
    expect(b0).toBeGreaterThan(0.38e9);
    expect(b0).toBeLessThan(0.40e9);
    expect(2 * (b0 - 1280) + 2560).toBe(769_072_064);
  });
});

describe('headInit', () => {
  it("'zeros' starts every logit at 0; an unknown init is an error", () => {
    const m = nn.createModel('b0', { key: random.key(1), lowSize: 32, widthMult: 0.25, depthMult: 0.25, headInit: 'zeros' });
    const logits = nn.predict(m, random.normal(random.key(2), [2, 3, 32, 32]));
    expect(Array.from(dataSync(logits))).toEqual([0, 0]);
    const d = nn.createModel('b0', { key: random.key(1), lowSize: 32, widthMult: 0.25, depthMult: 0.25 });
    expect(Array.from(dataSync(nn.predict(d, random.normal(random.key(2), [2, 3, 32, 32])))).some((v) => v !== 0)).toBe(true);
    expect(() => nn.createModel('b0', { key: random.key(1), headInit: 'ones' as never })).toThrow(/headInit must be 'efficientnet' or 'zeros'/);
  });
});
