/**
 * Depthwise conv2d (groups = C, any channel multiplier M, output channel o reads input plane ⌊o / M⌋) on float32,
 * forward and both gradients, with the wasm SIMD window kernels of convsimd.ts, on the pool's threads. Over planes
 * up to 128×128 (every depthwise layer of EfficientNet) the forward, the filter gradient and (stride 1, multiplier
 * 1) the input gradient take the four-channels-per-vector kernels of dwlanes.ts instead; what follows describes
 * the row kernels' way.
 *
 * `...Ptr(…)` take byte addresses in the wasm heap (heap.ts) and write the output there; the `...F32` entry points
 * take typed arrays and use views of the heap in place (others are copied in, and the result out). Work goes
 * by stacks of planes of one channel (each stack stays in L1/L2; a large plane is a stack of one): the input planes
 * are zero-padded into the running thread's scratch, one above the other (so every output is an interior one), the
 * kernels sweep the stack for its M output channels into a staging stack, and that is copied to the output (vector
 * stores never run past a plane that another thread may be writing). Tasks: ranges of (channel, stack) units for
 * the forward and input gradient, ranges of channels (each owns its filter rows) for the filter gradient.
 *
 * `depthwiseSimdOk` says whether a call can take this path (float32, wasm SIMD, column stride 1 or 2).
 */
import { type Geom, SLACK, convSimdAvailable, ginColumnShift, ginPadding, kernels, paddedBytes, rangeAt, rangeCount, simdHeap, taskCountFor } from './convsimd.ts';
import type { ConvGeometry } from '../conv_geom.ts';
import { type CallArg, Job, type PoolKernel, S } from './pool.ts';
import { type RowEpilogue, affineRows, channelSumPtr, epilogueFrom } from './activations.ts';
import { type LaneGeom, laneGeomOk, laneGradFilterScratchBytes, laneKernel, laneScratchBytes } from './dwlanes.ts';

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

/** Floats of stacked padded input planes a call works on: they stay in L2 while the kernels sweep them. */
const STACK_FLOATS = 16384;
/** Planes larger than this (in floats, padded) go one per call: their calls already cost little next to their work. */
const STACK_PLANE_MAX = 1024;

/**
 * Padded planes stack vertically, `Hs` rows apart (Hp rounded up to the row stride, so plane q's outputs start at
 * row q·Hs/sh), and one kernel call sweeps the whole stack: the rows between two planes' outputs are computed and
 * dropped. Small planes (the 7×7 and 4×4 of the last stages) would otherwise cost more in calls than in arithmetic.
 */
function stacking(d: DepthwiseGeom): { Hs: number; Wp: number; planes: number } {
  const { Hp, Wp } = padded(d);
  const Hs = Math.ceil(Hp / d.stride[0]) * d.stride[0];
  const planes = Hs * Wp > STACK_PLANE_MAX ? 1 : Math.min(d.N, Math.floor(STACK_FLOATS / (Hs * Wp)));
  return { Hs, Wp, planes };
}

const heapOrThrow = () => simdHeap('depthwise');

/**
 * y (at py) = depthwise conv(x at px, w at pw). With `epi`, act(y·scale + shift) per output channel (eval-mode batch
 * norm folded into the conv), applied in registers (lane kernels) or on each channel's staging stack before it is
 * copied out (row kernels). `planes`: images stacked per row-kernel call; given (tests vary it), the row kernels
 * run whatever the plane size; absent, planes up to 128×128 take the lane kernels and larger ones the row kernels
 * with stacks that fill STACK_FLOATS. With `psum`, the sum over each output plane goes there too (N·O floats, image
 * n's channel o at psum + 4(n·O + o)): the lane kernels add up the values in registers as they store them (error
 * bound in dwlanes.ts), the row kernels' path runs the per-channel sum kernel over the output after (eager's `sum`).
 */
