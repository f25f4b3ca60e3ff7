/**
 * Grad-CAM, window maps and integrated gradients on tiny models (width and depth ×0.25): the map of
 * a model whose logit depends on one region only peaks there; the channel weights equal spatially
 * averaged gradients from central differences (float64); IG's attributions sum to f(x) − f(x').
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { type Tensor, add, dataSync, inspect, nn, random, tensor } from '../../src/index.ts';

const tiny = (name: string, dtype: 'float32' | 'float64' = 'float32', lowSize = 64) =>
  nn.createModel(name, { key: random.key(7), lowSize, highSize: 2 * lowSize, widthMult: 0.25, depthMult: 0.25, dtype });

/**
 * A fresh model maps a zero image to zero activations everywhere (convs have no bias, BN's β and
 * running mean are 0, SiLU(0) = 0, SE gates multiply zeros), so an image that is zero except for
 * a bright patch gives a logit that depends on the patch's neighbourhood only.
 */
function patchImage(side: number, rows: [number, number], cols: [number, number], dtype: 'float32' | 'float64'): Tensor {
  const a = new Float64Array(3 * side * side);
  const u = random.uniformArray(random.key(3), a.length);
  for (let c = 0; c < 3; c++) for (let y = rows[0]; y < rows[1]; y++) for (let x = cols[0]; x < cols[1]; x++) a[c * side * side + y * side + x] = 1 + u[c * side * side + y * side + x];
  return tensor(dtype === 'float64' ? a : Float32Array.from(a), [1, 3, side, side]);
}

/** Row, column of the maximum of an (1, h, w) map. */
const argmax2d = (t: Tensor): [number, number] => {
  const d = dataSync(t);
  let best = 0;
  for (let i = 1; i < d.length; i++) if (d[i] > d[best]) best = i;
  return [Math.floor(best / t.shape[2]), best % t.shape[2]];
};

/** The model with its dense layer negated when needed so that the map is not all zero (ReLU(−m) = 0 where ReLU(m) peaks). */
function positive(model: nn.Model, input: Parameters<typeof inspect.gradCam>[1], layer: string): [nn.Model, inspect.GradCam] {
  const cam = inspect.gradCam(model, input, { layer });
  if (Math.max(...dataSync(cam.map)) > 0) return [model, cam];
  const P = model.params as { fc: { w: Tensor; b: Tensor } };
  const flipped = { ...model, params: { ...model.params, fc: { w: tensor(Float32Array.from(dataSync(P.fc.w), (v) => -v), P.fc.w.shape), b: P.fc.b } } } as nn.Model;
  return [flipped, inspect.gradCam(flipped, input, { layer })];
}

describe('ctx.tap', () => {
  it("sees every spatial row of nn.summary, once each and with the summary's shapes, on every architecture", () => {
    for (const name of ['b0', 'b0-stochastic-stem', 'b0-stochastic-skip', 'b0-full-split', 'b0-pure-stochastic']) {
      const pure = name.endsWith('pure-stochastic');
      const model = nn.createModel(name, { key: random.key(1), lowSize: 32, highSize: 64, widthMult: 0.25, depthMult: 0.25, ...(pure ? { highSize: 64, stochOutSize: 16 } : {}) });
      const x = (s: number) => random.uniform(random.key(2), [1, 3, s, s]);
      const input = nn.inputAt(model.config.sides, x);
      const seen: { name: string; shape: number[] }[] = [];
      nn.apply(model.config, model.params, model.state, input, { training: false, key: random.key(3), tap: (n, t) => (seen.push({ name: n, shape: [...t.shape] }), t) });
      const rows = inspect.spatialLayers(model.config, nn.inputAt(model.config.sides, (s) => [1, 3, s, s]));
      const byName = (l: { name: string; shape: number[] }[]) => [...l].sort((p, q) => p.name.localeCompare(q.name));
      expect(byName(seen)).toEqual(byName(rows));
    }
  });
});

