/**
 * One image explained end to end: decoded through the evaluation pipeline (the exact input
 * `npm run predict` gives the model), attributed with Grad-CAM or integrated gradients, and for
 * stochastic models the window map; `explanationPng` draws it. The passes use predict's keys
 * (`evalKey(seed, 0, pass, 0)`), so the probability equals `npm run predict` on that image alone.
 */
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import type { DataError } from '../data/errors.ts';
import { type RawImage, processImage, resizeRaw } from '../data/image.ts';
import { type Model } from '../nn/model.ts';
import { type Input, inputOf, layerImage } from '../nn/efficientnet.ts';
import * as o from '../tensor/ops.ts';
import { key as makeKey } from '../tensor/random.ts';
import { type Tensor, dataSync, tensor } from '../tensor/tensor.ts';
import { evalKey, evalLogits } from '../train/step.ts';
import { probabilities } from '../train/losses.ts';
import { defaultLayer, gradCam, integratedGradients, stochasticStemLayer, windowMap } from './attribution.ts';
import { normaliseMap, resizeArea } from './maps.ts';
import { colorBarSvg, composePng, denormalise, overlayHeat, type Placed, rawPng, svgText } from './render.ts';

export type Method = 'gradcam' | 'ig';

export interface ImageInput {
  readonly input: Input;
  /** What the model sees, as 8-bit RGB, by image (null for an image the model does not take). */
  readonly low: RawImage | null;
  readonly high: RawImage | null;
}

/** An image file (or bytes) as the model's input, through the evaluation pipeline (no augmentation). */
export function loadImageInput(file: string, mc: Model['config']): TE.TaskEither<DataError, ImageInput> {
  return pipe(
    processImage(file, makeKey(0), { sides: mc.sides, augment: false }),
    TE.map((p) => {
      // Each view the pipeline made (one per non-null side), as f of its values and side.
      // Float32 views (no highBytes): the maps need the input's gradient, which bytes do not have.
      const high = p.high as Float32Array | null;
      const each = <T>(f: (a: Float32Array, s: number) => T) => ({ low: p.low && f(p.low, mc.sides.low!), high: high && f(high, mc.sides.high!) });
      const raw = each((a, s) => denormalise(a, s, s));
      return { input: inputOf(each((a, s) => tensor(a, [1, 3, s, s]))), low: raw.low, high: raw.high };
    }),
  );
}

export interface ExplainOptions {
  readonly method?: Method;
  /** Grad-CAM layer (default `defaultLayer`). */
  readonly layer?: string;
  /** Stochastic passes averaged (probability and maps); models without a stochastic stem use one. */
  readonly tta?: number;
  /** The seed of the windows (a run's seed: predict's default). */
  readonly seed?: number;
  /** Integrated-gradients steps. */
  readonly steps?: number;
}

export interface Explanation {
  readonly model: string;
  readonly method: Method;
  /** The Grad-CAM layer, or null for integrated gradients. */
  readonly layer: string | null;
  /** The probability of the explained class (melanoma for one-output models), averaged over the passes. */
  readonly probability: number;
  readonly classIndex: number;
  readonly passes: number;
  /** The image the heat map lies over — the low-res input, or the only one (the high-res image of a pure-stochastic model) — and that map in [0, 1], or null when the layer has no image positions. */
  readonly image: RawImage;
  readonly heat: Float32Array | null;
  /** Stochastic models: the full-resolution image and the window map (Grad-CAM) or high-res attributions (IG) over it in [0, 1]. */
  readonly high: RawImage | null;
  readonly highHeat: Float32Array | null;
  /** The most important windows (row, col, side in high-res pixels), most important first. */
  readonly topWindows: readonly { row: number; col: number; importance: number }[];
  readonly slice: number;
}

const sumAbsChannels = (t: Tensor): Float32Array => dataSync(o.sum(o.abs(t), [0, 1])) as Float32Array;

/** Probability of class `c` of image 0, averaged over the logits of the passes (computed as predict does). */
function meanProbability(logits: readonly Tensor[], c: number): number {
  const C = logits[0].shape[1];
  return logits.reduce((p, l) => p + probabilities(dataSync(l), C)[C === 1 ? 0 : c], 0) / logits.length;
}