export function depthwiseForwardPtr(px: number, pw: number, py: number, d: DepthwiseGeom, planes?: number, epi?: RowEpilogue, psum?: number): void {
  if (planes === undefined && depthwiseUsesLanes(d)) return depthwiseLanes(px, pw, py, d, epi, false, psum);
  depthwiseStacked(px, pw, py, d, planes ?? stacking(d).planes, epi);
  if (psum !== undefined) channelSumPtr(py, psum, { N: 1, C: d.N * d.O, HW: d.OH * d.OW });
}

/** Whether the forward takes the four-channels-per-vector kernels of dwlanes.ts (planes up to 128×128). */
export const depthwiseUsesLanes = (d: DepthwiseGeom): boolean => laneGeomOk(laneGeom(d));

/** The lane kernels' geometry of a depthwise conv (dwlanes.ts). */
export const laneGeom = (d: DepthwiseGeom): LaneGeom => ({
  H: d.H, W: d.W, OH: d.OH, OW: d.OW, kh: d.kh, kw: d.kw, sh: d.stride[0], sw: d.stride[1], dh: d.dilation[0], dw: d.dilation[1], pt: d.padding[0], pl: d.padding[2],
});

/**
 * y (at py) = depthwise conv(x at px, w at pw), then `epi` (or, `flipped`, with every kernel turned by 180° and no
 * epilogue), four output channels per vector (dwlanes.ts); with `psum` (not flipped), the sums over the output
 * planes too (as in depthwiseForwardPtr). Tasks are ranges of channel groups over every image, or (fewer groups
 * than tasks) one group over a range of images.
 */
export function depthwiseLanes(px: number, pw: number, py: number, d: DepthwiseGeom, epi?: RowEpilogue, flipped = false, psum?: number): void {
  const lg = laneGeom(d);
  const sums = psum !== undefined;
  if (flipped && sums) throw new Error('depthwiseLanes: plane sums are for the forward only');
  const epiKind = epi ? (epi.act === 'silu' ? 'silu' : 'affine') : 'none';
  const k = laneKernel(lg, flipped ? 'flipped' : sums ? `${epiKind}+sums` : epiKind);
  const scr = S(SLACK), sc = epi?.scale ?? 0, sh = epi?.shift ?? 0;
  const G = Math.ceil(d.O / 4), parts = taskCountFor(G * d.N);
  const job = new Job();
  const a: LaneCall = { k, px, pw, py, sc, sh, scr, psum };
  if (G >= parts) {
    for (let i = 0, kt = taskCountFor(G); i < kt; i++) laneTask(job, a, d, 0, d.N, rangeAt(i, G, kt), rangeAt(i + 1, G, kt));
  } else {
    for (let i = 0, kt = rangeCount(d.N, Math.ceil(parts / G)); i < kt; i++) {
      for (let g = 0; g < G; g++) laneTask(job, a, d, rangeAt(i, d.N, kt), rangeAt(i + 1, d.N, kt), g, g + 1);
    }
  }
  job.run(SLACK + paddedBytes(laneScratchBytes(lg)));
}

/** The operands of a lane kernel's calls (the sums pointer only for a kernel that takes one). */
interface LaneCall { readonly k: PoolKernel; readonly px: number; readonly pw: number; readonly py: number; readonly sc: number; readonly sh: number; readonly scr: CallArg; readonly psum: number | undefined }

/**
 * A task of one lane kernel call: images n0..n1, channel groups g0..g1. A function of the module, not a closure
 * made per call, which V8 would compile again after every full collection (convsimd.ts `rangeCount`).
 */
function laneTask(job: Job, a: LaneCall, d: DepthwiseGeom, n0: number, n1: number, g0: number, g1: number): void {
  job.call(a.k, a.px + n0 * d.C * d.H * d.W * 4, a.pw, a.sc, a.sh, a.py + n0 * d.O * d.OH * d.OW * 4, d.C, d.O, n1 - n0, g0, g1, a.scr, a.psum === undefined ? undefined : a.psum + n0 * d.O * 4).endTask();
}

