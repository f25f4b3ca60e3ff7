/**
 * The stochastic conv (per-batch or per-image windows) on float32, forward and both gradients, with the wasm SIMD
 * window kernels of convsimd.ts, on the pool's threads. Output channel k of image n is a valid conv of its window
 * (top-left (r, q), size ((oh − 1)·sh + kh) × ((ow − 1)·sw + kw)) of all C input planes with w[k].
 *
 * `...Ptr(…)` take byte addresses in the wasm heap (heap.ts); the `...F32` entry points take typed arrays and use
 * views of the heap in place (others are copied in, and the result out).
 *   - forward: each (image, channel) reads its window in place (all C planes, up to ~32 taps per unrolled pass)
 *     into a staging plane of the running thread, copied to y; tasks are ranges of (image, channel) pairs;
 *   - filter gradient: per (channel, image, input plane, tap row) a dot product of ȳ with the strided window rows,
 *     read in place; tasks are ranges of channels (each owns its filter rows);
 *   - input gradient: per image (a task), in bands of input rows that stay in L2: a gather over each window's
 *     rows of the x̄ band (all C planes per pass), the band cleared before and copied out after, so x̄ is written
 *     once; bands no window touches are zero-filled.
 * Windows are validated by the primitive's shape rule (autograd/conv.ts) before any kernel runs.
 */
import { type Geom, SLACK, convSimdAvailable, ginColumnShift, ginPadding, kernels, paddedBytes, simdHeap, tasksFor } from './convsimd.ts';
import { type StochasticGeometry, windowOf } from '../conv_geom.ts';
import { Job, S } from './pool.ts';

/** The stochastic conv's geometry record (../conv_geom.ts). */
export type StochasticGeom = StochasticGeometry;

export function stochasticSimdOk(s: StochasticGeom): boolean {
  return (s.stride[1] === 1 || s.stride[1] === 2) && convSimdAvailable();
}

/** Input planes per unrolled pass: about 32 taps. */
const chunk = (s: StochasticGeom) => Math.max(1, Math.min(s.C, Math.floor(32 / (s.kh * s.kw))));
const geom = (s: StochasticGeom, cn: number): Geom => ({ cn, kh: s.kh, kw: s.kw, sh: s.stride[0], sw: s.stride[1] as 1 | 2, dh: 1, dw: 1 });
/** The kernels of each channel chunk (looked up once per call, not per band). */
const chunkKernels = (s: StochasticGeom, cu: number) => Array.from({ length: Math.ceil(s.C / cu) }, (_, i) => kernels(geom(s, Math.min(cu, s.C - i * cu))));

/** Input rows per band: about 128 KiB of all C planes (plus the kh − 1 rows the last outputs reach into). */
const bandRows = (s: StochasticGeom) => bandOverride ?? Math.max(8, Math.min(s.H, Math.floor(32768 / (s.C * s.W))));
let bandOverride: number | undefined;

/** Fixes the band height (tests use tiny bands so windows straddle them); undefined restores the default. */
export function setStochasticBandRows(rows: number | undefined): void {
  bandOverride = rows === undefined ? undefined : Math.max(1, Math.floor(rows));
}

const heapOrThrow = () => simdHeap('stochastic conv');

export function stochasticForwardPtr(px: number, pw: number, py: number, s: StochasticGeom): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const P = OH * OW, T = C * kh * kw, cu = chunk(s);
  const ks = chunkKernels(s, cu);
  const ys = SLACK;
  const job = new Job();
  for (const [t0, t1] of tasksFor(N * O)) {
    for (let t = t0; t < t1; t++) {
      const n = Math.floor(t / O), o = t % O;
      const [r, q] = windowOf(s, n, o);
      for (let c0 = 0; c0 < C; c0 += cu) {
        const k = ks[c0 / cu];
        job.call(c0 === 0 ? k.fwd : k.fwdAcc, px + (((n * C + c0) * H + r) * W + q) * 4, W * 4, H * W * 4, pw + (o * T + c0 * kh * kw) * 4, S(ys), OW * 4, OH, OW);
      }
      job.call(ks[0].copy3d, S(ys), 0, 0, py + t * P * 4, 0, 0, 1, 1, P);
    }
    job.endTask();
  }
  job.run(ys + paddedBytes(P * 4));
}

