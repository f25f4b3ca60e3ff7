/** Layers: float64 finite-difference gradient checks and behaviour (BN statistics, dropout, drop-connect, init). */
import { describe, expect, it } from 'vitest';
import { type Tensor, checkGradients, dataSync, mean, nn, random, silu, tensor } from '../../src/index.ts';

const TOL = 1e-6;
const vals = (seed: number, n: number, scale = 1) => Array.from(random.uniformArray(random.key(seed), n), (u) => scale * (2 * u - 1));
const inp = (seed: number, shape: number[], scale = 1) => ({ shape, values: vals(seed, shape.reduce((p, d) => p * d, 1), scale) });

describe('gradient checks (float64, central differences)', () => {
  const convCases: [string, nn.ConvConfig, number[]][] = [
    ['dense 3×3 s1 same + bias', { inCh: 2, outCh: 3, kernel: 3, stride: 1, groups: 1, bias: true, padding: 'same' }, [2, 2, 5, 5]],
    ['dense 3×3 s2 same (asymmetric TF padding)', { inCh: 2, outCh: 2, kernel: 3, stride: 2, groups: 1, bias: false, padding: 'same' }, [1, 2, 6, 6]],
    ['depthwise 5×5 s2 symmetric', { inCh: 3, outCh: 3, kernel: 5, stride: 2, groups: 3, bias: false, padding: 'symmetric' }, [2, 3, 7, 6]],
    ['pointwise 1×1 + bias', { inCh: 4, outCh: 2, kernel: 1, stride: 1, groups: 1, bias: true, padding: 'same' }, [2, 4, 3, 3]],
  ];
  for (const [name, cfg, xs] of convCases) {
    it(`conv ${name}`, () => {
      const ws = nn.conv.weightShape(cfg);
      const r = checkGradients(
        ([x, w, b]) => nn.conv.apply(cfg, cfg.bias ? { w, b } : { w }, x),
        { inputs: [inp(1, xs), inp(2, ws), inp(3, [cfg.outCh])].slice(0, cfg.bias ? 3 : 2) },
      );
      expect(r.maxError).toBeLessThan(TOL);
    });
  }

  it('conv output sizes: same = ⌈n/s⌉; symmetric = torchvision', () => {
    const x = tensor(new Float32Array(1 * 1 * 7 * 8), [1, 1, 7, 8]);
    for (const padding of ['same', 'symmetric'] as const) {
      const cfg: nn.ConvConfig = { inCh: 1, outCh: 1, kernel: 3, stride: 2, groups: 1, bias: false, padding };
      const y = nn.conv.apply(cfg, nn.conv.init(random.key(0), cfg), x);
      expect(y.shape).toEqual([1, 1, nn.convOutSize(cfg, 7), nn.convOutSize(cfg, 8)]);
      expect(y.shape).toEqual([1, 1, 4, 4]);
    }
  });

  const bnCfg: nn.BatchNormConfig = { channels: 3, eps: 1e-3, momentum: 0.1 };
  for (const rank of [4, 2]) {
    it(`batchNorm in training mode (custom VJP), rank ${rank}: x, γ and β`, () => {
      const xs = rank === 4 ? [3, 3, 2, 2] : [5, 3];
      const s = nn.batchNorm.init(bnCfg, 'float64').state;
      const r = checkGradients(([x, g, b]) => nn.batchNorm.apply(bnCfg, { scale: g, bias: b }, s, x, { training: true })[0], {
        inputs: [inp(4, xs, 2), { shape: [3], values: [0.5, 1.5, -1] }, inp(5, [3])],
      });
      expect(r.maxError).toBeLessThan(TOL);
    });
  }
  for (const training of [true, false]) {
    it(`batchNorm with fused SiLU (${training ? 'training' : 'eval'}): gradients, and equal to silu(batchNorm(x))`, () => {
      const s = { mean: tensor(new Float64Array([0.1, -0.2, 0.3])), var: tensor(new Float64Array([0.5, 1, 2])) };
      const fused = ([x, g, b]: Tensor[]) => nn.batchNorm.apply(bnCfg, { scale: g, bias: b }, s, x, { training }, 'silu')[0];
      const inputs = [inp(4, [3, 3, 2, 2], 2), { shape: [3], values: [0.5, 1.5, -1] }, inp(5, [3])];
      expect(checkGradients(fused, { inputs }).maxError).toBeLessThan(TOL);
      const xs = inputs.map((i) => tensor(new Float64Array(i.values), i.shape));
      const plain = silu(nn.batchNorm.apply(bnCfg, { scale: xs[1], bias: xs[2] }, s, xs[0], { training })[0]);
      const a = dataSync(fused(xs));
      const b = dataSync(plain);
      a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(1e-12));
    });
  }
  it('batchNorm in eval mode: x, γ, β', () => {
    const s = { mean: tensor(new Float64Array([0.1, -0.2, 0.3])), var: tensor(new Float64Array([0.5, 1, 2])) };
    const r = checkGradients(([x, g, b]) => nn.batchNorm.apply(bnCfg, { scale: g, bias: b }, s, x, { training: false })[0], {
      inputs: [inp(6, [2, 3, 2, 2]), inp(7, [3]), inp(8, [3])],
    });
    expect(r.maxError).toBeLessThan(TOL);
  });

  it('linear', () => {
    const cfg = { inFeatures: 4, outFeatures: 3, bias: true };
    const r = checkGradients(([x, w, b]) => nn.linear.apply(cfg, { w, b }, x), { inputs: [inp(9, [2, 4]), inp(10, [3, 4]), inp(11, [3])] });
    expect(r.maxError).toBeLessThan(TOL);
  });

  it('squeeze-and-excitation: input and all four parameters', () => {
    const cfg = { channels: 4, squeeze: 2 };
    const r = checkGradients(
      ([x, w1, b1, w2, b2]) => nn.squeezeExcite.apply(cfg, { reduce: { w: w1, b: b1 }, expand: { w: w2, b: b2 } }, x),
      { inputs: [inp(12, [2, 4, 3, 3]), inp(13, [2, 4, 1, 1]), inp(14, [2]), inp(15, [4, 2, 1, 1]), inp(16, [4])] },
    );
    expect(r.maxError).toBeLessThan(TOL);
  });

  it('silu', () => {
    expect(checkGradients(([x]) => nn.silu(x), { inputs: [inp(17, [7], 3)] }).maxError).toBeLessThan(TOL);
  });

  it('dropout and drop-connect with a fixed key (the mask is a constant)', () => {
    const ctx = { training: true, key: random.key(3) };
    expect(checkGradients(([x]) => nn.dropout(x, 0.4, ctx), { inputs: [inp(18, [4, 5])] }).maxError).toBeLessThan(TOL);
    expect(checkGradients(([x]) => nn.dropConnect(x, 0.4, ctx), { inputs: [inp(19, [4, 2, 2, 2])] }).maxError).toBeLessThan(TOL);
  });

  for (const training of [false, true]) {
    it(`MBConv (expand 3, k3, SE, skip) in ${training ? 'training' : 'eval'} mode: input and parameters`, () => {
      const cfg: nn.MBConvConfig = { inCh: 2, outCh: 2, expand: 3, kernel: 3, stride: 1, seRatio: 0.25, dropRate: 0, stage: 0, index: 0, padding: 'same', bnEps: 1e-3, bnMomentum: 0.01 };
      const init = nn.mbconv.init(random.key(4), cfg, 'float64');
      const p = init.params as any;
      // Differentiate x and a parameter of each part: expand conv, depthwise conv, SE, project BN.
      const r = checkGradients(
        ([x, we, wd, wse, gp]) => {
          const params = { ...p, expand: { ...p.expand, conv: { w: we } }, dw: { ...p.dw, conv: { w: wd } }, se: { ...p.se, reduce: { ...p.se.reduce, w: wse } }, project: { ...p.project, bn: { ...p.project.bn, scale: gp } } };
          return nn.mbconv.apply(cfg, params, init.state, x, { training })[0];
        },
        {
          inputs: [inp(20, [3, 2, 3, 3]), ...[p.expand.conv.w, p.dw.conv.w, p.se.reduce.w].map((t: Tensor) => ({ shape: [...t.shape], values: [...dataSync(t)] })), { shape: [2], values: [0.7, 1.3] }],
        },
        { step: 1e-5 },
      );
      expect(r.maxError).toBeLessThan(1e-5);
    });
  }
});

