/**
 * The stochastic conv (per-batch or per-image windows) on float32, forward and both gradients, with the wasm SIMD
 * window kernels of convsimd.ts. Output channel k of image n is a valid conv of its window (top-left (r, q),
 * size ((oh − 1)·sh + kh) × ((ow − 1)·sw + kw)) of all C input planes with w[k]:
 *   - forward: the image's planes are copied into wasm memory once; each channel's kernel call reads its window in
 *     place (no crop), all C planes (up to ~32 taps) in one unrolled pass;
 *   - input gradient: a gather over each window of x̄, all C planes per pass, accumulated in a dx image of which
 *     only the rows some window covers are cleared and copied back;
 *   - filter gradient: per (channel, input plane, tap row) a dot product of ȳ with the strided window row.
 * Windows are validated by the primitive's shape rule (autograd/conv.ts) before any kernel runs.
 */
import { Arena, type Geom, convSimdAvailable, copyRows, ginColumnShift, ginPadding, kernels } from './convsimd.ts';

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
const windowOf = (s: StochasticGeom, n: number, o: number): [number, number] => {
  const i = s.perImage ? n * s.O + o : o;
  return [s.windows[2 * i], s.windows[2 * i + 1]];
};

export function stochasticForwardF32(X: Float32Array, Wt: Float32Array, s: StochasticGeom): Float32Array {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const HW = H * W, P = OH * OW, T = C * kh * kw, cu = chunk(s);
  const a = new Arena();
  const xs = a.reserve(C * HW), ys = a.reserve(O * P), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  const Y = new Float32Array(N * O * P);
  for (let n = 0; n < N; n++) {
    heap.set(X.subarray(n * C * HW, (n + 1) * C * HW), xs);
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(s, n, o);
      for (let c0 = 0; c0 < C; c0 += cu) {
        const k = kernels(geom(s, Math.min(cu, C - c0)));
        (c0 === 0 ? k.fwd : k.fwdAcc)((xs + c0 * HW + r * W + q) * 4, W * 4, HW * 4, (wb + o * T + c0 * kh * kw) * 4, (ys + o * P) * 4, OW * 4, OH, OW);
      }
    }
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
  const g0 = geom(s, cu);
  const pad = ginPadding(g0);
  const Wg = pad.left + OW + pad.right, Hg = pad.top + OH + pad.bottom + 2;
  const g00 = (gp: number) => gp + pad.top * Wg + pad.left;
  const base = ginColumnShift(g0, 0); // window column 0 is even: phase 0
  const a = new Arena();
  const gs = a.reserve(O * P), gp = a.reserve(Hg * Wg), dxs = a.reserve(C * HW), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  heap.fill(0, gp, gp + Hg * Wg);
  const DX = new Float32Array(N * C * HW);
  for (let n = 0; n < N; n++) {
    // Only rows under some window are touched: clear and copy back just those.
    let r0 = H, r1 = 0;
    for (let o = 0; o < O; o++) {
      const [r] = windowOf(s, n, o);
      r0 = Math.min(r0, r);
      r1 = Math.max(r1, r + Hs);
    }
    heap.set(G.subarray(n * O * P, (n + 1) * O * P), gs);
    for (let c = 0; c < C; c++) heap.fill(0, dxs + c * HW + r0 * W, dxs + c * HW + r1 * W);
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(s, n, o);
      copyRows(heap, gs + o * P, OW, g00(gp), Wg, OH, OW);
      for (let c0 = 0; c0 < C; c0 += cu) {
        const k = kernels(geom(s, Math.min(cu, C - c0)));
        k.gin0((g00(gp) + base) * 4, Wg * 4, (wb + o * T + c0 * kh * kw) * 4, (dxs + c0 * HW + r * W + q) * 4, W * 4, HW * 4, 0, Hs, Ws);
      }
    }
    for (let c = 0; c < C; c++) DX.set(heap.subarray(dxs + c * HW + r0 * W, dxs + c * HW + r1 * W), (n * C + c) * HW + r0 * W);
  }
  return DX;
}

export function stochasticGradFilterF32(X: Float32Array, G: Float32Array, s: StochasticGeom): Float32Array {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh] = s.stride;
  const HW = H * W, P = OH * OW, T = C * kh * kw;
  const k = kernels(geom(s, chunk(s)));
  const a = new Arena();
  const xs = a.reserve(C * HW), gs = a.reserve(O * P), dw = a.reserve(O * T);
  const heap = a.heap();
  heap.fill(0, dw, dw + O * T);
  for (let n = 0; n < N; n++) {
    heap.set(X.subarray(n * C * HW, (n + 1) * C * HW), xs);
    heap.set(G.subarray(n * O * P, (n + 1) * O * P), gs);
    for (let o = 0; o < O; o++) {
      const [r, q] = windowOf(s, n, o);
      for (let c = 0; c < C; c++) {
        for (let ky = 0; ky < kh; ky++) {
          k.gwRow((xs + c * HW + (r + ky) * W + q) * 4, sh * W * 4, (gs + o * P) * 4, OW * 4, OH, OW, (dw + o * T + (c * kh + ky) * kw) * 4);
        }
      }
    }
  }
  return heap.slice(dw, dw + O * T);
}

