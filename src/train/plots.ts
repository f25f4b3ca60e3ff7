/**
 * Training plots: small SVG line charts written by hand (axes, ticks, legend) and rasterised to
 * PNG with sharp (librsvg), so runs need no plotting stack.
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../io/atomic.ts';

export interface Series {
  readonly name: string;
  readonly xs: readonly number[];
  readonly ys: readonly number[];
  readonly color: string;
  readonly dashed?: boolean;
  /** Draw markers at the points (useful with few epochs). */
  readonly markers?: boolean;
  /** A shaded band around the line (e.g. the min–max over runs), at the same xs. */
  readonly band?: { readonly lo: readonly number[]; readonly hi: readonly number[] };
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly xRange?: readonly [number, number];
  readonly yRange?: readonly [number, number];
  readonly width?: number;
  readonly height?: number;
  /** Square plot area (ROC curves). */
  readonly square?: boolean;
  /** Integer ticks on x (epochs). */
  readonly integerX?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** About `n` round tick values covering [lo, hi] (1, 2, 5 × 10^k steps). */
export function niceTicks(lo: number, hi: number, n = 6, integer = false): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  if (integer) step = Math.max(1, Math.round(step));
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const fmtTick = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(4))));

const FONT = `font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"`;
const dashOf = (s: Series) => (s.dashed ? ' stroke-dasharray="6 5"' : '');

/** A chart's layout: the plot area (margins m, size pw × ph), the data ranges and the data → pixel maps. */
interface Frame {
  readonly W: number;
  readonly H: number;
  readonly m: { readonly l: number; readonly r: number; readonly t: number; readonly b: number };
  readonly pw: number;
  readonly ph: number;
  readonly x: readonly [number, number];
  readonly y: readonly [number, number];
  readonly sx: (x: number) => number;
  readonly sy: (y: number) => number;
  readonly legend: { s: Series; x: number }[][];
}

/** A range covering `vs` (or `given`), widened when empty or a single value. */
function range(vs: readonly number[], given: readonly [number, number] | undefined): [number, number] {
  let [lo, hi] = given ?? [Math.min(...vs), Math.max(...vs)];
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi - lo < 1e-12) [lo, hi] = [lo - 0.5, hi + 0.5];
  return [lo, hi];
}

function frameOf(spec: ChartSpec): Frame {
  const W = spec.width ?? 800;
  const H = spec.height ?? 500;
  const legend = spec.square ? [] : legendRows(spec.series, W - 80 - 30);
  const m = { l: 80, r: 30, t: spec.square ? 50 : 72 + 20 * Math.max(0, legend.length - 1), b: 65 };
  let pw = W - m.l - m.r;
  let ph = H - m.t - m.b;
  if (spec.square) pw = ph = Math.min(pw, ph);
  const finite = (a: readonly number[]) => a.filter((v) => Number.isFinite(v));
  const [x0, x1] = range(spec.series.flatMap((s) => finite(s.xs)), spec.xRange);
  let [y0, y1] = range(spec.series.flatMap((s) => finite([...s.ys, ...(s.band?.lo ?? []), ...(s.band?.hi ?? [])])), spec.yRange);
  if (!spec.yRange) {
    const padY = (y1 - y0) * 0.05;
    [y0, y1] = [y0 - padY, y1 + padY];
  }
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  return { W, H, m, pw, ph, x: [x0, x1], y: [y0, y1], sx, sy, legend };
}

