/**
 * Attribution maps for every architecture, written with the engine's own transforms.
 *
 * Grad-CAM (Selvaraju et al. 2017): for the activation A (N, C, h, w) at a named layer and the
 * chosen logit y, the channel weights are α_c = mean_ij ∂y/∂A_cij and the map is ReLU(Σ_c α_c A_c).
 * ∂y/∂A comes from `vjp` of the forward pass with a zero tensor added at that layer through
 * `ctx.tap`: the gradient w.r.t. the added zero is exactly the gradient w.r.t. the activation.
 *
 * Window map (stochastic models): the stochastic stem's per-channel Grad-CAM terms α_c·A_c, each
 * placed on the full-resolution image at the window that channel read, summed and rectified — where
 * in the high-res image the evidence came from.
 *
 * Integrated gradients (Sundararajan et al. 2017): (x − x')·∫₀¹ ∂y/∂x(x' + t(x − x')) dt by the
 * midpoint rule, for every input tensor of the model (low and high for two-input models).
 */
import { vjp } from '../autograd/transforms.ts';
import { treeMap } from '../autograd/pytree.ts';
import { type Model, apply } from '../nn/model.ts';
import { type Input, type ModelConfig, isPair, layerImage, layoutOf } from '../nn/efficientnet.ts';
import { configSummary, type SummaryInput } from '../nn/summary.ts';
import type { TapInfo } from '../nn/layers.ts';
import * as o from '../tensor/ops.ts';
import { type Key, key as makeKey } from '../tensor/random.ts';
import { fmt } from '../tensor/shape.ts';
import { Tensor, tensor } from '../tensor/tensor.ts';
import { dataSync } from '../tensor/index.ts';
import { resizeBilinear } from './maps.ts';

export interface AttributionOptions {
  /**
   * The logit column explained: default 0 for one-output models (the melanoma logit), else each
   * image's arg-max class.
   */
  readonly classIndex?: number;
  /** Key of the stochastic windows (and nothing else: the pass is in eval mode). Default key(0), as `nn.predict`. */
  readonly key?: Key;
}

export interface GradCamOptions extends AttributionOptions {
  /** A block output listed by `nn.summary` ('head', 'blocks.5', 'low.head', 'stoch.stem', …); default `defaultLayer(config)`. */
  readonly layer?: string;
}

export interface GradCam {
  readonly layer: string;
  /** Logits of the pass (N, classes) and the explained column per image. */
  readonly logits: Tensor;
  readonly classIndex: readonly number[];
  /** The layer's activation (N, C, h, w) and the gradient of the explained logit w.r.t. it. */
  readonly activation: Tensor;
  readonly gradient: Tensor;
  /** α: the spatially averaged gradients (N, C). */
  readonly weights: Tensor;
  /** ReLU(Σ_c α_c A_c) at the layer's resolution (N, h, w). */
  readonly map: Tensor;
  /** The map bilinearly upsampled to the image the layer's path reads (N, H, W). */
  readonly upsampled: Tensor;
  /** Stochastic-stem layers: the window corners of the pass (as stochasticConv2d takes them). */
  readonly windows: Int32Array | null;
}

const shapeOf = (input: Input): SummaryInput => (input instanceof Tensor ? input.shape : { low: input.low.shape, high: input.high.shape });

/** The layers Grad-CAM can use: every summary row with a spatial (N, C, h, w) output, with its shape. */
export function spatialLayers(cfg: ModelConfig, input?: SummaryInput): { name: string; shape: number[] }[] {
  return configSummary(cfg, input)
    .rows.filter((r) => r.out.length === 4)
    .map((r) => ({ name: r.name, shape: [...r.out] }));
}

/**
 * The last spatial layer whose positions are positions of an input image: the low-res path's last
 * (the shared 'head' when the paths merge before it, 'low.head' when each path has its own), or,
 * without a low-res path, the stochastic stem (positions inside each window).
 */
export function defaultLayer(cfg: ModelConfig): string {
  const spec = layoutOf(cfg);
  const low = spec.paths.find((p) => p.input === 'low');
  return low ? (low.head ?? spec.trunk.head!) : spec.paths[0].stem;
}

/** The name of the stochastic stem layer, or null for models without one. */
export function stochasticStemLayer(cfg: ModelConfig): string | null {
  return layoutOf(cfg).paths.find((p) => p.input === 'high')?.stem ?? null;
}

/** Layers whose spatial axes are window coordinates of the high-res image rather than image positions. */
const onStochasticPath = (cfg: ModelConfig, layer: string): boolean => layerImage(cfg, layer) === 'high';

/** The image a layer's map is upsampled to: the high-res one for stochastic-path layers, else the low-res one. */
function targetImage(cfg: ModelConfig, input: Input, layer: string): Tensor {
  if (input instanceof Tensor) return input;
  return onStochasticPath(cfg, layer) ? input.high : input.low;
}