/** Explains one image (batch of one) with a model. */
export function explainInput(model: Model, img: ImageInput, opts: ExplainOptions = {}): Explanation {
  const cfg = model.config;
  const method = opts.method ?? 'gradcam';
  const stem = stochasticStemLayer(cfg);
  const passes = stem ? Math.max(1, opts.tta ?? 1) : 1;
  const keys = Array.from({ length: passes }, (_, p) => evalKey(opts.seed ?? 0, 0, p, 0));
  const image = (img.low ?? img.high)!;
  const side = image.width;
  let heat: Float32Array | null = null;
  let highHeat: Float32Array | null = null;
  let topWindows: Explanation['topWindows'] = [];
  let slice = 0;
  let classIndex = 0;
  let layer: string | null = null;
  if (method === 'gradcam') {
    layer = opts.layer ?? defaultLayer(cfg);
    const onImage = layerImage(cfg, layer) === 'low';
    if (onImage || !stem) {
      const acc = new Float32Array(side * side);
      for (const k of keys) {
        const cam = gradCam(model, img.input, { layer, key: k });
        classIndex = cam.classIndex[0];
        dataSync(cam.upsampled).forEach((v, i) => (acc[i] += v / passes));
      }
      heat = onImage ? normaliseMap(acc).map : null;
    }
    if (stem) {
      const wm = windowMap(model, img.input, { keys });
      highHeat = normaliseMap(wm.map).map;
      topWindows = [...wm.windows[0]].sort((a, b) => b.importance - a.importance).slice(0, 8);
      slice = wm.slice;
    }
  } else {
    const acc = new Float32Array(side * side);
    // Two-input models: the high-res attributions get a map of their own.
    const highSide = img.low && img.high ? img.high.width : 0;
    const highAcc = highSide > 0 ? new Float32Array(highSide * highSide) : null;
    for (const k of keys) {
      const ig = integratedGradients(model, img.input, { key: k, steps: opts.steps });
      classIndex = ig.classIndex[0];
      const a = ig.attributions;
      const onImage = a instanceof Object && 'low' in a ? (a as { low: Tensor }).low : (a as Tensor);
      sumAbsChannels(onImage).forEach((v, i) => (acc[i] += v / passes));
      if (highAcc) sumAbsChannels((a as { high: Tensor }).high).forEach((v, i) => (highAcc[i] += v / passes));
    }
    heat = normaliseMap(acc).map;
    highHeat = highAcc ? normaliseMap(highAcc).map : null;
  }
  return {
    model: cfg.name,
    method,
    layer,
    probability: meanProbability(
      keys.map((k) => evalLogits(cfg, model.params, model.state, img.input, k)),
      classIndex,
    ),
    classIndex,
    passes,
    image,
    heat,
    high: img.high,
    highHeat,
    topWindows,
    slice,
  };
}

export interface PngOptions {
  readonly title: string;
  /** Name of the explained class (default 'melanoma' for one output, else 'class N'). */
  readonly className?: string;
  /** Side of each panel in pixels (default 300). */
  readonly panel?: number;
}

/** A label suffix for a map that is zero everywhere (Grad-CAM's ReLU removes evidence against the class). */
export const emptyNote = (heat: ArrayLike<number>): string => (Array.prototype.some.call(heat, (v: number) => v > 0) ? '' : ' (no positive evidence)');

/** The explanation as one PNG: input, overlay, window map (stochastic models), colour bar, probability. */
export async function explanationPng(e: Explanation, opts: PngOptions): Promise<Buffer> {
  const S = opts.panel ?? 300;
  const pad = 16;
  const top = 58;
  const cls = opts.className ?? (e.classIndex === 0 ? 'melanoma' : `class ${e.classIndex}`);
  const how = e.method === 'gradcam' ? `Grad-CAM at ${e.layer}` : 'integrated gradients';
  const panels: { png: Promise<Buffer>; label: string }[] = [{ png: rawPng(e.image, S), label: `input ${e.image.width}²` }];
  if (e.heat) panels.push({ png: rawPng(overlayHeat(e.image, e.heat), S), label: `${how}${emptyNote(e.heat)}` });
  let windowsSvg = '';
  if (e.high && e.highHeat) {
    const H = e.high.width;
    const small = S * 2 < H ? await resizeRaw(e.high, S * 2) : e.high;
    const heat = resizeArea(e.highHeat, H, H, small.width, small.width);
    panels.push({ png: rawPng(overlayHeat(small, normaliseMap(heat).map), S), label: `${e.method === 'gradcam' ? `window map ${H}²${e.passes > 1 ? `, ${e.passes} draws` : ''}` : `high-res attributions ${H}²`}${emptyNote(e.highHeat)}` });
    const x0 = pad + (panels.length - 1) * (S + pad);
    const f = S / H;
    windowsSvg = e.topWindows
      .map((w, i) => `<rect x='${x0 + w.col * f}' y='${top + w.row * f}' width='${e.slice * f}' height='${e.slice * f}' fill='none' stroke='#7fdbff' stroke-opacity='${(1 - i / 10).toFixed(2)}' stroke-width='1.2'/>`)
      .join('');
  }
  const width = pad + panels.length * (S + pad) + 80;
  const height = top + S + 34;
  const images: Placed[] = await Promise.all(panels.map(async (p, i) => ({ png: await p.png, left: pad + i * (S + pad), top })));
  const svg = [
    svgText(pad, 24, opts.title, { size: 16, bold: true }),
    svgText(pad, 46, `p(${cls}) = ${e.probability.toFixed(3)} · ${e.model} · ${how}${e.passes > 1 ? ` · TTA ${e.passes}` : ''}`, { size: 14 }),
    ...panels.map((p, i) => svgText(pad + i * (S + pad) + S / 2, top + S + 22, p.label, { size: 13, anchor: 'middle' })),
    windowsSvg,
    colorBarSvg(pad + panels.length * (S + pad), top, S, 'relative importance'),
  ].join('');
  return composePng(width, height, images, svg);
}