/** Title, grid, ticks, the plot's border and the axis labels. */
function axesSvg(f: Frame, spec: ChartSpec): string[] {
  const { m, pw, ph } = f;
  const parts = [`<text x="${m.l + pw / 2}" y="30" text-anchor="middle" font-size="20" font-weight="bold" ${FONT}>${esc(spec.title)}</text>`];
  const inside = (v: number, [lo, hi]: readonly [number, number]) => v >= lo - 1e-9 && v <= hi + 1e-9;
  for (const v of niceTicks(f.x[0], f.x[1], 8, spec.integerX).filter((v) => inside(v, f.x))) {
    const x = f.sx(v);
    parts.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${x}" y="${m.t + ph + 20}" text-anchor="middle" font-size="13" ${FONT}>${fmtTick(v)}</text>`);
  }
  for (const v of niceTicks(f.y[0], f.y[1], 6).filter((v) => inside(v, f.y))) {
    const y = f.sy(v);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${y + 4}" text-anchor="end" font-size="13" ${FONT}>${fmtTick(v)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph + 48}" text-anchor="middle" font-size="15" ${FONT}>${esc(spec.xLabel)}</text>`);
  parts.push(`<text transform="translate(22 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="15" ${FONT}>${esc(spec.yLabel)}</text>`);
  return parts;
}

/** Bands under the lines (the upper edge left to right, then the lower edge back), then the lines and their markers. */
function seriesSvg(f: Frame, series: readonly Series[]): string[] {
  const parts: string[] = [];
  const pt = (x: number, y: number) => `${f.sx(x).toFixed(2)},${f.sy(y).toFixed(2)}`;
  for (const s of series) {
    if (!s.band) continue;
    const { lo, hi } = s.band;
    const idx = s.xs.map((_, i) => i).filter((i) => Number.isFinite(s.xs[i]) && Number.isFinite(lo[i]) && Number.isFinite(hi[i]));
    if (idx.length < 2) continue;
    const pts = [...idx.map((i) => pt(s.xs[i], hi[i])), ...idx.reverse().map((i) => pt(s.xs[i], lo[i]))];
    parts.push(`<polygon points="${pts.join(' ')}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`);
  }
  for (const s of series) {
    const pts = s.xs.flatMap((x, i) => (Number.isFinite(x) && Number.isFinite(s.ys[i]) ? [pt(x, s.ys[i])] : []));
    if (!pts.length) continue;
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2.5"${dashOf(s)}/>`);
    if (s.markers ?? s.xs.length <= 30) for (const p of pts) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3.5" fill="${s.color}"/>`);
  }
  return parts;
}

/** ROC charts: the legend in the lower right, where the curve seldom goes; curves: in rows between the title and the plot, so it never hides a point. */
function legendSvg(f: Frame, spec: ChartSpec): string[] {
  const parts: string[] = [];
  const entry = (s: Series, x: number, y: number, lineDy: number, textDy: number) => {
    parts.push(`<line x1="${x}" y1="${y + lineDy}" x2="${x + 26}" y2="${y + lineDy}" stroke="${s.color}" stroke-width="2.5"${dashOf(s)}/>`);
    parts.push(`<text x="${x + 32}" y="${y + textDy}" font-size="13" ${FONT}>${esc(s.name)}</text>`);
  };
  if (spec.square) {
    const n = spec.series.length;
    const lw = Math.max(...spec.series.map((s) => s.name.length)) * 8 + 50;
    const lx = f.m.l + f.pw - lw - 10;
    const ly = f.m.t + f.ph - 12 - 22 * n;
    parts.push(`<rect x="${lx}" y="${ly}" width="${lw}" height="${22 * n + 8}" fill="white" fill-opacity="0.85" stroke="#999"/>`);
    spec.series.forEach((s, i) => entry(s, lx + 8, ly + 18 + 22 * i, -5, 0));
  } else {
    f.legend.forEach((row, r) => {
      const y = f.m.t - 12 - 20 * (f.legend.length - 1 - r);
      for (const { s, x } of row) entry(s, f.m.l + x, y, 0, 5);
    });
  }
  return parts;
}

/** An SVG line chart. */
export function lineChartSvg(spec: ChartSpec): string {
  const f = frameOf(spec);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${f.W}" height="${f.H}" viewBox="0 0 ${f.W} ${f.H}">`,
    `<rect width="${f.W}" height="${f.H}" fill="white"/>`,
    ...axesSvg(f, spec),
    ...seriesSvg(f, spec.series),
    ...legendSvg(f, spec),
    '</svg>',
  ].join('\n');
}

/** Legend entries laid out in rows no wider than `width` (x offsets from the plot's left edge). */
function legendRows(series: readonly Series[], width: number): { s: Series; x: number }[][] {
  const rows: { s: Series; x: number }[][] = [[]];
  let x = 0;
  for (const s of series) {
    const w = 32 + s.name.length * 8 + 24;
    if (x > 0 && x + w - 24 > width) {
      rows.push([]);
      x = 0;
    }
    rows[rows.length - 1].push({ s, x });
    x += w;
  }
  return rows;
}

/** Rasterises an SVG string to a PNG file (replaced atomically). */
export async function writePng(file: string, svg: string): Promise<void> {
  writeFileAtomic(file, await sharp(Buffer.from(svg), { density: 96 }).png().toBuffer());
}

export interface EpochCurves {
  readonly epochs: readonly number[];
  readonly trainLoss: readonly number[];
  readonly valLoss: readonly number[];
  readonly trainAuc: readonly number[];
  readonly valAuc: readonly number[];
}

export const lossSvg = (c: EpochCurves, title = 'Loss per epoch') =>
  lineChartSvg({
    title,
    xLabel: 'Epoch',
    yLabel: 'Loss (per image)',
    integerX: true,
    series: [
      { name: 'train', xs: c.epochs, ys: c.trainLoss, color: '#1f77b4' },
      { name: 'validation', xs: c.epochs, ys: c.valLoss, color: '#d62728' },
    ],
  });

export const aucSvg = (c: EpochCurves, title = 'ROC AUC per epoch') =>
  lineChartSvg({
    title,
    xLabel: 'Epoch',
    yLabel: 'ROC AUC',
    integerX: true,
    series: [
      { name: 'train', xs: c.epochs, ys: c.trainAuc, color: '#1f77b4' },
      { name: 'validation', xs: c.epochs, ys: c.valAuc, color: '#d62728' },
    ],
  });

export const rocSvg = (curves: readonly { name: string; fpr: readonly number[]; tpr: readonly number[] }[], title = 'ROC curve') =>
  lineChartSvg({
    title,
    xLabel: 'False-positive rate (1 − specificity)',
    yLabel: 'True-positive rate (sensitivity)',
    xRange: [0, 1],
    yRange: [0, 1],
    square: true,
    width: 640,
    height: 620,
    series: [
      ...curves.map((c, i) => ({ name: c.name, xs: c.fpr, ys: c.tpr, color: ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e'][i % 5], markers: false })),
      { name: 'chance', xs: [0, 1], ys: [0, 1], color: '#888', dashed: true, markers: false },
    ],
  });