/** The explained column per image: opts.classIndex, else 0 for one output, else the arg-max. */
function explainedClasses(logits: Float32Array | Float64Array, n: number, classes: number, classIndex?: number): number[] {
  if (classIndex !== undefined) {
    if (!Number.isInteger(classIndex) || classIndex < 0 || classIndex >= classes) {
      throw new Error(`classIndex ${classIndex} is out of range for a model with ${classes} output${classes === 1 ? '' : 's'}`);
    }
    return Array.from({ length: n }, () => classIndex);
  }
  if (classes === 1) return Array.from({ length: n }, () => 0);
  return Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    return best;
  });
}

/** A one-hot cotangent (N, classes) selecting each image's explained logit. */
const oneHot = (cls: readonly number[], classes: number, dtype: Tensor['dtype']): Tensor => {
  const ct = new Float32Array(cls.length * classes);
  cls.forEach((c, i) => (ct[i * classes + c] = 1));
  return tensor(dtype === 'float64' ? Float64Array.from(ct) : ct, [cls.length, classes]);
};

/**
 * Grad-CAM at a named layer, for one- and two-input models alike.
 * @example const cam = inspect.gradCam(model, { low, high }, { layer: 'low.head', key: random.key(1) });
 */
export function gradCam(model: Model, input: Input, opts: GradCamOptions = {}): GradCam {
  const cfg = model.config;
  const layer = opts.layer ?? defaultLayer(cfg);
  const layers = spatialLayers(cfg, shapeOf(input));
  const at = layers.find((l) => l.name === layer);
  if (!at) throw new Error(`gradCam(${cfg.name}): no layer '${layer}'; layers with a spatial output: ${layers.map((l) => l.name).join(', ')}`);
  const key = opts.key ?? makeKey(0);
  let windows: Int32Array | null = null;
  const f = (delta: Tensor) => {
    let act: Tensor | null = null;
    const tap = (name: string, x: Tensor, info?: TapInfo) => {
      if (name !== layer) return x;
      if (x.shape.join() !== delta.shape.join()) throw new Error(`gradCam(${cfg.name}): layer '${layer}' is ${fmt(x.shape)}, the summary says ${fmt(delta.shape)}`);
      act = x;
      windows = info?.windows ?? null;
      return o.add(x, delta);
    };
    const [logits] = apply(cfg, model.params, model.state, input, { training: false, key, tap });
    if (!act) throw new Error(`gradCam(${cfg.name}): the forward pass never reached layer '${layer}'`);
    return { logits, act: act as Tensor };
  };
  const [out, pullback] = vjp(f, o.zeros(at.shape, cfg.dtype));
  const [n, classes] = out.logits.shape;
  const cls = explainedClasses(dataSync(out.logits) as Float32Array, n, classes, opts.classIndex);
  const gradient = pullback({ logits: oneHot(cls, classes, cfg.dtype), act: o.zeros(at.shape, cfg.dtype) });
  const weights = o.mean(gradient, [2, 3]);
  const [, C, h, w] = at.shape;
  const map = o.relu(o.sum(o.mul(out.act, o.reshape(weights, [n, C, 1, 1])), [1]));
  const img = targetImage(cfg, input, layer);
  const [H, W] = [img.shape[2], img.shape[3]];
  const host = dataSync(map);
  const up = new Float32Array(n * H * W);
  for (let i = 0; i < n; i++) up.set(resizeBilinear(host.subarray(i * h * w, (i + 1) * h * w), h, w, H, W), i * H * W);
  return { layer, logits: out.logits, classIndex: cls, activation: out.act, gradient, weights, map, upsampled: tensor(up, [n, H, W]), windows };
}

export interface WindowMap {
  /** Σ_c α_c A_c placed at each channel's window, rectified: (N, H, W) over the full-resolution image. */
  readonly map: Float32Array;
  readonly shape: readonly [number, number, number];
  /** Per image and channel: the window's top-left corner (row, col) and the channel's importance α_c · mean(A_c), averaged over passes. */
  readonly windows: { readonly row: number; readonly col: number; readonly importance: number }[][];
  /** The window side in high-res pixels. */
  readonly slice: number;
  /** Logits per pass (N, classes each). */
  readonly logits: Tensor[];
}

/**
 * The window map of a stochastic model: Grad-CAM at the stochastic stem, each channel's term α_c·A_c
 * drawn over the high-res pixels its window covers (output (i, j) of a channel covers the
 * stride-2 cell at (row + 2i, col + 2j)), summed over channels and rectified; with several keys
 * (test-time augmentation) the maps of the window draws are averaged.
 * @example const wm = inspect.windowMap(model, { low, high }, { keys: [random.key(1), random.key(2)] });
 */
