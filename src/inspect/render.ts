/**
 * Pictures of attribution maps: heat maps in a perceptually uniform colour map (d3's inferno /
 * viridis, from matplotlib) blended over the image, composed into one PNG with sharp; text, the
 * colour bar and window outlines are an SVG layer rasterised by sharp (librsvg).
 */
import { interpolateInferno, interpolateViridis } from 'd3-scale-chromatic';
import sharp from 'sharp';
import { IMAGENET_MEAN, IMAGENET_STD, type RawImage } from '../data/image.ts';

export type ColorMap = 'inferno' | 'viridis';

const luts = new Map<ColorMap, Uint8Array>();
/** 256 RGB entries of a colour map. */
export function colorLut(name: ColorMap = 'inferno'): Uint8Array {
  let lut = luts.get(name);
  if (!lut) {
    const f = name === 'inferno' ? interpolateInferno : interpolateViridis;
    lut = new Uint8Array(256 * 3);
    for (let i = 0; i < 256; i++) {
      const hex = f(i / 255);
      for (let c = 0; c < 3; c++) lut[3 * i + c] = parseInt(hex.slice(1 + 2 * c, 3 + 2 * c), 16);
    }
    luts.set(name, lut);
  }
  return lut;
}

/** A model input (planar, ImageNet-normalised, 3 × size × size) back to 8-bit RGB. */
export function denormalise(planar: ArrayLike<number>, width: number, height: number): RawImage {
  const n = width * height;
  if (planar.length !== 3 * n) throw new Error(`denormalise: ${planar.length} values for a 3 × ${height} × ${width} image`);
  const data = new Uint8Array(3 * n);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < n; i++) data[3 * i + c] = Math.round(Math.min(1, Math.max(0, planar[c * n + i] * IMAGENET_STD[c] + IMAGENET_MEAN[c])) * 255);
  }
  return { data, width, height };
}

/** The image blended with a [0, 1] heat map: out = (1 − a·√v)·image + a·√v·colour(v), so cold regions keep the image visible. */
export function overlayHeat(img: RawImage, heat: ArrayLike<number>, opts: { alpha?: number; cmap?: ColorMap } = {}): RawImage {
  const n = img.width * img.height;
  if (heat.length !== n) throw new Error(`overlayHeat: a ${heat.length}-pixel map over a ${img.width}×${img.height} image`);
  const lut = colorLut(opts.cmap);
  const alpha = opts.alpha ?? 0.75;
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    const v = Math.min(1, Math.max(0, heat[i]));
    const a = alpha * Math.sqrt(v);
    const k = Math.round(v * 255) * 3;
    for (let c = 0; c < 3; c++) data[3 * i + c] = Math.round((1 - a) * img.data[3 * i + c] + a * lut[k + c]);
  }
  return { data, width: img.width, height: img.height };
}

/** 8-bit RGB → PNG bytes, resized (squash) to side × side when given. */
export function rawPng(img: RawImage, side?: number): Promise<Buffer> {
  let s = sharp(Buffer.from(img.data.buffer, img.data.byteOffset, img.data.length), { raw: { width: img.width, height: img.height, channels: 3 } });
  if (side && (side !== img.width || side !== img.height)) s = s.resize(side, side, { fit: 'fill', kernel: 'lanczos3' });
  return s.png().toBuffer();
}

export const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const FONT = "font-family='DejaVu Sans, Liberation Sans, Arial, sans-serif'";

/** SVG text element. */
export const svgText = (x: number, y: number, text: string, opts: { size?: number; bold?: boolean; anchor?: 'start' | 'middle' | 'end'; fill?: string } = {}): string =>
  `<text x='${x}' y='${y}' ${FONT} font-size='${opts.size ?? 14}'${opts.bold ? " font-weight='bold'" : ''} text-anchor='${opts.anchor ?? 'start'}' fill='${opts.fill ?? '#222'}'>${esc(text)}</text>`;

/** A vertical colour bar (high values at the top) with ticks 0 … 1 and a label. */
export function colorBarSvg(x: number, y: number, height: number, label: string, cmap: ColorMap = 'inferno'): string {
  const lut = colorLut(cmap);
  const stops = Array.from({ length: 11 }, (_, i) => {
    // Offsets ascend top to bottom (librsvg ignores descending stops); values fall from 1 to 0.
    const k = Math.round((1 - i / 10) * 255) * 3;
    return `<stop offset='${(i / 10).toFixed(2)}' stop-color='rgb(${lut[k]},${lut[k + 1]},${lut[k + 2]})'/>`;
  }).join('');
  const ticks = [0, 0.5, 1].map((v) => {
    const ty = y + (1 - v) * height;
    return `<line x1='${x + 18}' y1='${ty}' x2='${x + 23}' y2='${ty}' stroke='#222'/>` + svgText(x + 26, ty + 4, v.toFixed(1), { size: 12 });
  });
  return [
    `<defs><linearGradient id='cbar' x1='0' y1='0' x2='0' y2='1'>${stops}</linearGradient></defs>`,
    `<rect x='${x}' y='${y}' width='18' height='${height}' fill='url(#cbar)' stroke='#222' stroke-width='0.5'/>`,
    ...ticks,
    `<text x='${x + 62}' y='${y + height / 2}' ${FONT} font-size='12' fill='#222' text-anchor='middle' transform='rotate(90 ${x + 62} ${y + height / 2})'>${esc(label)}</text>`,
  ].join('');
}

export interface Placed {
  readonly png: Buffer;
  readonly left: number;
  readonly top: number;
}

/** A white canvas with PNGs placed on it and an SVG layer (text, bars, outlines) on top, as PNG bytes. */
export async function composePng(width: number, height: number, images: readonly Placed[], svgBody: string): Promise<Buffer> {
  const svg = Buffer.from(`<svg xmlns='http://www.w3.org/2000/svg' width='${width}' height='${height}'>${svgBody}</svg>`);
  return sharp({ create: { width, height, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite([...images.map((p) => ({ input: p.png, left: Math.round(p.left), top: Math.round(p.top) })), { input: svg, left: 0, top: 0 }])
    .png({ compressionLevel: 9 })
    .toBuffer();
}
