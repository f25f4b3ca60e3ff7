/**
 * The stochastic conv (per-batch or per-image windows) on float32, forward and both gradients, with the wasm SIMD
 * window kernels of stochsimd.ts (forward, filter gradient) and convsimd.ts (input gradient), on the pool's
 * threads. Output channel k of image n is a valid conv of its window (top-left (r, q), size
 * ((oh − 1)·sh + kh) × ((ow − 1)·sw + kw)) of all C input planes with w[k].
 *
 * `...Ptr(…)` take byte addresses in the wasm heap (heap.ts); the `...F32` entry points take typed arrays and use
 * views of the heap in place (others are copied in, and the result out).
 *   - forward and filter gradient: kernel calls per (image, channel) window, which they read in place, plane by
 *     plane; tasks in image-major order, so both threads work in the same image, whose windows overlap. The
 *     forward and the filter gradient go through each image in bands of input rows that stay in L2, each window's
 *     call taking the output rows that start in the band (the filter gradient's calls write their sums, added up
 *     afterwards). Before a band is read, stochsimd.ts `touch` brings its lines into cache with many misses in
 *     flight, where the kernels would wait on them one by one;
 *   - input gradient: per image (a task; runs of its bands for a batch too small to occupy every thread), in bands
 *     of input rows that stay in L2, in place in x̄: the band is zero-filled, then each window's gather over its
 *     rows in the band (convsimd.ts `gin`, its C planes in one call) adds into it while it is in cache, so x̄ goes
 *     to memory once and is never read back from it.
 * Windows are validated by the primitive's shape rule (autograd/conv.ts) before any kernel runs.
 */
import { type Geom, SLACK, convSimdAvailable, ginColumnShift, ginPadding, kernels, paddedBytes, rangeAt, rangeCount, simdHeap, taskCountFor } from './convsimd.ts';
import { type StochKernels, stochKernels } from './stochsimd.ts';
import { type StochasticGeometry, windowIndex } from '../conv_geom.ts';
import { Job, S } from './pool.ts';

/** The stochastic conv's geometry record (../conv_geom.ts). */
export type StochasticGeom = StochasticGeometry;

export function stochasticSimdOk(s: StochasticGeom): boolean {
  return (s.stride[1] === 1 || s.stride[1] === 2) && convSimdAvailable();
}

/**
 * Input planes per gin call: as many as keep their weights (kh·kw vectors each) and sums (two each) within 12 of
 * x64's 16 vector registers, so none spill to the stack in the inner loop. On the 3×3 stem that is one plane: three
 * planes a call (27 weight vectors) measured 15–20 % slower.
 */
const ginPlanes = (s: StochasticGeom) => Math.max(1, Math.min(s.C, Math.floor(12 / (s.kh * s.kw + 2))));
const geom = (s: StochasticGeom, cn: number): Geom => ({ cn, kh: s.kh, kw: s.kw, sh: s.stride[0], sw: s.stride[1] as 1 | 2, dh: 1, dw: 1 });
/** The kernels of each channel chunk (looked up once per call, not per band). */
const chunkKernels = (s: StochasticGeom, cu: number) => Array.from({ length: Math.ceil(s.C / cu) }, (_, i) => kernels(geom(s, Math.min(cu, s.C - i * cu))));

/** Input rows per band of the input gradient: about 128 KiB of all C planes (plus the kh − 1 rows the last outputs reach into). */
const bandRows = (s: StochasticGeom) => bandOverride ?? Math.max(8, Math.min(s.H, Math.floor(32768 / (s.C * s.W))));
let bandOverride: number | undefined;

/** Fixes the band height of the forward and both gradients (tests use tiny bands so windows straddle them); undefined restores the defaults. */
export function setStochasticBandRows(rows: number | undefined): void {
  bandOverride = rows === undefined ? undefined : Math.max(1, Math.floor(rows));
}

const heapOrThrow = () => simdHeap('stochastic conv');

