/** Host-side resampling and scaling of single-channel maps (row-major h × w Float32Arrays). */

/**
 * Bilinear resize with half-pixel centres (PyTorch's `interpolate(mode='bilinear',
 * align_corners=False)`, OpenCV's INTER_LINEAR): output pixel centre x maps to (x + ½)·w/W − ½.
 */
export function resizeBilinear(src: ArrayLike<number>, h: number, w: number, H: number, W: number): Float32Array {
  if (src.length !== h * w) throw new Error(`resizeBilinear: ${src.length} values for a ${h}×${w} map`);
  const out = new Float32Array(H * W);
  const axis = (n: number, N: number) =>
    Array.from({ length: N }, (_, i) => {
      const x = Math.min(Math.max((i + 0.5) * (n / N) - 0.5, 0), n - 1);
      const i0 = Math.floor(x);
      return { i0, i1: Math.min(i0 + 1, n - 1), t: x - i0 };
    });
  const ys = axis(h, H);
  const xs = axis(w, W);
  for (let y = 0; y < H; y++) {
    const { i0: y0, i1: y1, t: ty } = ys[y];
    for (let x = 0; x < W; x++) {
      const { i0: x0, i1: x1, t: tx } = xs[x];
      const top = src[y0 * w + x0] * (1 - tx) + src[y0 * w + x1] * tx;
      const bottom = src[y1 * w + x0] * (1 - tx) + src[y1 * w + x1] * tx;
      out[y * W + x] = top * (1 - ty) + bottom * ty;
    }
  }
  return out;
}

/** Area-average downscale by an integer-or-not factor (each output pixel averages the source pixels whose centres fall in it). */
export function resizeArea(src: ArrayLike<number>, h: number, w: number, H: number, W: number): Float32Array {
  if (H >= h && W >= w) return resizeBilinear(src, h, w, H, W);
  const sum = new Float64Array(H * W);
  const count = new Float64Array(H * W);
  for (let y = 0; y < h; y++) {
    const oy = Math.min(H - 1, Math.floor(((y + 0.5) * H) / h));
    for (let x = 0; x < w; x++) {
      const o = oy * W + Math.min(W - 1, Math.floor(((x + 0.5) * W) / w));
      sum[o] += src[y * w + x];
      count[o]++;
    }
  }
  return Float32Array.from(sum, (s, i) => (count[i] ? s / count[i] : 0));
}

/** Scales a non-negative map to [0, 1] by its maximum (an all-zero map stays zero); returns the maximum too. */
export function normaliseMap(map: ArrayLike<number>): { map: Float32Array; max: number } {
  let max = 0;
  for (let i = 0; i < map.length; i++) if (map[i] > max) max = map[i];
  return { map: Float32Array.from(map, (v) => (max > 0 ? Math.max(0, v) / max : 0)), max };
}
