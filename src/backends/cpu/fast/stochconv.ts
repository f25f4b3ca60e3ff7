/**
 * The stochastic conv (per-batch or per-image windows) on float32, forward and both gradients, with the wasm SIMD
 * window kernels of convsimd.ts. Output channel k of image n is a valid conv of its window (top-left (r, q),
 * size ((oh − 1)·sh + kh) × ((ow − 1)·sw + kw)) of all C input planes with w[k].
 *
 * The input (and x̄) is ~21× the plain conv's, so the work goes in bands of input rows that stay in L2: a band of
 * all C planes is copied into wasm memory once, and every window that has output rows starting in the band
 * computes them there, reading its window in place (no crop):
 *   - forward: all C planes (up to ~32 taps) per unrolled pass;
 *   - input gradient: a gather over each window's rows of the x̄ band (all C planes per pass), the band cleared
 *     before and copied out after, so x̄ is written once and bands no window touches are skipped;
 *   - filter gradient: per (channel, input plane, tap row) a dot product of ȳ with the strided window rows.
 * Windows are validated by the primitive's shape rule (autograd/conv.ts) before any kernel runs.
 */
import { Arena, type Geom, convSimdAvailable, ginColumnShift, ginPadding, kernels } from './convsimd.ts';

export interface StochasticGeom {
  readonly N: number; readonly C: number; readonly H: number; readonly W: number;
  readonly O: number; readonly kh: number; readonly kw: number;
  readonly stride: readonly [number, number];
  readonly outSize: readonly [number, number];
  readonly windows: Int32Array;
  readonly perImage: boolean;
}

export function stochasticSimdOk(s: StochasticGeom): boolean {
  return (s.stride[1] === 1 || s.stride[1] === 2) && convSimdAvailable();
}

/** Input planes per unrolled pass: about 32 taps. */
const chunk = (s: StochasticGeom) => Math.max(1, Math.min(s.C, Math.floor(32 / (s.kh * s.kw))));
const geom = (s: StochasticGeom, cn: number): Geom => ({ cn, kh: s.kh, kw: s.kw, sh: s.stride[0], sw: s.stride[1] as 1 | 2, dh: 1, dw: 1 });
/** The kernels of each channel chunk (looked up once per call, not per band). */
const chunkKernels = (s: StochasticGeom, cu: number) => Array.from({ length: Math.ceil(s.C / cu) }, (_, i) => kernels(geom(s, Math.min(cu, s.C - i * cu))));
const windowOf = (s: StochasticGeom, n: number, o: number): [number, number] => {
  const i = s.perImage ? n * s.O + o : o;
  return [s.windows[2 * i], s.windows[2 * i + 1]];
};

/** Input rows per band: about 128 KiB of all C planes (plus the kh − 1 rows the last outputs reach into). */
const bandRows = (s: StochasticGeom) => bandOverride ?? Math.max(8, Math.min(s.H, Math.floor(32768 / (s.C * s.W))));
let bandOverride: number | undefined;

/** Fixes the band height (tests use tiny bands so windows straddle them); undefined restores the default. */
export function setStochasticBandRows(rows: number | undefined): void {
  bandOverride = rows === undefined ? undefined : Math.max(1, Math.floor(rows));
}

/** Output rows [i0, i1) of window row r whose first input row lies in [b0, b0 + B). */
function rowsIn(r: number, sh: number, OH: number, b0: number, B: number): [number, number] {
  const i0 = Math.max(0, Math.ceil((b0 - r) / sh));
  const i1 = Math.min(OH, Math.ceil((b0 + B - r) / sh));
  return [i0, i1];
}

/** Copies input rows [b0, b0 + rows) of image n's C planes into the band buffer (plane stride Bx·W). */
function copyBand(heap: Float32Array, X: Float32Array, s: StochasticGeom, n: number, b0: number, rows: number, xb: number, Bx: number): void {
  const { C, H, W } = s;
  for (let c = 0; c < C; c++) {
    const from = ((n * C + c) * H + b0) * W;
    heap.set(X.subarray(from, from + rows * W), xb + c * Bx * W);
  }
}

/**
 * Walks image n band by band (B input rows, plus kh − 1 rows of overlap): for each channel whose
 * window has output rows [i0, i1) in the band, calls visit(o, r, q, i0, i1, b0) with the band
 * already copied into the buffer at xb (copied once per band, only if some window touches it).
 */
function forEachBandWindow(
  heap: Float32Array, X: Float32Array, s: StochasticGeom, n: number, xb: number,
  visit: (o: number, r: number, q: number, i0: number, i1: number, b0: number) => void,
): void {
  const { H, O, kh } = s;
  const B = bandRows(s), Bx = B + kh - 1;
  for (let b0 = 0; b0 < H; b0 += B) {
    let copied = false;
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(s, n, o);
      const [i0, i1] = rowsIn(r, s.stride[0], s.outSize[0], b0, B);
      if (i0 >= i1) continue;
      if (!copied) {
        copyBand(heap, X, s, n, b0, Math.min(Bx, H - b0), xb, Bx);
        copied = true;
      }
      visit(o, r, q, i0, i1, b0);
    }
  }
}