describe('gradCam', () => {
  it('peaks where the only informative region is (one-input b0, layer blocks.1 at 1/4 resolution)', () => {
    const x = patchImage(64, [40, 56], [8, 24], 'float32');
    const [, cam] = positive(tiny('b0'), x, 'blocks.1');
    expect(cam.map.shape).toEqual([1, 16, 16]);
    expect(cam.upsampled.shape).toEqual([1, 64, 64]);
    const [r, c] = argmax2d(cam.map);
    // The patch covers rows 10–13 and columns 2–5 of the 16 × 16 map.
    expect(r).toBeGreaterThanOrEqual(9);
    expect(r).toBeLessThanOrEqual(14);
    expect(c).toBeGreaterThanOrEqual(1);
    expect(c).toBeLessThanOrEqual(6);
    const [ur, uc] = argmax2d(cam.upsampled);
    expect([ur >= 36 && ur < 60, uc >= 4 && uc < 28]).toEqual([true, true]);
    // Far from the patch the activation, and so the map, is exactly zero.
    const m = dataSync(cam.map);
    for (let i = 0; i < 16; i++) for (let j = 8; j < 16; j++) expect(m[i * 16 + j]).toBe(0);
  });

  it('two-input models: a low-path layer of b0-full-split peaks at the patch; a bad layer name lists the layers', () => {
    const low = patchImage(64, [8, 24], [40, 56], 'float32');
    const high = tensor(new Float32Array(3 * 128 * 128), [1, 3, 128, 128]);
    const model = tiny('b0-full-split');
    const [, cam] = positive(model, { low, high }, 'low.blocks.1');
    const [r, c] = argmax2d(cam.map);
    expect([r >= 1 && r <= 6, c >= 9 && c <= 14]).toEqual([true, true]);
    expect(() => inspect.gradCam(model, { low, high }, { layer: 'blocks.99' })).toThrow(/no layer 'blocks\.99'.*low\.stem, low\.blocks\.0.*stoch\.head/);
  });

  it('channel weights equal the spatially averaged gradients from central differences (float64, every architecture)', () => {
    const cases: [string, string][] = [
      ['b0', 'stem'],
      ['b0-stochastic-stem', 'concat'],
      ['b0-stochastic-skip', 'stochBlocks.0'],
      ['b0-full-split', 'stoch.stem'],
    ];
    for (const [name, layer] of cases) {
      const model = tiny(name, 'float64', 32);
      const u = (k: number, s: number) => tensor(Float64Array.from(random.uniformArray(random.key(k), 3 * s * s), (v) => 2 * v - 1), [1, 3, s, s]);
      const input = model.config.sides.high ? { low: u(1, 32), high: u(2, 64) } : u(1, 32);
      const key = random.key(5);
      const cam = inspect.gradCam(model, input, { layer, key });
      const [, C, h, w] = cam.activation.shape;
      const alpha = dataSync(cam.weights);
      // α_c = (1/hw)·d/dt y(A + t·1_c): add t to every position of channel c through the tap.
      const eps = 1e-4;
      const y = (c: number, t: number) => {
        const tap = (n: string, x: Tensor) => (n === layer ? add(x, tensor(Float64Array.from({ length: C * h * w }, (_, i) => (Math.floor(i / (h * w)) === c ? t : 0)), [1, C, h, w])) : x);
        return dataSync(nn.apply(model.config, model.params, model.state, input, { training: false, key, tap })[0])[0];
      };
      for (let c = 0; c < C; c++) {
        const fd = (y(c, eps) - y(c, -eps)) / (2 * eps) / (h * w);
        // Measured: at most 2.5e-9 relative (float64 central differences, step 1e-4).
        expect(Math.abs(alpha[c] - fd)).toBeLessThan(3e-8 * (1e-6 + Math.abs(fd)));
      }
    }
  });
});