describe('batchNorm behaviour', () => {
  const cfg: nn.BatchNormConfig = { channels: 2, eps: 1e-5, momentum: 0.1 };
  const x = tensor(Float64Array.from(vals(30, 2 * 2 * 3 * 3, 4)), [2, 2, 3, 3]);
  const { params, state } = nn.batchNorm.init(cfg, 'float64');

  it('training: normalises with batch statistics and returns PyTorch-style running stats; nothing mutated', () => {
    const [y, s] = nn.batchNorm.apply(cfg, params, state, x, { training: true });
    const m = dataSync(mean(y, [0, 2, 3]));
    expect(Math.abs(m[0]) + Math.abs(m[1])).toBeLessThan(1e-12);
    const xd = dataSync(x);
    for (let c = 0; c < 2; c++) {
      const xs: number[] = [];
      for (let n = 0; n < 2; n++) for (let i = 0; i < 9; i++) xs.push(xd[n * 18 + c * 9 + i]);
      const mu = xs.reduce((p, q) => p + q, 0) / 18;
      const unbiased = xs.reduce((p, q) => p + (q - mu) ** 2, 0) / 17;
      expect(dataSync(s.mean)[c]).toBeCloseTo(0.1 * mu, 12);
      expect(dataSync(s.var)[c]).toBeCloseTo(0.9 + 0.1 * unbiased, 12);
      const biased = (unbiased * 17) / 18;
      const ys = dataSync(y);
      expect(ys[c * 9]).toBeCloseTo((xd[c * 9] - mu) / Math.sqrt(biased + 1e-5), 10);
    }
    expect([...dataSync(state.mean)]).toEqual([0, 0]);
    expect([...dataSync(state.var)]).toEqual([1, 1]);
  });

  it('eval: uses the running statistics and returns the state unchanged', () => {
    const s = { mean: tensor(new Float64Array([1, 2])), var: tensor(new Float64Array([4, 9])) };
    const [y, s2] = nn.batchNorm.apply(cfg, params, s, x, { training: false });
    expect(s2).toBe(s);
    expect(dataSync(y)[0]).toBeCloseTo((dataSync(x)[0] - 1) / Math.sqrt(4 + 1e-5), 12);
    expect(dataSync(y)[9]).toBeCloseTo((dataSync(x)[9] - 2) / Math.sqrt(9 + 1e-5), 12);
  });

  it('bad input names the expected shape', () => {
    expect(() => nn.batchNorm.apply(cfg, params, state, tensor(new Float64Array(12), [1, 3, 2, 2]), { training: false })).toThrow(/expected input \(N, 2, H, W\)/);
  });
});

