/**
 * Depthwise conv2d (groups = C, any channel multiplier M, output channel o reads input plane ⌊o / M⌋) on float32,
 * forward and both gradients, with the wasm SIMD window kernels of convsimd.ts. Plane by plane (so each stays in
 * L1/L2): the input plane is copied into wasm memory and zero-padded there into a scratch plane (so every output is
 * an interior one), the kernels run for its M output channels, and each result plane is copied out.
 *
 * `depthwiseSimdOk` says whether a call can take this path (float32, wasm SIMD, column stride 1 or 2).
 */
import { Arena, type Geom, convSimdAvailable, ginColumnShift, ginPadding, kernels } from './convsimd.ts';

export interface DepthwiseGeom {
  readonly N: number; readonly C: number; readonly H: number; readonly W: number;
  /** Output channels (C·M) and output plane. */
  readonly O: number; readonly OH: number; readonly OW: number;
  readonly kh: number; readonly kw: number;
  readonly stride: readonly [number, number];
  readonly dilation: readonly [number, number];
  /** [top, bottom, left, right] */
  readonly padding: readonly [number, number, number, number];
}

export function depthwiseSimdOk(d: DepthwiseGeom): boolean {
  return (d.stride[1] === 1 || d.stride[1] === 2) && convSimdAvailable();
}

const geom = (d: DepthwiseGeom): Geom => ({ cn: 1, kh: d.kh, kw: d.kw, sh: d.stride[0], sw: d.stride[1] as 1 | 2, dh: d.dilation[0], dw: d.dilation[1] });

/** The zero-padded input plane: every output's taps lie inside it. */
function padded(d: DepthwiseGeom): { Hp: number; Wp: number } {
  const [pt, pb, pl, pr] = d.padding;
  const [sh, sw] = d.stride;
  const Hp = Math.max(d.H + pt + pb, (d.OH - 1) * sh + (d.kh - 1) * d.dilation[0] + 1);
  const Wp = Math.max(d.W + pl + pr, (d.OW - 1) * sw + (d.kw - 1) * d.dilation[1] + 1);
  return { Hp, Wp };
}

/** y = depthwise conv(x, w). */
export function depthwiseForwardF32(X: Float32Array, Wt: Float32Array, d: DepthwiseGeom): Float32Array {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hp, Wp } = padded(d);
  const k = kernels(geom(d));
  const a = new Arena();
  const xs = a.reserve(HW), xp = a.reserve(Hp * Wp), ys = a.reserve(P), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  heap.fill(0, xp, xp + Hp * Wp);
  const Y = new Float32Array(N * O * P);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      heap.set(X.subarray((n * C + c) * HW, (n * C + c + 1) * HW), xs);
      k.copy2d(xs * 4, W * 4, (xp + pt * Wp + pl) * 4, Wp * 4, H, W);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        k.fwd(xp * 4, Wp * 4, 0, (wb + o * T) * 4, ys * 4, OW * 4, OH, OW);
        Y.set(heap.subarray(ys, ys + P), (n * O + o) * P);
      }
    }
  }
  return Y;
}

/** x̄ = the depthwise conv's adjoint applied to ȳ (a gather per input plane, summed over its M output channels). */
export function depthwiseGradInputF32(G: Float32Array, Wt: Float32Array, d: DepthwiseGeom): Float32Array {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const g = geom(d);
  const k = kernels(g);
  const pad = ginPadding(g);
  const Wg = pad.left + OW + pad.right, Hg = pad.top + OH + pad.bottom + 2;
  const phase = (g.sw === 2 ? pl & 1 : 0) as 0 | 1;
  const gin = phase ? k.gin1 : k.gin0;
  const base = (g.sw === 1 ? pl : (pl - phase) / 2) + ginColumnShift(g, phase);
  const a = new Arena();
  const gs = a.reserve(P), gp = a.reserve(Hg * Wg), dxs = a.reserve(HW), wb = a.reserve(O * T);
  const heap = a.heap();
  heap.set(Wt.subarray(0, O * T), wb);
  heap.fill(0, gp, gp + Hg * Wg);
  const g00 = gp + pad.top * Wg + pad.left; // g(0, 0) in the padded plane
  const DX = new Float32Array(N * C * HW);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      heap.fill(0, dxs, dxs + HW);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        heap.set(G.subarray((n * O + o) * P, (n * O + o + 1) * P), gs);
        k.copy2d(gs * 4, OW * 4, g00 * 4, Wg * 4, OH, OW);
        gin((g00 + base) * 4, Wg * 4, (wb + o * T) * 4, dxs * 4, W * 4, HW * 4, pt, pt + H, W);
      }
      DX.set(heap.subarray(dxs, dxs + HW), (n * C + c) * HW);
    }
  }
  return DX;
}

/** w̄[o, ky, kx] = Σ_n Σ_{i, j} ȳ[n, o, i, j] · x_padded[n, ⌊o/M⌋, i·sh + ky·dh, j·sw + kx·dw]. */
export function depthwiseGradFilterF32(X: Float32Array, G: Float32Array, d: DepthwiseGeom): Float32Array {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const [sh] = d.stride;
  const [dh] = d.dilation;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hp, Wp } = padded(d);
  const k = kernels(geom(d));
  const a = new Arena();
  const xs = a.reserve(HW), xp = a.reserve(Hp * Wp), gs = a.reserve(P), dw = a.reserve(O * T);
  const heap = a.heap();
  heap.fill(0, xp, xp + Hp * Wp);
  heap.fill(0, dw, dw + O * T);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      heap.set(X.subarray((n * C + c) * HW, (n * C + c + 1) * HW), xs);
      k.copy2d(xs * 4, W * 4, (xp + pt * Wp + pl) * 4, Wp * 4, H, W);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        heap.set(G.subarray((n * O + o) * P, (n * O + o + 1) * P), gs);
        for (let ky = 0; ky < kh; ky++) k.gwRow((xp + ky * dh * Wp) * 4, sh * Wp * 4, gs * 4, OW * 4, OH, OW, (dw + o * T + ky * kw) * 4);
      }
    }
  }
  return heap.slice(dw, dw + O * T);
}