describe('windowMap', () => {
  it('is zero outside the windows drawn and lists a window per channel and pass', () => {
    const model = tiny('b0-stochastic-stem');
    const input = { low: random.uniform(random.key(1), [1, 3, 64, 64]), high: random.uniform(random.key(2), [1, 3, 128, 128]) };
    const keys = [random.key(11), random.key(12)];
    const wm = inspect.windowMap(model, input, { keys });
    expect(wm.shape).toEqual([1, 128, 128]);
    expect(wm.windows[0].length).toBe(2 * model.config.stemCh);
    const inside = new Uint8Array(128 * 128);
    for (const w of wm.windows[0]) for (let r = w.row; r < w.row + wm.slice; r++) inside.fill(1, r * 128 + w.col, r * 128 + w.col + wm.slice);
    let outsideMass = 0;
    let insideMass = 0;
    wm.map.forEach((v, i) => (inside[i] ? (insideMass += v) : (outsideMass += v)));
    expect(outsideMass).toBe(0);
    expect(insideMass).toBeGreaterThan(0);
    expect(() => inspect.windowMap(tiny('b0'), input.low)).toThrow(/no stochastic stem/);
  });
});

describe('integratedGradients', () => {
  it('completeness: attributions sum to f(x) − f(baseline), the error falling as 1/steps² (float64)', () => {
    for (const name of ['b0', 'b0-full-split']) {
      const model = tiny(name, 'float64', 32);
      const u = (k: number, s: number) => tensor(Float64Array.from(random.uniformArray(random.key(k), 3 * s * s), (v) => 2 * v - 1), [1, 3, s, s]);
      const input = model.config.sides.high ? { low: u(1, 32), high: u(2, 64) } : u(1, 32);
      const err = (steps: number) => {
        const ig = inspect.integratedGradients(model, input, { steps, key: random.key(4) });
        const a = ig.attributions;
        const total = (a instanceof Object && 'low' in a ? [a.low, a.high] : [a as Tensor]).reduce((p, t) => p + Array.from(dataSync(t)).reduce((q, v) => q + v, 0), 0);
        return { e: Math.abs(total - (ig.value[0] - ig.baselineValue[0])), diff: Math.abs(ig.value[0] - ig.baselineValue[0]) };
      };
      const coarse = err(2);
      const fine = err(8);
      expect(fine.diff).toBeGreaterThan(0);
      // Measured: relative error 1.6e-4 (b0) and 5e-5 (full-split) at 8 steps; 16–20× less than at 2 steps (midpoint rule: 1/steps²).
      expect(fine.e).toBeLessThan(2e-3 * fine.diff);
      expect(coarse.e / fine.e).toBeGreaterThan(8);
    }
  });
});

describe('explaining one image file', () => {
  it('names each view by its image: a pure-stochastic model has only a high-res one, and the heat map lies over it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'explain-'));
    const file = path.join(dir, 'a.png');
    await sharp(Buffer.from(Array.from({ length: 80 * 80 * 3 }, (_, i) => (i * 37) % 256)), { raw: { width: 80, height: 80, channels: 3 } }).png().toFile(file);
    const pair = tiny('b0-full-split', 'float32', 32);
    const pairImg = await inspect.loadImageInput(file, pair.config)();
    if (pairImg._tag === 'Left') throw new Error(pairImg.left._tag);
    expect([pairImg.right.low?.width, pairImg.right.high?.width]).toEqual([32, 64]);
    const pure = nn.createModel('b0-pure-stochastic', { key: random.key(7), highSize: 64, stochOutSize: 16, widthMult: 0.25, depthMult: 0.25 });
    const img = await inspect.loadImageInput(file, pure.config)();
    if (img._tag === 'Left') throw new Error(img.left._tag);
    expect([img.right.low, img.right.high?.width]).toEqual([null, 64]);
    const ig = inspect.explainInput(pure, img.right, { method: 'ig', steps: 2 });
    expect([ig.image, ig.high, ig.heat?.length, ig.highHeat]).toEqual([img.right.high, img.right.high, 64 * 64, null]);
    const cam = inspect.explainInput(pure, img.right);
    expect([cam.image, cam.high, cam.highHeat?.length]).toEqual([img.right.high, img.right.high, 64 * 64]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
