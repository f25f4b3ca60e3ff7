/**
 * im2col / col2im for the conv-as-GEMM path (conv.ts): one group's input channels unrolled into a (Cg·kh·kw) × P
 * matrix (P = OH·OW), zeros where a tap falls in the padding, and its adjoint.
 */
import type { TypedArray } from '../backend.ts';
import type { ConvGeometry } from './conv_geom.ts';

/** First and one-past-last output index whose tap `off + o·s` lies in [0, n). */
export function validRange(off: number, s: number, n: number, count: number): [number, number] {
  const lo = off >= 0 ? 0 : Math.min(count, Math.ceil(-off / s));
  const hi = off >= n ? 0 : Math.min(count, Math.floor((n - 1 - off) / s) + 1);
  return [lo, Math.max(lo, hi)];
}

/** col[(c·kh + ky)·kw + kx, i·OW + j] = x[c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] (0 outside). */
export function im2col(X: TypedArray, xOff: number, g: ConvGeometry, col: TypedArray, colOff = 0): void {
  const { Cg: C, H, W, kh, kw, OH, OW } = g;
  const [sh, sw] = g.stride, [dh, dw] = g.dilation, [pt, , pl] = g.padding;
  const P = OH * OW;
  let row = 0;
  for (let c = 0; c < C; c++) {
    const plane = xOff + c * H * W;
    for (let ky = 0; ky < kh; ky++) {
      const [i0, i1] = validRange(ky * dh - pt, sh, H, OH);
      for (let kx = 0; kx < kw; kx++, row++) {
        const base = colOff + row * P;
        const [j0, j1] = validRange(kx * dw - pl, sw, W, OW);
        if (i0 > 0) col.fill(0, base, base + i0 * OW);
        if (i1 < OH) col.fill(0, base + i1 * OW, base + P);
        for (let i = i0; i < i1; i++) {
          const d = base + i * OW;
          if (j0 > 0) col.fill(0, d, d + j0);
          if (j1 < OW) col.fill(0, d + j1, d + OW);
          let s = plane + (i * sh - pt + ky * dh) * W + j0 * sw - pl + kx * dw;
          if (sw === 1) col.set(X.subarray(s, s + j1 - j0), d + j0);
          else for (let j = j0; j < j1; j++, s += sw) col[d + j] = X[s];
        }
      }
    }
  }
}

/** The adjoint of im2col: x[c, …] += col[(c, ky, kx), (i, j)] over the in-bounds taps. */
export function col2im(col: TypedArray, colOff: number, g: ConvGeometry, X: TypedArray, xOff: number): void {
  const { Cg: C, H, W, kh, kw, OH, OW } = g;
  const [sh, sw] = g.stride, [dh, dw] = g.dilation, [pt, , pl] = g.padding;
  const P = OH * OW;
  let row = 0;
  for (let c = 0; c < C; c++) {
    const plane = xOff + c * H * W;
    for (let ky = 0; ky < kh; ky++) {
      const [i0, i1] = validRange(ky * dh - pt, sh, H, OH);
      for (let kx = 0; kx < kw; kx++, row++) {
        const base = colOff + row * P;
        const [j0, j1] = validRange(kx * dw - pl, sw, W, OW);
        for (let i = i0; i < i1; i++) {
          let s = plane + (i * sh - pt + ky * dh) * W + j0 * sw - pl + kx * dw;
          const d = base + i * OW;
          for (let j = j0; j < j1; j++, s += sw) X[s] += col[d + j];
        }
      }
    }
  }
}