/** Planes stacked per kernel call, swept by the row kernels of convsimd.ts. */
function depthwiseStacked(px: number, pw: number, py: number, d: DepthwiseGeom, planes: number, epi?: RowEpilogue): void {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hs, Wp } = stacking(d);
  const rs = Hs / d.stride[0]; // output rows per stacked plane
  const k = kernels(geom(d));
  const xp = SLACK, ys = xp + paddedBytes(planes * Hs * Wp * 4);
  const chunks = Math.ceil(N / planes);
  // Scratch arguments made once per job (the calls below number thousands).
  const sx = S(xp), sxIn = S(xp + (pt * Wp + pl) * 4), sy = S(ys);
  const job = new Job();
  const units = C * chunks, kt = taskCountFor(units);
  for (let i = 0; i < kt; i++) {
    job.call(k.fill, sx, 0, planes * Hs * Wp * 4);
    for (let u = rangeAt(i, units, kt), u1 = rangeAt(i + 1, units, kt); u < u1; u++) {
      const c = Math.floor(u / chunks), n0 = (u % chunks) * planes, ns = Math.min(planes, N - n0);
      job.call(k.copy3d, px + (n0 * C + c) * HW * 4, C * HW * 4, W * 4, sxIn, Hs * Wp * 4, Wp * 4, ns, H, W);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        job.call(k.fwd, sx, Wp * 4, 0, pw + o * T * 4, sy, OW * 4, (ns - 1) * rs + OH, OW);
        // The kept rows of each stacked plane only (the rows between planes are dropped).
        if (epi) affineRows(job, epilogueFrom(epi, o), sy, ns, OH * OW, rs * OW, 1);
        job.call(k.copy3d, sy, rs * OW * 4, OW * 4, py + (n0 * O + o) * P * 4, O * P * 4, OW * 4, ns, OH, OW);
      }
    }
    job.endTask();
  }
  job.run(ys + paddedBytes(((planes - 1) * rs + OH) * OW * 4));
}

/**
 * x̄ (at pdx) = the depthwise conv's adjoint applied to ȳ (at pg): by the lane kernels where it is a forward conv
 * (gradInputAsForward), else by the gather kernels. `planes`: as in the forward (given, the gather kernels run).
 */
export function depthwiseGradInputPtr(pg: number, pw: number, pdx: number, d: DepthwiseGeom, planes?: number): void {
  const t = planes === undefined ? gradInputAsForward(d) : null;
  // x̄ = the lane forward of ȳ (geometry t) with each channel's kernel turned by 180°.
  if (t) depthwiseLanes(pg, pw, pdx, t, undefined, true);
  else gradInputGather(pg, pw, pdx, d, planes ?? stacking(d).planes);
}

/**
 * The input gradient as a forward conv where the lane kernels take it: at stride 1 with one output channel per
 * input channel, x̄ = ȳ convolved with the kernel turned by 180°, padded by (k − 1)·d − p above and left (negative:
 * rows and columns of ȳ that no x̄ reads). Null elsewhere.
 */
export function gradInputAsForward(d: DepthwiseGeom): DepthwiseGeom | null {
  if (d.O !== d.C || d.stride[0] !== 1 || d.stride[1] !== 1) return null;
  const [pt, , pl] = d.padding;
  const top = (d.kh - 1) * d.dilation[0] - pt, left = (d.kw - 1) * d.dilation[1] - pl;
  const t: DepthwiseGeom = {
    ...d, H: d.OH, W: d.OW, OH: d.H, OW: d.W,
    padding: [top, d.H - d.OH + pt, left, d.W - d.OW + pl],
  };
  return depthwiseUsesLanes(t) ? t : null;
}

/** Whether the input gradient takes the lane kernels (stride 1, multiplier 1, planes they take). */
export const depthwiseGradInputUsesLanes = (d: DepthwiseGeom): boolean => gradInputAsForward(d) !== null;

/**
 * x̄ by the gather kernels of convsimd.ts: a gather per input plane over its M output channels. ȳ planes stack `Gs`
 * rows apart with the zero rows each one's gather reads between them, and x̄ rows Gs·sh apart, so every kept x̄ row
 * reads only its own ȳ plane.
 */
