/**
 * Depthwise conv2d (groups = C, any channel multiplier M, output channel o reads input plane ⌊o / M⌋) on float32,
 * forward and both gradients, with the wasm SIMD window kernels of convsimd.ts, on the pool's threads.
 *
 * `...Ptr(…)` take byte addresses in the wasm heap (heap.ts) and write the output there; the `...F32` entry points
 * take typed arrays and use views of the heap in place (others are copied in, and the result out). Work goes
 * plane by plane (each stays in L1/L2): an input plane is zero-padded into the running thread's scratch (so every
 * output is an interior one), the kernels run for its M output channels into a staging plane, and that is copied
 * to the output (vector stores never run past a plane that another thread may be writing). Tasks: ranges of
 * (image, channel) planes for the forward and input gradient, ranges of channels (each owns its filter rows) for
 * the filter gradient.
 *
 * `depthwiseSimdOk` says whether a call can take this path (float32, wasm SIMD, column stride 1 or 2).
 */
import { type Geom, SLACK, convSimdAvailable, ginColumnShift, ginPadding, kernels, paddedBytes, simdHeap, tasksFor } from './convsimd.ts';
import type { ConvGeometry } from '../conv_geom.ts';
import { Job, S } from './pool.ts';

/** The fields of a conv's geometry record (../conv_geom.ts) these kernels read. */
export type DepthwiseGeom = Pick<ConvGeometry, 'N' | 'C' | 'H' | 'W' | 'O' | 'OH' | 'OW' | 'kh' | 'kw' | 'stride' | 'dilation' | 'padding'>;

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

const heapOrThrow = () => simdHeap('depthwise');

/** y (at py) = depthwise conv(x at px, w at pw). */
export function depthwiseForwardPtr(px: number, pw: number, py: number, d: DepthwiseGeom): void {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hp, Wp } = padded(d);
  const k = kernels(geom(d));
  const xp = SLACK, ys = xp + paddedBytes(Hp * Wp * 4);
  const job = new Job();
  for (const [p0, p1] of tasksFor(N * C)) {
    job.call(k.fill, S(xp), 0, Hp * Wp * 4);
    for (let pl0 = p0; pl0 < p1; pl0++) {
      const n = Math.floor(pl0 / C), c = pl0 % C;
      job.call(k.copy2d, px + pl0 * HW * 4, W * 4, S(xp + (pt * Wp + pl) * 4), Wp * 4, H, W);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        job.call(k.fwd, S(xp), Wp * 4, 0, pw + o * T * 4, S(ys), OW * 4, OH, OW);
        job.call(k.copy2d, S(ys), 0, py + (n * O + o) * P * 4, 0, 1, P);
      }
    }
    job.endTask();
  }
  job.run(ys + paddedBytes(P * 4));
}

/** x̄ (at pdx) = the depthwise conv's adjoint applied to ȳ (at pg): a gather per input plane over its M output channels. */
export function depthwiseGradInputPtr(pg: number, pw: number, pdx: number, d: DepthwiseGeom): void {
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
  const gp = SLACK, dxs = gp + paddedBytes(Hg * Wg * 4);
  const g00 = gp + (pad.top * Wg + pad.left) * 4; // g(0, 0) in the padded plane
  const job = new Job();
  for (const [p0, p1] of tasksFor(N * C)) {
    job.call(k.fill, S(gp), 0, Hg * Wg * 4);
    for (let q = p0; q < p1; q++) {
      const n = Math.floor(q / C), c = q % C;
      job.call(k.fill, S(dxs), 0, HW * 4);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        job.call(k.copy2d, pg + (n * O + o) * P * 4, OW * 4, S(g00), Wg * 4, OH, OW);
        job.call(gin, S(g00 + base * 4), Wg * 4, pw + o * T * 4, S(dxs), W * 4, HW * 4, pt, pt + H, W);
      }
      job.call(k.copy2d, S(dxs), 0, pdx + q * HW * 4, 0, 1, HW);
    }
    job.endTask();
  }
  job.run(dxs + paddedBytes(HW * 4));
}

/** w̄[o, ky, kx] (at pdw) = Σ_n Σ_{i, j} ȳ[n, o, i, j] · x_padded[n, ⌊o/M⌋, i·sh + ky·dh, j·sw + kx·dw]. */
export function depthwiseGradFilterPtr(px: number, pg: number, pdw: number, d: DepthwiseGeom): void {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const [sh] = d.stride;
  const [dh] = d.dilation;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hp, Wp } = padded(d);
  const k = kernels(geom(d));
  heapOrThrow().f32().fill(0, pdw >>> 2, (pdw >>> 2) + O * T);
  const xp = SLACK;
  const job = new Job();
  for (const [c0, c1] of tasksFor(C)) {
    job.call(k.fill, S(xp), 0, Hp * Wp * 4);
    for (let c = c0; c < c1; c++) {
      for (let n = 0; n < N; n++) {
        job.call(k.copy2d, px + (n * C + c) * HW * 4, W * 4, S(xp + (pt * Wp + pl) * 4), Wp * 4, H, W);
        for (let m = 0; m < M; m++) {
          const o = c * M + m;
          for (let ky = 0; ky < kh; ky++) job.call(k.gwRow, S(xp + ky * dh * Wp * 4), sh * Wp * 4, pg + (n * O + o) * P * 4, OW * 4, OH, OW, pdw + (o * T + ky * kw) * 4);
        }
      }
    }
    job.endTask();
  }
  job.run(xp + paddedBytes(Hp * Wp * 4));
}

/** y = depthwise conv(x, w) (typed arrays; views of the heap are used in place, `out` too). */
export function depthwiseForwardF32(X: Float32Array, Wt: Float32Array, d: DepthwiseGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(d.N * d.O * d.OH * d.OW, (py) => depthwiseForwardPtr(px, pw, py, d), out)));
}

/** x̄ = the depthwise conv's adjoint applied to ȳ. */
export function depthwiseGradInputF32(G: Float32Array, Wt: Float32Array, d: DepthwiseGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(G, (pg) => h.withF32(Wt, (pw) => h.outF32(d.N * d.C * d.H * d.W, (pdx) => depthwiseGradInputPtr(pg, pw, pdx, d), out)));
}

/** w̄ of the depthwise conv. */
export function depthwiseGradFilterF32(X: Float32Array, G: Float32Array, d: DepthwiseGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(G, (pg) => h.outF32(d.O * d.kh * d.kw, (pdw) => depthwiseGradFilterPtr(px, pg, pdw, d), out)));
}
