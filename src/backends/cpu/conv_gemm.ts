/**
 * A cache-blocked GEMM for the convolution kernels, plus im2col / col2im. Operands are read through
 * (row, column) strides, so the transposes conv's gradients need are folded into packing.
 * Layout follows the classic Goto scheme in miniature: a K-block of A (all rows, 4-row interleaved)
 * and a K×N block of B (4-column panels) are packed into contiguous scratch, then a 4×4 register
 * micro-kernel sweeps them; 16 accumulators, 8 loads per 16 multiply-adds.
 */
import type { TypedArray } from '../backend.ts';
import { sgemm } from './fast/index.ts';

/** float32 products with at least this many multiply-adds go to the wasm SIMD sgemm (engineer F's fast/). */
const SGEMM_MIN_MACS = 4096;

const KC = 256;
const NC = 1024;

// Scratch for packed panels, grown on demand and reused (never escapes a call).
const scratch = { f32: [new Float32Array(0), new Float32Array(0)], f64: [new Float64Array(0), new Float64Array(0)] };
function buffers(like: TypedArray, na: number, nb: number): [TypedArray, TypedArray] {
  const s = like instanceof Float64Array ? scratch.f64 : scratch.f32;
  if (s[0].length < na) s[0] = like instanceof Float64Array ? new Float64Array(na) : new Float32Array(na);
  if (s[1].length < nb) s[1] = like instanceof Float64Array ? new Float64Array(nb) : new Float32Array(nb);
  return [s[0], s[1]];
}

/**
 * C[cOff + i·ldc + j] (+)= Σ_k A[aOff + i·aRs + k·aCs] · B[bOff + k·bRs + j·bCs] for i < M, j < N.
 * Overwrites C unless `accumulate`.
 */
export function gemm(
  M: number, N: number, K: number,
  A: TypedArray, aOff: number, aRs: number, aCs: number,
  B: TypedArray, bOff: number, bRs: number, bCs: number,
  C: TypedArray, cOff: number, ldc: number,
  accumulate: boolean,
): void {
  // float32 with a unit stride on one side of each operand = a BLAS layout: run it on the wasm SIMD sgemm
  // (threads, packing, 2×16 f32x4 micro-kernel). float64 and other strides stay on the TS loops below.
  if (C instanceof Float32Array && A instanceof Float32Array && B instanceof Float32Array && M * N * K >= SGEMM_MIN_MACS) {
    const transA = aCs !== 1;
    const transB = bCs !== 1;
    const lda = transA ? aCs : aRs;
    const ldb = transB ? bCs : bRs;
    if ((transA ? aRs === 1 && lda >= M : lda >= K) && (transB ? bRs === 1 && ldb >= K : ldb >= N) && ldc >= N) {
      sgemm(transA, transB, M, N, K, 1, A, aOff, lda, B, bOff, ldb, accumulate ? 1 : 0, C, cOff, ldc);
      return;
    }
  }
  if (!accumulate) for (let i = 0; i < M; i++) C.fill(0, cOff + i * ldc, cOff + i * ldc + N);
  if (K === 0 || M === 0 || N === 0) return;
  const M4 = (M + 3) & ~3;
  const kcMax = Math.min(K, KC);
  const ncMax = Math.min((N + 3) & ~3, NC);
  const [Ap, Bp] = buffers(C, M4 * kcMax, kcMax * ncMax);
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = Math.min(KC, K - k0);
    packA(A, aOff + k0 * aCs, aRs, aCs, M, kc, Ap);
    for (let j0 = 0; j0 < N; j0 += NC) {
      const nc = Math.min(NC, N - j0);
      packB(B, bOff + k0 * bRs + j0 * bCs, bRs, bCs, kc, nc, Bp);
      macroKernel(Ap, Bp, M, nc, kc, C, cOff + j0, ldc);
    }
  }
}

/** A rows i..i+3 interleaved: Ap[(iq·kc + k)·4 + r] = A(4iq + r, k); rows past M are zero. */
function packA(A: TypedArray, off: number, rs: number, cs: number, M: number, kc: number, Ap: TypedArray): void {
  for (let i0 = 0; i0 < M; i0 += 4) {
    const base = i0 * kc;
    for (let r = 0; r < 4; r++) {
      const i = i0 + r;
      let d = base + r;
      if (i < M) {
        let s = off + i * rs;
        for (let k = 0; k < kc; k++, s += cs, d += 4) Ap[d] = A[s];
      } else for (let k = 0; k < kc; k++, d += 4) Ap[d] = 0;
    }
  }
}