/**
 * Tasks over the (image, channel) pairs t = n·O + o, image-major (the threads work through one image at a time): task i
 * is the pairs [rangeAt(i, N·O, k), rangeAt(i + 1, N·O, k)) of k = pairTaskCount(s).
 */
const pairTaskCount = (s: StochasticGeom): number => rangeCount(s.N * s.O, Math.min(MAX_PAIR_TASKS, Math.ceil((s.N * s.O) / PAIRS_PER_TASK)));
/** Windows per task at least (each is ~3·10⁵ multiply-adds at the stem's size), and tasks per job at most. */
const PAIRS_PER_TASK = 4;
const MAX_PAIR_TASKS = 1024;

/**
 * How a uint8 image is read: channel c's bytes v as v·scale[c] + shift[c] (e.g. ImageNet normalisation). The
 * kernels multiply and add integers' float values; the scales go into the weights (forward) or onto the sums
 * (filter gradient), and the shifts into a bias per output channel (forward) or Σ g (filter gradient).
 */
export interface Decode {
  readonly scale: ArrayLike<number>;
  readonly shift: ArrayLike<number>;
}

/** Byte address of the top-left of the window of image n, channel o, in plane 0 of the image (es bytes per element). */
const windowAt = (px: number, s: StochasticGeom, n: number, o: number, es: number): number => {
  const i = windowIndex(s, n, o);
  return px + ((n * s.C * s.H + s.windows[2 * i]) * s.W + s.windows[2 * i + 1]) * es;
};

const tapKernels = (s: StochasticGeom, u8: boolean) => stochKernels({ kh: s.kh, kw: s.kw, sh: s.stride[0], sw: s.stride[1] as 1 | 2, u8 });

/**
 * The forward's weights for a uint8 image, in heap scratch (`pw8`, O·C·kh·kw floats): w[o, c, t]·scale[c]; and the
 * bias of each output channel, Σ_c shift[c]·Σ_t w[o, c, t].
 */
function decodeWeights(pw: number, pw8: number, s: StochasticGeom, d: Decode): Float64Array {
  const m = heapOrThrow().f32(), T2 = s.kh * s.kw, bias = new Float64Array(s.O);
  for (let o = 0; o < s.O; o++) {
    for (let c = 0; c < s.C; c++) {
      const at = (o * s.C + c) * T2;
      let sw = 0;
      for (let t = 0; t < T2; t++) {
        const w = m[(pw >>> 2) + at + t];
        m[(pw8 >>> 2) + at + t] = w * d.scale[c];
        sw += w;
      }
      bias[o] += d.shift[c] * sw;
    }
  }
  return bias;
}


/**
 * Input rows per band of the forward and the filter gradient: all C planes of a band (~384 KiB, whatever the element
 * size) stay in L2 while the windows that cross it read it, so overlapping windows of an image share one read of it
 * from memory (measured ~5 % faster than a pass per window on the stem's forward, 6 % on its filter gradient).
 */
const windowBandRows = (s: StochasticGeom, es: number) => bandOverride ?? Math.max(8, Math.floor(393216 / (s.C * s.W * es)));

/**
 * Per image, band after band of input rows, every window's output rows whose first input row is in the band (a
 * task per band or run of bands, image-major); a one-band image takes a call per window.
 */
export function stochasticForwardPtr(px: number, pw: number, py: number, s: StochasticGeom, decode?: Decode): void {
  if (!decode) return forwardWith(px, pw, py, s, 4, 0);
  const h = heapOrThrow(), pw8 = h.alloc(s.O * s.C * s.kh * s.kw * 4), pb = h.alloc(s.O * 4);
  try {
    h.f32().set(decodeWeights(pw, pw8, s, decode), pb >>> 2);
    forwardWith(px, pw8, py, s, 1, pb);
  } finally {
    h.release(pw8);
    h.release(pb);
  }
}

