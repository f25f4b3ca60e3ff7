/**
 * Evaluation figures of a binary classifier: sensitivity, specificity and F1 against the threshold
 * (Youden point marked), and a gallery of the most confident errors with their Grad-CAM overlays.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import type { Model } from '../nn/model.ts';
import { type Labels, type Scores, thresholdMetrics, youdenThreshold } from '../train/metrics.ts';
import { lineChartSvg, writePng } from '../train/plots.ts';
import { emptyNote, explainInput, loadImageInput } from './explain.ts';
import { colorBarSvg, composePng, overlayHeat, type Placed, rawPng, svgText } from './render.ts';

/** Sensitivity, specificity and F1 against the threshold (every distinct score and a grid of 101), Youden's point marked. */
export function thresholdsSvg(labels: Labels, probs: Scores, title = 'Threshold'): string {
  // Zoom on the scores when they span less than a fifth of [0, 1] (an uncalibrated or early model).
  const [lo, hi] = [Math.min(...Array.from(probs)), Math.max(...Array.from(probs))];
  const margin = Math.max((hi - lo) * 0.1, 1e-3);
  const xRange: [number, number] = hi - lo < 0.2 ? [Math.max(0, lo - margin), Math.min(1, hi + margin)] : [0, 1];
  const grid = new Set<number>(Array.from({ length: 101 }, (_, i) => xRange[0] + ((xRange[1] - xRange[0]) * i) / 100));
  for (let i = 0; i < probs.length; i++) grid.add(probs[i]);
  const ts = [...grid].sort((a, b) => a - b);
  const rows = ts.map((t) => thresholdMetrics(labels, probs, t));
  const y = youdenThreshold(labels, probs);
  const at = Number.isFinite(y) ? thresholdMetrics(labels, probs, y) : null;
  const col = (k: 'sensitivity' | 'specificity' | 'f1') => rows.map((r) => r[k]);
  return lineChartSvg({
    title: at ? `${title}: Youden ${at.threshold.toFixed(3)} (sens. ${at.sensitivity.toFixed(3)}, spec. ${at.specificity.toFixed(3)})` : title,
    xLabel: 'Threshold on the probability',
    yLabel: 'Rate',
    xRange,
    yRange: [0, 1],
    series: [
      { name: 'sensitivity', xs: ts, ys: col('sensitivity'), color: '#d62728', markers: false },
      { name: 'specificity', xs: ts, ys: col('specificity'), color: '#1f77b4', markers: false },
      { name: 'F1', xs: ts, ys: col('f1'), color: '#2ca02c', markers: false },
      ...(at
        ? [
            { name: 'Youden threshold', xs: [at.threshold, at.threshold], ys: [0, 1], color: '#555', dashed: true, markers: false },
            { name: 'Youden point', xs: [at.threshold, at.threshold], ys: [at.sensitivity, at.specificity], color: '#000', markers: true },
          ]
        : []),
    ],
  });
}

export interface Scored {
  readonly name: string;
  readonly path: string;
  readonly label: number;
  readonly probability: number;
}

/** The `k` most confident false positives (highest probability among negatives) and false negatives (lowest among positives) at `threshold`. */
export function confidentErrors(items: readonly Scored[], threshold: number, k: number): { fp: Scored[]; fn: Scored[] } {
  const fp = items.filter((s) => s.label === 0 && s.probability >= threshold).sort((a, b) => b.probability - a.probability);
  const fn = items.filter((s) => s.label === 1 && s.probability < threshold).sort((a, b) => a.probability - b.probability);
  return { fp: fp.slice(0, k), fn: fn.slice(0, k) };
}

/**
 * The gallery: a row of false positives over a row of false negatives, each tile the Grad-CAM
 * overlay (the window map for pure-stochastic models) with its evaluated probability.
 */
export async function errorsPng(model: Model, errors: { fp: Scored[]; fn: Scored[] }, opts: { seed: number; threshold: number; tile?: number }): Promise<Buffer> {
  const S = opts.tile ?? 180;
  const pad = 12;
  const top = 40;
  const rowH = S + 64;
  const cols = Math.max(1, errors.fp.length, errors.fn.length);
  const images: Placed[] = [];
  const svg: string[] = [svgText(pad, 24, `Most confident errors at threshold ${opts.threshold.toFixed(3)} (${model.config.name}; Grad-CAM overlays)`, { size: 15, bold: true })];
  const rows: [string, Scored[]][] = [
    ['false positives (benign, scored high)', errors.fp],
    ['false negatives (melanoma, scored low)', errors.fn],
  ];
  for (const [r, [label, list]] of rows.entries()) {
    const y0 = top + r * rowH;
    svg.push(svgText(pad, y0 + 16, `${label}: ${list.length ? '' : 'none'}`, { size: 13, bold: true }));
    for (const [c, s] of list.entries()) {
      const img = await loadImageInput(s.path, model.config)();
      if (E.isLeft(img)) continue;
      const e = explainInput(model, img.right, { seed: opts.seed });
      // Pure-stochastic models have no image-aligned layer: their tile shows the window map.
      const base = e.heat ? e.image : e.high!;
      const heat = e.heat ?? e.highHeat!;
      const x = pad + c * (S + pad);
      images.push({ png: await rawPng(overlayHeat(base, heat), S), left: x, top: y0 + 24 });
      svg.push(svgText(x + S / 2, y0 + S + 42, `p = ${s.probability.toFixed(3)}${emptyNote(heat) ? ' · no positive evidence' : ''}`, { size: 12, anchor: 'middle', bold: true }));
      svg.push(svgText(x + S / 2, y0 + S + 58, s.name.length > 24 ? `${s.name.slice(0, 23)}…` : s.name, { size: 11, anchor: 'middle' }));
    }
  }
  const width = pad + cols * (S + pad) + 80;
  svg.push(colorBarSvg(width - 80, top + 24, S, 'relative importance'));
  return composePng(width, top + 2 * rowH + 8, images, svg.join(''));
}

/** evaluate's thresholds.png and errors.png (the 4 most confident errors of each kind at the Youden threshold). */
export async function writeEvaluationFigures(
  out: string,
  args: { model: Model; items: readonly { name: string; path: string }[]; predictions: { names: readonly string[]; labels: readonly number[]; probs: ArrayLike<number> }; seed: number },
): Promise<void> {
  const p = args.predictions;
  await writePng(path.join(out, 'thresholds.png'), thresholdsSvg(p.labels, p.probs, `Thresholds, ${args.model.config.name}`));
  const where = new Map(args.items.map((i) => [i.name, i.path]));
  const scored: Scored[] = p.names.map((name, i) => ({ name, path: where.get(name) ?? '', label: p.labels[i], probability: p.probs[i] })).filter((s) => s.path);
  const y = youdenThreshold(p.labels, p.probs);
  const threshold = Number.isFinite(y) ? y : 0.5;
  const png = await errorsPng(args.model, confidentErrors(scored, threshold, 4), { seed: args.seed, threshold });
  fs.writeFileSync(path.join(out, 'errors.png'), png);
}