/** B in 4-column panels: Bp[(jq·kc + k)·4 + t] = B(k, 4jq + t); columns past N are zero. */
function packB(B: TypedArray, off: number, rs: number, cs: number, kc: number, nc: number, Bp: TypedArray): void {
  for (let j0 = 0; j0 < nc; j0 += 4) {
    const base = j0 * kc;
    if (j0 + 4 <= nc && cs === 1) {
      let s = off + j0;
      let d = base;
      for (let k = 0; k < kc; k++, s += rs, d += 4) {
        Bp[d] = B[s];
        Bp[d + 1] = B[s + 1];
        Bp[d + 2] = B[s + 2];
        Bp[d + 3] = B[s + 3];
      }
    } else {
      for (let t = 0; t < 4; t++) {
        const j = j0 + t;
        let d = base + t;
        if (j < nc) {
          let s = off + j * cs;
          for (let k = 0; k < kc; k++, s += rs, d += 4) Bp[d] = B[s];
        } else for (let k = 0; k < kc; k++, d += 4) Bp[d] = 0;
      }
    }
  }
}

/** C block += Ap · Bp with a 4×4 register tile. */
function macroKernel(Ap: TypedArray, Bp: TypedArray, M: number, nc: number, kc: number, C: TypedArray, cOff: number, ldc: number): void {
  for (let j0 = 0; j0 < nc; j0 += 4) {
    const bBase = j0 * kc;
    const full = j0 + 4 <= nc;
    for (let i0 = 0; i0 < M; i0 += 4) {
      let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
      let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
      let a = i0 * kc;
      let b = bBase;
      for (let k = 0; k < kc; k++, a += 4, b += 4) {
        const b0 = Bp[b], b1 = Bp[b + 1], b2 = Bp[b + 2], b3 = Bp[b + 3];
        const a0 = Ap[a], a1 = Ap[a + 1], a2 = Ap[a + 2], a3 = Ap[a + 3];
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
      }
      let o = cOff + i0 * ldc + j0;
      if (full && i0 + 4 <= M) {
        C[o] += c00; C[o + 1] += c01; C[o + 2] += c02; C[o + 3] += c03; o += ldc;
        C[o] += c10; C[o + 1] += c11; C[o + 2] += c12; C[o + 3] += c13; o += ldc;
        C[o] += c20; C[o + 1] += c21; C[o + 2] += c22; C[o + 3] += c23; o += ldc;
        C[o] += c30; C[o + 1] += c31; C[o + 2] += c32; C[o + 3] += c33;
      } else {
        const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
        for (let r = 0; r < 4 && i0 + r < M; r++) {
          for (let t = 0; t < 4 && j0 + t < nc; t++) C[o + r * ldc + t] += tile[r * 4 + t];
        }
      }
    }
  }
}

export interface ConvGeom {
  readonly C: number; // channels of this group
  readonly H: number;
  readonly W: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly dh: number;
  readonly dw: number;
  readonly pt: number;
  readonly pl: number;
  readonly OH: number;
  readonly OW: number;
}

/** First and one-past-last output index whose tap `off + o·s` lies in [0, n). */
function validRange(off: number, s: number, n: number, count: number): [number, number] {
  const lo = off >= 0 ? 0 : Math.min(count, Math.ceil(-off / s));
  const hi = off >= n ? 0 : Math.min(count, Math.floor((n - 1 - off) / s) + 1);
  return [lo, Math.max(lo, hi)];
}

/** col[(c·kh + ky)·kw + kx, i·OW + j] = x[c, i·sh − pt + ky·dh, j·sw − pl + kx·dw] (0 outside). */
export function im2col(X: TypedArray, xOff: number, g: ConvGeom, col: TypedArray): void {
  const { C, H, W, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW } = g;
  const P = OH * OW;
  let row = 0;
  for (let c = 0; c < C; c++) {
    const plane = xOff + c * H * W;
    for (let ky = 0; ky < kh; ky++) {
      const [i0, i1] = validRange(ky * dh - pt, sh, H, OH);
      for (let kx = 0; kx < kw; kx++, row++) {
        const base = row * P;
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
export function col2im(col: TypedArray, g: ConvGeom, X: TypedArray, xOff: number): void {
  const { C, H, W, kh, kw, sh, sw, dh, dw, pt, pl, OH, OW } = g;
  const P = OH * OW;
  let row = 0;
  for (let c = 0; c < C; c++) {
    const plane = xOff + c * H * W;
    for (let ky = 0; ky < kh; ky++) {
      const [i0, i1] = validRange(ky * dh - pt, sh, H, OH);
      for (let kx = 0; kx < kw; kx++, row++) {
        const base = row * P;
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