/** What `bandTasks` calls per window: the forward (weights, and for a uint8 image biases) or the filter gradient (slots). */
type BandTarget = { readonly kind: 'fwd'; readonly pw: number; readonly pb: number } | { readonly kind: 'gw'; readonly out: number; readonly slot: number };

/**
 * Appends to `job`, per image and band of B input rows (u = n·nb + band; a task per band or run of bands,
 * image-major): a touch of the band's rows (and the kh − 1 after it that its last output rows reach), then per
 * window the kernel over its output rows [i0, i1) that start in the band: fwd writes those rows of y (at pyg), gw
 * reads those rows of ḡ (at pyg) and writes its sums to slot (u, o).
 */
function bandTasks(job: Job, k: StochKernels, s: StochasticGeom, es: number, B: number, px: number, pyg: number, t: BandTarget): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const sh = s.stride[0], P = OH * OW, T = C * kh * kw;
  const nb = Math.ceil(H / B), units = N * nb, kt = rangeCount(units, MAX_PAIR_TASKS);
  for (let i = 0; i < kt; i++) {
    for (let u = rangeAt(i, units, kt), u1 = rangeAt(i + 1, units, kt); u < u1; u++) {
      const n = Math.floor(u / nb), b0 = (u % nb) * B;
      job.call(k.touch, px + (n * C * H + b0) * W * es, Math.min(B + kh - 1, H - b0) * W * es, C, H * W * es);
      for (let o = 0; o < O; o++) {
        const wi = windowIndex(s, n, o), r = s.windows[2 * wi], q = s.windows[2 * wi + 1];
        const i0 = Math.max(0, Math.ceil((b0 - r) / sh)), i1 = Math.min(OH, Math.ceil((b0 + B - r) / sh));
        if (i0 >= i1) continue;
        const xw = px + ((n * C * H + r + sh * i0) * W + q) * es, yg = pyg + ((n * O + o) * P + i0 * OW) * 4;
        if (t.kind === 'fwd') job.call(k.fwd, xw, W * es, H * W * es, C, t.pw + o * T * 4, yg, OW * 4, i1 - i0, OW, es === 1 ? t.pb + 4 * o : undefined);
        else job.call(k.gw, xw, W * es, H * W * es, C, yg, OW * 4, i1 - i0, OW, t.out + (u * O + o) * t.slot * 4);
      }
    }
    job.endTask();
  }
}

/** The forward over an image of es-byte elements (4: float32; 1: uint8, with a bias per output channel at pb). */
function forwardWith(px: number, pw: number, py: number, s: StochasticGeom, es: number, pb: number): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const P = OH * OW, T = C * kh * kw;
  const k = tapKernels(s, es === 1);
  const B = windowBandRows(s, es);
  const job = new Job();
  if (B >= H) {
    const NO = N * O, kt = pairTaskCount(s);
    for (let i = 0; i < kt; i++) {
      for (let t = rangeAt(i, NO, kt), t1 = rangeAt(i + 1, NO, kt); t < t1; t++) {
        const o = t % O;
        job.call(k.fwd, windowAt(px, s, (t - o) / O, o, es), W * es, H * W * es, C, pw + o * T * 4, py + t * P * 4, OW * 4, OH, OW, es === 1 ? pb + 4 * o : undefined);
      }
      job.endTask();
    }
  } else bandTasks(job, k, s, es, B, px, py, { kind: 'fwd', pw, pb });
  job.run(0);
}

/**
 * The filter gradient: each kernel call writes its sums into a slot of its own in a staging buffer (no two threads
 * add into the same filter), and the slots are summed per channel at the end. Like the forward, it goes through
 * each image in bands of input rows (`windowBandRows`), touched first, each window's call summing over its output
 * rows that start in the band (a slot per image, band and channel); a one-band image takes a call per window (a slot
 * per image and channel).
 */
