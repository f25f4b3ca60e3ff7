/**
 * Parity with torchvision's EfficientNet (fixture: scripts/fixtures/torch_efficientnet.py →
 * test/fixtures/efficientnet.json). Weights and inputs come from a closed-form formula of
 * (name, index) that both sides compute bit-exactly (test/nn/formula.ts).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Tensor, binaryCrossEntropyWithLogits, dataSync, io, item, nn, tensor, valueAndGrad } from '../../src/index.ts';
import { formula } from './formula.ts';

const fx = JSON.parse(readFileSync(new URL('../fixtures/efficientnet.json', import.meta.url), 'utf8'));

/** A torchvision state dict for efficientnet_b0 with `classes` outputs, from the formula. */
function stateDict(classes: number): Record<string, Tensor> {
  const cfg = nn.efficientnet.torchvisionConfig('b0', classes);
  return Object.fromEntries(nn.efficientnet.torchvisionEntries(cfg).map((e) => [e.key, formula(e.key, e.shape)]));
}

/**
 * Float32 against PyTorch's float32, each bound ~10x the largest error measured on this fixture
 * (logits 2.7e-6, loss 1.2e-7, gradients 5.9e-5, running statistics 6.8e-6): a regression of one
 * order of magnitude fails.
 */
const TOL = { logits: 2.5e-5, loss: 1.5e-6, grad: 6e-4, stats: 7e-5 };

const relErr = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-12);
};

