/**
 * nn.layers: parameter counts, BN state and output shapes against PyTorch for the same definitions
 * (test/fixtures/combinators.json from scripts/fixtures/torch_combinators.py), the summary's
 * receptive fields, checkpoints and optimizer steps over combinator trees, and the errors.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as Ei from 'fp-ts/lib/Either.js';
import { type Tensor, checkGradients, dataSync, io, keystr, mul, nn, random, sum, treeFlattenWithPath, treeLeaves, valueAndGrad } from '../../src/index.ts';
import { BN_FILE, WEIGHTS_FILE, loadWeights } from '../../src/train/checkpoint.ts';
import { adam } from '../../src/train/optim.ts';

const L = nn.layers;
const fx = JSON.parse(fs.readFileSync(new URL('../fixtures/combinators.json', import.meta.url), 'utf8')) as {
  cases: { name: string; input: number[]; params: number; bnStats: number; out: number[] }[];
};

/** The definitions of scripts/fixtures/torch_combinators.py, written with nn.layers. */
const DEFS: Record<string, () => nn.Layer> = {
  dwsnet: () => nn.dwsNet(),
  'dwsnet-small': () => nn.dwsNet({ widths: [8, 16, 16, 16, 16, 16, 16] }),
  'conv5x5-s2-bias': () => L.conv(3, 16, 5, { stride: 2, bias: true }),
  'conv3x3-groups4-d3': () => L.conv(8, 16, 3, { groups: 4, dilation: 3 }),
  convBnAct: () => L.convBnAct(3, 16, 3),
  'depthwiseSeparable-d2-s2': () => L.depthwiseSeparable(16, 32, { stride: 2, dilation: 2 }),
  residual: () => L.residual(L.sequential(L.convBnAct(16, 16, 3), L.convBnAct(16, 16, 3, { act: 'none' }))),
  'lenet-ish': () => L.sequential(L.conv(1, 8, 3, { bias: true, padding: 'valid' }), L.relu(), L.maxPool(2), L.flatten(), L.dense(8 * 13 * 13, 10)),
  'avgpool-dense-nobias': () => L.sequential(L.avgPool(2), L.flatten(), L.dense(4 * 4 * 4, 10, { bias: false })),
};

const size = (tree: unknown) => treeLeaves(tree).reduce((p, t) => p + t.size, 0);

describe('nn.layers against PyTorch', () => {
  it('covers every fixture case', () => expect(Object.keys(DEFS).sort()).toEqual(fx.cases.map((c) => c.name).sort()));
  for (const c of fx.cases) {
    it(`${c.name}: ${c.params} parameters, ${c.bnStats} BN statistics, output [${c.out}]`, () => {
      const net = nn.createNetwork(DEFS[c.name](), { key: random.key(0), inputShape: c.input });
      expect(nn.parameterCount(net)).toBe(c.params);
      expect(size(net.state)).toBe(c.bnStats);
      expect(nn.describeNetwork(net.layer, c.input).out.shape).toEqual(c.out);
      const [y] = nn.forwardNetwork(net, random.normal(random.key(1), c.input), { training: false });
      expect(y.shape).toEqual(c.out);
    });
  }
});

describe('nn.layers summary', () => {
  const net = nn.createNetwork(nn.dwsNet(), { key: random.key(0), inputShape: [1, 1, 28, 28], name: 'dwsnet' });

  it('prints parameters, mult-adds and the receptive field of each layer', () => {
    const s = nn.summary(net);
    expect(s).toMatch(/Total params: 75,850/);
    // stem 3 → b1 5 → b2 (s2) 7 → b3 (d2: span 5 at jump 2) 15 → b4 (s2) 19 → b5 (d2 at jump 4) 35 → b6 43.
    expect(nn.describeNetwork(net.layer, [1, 1, 28, 28]).rows.slice(0, 7).map((r) => r.rf.size)).toEqual([3, 5, 7, 15, 19, 35, 43]);
    expect(s).toMatch(/Receptive field \(last layer before global pooling\): 43 × 43 px \(jump 4\); covers the 28 × 28 input/);
    expect(nn.receptiveField(net)).toEqual({ size: 43, jump: 4, covers: true });
  });

  it('counts mult-adds as torchinfo does (convs and dense layers)', () => {
    // stem 28²·32·9 = 225,792; b1 dw 28²·32·9 + pw 28²·32·64 = 1,831,424.
    const rows = nn.describeNetwork(net.layer, [1, 1, 28, 28]).rows;
    expect(rows[0].macs).toBe(225_792);
    expect(rows[1].macs).toBe(1_831_424);
  });

  it('names parameters like a PyTorch state dict', () => {
    const small = nn.createNetwork(L.sequential(L.convBnAct(1, 2, 3), L.globalAvgPool(), L.dense(2, 3)), { key: random.key(0), inputShape: [1, 1, 5, 5] });
    const names = treeFlattenWithPath(small.params)[0].map(([p]) => keystr(p)).sort();
    expect(names).toEqual(['0.bn.bias', '0.bn.scale', '0.conv.w', '2.b', '2.w']);
  });
});