describe('dropout, drop-connect', () => {
  const x = tensor(new Float32Array(4000).fill(1), [40, 10, 10]);
  it('identity in eval and at rate 0; needs a key when training', () => {
    expect(nn.dropout(x, 0.5, { training: false })).toBe(x);
    expect(nn.dropConnect(x, 0.5, { training: false })).toBe(x);
    expect(nn.dropout(x, 0, { training: true })).toBe(x);
    expect(() => nn.dropout(x, 0.5, { training: true })).toThrow(/needs a random key/);
  });
  it('dropout zeroes about `rate` of the elements and rescales the rest (deterministic in the key)', () => {
    const y = dataSync(nn.dropout(x, 0.25, { training: true, key: random.key(1) }));
    const kept = y.filter((v) => v !== 0);
    expect(Math.abs(kept.length / 4000 - 0.75)).toBeLessThan(0.03);
    expect(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6)).toBe(true);
    expect([...dataSync(nn.dropout(x, 0.25, { training: true, key: random.key(1) }))]).toEqual([...y]);
  });
  it('drop-connect drops whole samples (stochastic depth, per sample) and rescales survivors', () => {
    const y = dataSync(nn.dropConnect(x, 0.5, { training: true, key: random.key(2) }));
    let dropped = 0;
    for (let n = 0; n < 40; n++) {
      const row = y.slice(n * 100, n * 100 + 100);
      expect(row.every((v) => v === row[0])).toBe(true);
      expect([0, 2]).toContain(row[0]);
      if (row[0] === 0) dropped++;
    }
    expect(dropped).toBeGreaterThan(8);
    expect(dropped).toBeLessThan(32);
  });
});

describe('initialisers', () => {
  const std = (t: Tensor) => {
    const d = Array.from(dataSync(t));
    const m = d.reduce((p, v) => p + v, 0) / d.length;
    return Math.sqrt(d.reduce((p, v) => p + (v - m) ** 2, 0) / d.length);
  };
  it('EfficientNet conv: N(0, 2/fan_out) with TF fan_out (kh·kw·O/groups); dense: U(±1/√out)', () => {
    const w = nn.efficientNetConv(1)(random.key(0), [64, 16, 3, 3], 'float64');
    expect(std(w) / Math.sqrt(2 / (64 * 9))).toBeCloseTo(1, 1);
    const dw = nn.efficientNetConv(64)(random.key(1), [64, 1, 5, 5], 'float64');
    expect(std(dw) / Math.sqrt(2 / 25)).toBeCloseTo(1, 1);
    const d = dataSync(nn.efficientNetDense(random.key(2), [100, 300], 'float64'));
    expect(Math.max(...d)).toBeLessThanOrEqual(0.1);
    expect(Math.min(...d)).toBeGreaterThanOrEqual(-0.1);
    expect(Math.max(...d)).toBeGreaterThan(0.099);
  });
  it('He and Glorot', () => {
    expect(std(nn.heNormal(random.key(3), [50, 200], 'float64')) / Math.sqrt(2 / 200)).toBeCloseTo(1, 1);
    expect(std(nn.heNormalFanOut(random.key(3), [50, 20, 3, 3], 'float64')) / Math.sqrt(2 / 450)).toBeCloseTo(1, 1);
    const g = dataSync(nn.glorotUniform(random.key(4), [100, 200], 'float64'));
    const a = Math.sqrt(6 / 300);
    expect(Math.max(...g)).toBeLessThanOrEqual(a);
    expect(Math.max(...g)).toBeGreaterThan(0.98 * a);
  });
  it('are deterministic in the key', () => {
    expect([...dataSync(nn.heNormal(random.key(5), [4, 4], 'float32'))]).toEqual([...dataSync(nn.heNormal(random.key(5), [4, 4], 'float32'))]);
  });
});