function gradInputGather(pg: number, pw: number, pdx: number, d: DepthwiseGeom, planes: number): void {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const g = geom(d);
  const k = kernels(g);
  const pad = ginPadding(g);
  // ȳ rows (relative to its plane's first row) the kept x̄ rows y ∈ [pt, pt + H) read: (y − ky·dh) / sh.
  const lo = Math.min(0, Math.floor((pt - (kh - 1) * g.dh) / g.sh)), hi = Math.max(OH - 1, Math.floor((pt + H - 1) / g.sh));
  const Gs = hi + 1 - lo, xr = Gs * g.sh; // ȳ rows and x̄ rows per stacked plane
  const Wg = pad.left + OW + pad.right, Hg = (ns: number) => pad.top + (ns - 1) * Gs + OH + pad.bottom + 2;
  const phase = (g.sw === 2 ? pl & 1 : 0) as 0 | 1;
  const gin = phase ? k.gin1 : k.gin0;
  const base = (g.sw === 1 ? pl : (pl - phase) / 2) + ginColumnShift(g, phase);
  const dxRows = (ns: number) => (ns - 1) * xr + H;
  const gp = SLACK, dxs = gp + paddedBytes(Hg(planes) * Wg * 4);
  const g00 = gp + (pad.top * Wg + pad.left) * 4; // g(0, 0) of the first plane in the stack
  const chunks = Math.ceil(N / planes);
  const sgp = S(gp), sdx = S(dxs), sg00 = S(g00), sgBase = S(g00 + base * 4);
  const job = new Job();
  const units = C * chunks, kt = taskCountFor(units);
  for (let i = 0; i < kt; i++) {
    job.call(k.fill, sgp, 0, Hg(planes) * Wg * 4);
    for (let u = rangeAt(i, units, kt), u1 = rangeAt(i + 1, units, kt); u < u1; u++) {
      const c = Math.floor(u / chunks), n0 = (u % chunks) * planes, ns = Math.min(planes, N - n0);
      job.call(k.fill, sdx, 0, dxRows(ns) * W * 4);
      for (let m = 0; m < M; m++) {
        const o = c * M + m;
        job.call(k.copy3d, pg + (n0 * O + o) * P * 4, O * P * 4, OW * 4, sg00, Gs * Wg * 4, Wg * 4, ns, OH, OW);
        job.call(gin, sgBase, Wg * 4, pw + o * T * 4, sdx, W * 4, HW * 4, pt, pt + dxRows(ns), W, 1);
      }
      job.call(k.copy3d, sdx, xr * W * 4, W * 4, pdx + (n0 * C + c) * HW * 4, C * HW * 4, W * 4, ns, H, W);
    }
    job.endTask();
  }
  job.run(dxs + paddedBytes(dxRows(planes) * W * 4));
}

/**
 * w̄[o, ky, kx] (at pdw) = Σ_n Σ_{i, j} ȳ[n, o, i, j] · x_padded[n, ⌊o/M⌋, i·sh + ky·dh, j·sw + kx·dw]: by the lane
 * kernels where the forward takes them (tasks are ranges of channel groups, each over every image), else by the
 * row kernels. `planes`: as in the forward (given, the row kernels run).
 */
export function depthwiseGradFilterPtr(px: number, pg: number, pdw: number, d: DepthwiseGeom, planes?: number): void {
  if (planes === undefined && depthwiseUsesLanes(d)) {
    const lg = laneGeom(d), k = laneKernel(lg, 'gradFilter'), scr = S(SLACK);
    const job = new Job();
    const G = Math.ceil(d.O / 4), kt = taskCountFor(G);
    for (let i = 0; i < kt; i++) job.call(k, px, pg, pdw, d.C, d.O, d.N, rangeAt(i, G, kt), rangeAt(i + 1, G, kt), scr).endTask();
    job.run(SLACK + paddedBytes(laneGradFilterScratchBytes(lg)));
  } else {
    gradFilterRows(px, pg, pdw, d, planes ?? stacking(d).planes);
  }
}

/**
 * w̄ by the gwRow kernels of convsimd.ts. Tasks own channels (each sums into its filter rows); ȳ planes stack with
 * zero rows where the dropped outputs lie, so those rows add nothing (unless the input holds ±∞ or NaN there, which
 * then spreads to more taps than in the reference).
 */