export function windowMap(model: Model, input: Input, opts: { keys?: readonly Key[]; classIndex?: number } = {}): WindowMap {
  const cfg = model.config;
  const layer = stochasticStemLayer(cfg);
  if (!layer) throw new Error(`windowMap(${cfg.name}): the model has no stochastic stem (a ${cfg.arch} model); use gradCam`);
  const high = input instanceof Tensor ? input : input.high;
  const [N, , H, W] = high.shape;
  const keys = opts.keys?.length ? opts.keys : [makeKey(0)];
  const sum = new Float32Array(N * H * W);
  const stride = 2;
  let slice = 0;
  const importance: number[][] = Array.from({ length: N }, () => []);
  const corners: [number, number][][] = Array.from({ length: N }, () => []);
  const logits: Tensor[] = [];
  for (const k of keys) {
    const cam = gradCam(model, input, { layer, key: k, classIndex: opts.classIndex });
    logits.push(cam.logits);
    const [, C, h, w] = cam.activation.shape;
    slice = (h - 1) * stride + 3;
    const A = dataSync(cam.activation);
    const alpha = dataSync(cam.weights);
    const win = cam.windows!;
    const perImage = win.length === 2 * N * C;
    for (let n = 0; n < N; n++) {
      const img = sum.subarray(n * H * W, (n + 1) * H * W);
      for (let c = 0; c < C; c++) {
        const wi = perImage ? n * C + c : c;
        const [r0, c0] = [win[2 * wi], win[2 * wi + 1]];
        const a = alpha[n * C + c] / keys.length;
        const plane = A.subarray((n * C + c) * h * w, (n * C + c + 1) * h * w);
        let mean = 0;
        for (let i = 0; i < h; i++) {
          for (let j = 0; j < w; j++) {
            const v = a * plane[i * w + j];
            mean += plane[i * w + j];
            for (let di = 0; di < stride; di++) {
              const row = (r0 + i * stride + di) * W + c0 + j * stride;
              for (let dj = 0; dj < stride; dj++) img[row + dj] += v;
            }
          }
        }
        importance[n].push(a * (mean / (h * w)));
        corners[n].push([r0, c0]);
      }
    }
  }
  for (let i = 0; i < sum.length; i++) if (sum[i] < 0) sum[i] = 0;
  const windows = importance.map((imp, n) => imp.map((v, i) => ({ row: corners[n][i][0], col: corners[n][i][1], importance: v })));
  return { map: sum, shape: [N, H, W], windows, slice, logits };
}

export interface IntegratedGradientsOptions extends AttributionOptions {
  /** The reference input (same structure as the input); default all zeros (the mean image after ImageNet normalisation). */
  readonly baseline?: Input;
  /** Points of the midpoint rule along the straight path (default 32). */
  readonly steps?: number;
}

export interface IntegratedGradients {
  /** Same structure as the input: a tensor, or { low, high }. */
  readonly attributions: Input;
  /** f(x) and f(baseline) of the explained logit per image: the attributions of image n sum to about their difference. */
  readonly value: Float64Array;
  readonly baselineValue: Float64Array;
  readonly classIndex: readonly number[];
}

/**
 * Integrated gradients w.r.t. every input of the model. The error of Σ attributions against
 * f(x) − f(x') falls as 1/steps² (midpoint rule) for smooth networks.
 * @example const ig = inspect.integratedGradients(model, x, { steps: 64 });
 */
export function integratedGradients(model: Model, input: Input, opts: IntegratedGradientsOptions = {}): IntegratedGradients {
  const cfg = model.config;
  const steps = opts.steps ?? 32;
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`integratedGradients: steps must be a positive integer, got ${steps}`);
  const key = opts.key ?? makeKey(0);
  const baseline = opts.baseline ?? (treeMap((t: Tensor) => o.zerosLike(t), input) as Input);
  if (isPair(cfg) !== !(baseline instanceof Tensor) || JSON.stringify(shapeOf(baseline)) !== JSON.stringify(shapeOf(input))) {
    throw new Error(`integratedGradients(${cfg.name}): baseline ${JSON.stringify(shapeOf(baseline))} does not match the input ${JSON.stringify(shapeOf(input))}`);
  }
  const f = (x: Input) => apply(cfg, model.params, model.state, x, { training: false, key })[0];
  const fx = f(input);
  const [n, classes] = fx.shape;
  const cls = explainedClasses(dataSync(fx) as Float32Array, n, classes, opts.classIndex);
  const pick = (t: Tensor) => {
    const h = dataSync(t);
    return Float64Array.from(cls, (c, i) => h[i * classes + c]);
  };
  const ct = oneHot(cls, classes, cfg.dtype);
  const diff = treeMap((a: Tensor, b: Tensor) => o.sub(a, b), input, baseline) as Input;
  let total: Input | null = null;
  for (let s = 0; s < steps; s++) {
    const t = (s + 0.5) / steps;
    const point = treeMap((b: Tensor, d: Tensor) => o.add(b, o.mul(d, t)), baseline, diff) as Input;
    const g = vjp(f, point)[1](ct);
    total = total ? (treeMap((a: Tensor, b: Tensor) => o.add(a, b), total, g) as Input) : g;
  }
  const attributions = treeMap((g: Tensor, d: Tensor) => o.mul(o.mul(g, d), 1 / steps), total, diff) as Input;
  return { attributions, value: pick(fx), baselineValue: pick(f(baseline)), classIndex: cls };
}