export function stochasticGradFilterPtr(px: number, pg: number, pdw: number, s: StochasticGeom, decode?: Decode): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const P = OH * OW, T = C * kh * kw;
  const es = decode ? 1 : 4;
  const k = tapKernels(s, !!decode);
  const h = heapOrThrow();
  const slot = decode ? T + 1 : T; // a uint8 image's slot ends with Σ g
  const B = windowBandRows(s, es), nb = Math.ceil(H / B);
  const groups = N * nb; // slot (u, o) for u = n·nb + band
  const staged = groups > 1 || !!decode;
  const part = staged ? h.alloc(groups * O * slot * 4) : pdw;
  try {
    const job = new Job();
    if (nb === 1) {
      const NO = N * O, kt = pairTaskCount(s);
      for (let i = 0; i < kt; i++) {
        for (let t = rangeAt(i, NO, kt), t1 = rangeAt(i + 1, NO, kt); t < t1; t++) {
          const o = t % O;
          job.call(k.gw, windowAt(px, s, (t - o) / O, o, es), W * es, H * W * es, C, pg + t * P * 4, OW * 4, OH, OW, part + t * slot * 4);
        }
        job.endTask();
      }
    } else {
      // A window that does not cross a band leaves its slot as it is: zero.
      h.f32().fill(0, part >>> 2, (part >>> 2) + groups * O * slot);
      bandTasks(job, k, s, es, B, px, pg, { kind: 'gw', out: part, slot });
    }
    job.run(0);
    if (staged) sumSlots(h.f32(), part >>> 2, pdw >>> 2, s, groups, slot, decode);
  } finally {
    if (staged) h.release(part);
  }
}

/** dw[o, e] = Σ_u slot(u, o)[e] over the slot groups u, or for a uint8 image Σ_u scale[c]·slot(u, o)[e] + shift[c]·slot(u, o)[T] (e in plane c). */
function sumSlots(m: Float32Array, p0: number, d0: number, s: StochasticGeom, groups: number, slot: number, decode: Decode | undefined): void {
  const { O, C } = s, T = C * s.kh * s.kw, T2 = s.kh * s.kw;
  for (let o = 0; o < O; o++) {
    for (let e = 0; e < T; e++) {
      let sum = 0;
      if (!decode) for (let u = 0; u < groups; u++) sum += m[p0 + (u * O + o) * slot + e];
      else {
        const c = Math.floor(e / T2);
        for (let u = 0; u < groups; u++) {
          const q = p0 + (u * O + o) * slot;
          sum += decode.scale[c] * m[q + e] + decode.shift[c] * m[q + T];
        }
      }
      m[d0 + o * T + e] = sum;
    }
  }
}

/**
 * Per image, band after band of input rows (`bandRows`), in place in x̄: the band's C planes are zero-filled (they
 * then sit in L2), every window that reaches into the band adds its gather over the band's rows (`gin0`: one call
 * runs all C planes, `ginPlanes` at a time), and the band is left for the next; bands no window touches are only
 * filled. x̄ goes to memory once from the cache and is never read back. A task is an image, or for a batch too small
 * to give every thread work a run of its bands; it first copies the cotangent planes of the windows that reach its
 * rows into the thread's scratch, zero-padded around (the gather reads past a plane's edges).
 */
