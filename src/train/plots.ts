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

/** An SVG line chart. */
export function lineChartSvg(spec: ChartSpec): string {
  const W = spec.width ?? 800;
  const H = spec.height ?? 500;
  const legend = spec.square ? [] : legendRows(spec.series, W - 80 - 30);
  const m = { l: 80, r: 30, t: spec.square ? 50 : 72 + 20 * Math.max(0, legend.length - 1), b: 65 };
  let pw = W - m.l - m.r;
  let ph = H - m.t - m.b;
  if (spec.square) pw = ph = Math.min(pw, ph);
  const finite = (a: readonly number[]) => a.filter((v) => Number.isFinite(v));
  const allX = spec.series.flatMap((s) => finite(s.xs));
  const allY = spec.series.flatMap((s) => finite([...s.ys, ...(s.band?.lo ?? []), ...(s.band?.hi ?? [])]));
  let [x0, x1] = spec.xRange ?? [Math.min(...allX), Math.max(...allX)];
  if (!Number.isFinite(x0) || !Number.isFinite(x1)) [x0, x1] = [0, 1];
  let [y0, y1] = spec.yRange ?? [Math.min(...allY), Math.max(...allY)];
  if (!Number.isFinite(y0) || !Number.isFinite(y1)) [y0, y1] = [0, 1];
  if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  if (!spec.yRange) {
    const padY = (y1 - y0) * 0.05;
    [y0, y1] = [y0 - padY, y1 + padY];
  }
  if (x1 - x0 < 1e-12) [x0, x1] = [x0 - 0.5, x1 + 0.5];
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number) => m.t + ph - ((y - y0) / (y1 - y0)) * ph;
  const font = `font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif"`;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="30" text-anchor="middle" font-size="20" font-weight="bold" ${font}>${esc(spec.title)}</text>`);
  // Grid and ticks.
  for (const v of niceTicks(x0, x1, 8, spec.integerX)) {
    if (v < x0 - 1e-9 || v > x1 + 1e-9) continue;
    const x = sx(v);
    parts.push(`<line x1="${x}" y1="${m.t}" x2="${x}" y2="${m.t + ph}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${x}" y="${m.t + ph + 20}" text-anchor="middle" font-size="13" ${font}>${fmtTick(v)}</text>`);
  }
  for (const v of niceTicks(y0, y1, 6)) {
    if (v < y0 - 1e-9 || v > y1 + 1e-9) continue;
    const y = sy(v);
    parts.push(`<line x1="${m.l}" y1="${y}" x2="${m.l + pw}" y2="${y}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${m.l - 8}" y="${y + 4}" text-anchor="end" font-size="13" ${font}>${fmtTick(v)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${m.t + ph + 48}" text-anchor="middle" font-size="15" ${font}>${esc(spec.xLabel)}</text>`);
  parts.push(
    `<text transform="translate(22 ${m.t + ph / 2}) rotate(-90)" text-anchor="middle" font-size="15" ${font}>${esc(spec.yLabel)}</text>`,
  );
  // Bands under the lines: the upper edge left to right, then the lower edge back.
  for (const s of spec.series) {
    if (!s.band) continue;
    const idx = s.xs.map((_, i) => i).filter((i) => Number.isFinite(s.xs[i]) && Number.isFinite(s.band!.lo[i]) && Number.isFinite(s.band!.hi[i]));
    if (idx.length < 2) continue;
    const pts = [...idx.map((i) => `${sx(s.xs[i]).toFixed(2)},${sy(s.band!.hi[i]).toFixed(2)}`), ...idx.reverse().map((i) => `${sx(s.xs[i]).toFixed(2)},${sy(s.band!.lo[i]).toFixed(2)}`)];
    parts.push(`<polygon points="${pts.join(' ')}" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`);
  }
  // Lines.
  for (const s of spec.series) {
    const pts: string[] = [];
    for (let i = 0; i < s.xs.length; i++) {
      if (Number.isFinite(s.xs[i]) && Number.isFinite(s.ys[i])) pts.push(`${sx(s.xs[i]).toFixed(2)},${sy(s.ys[i]).toFixed(2)}`);
    }
    if (!pts.length) continue;
    const dash = s.dashed ? ' stroke-dasharray="6 5"' : '';
    parts.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
    if (s.markers ?? s.xs.length <= 30) for (const p of pts) parts.push(`<circle cx="${p.split(',')[0]}" cy="${p.split(',')[1]}" r="3.5" fill="${s.color}"/>`);
  }
  if (spec.square) {
    // ROC: legend in the lower right, where the curve seldom goes.
    const lw = Math.max(...spec.series.map((s) => s.name.length)) * 8 + 50;
    const lx = m.l + pw - lw - 10;
    const ly = m.t + ph - 12 - 22 * spec.series.length;
    parts.push(`<rect x="${lx}" y="${ly}" width="${lw}" height="${22 * spec.series.length + 8}" fill="white" fill-opacity="0.85" stroke="#999"/>`);
    spec.series.forEach((s, i) => {
      const y = ly + 18 + 22 * i;
      const dash = s.dashed ? ' stroke-dasharray="6 5"' : '';
      parts.push(`<line x1="${lx + 8}" y1="${y - 5}" x2="${lx + 34}" y2="${y - 5}" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
      parts.push(`<text x="${lx + 40}" y="${y}" font-size="13" ${font}>${esc(s.name)}</text>`);
    });
  } else {
    // Curves: legend in rows between the title and the plot, so it never hides a point.
    legend.forEach((row, r) => {
      const y = m.t - 12 - 20 * (legend.length - 1 - r);
      for (const { s, x: dx } of row) {
        const x = m.l + dx;
        const dash = s.dashed ? ' stroke-dasharray="6 5"' : '';
        parts.push(`<line x1="${x}" y1="${y}" x2="${x + 26}" y2="${y}" stroke="${s.color}" stroke-width="2.5"${dash}/>`);
        parts.push(`<text x="${x + 32}" y="${y + 5}" font-size="13" ${font}>${esc(s.name)}</text>`);
      }
    });
  }
  parts.push('</svg>');
  return parts.join('\n');
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
