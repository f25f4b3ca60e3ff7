/**
 * im2col on the pool's threads: the unrolled matrices of several images (each group's (Cg·kh·kw) × P, as
 * ../conv_gemm.ts's `im2col` writes them) built in the wasm heap by one job, a task per image, each matrix zeroed
 * then its in-bounds taps gathered row block by row block (convsimd.ts's `gather`: 4 floats per store for column
 * strides 1 and 2). The conv-as-GEMM path (../conv.ts) then multiplies them in place.
 */
import type { ConvGeometry } from '../conv_geom.ts';
import { validRange } from '../conv_gemm.ts';
import { kernels } from './convsimd.ts';
import { Job } from './pool.ts';

/** col (at pcol) = the matrices of images [n0, n1) of x (at px), image by image, group by group. */
export function im2colPtr(px: number, p: ConvGeometry, n0: number, n1: number, pcol: number): void {
  const { C, Cg, H, W, kh, kw, OH, OW, groups } = p;
  const [sh, sw] = p.stride, [dh, dw] = p.dilation, [pt, , pl] = p.padding;
  const P = OH * OW, KP = Cg * kh * kw * P;
  const k = kernels({ cn: 1, kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1 });
  const job = new Job();
  for (let n = n0; n < n1; n++) {
    const col = pcol + (n - n0) * groups * KP * 4;
    job.call(k.fill, col, 0, groups * KP * 4);
    for (let c = 0; c < C; c++) {
      const plane = px + (n * C + c) * H * W * 4;
      for (let ky = 0; ky < kh; ky++) {
        const [i0, i1] = validRange(ky * dh - pt, sh, H, OH);
        for (let kx = 0; kx < kw; kx++) {
          const [j0, j1] = validRange(kx * dw - pl, sw, W, OW);
          if (i0 >= i1 || j0 >= j1) continue;
          const row = col + (((c - (c % Cg)) * kh * kw * P) + ((c % Cg) * kh + ky) * kw * P + kx * P) * 4;
          const src = plane + ((i0 * sh - pt + ky * dh) * W + j0 * sw - pl + kx * dw) * 4;
          job.call(k.gather, src, sh * W * 4, sw * 4, row + (i0 * OW + j0) * 4, OW * 4, i1 - i0, j1 - j0);
        }
      }
    }
    job.endTask();
  }
  job.run(0);
}