export function stochasticForwardF32(X: Float32Array, Wt: Float32Array, s: StochasticGeom): Float32Array {
  const { N, C, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh] = s.stride;
  const P = OH * OW, T = C * kh * kw, cu = chunk(s);
  const B = bandRows(s), Bx = B + kh - 1;
  const ks = chunkKernels(s, cu);
  const a = new Arena();
  const xb = a.reserve(C * Bx * W), ys = a.reserve(O * P), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  const Y = new Float32Array(N * O * P);
  for (let n = 0; n < N; n++) {
    forEachBandWindow(heap, X, s, n, xb, (o, r, q, i0, i1, b0) => {
      for (let c0 = 0; c0 < C; c0 += cu) {
        const k = ks[c0 / cu];
        (c0 === 0 ? k.fwd : k.fwdAcc)((xb + c0 * Bx * W + (r + i0 * sh - b0) * W + q) * 4, W * 4, Bx * W * 4, (wb + o * T + c0 * kh * kw) * 4, (ys + o * P + i0 * OW) * 4, OW * 4, i1 - i0, OW);
      }
    });
    Y.set(heap.subarray(ys, ys + O * P), n * O * P);
  }
  return Y;
}

export function stochasticGradInputF32(G: Float32Array, Wt: Float32Array, s: StochasticGeom): Float32Array {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh, sw] = s.stride;
  const HW = H * W, P = OH * OW, T = C * kh * kw, cu = chunk(s);
  const Hs = (OH - 1) * sh + kh, Ws = (OW - 1) * sw + kw;
  const B = bandRows(s);
  const g0 = geom(s, cu);
  const pad = ginPadding(g0);
  const Wg = pad.left + OW + pad.right, Hg = pad.top + OH + pad.bottom + 2;
  const base = ginColumnShift(g0, 0); // window column 0 is even: phase 0
  const ks = chunkKernels(s, cu);
  const a = new Arena();
  const gs = a.reserve(O * P), gp = a.reserve(O * Hg * Wg), dxb = a.reserve(C * B * W), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  heap.fill(0, gp, gp + O * Hg * Wg);
  const g00 = (o: number) => gp + o * Hg * Wg + pad.top * Wg + pad.left; // g(0, 0) of channel o, zero-padded around
  const DX = new Float32Array(N * C * HW);
  for (let n = 0; n < N; n++) {
    heap.set(G.subarray(n * O * P, (n + 1) * O * P), gs);
    for (let o = 0; o < O; o++) ks[0].copy2d((gs + o * P) * 4, OW * 4, g00(o) * 4, Wg * 4, OH, OW);
    for (let b0 = 0; b0 < H; b0 += B) {
      const rows = Math.min(B, H - b0);
      let cleared = false;
      for (let o = 0; o < O; o++) {
        const [r, q] = windowOf(s, n, o);
        const y0 = Math.max(b0, r) - r, y1 = Math.min(b0 + rows, r + Hs) - r;
        if (y0 >= y1) continue;
        if (!cleared) {
          heap.fill(0, dxb, dxb + C * B * W);
          cleared = true;
        }
        for (let c0 = 0; c0 < C; c0 += cu) {
          ks[c0 / cu].gin0((g00(o) + base) * 4, Wg * 4, (wb + o * T + c0 * kh * kw) * 4, (dxb + c0 * B * W + (r + y0 - b0) * W + q) * 4, W * 4, B * W * 4, y0, y1, Ws);
        }
      }
      if (cleared) for (let c = 0; c < C; c++) DX.set(heap.subarray(dxb + c * B * W, dxb + c * B * W + rows * W), ((n * C + c) * H + b0) * W);
    }
  }
  return DX;
}

export function stochasticGradFilterF32(X: Float32Array, G: Float32Array, s: StochasticGeom): Float32Array {
  const { N, C, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh] = s.stride;
  const P = OH * OW, T = C * kh * kw;
  const B = bandRows(s), Bx = B + kh - 1;
  const k = kernels(geom(s, chunk(s)));
  const a = new Arena();
  const xb = a.reserve(C * Bx * W), gs = a.reserve(O * P), dw = a.reserve(O * T);
  const heap = a.heap();
  heap.fill(0, dw, dw + O * T);
  for (let n = 0; n < N; n++) {
    heap.set(G.subarray(n * O * P, (n + 1) * O * P), gs);
    forEachBandWindow(heap, X, s, n, xb, (o, r, q, i0, i1, b0) => {
      for (let c = 0; c < C; c++) {
        for (let ky = 0; ky < kh; ky++) {
          k.gwRow((xb + c * Bx * W + (r + i0 * sh + ky - b0) * W + q) * 4, sh * W * 4, (gs + o * P + i0 * OW) * 4, OW * 4, i1 - i0, OW, (dw + o * T + (c * kh + ky) * kw) * 4);
        }
      }
    });
  }
  return heap.slice(dw, dw + O * T);
}