function gradFilterRows(px: number, pg: number, pdw: number, d: DepthwiseGeom, planes: number): void {
  const { N, C, H, W, O, OH, OW, kh, kw } = d;
  const [pt, , pl] = d.padding;
  const [sh] = d.stride;
  const [dh] = d.dilation;
  const M = O / C, HW = H * W, P = OH * OW, T = kh * kw;
  const { Hs, Wp } = stacking(d);
  const rs = Hs / sh;
  const k = kernels(geom(d));
  heapOrThrow().f32().fill(0, pdw >>> 2, (pdw >>> 2) + O * T);
  const xp = SLACK, gs = xp + paddedBytes(planes * Hs * Wp * 4);
  const sx = S(xp), sxIn = S(xp + (pt * Wp + pl) * 4), sg = S(gs);
  const sxRow = Array.from({ length: kh }, (_, ky) => S(xp + ky * dh * Wp * 4));
  const job = new Job();
  for (let i = 0, kt = taskCountFor(C); i < kt; i++) {
    job.call(k.fill, sx, 0, planes * Hs * Wp * 4);
    job.call(k.fill, sg, 0, planes * rs * OW * 4);
    for (let c = rangeAt(i, C, kt), c1 = rangeAt(i + 1, C, kt); c < c1; c++) {
      // The stacks of this channel: images [n0, n0 + ns).
      for (let n0 = 0; n0 < N; n0 += planes) {
        const ns = Math.min(planes, N - n0);
        job.call(k.copy3d, px + (n0 * C + c) * HW * 4, C * HW * 4, W * 4, sxIn, Hs * Wp * 4, Wp * 4, ns, H, W);
        for (let m = 0; m < M; m++) {
          const o = c * M + m;
          job.call(k.copy3d, pg + (n0 * O + o) * P * 4, O * P * 4, OW * 4, sg, rs * OW * 4, OW * 4, ns, OH, OW);
          for (let ky = 0; ky < kh; ky++) job.call(k.gwRow, sxRow[ky], sh * Wp * 4, sg, OW * 4, (ns - 1) * rs + OH, OW, pdw + (o * T + ky * kw) * 4);
        }
      }
    }
    job.endTask();
  }
  job.run(gs + paddedBytes(planes * rs * OW * 4));
}

/**
 * y = depthwise conv(x, w) (typed arrays; views of the heap are used in place, `out` and `sums` too), then `epi` if
 * given; with `sums` (N·O floats), the sum over each output plane written there too (depthwiseForwardPtr).
 */
export function depthwiseForwardF32(X: Float32Array, Wt: Float32Array, d: DepthwiseGeom, out?: Float32Array, planes?: number, epi?: RowEpilogue, sums?: Float32Array): Float32Array {
  const h = heapOrThrow();
  const fwd = (px: number, pw: number, py: number) =>
    sums ? h.outF32(d.N * d.O, (ps) => depthwiseForwardPtr(px, pw, py, d, planes, epi, ps), sums) : depthwiseForwardPtr(px, pw, py, d, planes, epi);
  return h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(d.N * d.O * d.OH * d.OW, (py) => fwd(px, pw, py), out)));
}

/** x̄ = the depthwise conv's adjoint applied to ȳ. */
export function depthwiseGradInputF32(G: Float32Array, Wt: Float32Array, d: DepthwiseGeom, out?: Float32Array, planes?: number): Float32Array {
  const h = heapOrThrow();
  return h.withF32(G, (pg) => h.withF32(Wt, (pw) => h.outF32(d.N * d.C * d.H * d.W, (pdx) => depthwiseGradInputPtr(pg, pw, pdx, d, planes), out)));
}

/** w̄ of the depthwise conv. */
export function depthwiseGradFilterF32(X: Float32Array, G: Float32Array, d: DepthwiseGeom, out?: Float32Array, planes?: number): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(G, (pg) => h.outF32(d.O * d.kh * d.kw, (pdw) => depthwiseGradFilterPtr(px, pg, pdw, d, planes), out)));
}