export function stochasticGradFilterPtr(px: number, pg: number, pdw: number, s: StochasticGeom): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh] = s.stride;
  const P = OH * OW, T = C * kh * kw;
  const k = kernels(geom(s, chunk(s)));
  heapOrThrow().f32().fill(0, pdw >>> 2, (pdw >>> 2) + O * T);
  const job = new Job();
  for (const [o0, o1] of tasksFor(O)) {
    for (let o = o0; o < o1; o++) {
      for (let n = 0; n < N; n++) {
        const [r, q] = windowOf(s, n, o);
        for (let c = 0; c < C; c++) {
          for (let ky = 0; ky < kh; ky++) {
            job.call(k.gwRow, px + (((n * C + c) * H + r + ky) * W + q) * 4, sh * W * 4, pg + (n * O + o) * P * 4, OW * 4, OH, OW, pdw + (o * T + (c * kh + ky) * kw) * 4);
          }
        }
      }
    }
    job.endTask();
  }
  job.run(0);
}

export function stochasticGradInputPtr(pg: number, pw: number, pdx: number, s: StochasticGeom): void {
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
  const k = ks[0];
  const gp = SLACK, dxb = gp + paddedBytes(O * Hg * Wg * 4);
  const g00 = (o: number) => gp + (o * Hg * Wg + pad.top * Wg + pad.left) * 4; // g(0, 0) of channel o, zero-padded around
  const job = new Job();
  for (let n = 0; n < N; n++) {
    job.call(k.fill, S(gp), 0, O * Hg * Wg * 4);
    for (let o = 0; o < O; o++) job.call(k.copy3d, pg + (n * O + o) * P * 4, 0, OW * 4, S(g00(o)), 0, Wg * 4, 1, OH, OW);
    for (let b0 = 0; b0 < H; b0 += B) {
      const rows = Math.min(B, H - b0);
      let cleared = false;
      for (let o = 0; o < O; o++) {
        const [r, q] = windowOf(s, n, o);
        const y0 = Math.max(b0, r) - r, y1 = Math.min(b0 + rows, r + Hs) - r;
        if (y0 >= y1) continue;
        if (!cleared) {
          job.call(k.fill, S(dxb), 0, C * B * W * 4);
          cleared = true;
        }
        for (let c0 = 0; c0 < C; c0 += cu) {
          job.call(ks[c0 / cu].gin0, S(g00(o) + base * 4), Wg * 4, pw + (o * T + c0 * kh * kw) * 4, S(dxb + (c0 * B * W + (r + y0 - b0) * W + q) * 4), W * 4, B * W * 4, y0, y1, Ws);
        }
      }
      for (let c = 0; c < C; c++) {
        const to = pdx + ((n * C + c) * H + b0) * W * 4;
        if (cleared) job.call(k.copy3d, S(dxb + c * B * W * 4), 0, 0, to, 0, 0, 1, 1, rows * W);
        else job.call(k.fill, to, 0, rows * W * 4);
      }
    }
    job.endTask();
  }
  job.run(dxb + paddedBytes(C * B * W * 4));
}

export function stochasticForwardF32(X: Float32Array, Wt: Float32Array, s: StochasticGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(s.N * s.O * s.outSize[0] * s.outSize[1], (py) => stochasticForwardPtr(px, pw, py, s), out)));
}

export function stochasticGradInputF32(G: Float32Array, Wt: Float32Array, s: StochasticGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(G, (pg) => h.withF32(Wt, (pw) => h.outF32(s.N * s.C * s.H * s.W, (pdx) => stochasticGradInputPtr(pg, pw, pdx, s), out)));
}

export function stochasticGradFilterF32(X: Float32Array, G: Float32Array, s: StochasticGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(G, (pg) => h.outF32(s.O * s.C * s.kh * s.kw, (pdw) => stochasticGradFilterPtr(px, pg, pdw, s), out)));
}