describe('nn.layers with the rest of the engine', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'combinators-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const def = () => L.sequential({ body: L.depthwiseSeparable(2, 4, { dilation: 2 }), pool: L.globalAvgPool(), drop: L.dropout(0.2), fc: L.dense(4, 3) });
  const x = random.normal(random.key(5), [4, 2, 6, 6]);

  it('trains: BN state is threaded, Adam updates every parameter, and a checkpoint round-trips', () => {
    const net = nn.createNetwork(def(), { key: random.key(0), inputShape: [4, 2, 6, 6] });
    const [[, state], grads] = valueAndGrad((p: typeof net.params) => {
      const [y, s] = net.layer.apply(p, net.state, x, { training: true, key: random.key(2) });
      return [sum(mul(y, y)), s] as [Tensor, unknown];
    }, { hasAux: true })(net.params);
    expect([...dataSync((state as any).body.dw.bn.mean)]).not.toEqual([0, 0]);
    const opt = adam();
    const [params] = opt.update(grads, opt.init(net.params), net.params, 0.1);
    treeLeaves(params).forEach((p, i) => expect([...dataSync(p)]).not.toEqual([...dataSync(treeLeaves(net.params)[i])]));
    io.saveTree(path.join(dir, WEIGHTS_FILE), params);
    io.saveTree(path.join(dir, BN_FILE), state);
    const back = loadWeights(dir, { params: net.params, state: net.state });
    if (Ei.isLeft(back)) throw new Error(JSON.stringify(back.left));
    treeLeaves(back.right.params).forEach((p, i) => expect([...dataSync(p)]).toEqual([...dataSync(treeLeaves(params)[i])]));
    treeLeaves(back.right.state).forEach((p, i) => expect([...dataSync(p)]).toEqual([...dataSync(treeLeaves(state)[i])]));
  });

  it('gradients through a dilated, strided depthwise-separable block match finite differences', () => {
    const layer = L.sequential(L.depthwiseSeparable(2, 3, { dilation: 2, stride: 2 }), L.globalAvgPool(), L.dense(3, 2));
    const { params, state } = layer.init(random.key(3), 'float64') as { params: any[]; state: unknown };
    const values = (t: Tensor) => ({ values: [...dataSync(t)], shape: [...t.shape] });
    const r = checkGradients(
      ([xx, w]) => {
        const p = [{ ...params[0], dw: { ...params[0].dw, conv: { w } } }, params[1], params[2]];
        return layer.apply(p, state as unknown[], xx, { training: true })[0];
      },
      { inputs: [values(random.normal(random.key(4), [3, 2, 7, 7], 0, 1, { dtype: 'float64' })), values(params[0].dw.conv.w)], attrs: {} },
    );
    expect(r.maxError).toBeLessThan(1e-6);
  });

  it('names the layer and the shapes when the input does not fit', () => {
    expect(() => nn.createNetwork(def(), { key: random.key(0), inputShape: [1, 3, 6, 6] })).toThrow(/Conv3x3 depthwise d2: expected input \(N, 2, H, W\), got \[1,3,6,6\]/);
    expect(() => nn.createNetwork(L.residual(L.conv(2, 4, 1)), { key: random.key(0), inputShape: [1, 2, 4, 4] })).toThrow(/Residual\(Conv1x1\): the body maps \[1,2,4,4\] to \[1,4,4,4\]/);
    expect(() => nn.createNetwork(L.dense(8, 2), { key: random.key(0), inputShape: [1, 4] })).toThrow(/Linear: expected input \(N, 8\), got \[1,4\]/);
    expect(() => L.dropout(1)).toThrow(/dropout: rate must be in \[0, 1\), got 1/);
    expect(() => L.conv(3, 4, 3, { groups: 2 })).toThrow(/conv: channels 3 → 4 are not divisible by groups 2/);
    expect(() => L.sequential({ a: L.relu(), b: 3 as unknown as nn.Layer })).toThrow(/sequential: child 'b' is not a layer/);
  });
});