describe('torchvision parity', () => {
  it('parameter counts equal torchvision for B0–B7 with 1000 classes and with 1', () => {
    for (const [k, n] of Object.entries(fx.parameterCounts as Record<string, number>)) {
      const [v, c] = k.split('/');
      expect(nn.configParameterCount(nn.modelConfig(v, { numClasses: Number(c) })), k).toBe(n);
    }
    expect(fx.parameterCounts['b0/1000']).toBe(5_288_548);
    expect(fx.parameterCounts['b0/1']).toBe(4_008_829);
    expect(fx.parameterCounts['b4/1000']).toBe(19_341_616);
    expect(fx.parameterCounts['b4/1']).toBe(17_550_409);
    expect(nn.parameterCount(nn.fromTorchvision('b0', stateDict(1)))).toBe(4_008_829);
  });

  it('an imported B0 gives torchvision eval-mode logits within 2.5e-5 (measured 2.7e-6; two input sizes)', () => {
    const model = nn.fromTorchvision('b0', stateDict(1000));
    expect(model.config.numClasses).toBe(1000);
    expect(model.config.padding).toBe('symmetric');
    expect(model.config.bnEps).toBe(1e-5);
    for (const f of fx.forward) {
      const x = formula(f.input, f.shape);
      const y = dataSync(nn.predict(model, x));
      expect(y.length).toBe(f.logits.length);
      expect(relErr(y, f.logits), `${f.input}`).toBeLessThan(TOL.logits);
      if (f.shape[0] === 2) {
        // The two images' logits differ by ~10: the input matters, so the check is discriminating.
        const d = (a: ArrayLike<number>) => Array.from({ length: 1000 }, (_, i) => a[i] - a[1000 + i]);
        expect(relErr(d(y), d(f.logits))).toBeLessThan(TOL.logits);
      }
    }
  });

  it('one training step: BCE gradients and running statistics match torchvision in train mode', () => {
    const t = fx.trainStep;
    const model = nn.fromTorchvision('b0', stateDict(1), { dropout: 0, dropConnectRate: 0 });
    const x = formula(t.input, t.shape);
    const targets = tensor(new Float32Array(t.targets), [t.targets.length, 1]);
    const [[loss, aux], grads] = valueAndGrad(
      (p: nn.Params) => {
        const [logits, state] = nn.apply(model.config, p, model.state, x, { training: true });
        return [binaryCrossEntropyWithLogits(logits, targets), { logits, state }] as [Tensor, { logits: Tensor; state: nn.State }];
      },
      { hasAux: true },
    )(model.params);
    expect(relErr(dataSync(aux.logits), t.logits)).toBeLessThan(TOL.logits);
    expect(Math.abs(item(loss) - t.loss)).toBeLessThan(TOL.loss);
    const entries = new Map(nn.efficientnet.torchvisionEntries(model.config).map((e) => [e.key, e]));
    const at = (tree: unknown, path: readonly (string | number)[]) => path.reduce<any>((n, p) => n[p], tree) as Tensor;
    for (const [k, g] of Object.entries(t.grads as Record<string, { shape: number[]; first: number[]; sumSquares: number }>)) {
      const e = entries.get(k)!;
      const ours = dataSync(at(grads, e.path));
      expect([...at(grads, e.path).shape], k).toEqual(g.shape);
      expect(relErr(ours.subarray(0, g.first.length), g.first), k).toBeLessThan(TOL.grad);
      let ss = 0;
      for (const v of ours) ss += v * v;
      expect(Math.abs(ss - g.sumSquares) / g.sumSquares, k).toBeLessThan(TOL.grad);
    }
    // The returned state holds the running statistics PyTorch has after the step (momentum 0.1).
    const s = aux.state as any;
    expect(relErr(dataSync(s.stem.mean), t.runningStats['features.0.1.running_mean'])).toBeLessThan(TOL.stats);
    expect(relErr(dataSync(s.stem.var), t.runningStats['features.0.1.running_var'])).toBeLessThan(TOL.stats);
    expect(relErr(dataSync(s.head.var), t.runningStats['features.8.1.running_var'])).toBeLessThan(TOL.stats);
    // Nothing was mutated: the model still holds the imported statistics.
    expect(relErr(dataSync((model.state as any).stem.var), dataSync(formula('features.0.1.running_var', [32])))).toBe(0);
  });

  it('toTorchvision ∘ fromTorchvision is the identity on the state dict (plus num_batches_tracked)', () => {
    const sd = stateDict(3);
    const back = nn.toTorchvision(nn.fromTorchvision('b0', sd));
    for (const [k, v] of Object.entries(sd)) {
      const [a, b] = [dataSync(back[k] as Tensor), dataSync(v)];
      expect(a.length === b.length && a.every((x, i) => x === b[i]), k).toBe(true);
    }
    const extra = Object.keys(back).filter((k) => !(k in sd));
    expect(extra.length).toBe(49);
    expect(extra.every((k) => k.endsWith('num_batches_tracked'))).toBe(true);
    // … and the exported dict (with I64 counters) imports again, also as the nested tree a
    // safetensors file loads into (features: [[…], …]).
    expect(nn.parameterCount(nn.fromTorchvision('b0', back))).toBe(nn.configParameterCount(nn.efficientnet.torchvisionConfig('b0', 3)));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'tv-'));
    try {
      io.saveTree(path.join(dir, 'b0.safetensors'), back);
      const tree = io.loadTree(path.join(dir, 'b0.safetensors')).tree as any;
      expect(Array.isArray(tree.features)).toBe(true);
      const again = nn.fromTorchvision('b0', tree);
      expect([...dataSync((again.params as any).blocks[3].dw.conv.w)]).toEqual([...dataSync(sd['features.3.0.block.1.0.weight'])]);
      expect([...dataSync((again.state as any).head.var)]).toEqual([...dataSync(sd['features.8.1.running_var'])]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('missing, unexpected and mis-shaped keys give one error listing each with expected and found shapes', () => {
    const sd: Record<string, Tensor> = stateDict(1);
    delete sd['features.1.0.block.1.fc1.bias'];
    sd['features.0.0.weight'] = tensor(new Float32Array(32 * 3 * 5 * 5), [32, 3, 5, 5]);
    sd['features.9.0.weight'] = tensor([1, 2]);
    let msg = '';
    try {
      nn.fromTorchvision('b0', sd);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain('3 problems');
    expect(msg).toMatch(/features\.1\.0\.block\.1\.fc1\.bias: missing \(expected \[8\], found nothing\)/);
    expect(msg).toMatch(/features\.0\.0\.weight: shape \(expected \[32,3,3,3\], found \[32,3,5,5\]\)/);
    expect(msg).toMatch(/features\.9\.0\.weight: unexpected \(expected nothing, found \[2\]\)/);
  });
});