export function stochasticGradInputPtr(pg: number, pw: number, pdx: number, s: StochasticGeom): void {
  const { N, C, H, W, O, kh, kw } = s;
  const [OH, OW] = s.outSize;
  const [sh, sw] = s.stride;
  const HW = H * W, P = OH * OW, T = C * kh * kw, cu = ginPlanes(s);
  const Hs = (OH - 1) * sh + kh, Ws = (OW - 1) * sw + kw;
  const B = bandRows(s), nb = Math.ceil(H / B);
  const parts = Math.min(nb, Math.ceil(taskCountFor(N * nb) / N)); // band runs per image
  const g0 = geom(s, cu);
  const pad = ginPadding(g0);
  const Wg = pad.left + OW + pad.right, Hg = pad.top + OH + pad.bottom + 2;
  const base = ginColumnShift(g0, 0); // window column 0 is even: phase 0
  const ks = chunkKernels(s, cu);
  const k = ks[0], full = Math.floor(C / cu);
  const gp = SLACK;
  const g00 = (o: number) => gp + (o * Hg * Wg + pad.top * Wg + pad.left) * 4; // g(0, 0) of channel o, zero-padded around
  const gAt = Array.from({ length: O }, (_, o) => S(g00(o) + base * 4)); // where each channel's gather starts
  const job = new Job();
  const rs = new Int32Array(O), qs = new Int32Array(O);
  for (let n = 0; n < N; n++) {
    const dxn = pdx + n * C * HW * 4;
    for (let o = 0; o < O; o++) {
      const wi = windowIndex(s, n, o);
      rs[o] = s.windows[2 * wi];
      qs[o] = s.windows[2 * wi + 1];
    }
    for (let i = 0, kt = rangeCount(nb, parts); i < kt; i++) {
      const r0 = rangeAt(i, nb, kt) * B, r1 = Math.min(H, rangeAt(i + 1, nb, kt) * B);
      for (let o = 0; o < O; o++) {
        const r = rs[o];
        if (r >= r1 || r + Hs <= r0) continue;
        job.call(k.fill, S(gp + o * Hg * Wg * 4), 0, Hg * Wg * 4);
        job.call(k.copy3d, pg + (n * O + o) * P * 4, 0, OW * 4, S(g00(o)), 0, Wg * 4, 1, OH, OW);
      }
      for (let b0 = r0; b0 < r1; b0 += B) {
        const rows = Math.min(B, H - b0);
        job.call(k.fillPlanes, dxn + b0 * W * 4, HW * 4, C, rows * W * 4);
        for (let o = 0; o < O; o++) {
          const r = rs[o], q = qs[o];
          const y0 = Math.max(b0, r) - r, y1 = Math.min(b0 + rows, r + Hs) - r;
          if (y0 >= y1) continue;
          // The full runs of cu planes in one call, the rest (fewer planes: another kernel) in a second.
          const gs = gAt[o], wo = pw + o * T * 4, d = dxn + ((r + y0) * W + q) * 4, c1 = full * cu;
          if (full > 0) job.call(k.gin0, gs, Wg * 4, wo, d, W * 4, HW * 4, y0, y1, Ws, full);
          if (c1 < C) job.call(ks[full].gin0, gs, Wg * 4, wo + c1 * kh * kw * 4, d + c1 * HW * 4, W * 4, HW * 4, y0, y1, Ws, 1);
        }
      }
      job.endTask();
    }
  }
  job.run(gp + paddedBytes(O * Hg * Wg * 4));
}

/** The forward on typed arrays: a float32 image, or a uint8 one read through `decode`. */
export function stochasticForwardF32(X: Float32Array | Uint8Array, Wt: Float32Array, s: StochasticGeom, out?: Float32Array, decode?: Decode): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(s.N * s.O * s.outSize[0] * s.outSize[1], (py) => stochasticForwardPtr(px, pw, py, s, decode), out)));
}

export function stochasticGradInputF32(G: Float32Array, Wt: Float32Array, s: StochasticGeom, out?: Float32Array): Float32Array {
  const h = heapOrThrow();
  return h.withF32(G, (pg) => h.withF32(Wt, (pw) => h.outF32(s.N * s.C * s.H * s.W, (pdx) => stochasticGradInputPtr(pg, pw, pdx, s), out)));
}

/** The filter gradient on typed arrays: a float32 image, or a uint8 one read through `decode`. */
export function stochasticGradFilterF32(X: Float32Array | Uint8Array, G: Float32Array, s: StochasticGeom, out?: Float32Array, decode?: Decode): Float32Array {
  const h = heapOrThrow();
  return h.withF32(X, (px) => h.withF32(G, (pg) => h.outF32(s.O * s.C * s.kh * s.kw, (pdw) => stochasticGradFilterPtr(px, pg, pdw, s, decode), out)));
}
