/**
 * Depthwise conv2d with four output channels in the four lanes of a vector, generated per plane geometry (planes up
 * to 128×128: all of EfficientNet's), the affine (+ SiLU) epilogue applied in registers.
 *
 * A plane of 16 or 64 floats is too narrow for dwconv.ts's row kernels (a 4-wide row is a single vector, with
 * most of its taps in the padding), and too small for their calls to pay off; on larger planes the epilogue in
 * registers and the loads shared between taps (see XREGS) still win. Here one call sweeps channel groups
 * g0..g1 (output channels 4g..4g+3) over every image: the four input planes are transposed into the running
 * thread's scratch (pixel-major, a vector per pixel: xT[p] = the four channels' values at p), then every output
 * pixel sums its taps as full-width multiply-adds with the channels' own weights in the lanes. The plane size, kernel,
 * strides, dilations and padding are compile-time constants, so only the taps that fall inside the plane are
 * emitted (a 4×4 plane under a 5×5 kernel with padding 2 has 196 of its 400 taps inside) and there are no bounds
 * tests: rows with the same taps inside (the interior rows, each padded edge row) run one loop, and in a row the
 * edge column groups are unrolled and the interior ones run one loop. Four output pixels at a time are transposed
 * back (lanes = pixels) and stored into their four planes.
 *
 * The last group of a channel count that is not a multiple of 4 fills its spare lanes with the last channel's
 * planes and writes them to a dump area in the scratch, so every group runs the same code.
 *
 * The forward can also write the sum over each output plane (a global average pool's numerator, which
 * squeeze-excite reads right after the depthwise conv) as it stores the plane: each column group's (up to) four
 * output vectors, epilogue applied, are added in float32 and the result is added to two f64x2 accumulators (the
 * four channels' running sums), stored once per plane. Error: each group's float32 sum of ≤ 4 values is within
 * 2u·Σ|its values| (u = 2⁻²⁴), the float64 accumulation adds ~2⁻⁵³ per step, and the store rounds once (u·|sum|):
 * |error| ≤ 2u·Σ|y| + u·|Σy| over the plane, against eager's `sum` (float64 accumulation, then rounded) within
 * 2u·Σ|y| of it.
 *
 * The same sweep serves the gradients: the input gradient at stride 1 is the forward of ȳ with each kernel read
 * back to front ('flipped'), and the filter gradient (gradFilterFn) transposes ȳ too and sums each tap's products
 * over every image and pixel with the channels in the lanes.
 */
import { Fn, T, type Expr, add, assemble, divU, extractLane, extractLaneF64, f32ofD, get, i32, load, mul, shuffle, sub, transpose4, vadd, vmul, vzero, lt_s, min_s } from './wasm.ts';
import { Consts, siluV } from './vmath.ts';
import { dadd, promoteLow } from './activations.ts';
import { wasmHeap } from './heap.ts';
import { type PoolKernel, loadKernels } from './pool.ts';

/** A geometry the lane kernels are generated for (all compile-time constants of the code). */
export interface LaneGeom {
  readonly H: number;
  readonly W: number;
  readonly OH: number;
  readonly OW: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly dh: number;
  readonly dw: number;
  /** Padding above and left (below and right only bound OH, OW). */
  readonly pt: number;
  readonly pl: number;
}

/** What the kernel does to each sum before it is stored: nothing, y·scale + shift, or SiLU of that. */
export type LaneEpilogue = 'none' | 'affine' | 'silu';
/**
 * A lane kernel: the forward with an epilogue (and with `+sums`, the sums over each output plane too), the forward
 * with every kernel turned by 180° (an input gradient), the filter gradient.
 */
export type LaneKind = LaneEpilogue | `${LaneEpilogue}+sums` | 'flipped' | 'gradFilter';

/**
 * Pixels of an input or output plane this path takes at most: the transposed input plane (16 bytes a pixel, in the
 * thread's scratch) stays within L2. Measured against the stacked row kernels of dwconv.ts on one thread, the path
 * is 1.3–12× faster on every depthwise layer of EfficientNet-B0 at 128 and 224 pixels (112×112 planes included).
 */
const LANE_PLANE_MAX = 128 * 128;
/**
 * Multiply-adds of the emitted code at most (per run of rows, the edge column groups and one interior group): about
 * 40 KB of wasm. 5×5 kernels need about 1000, 7×7 up to 2700; 9×9 and larger kernels take the row kernels.
 */
const LANE_MACS_MAX = 3000;

/** Whether a geometry fits this path (plane sizes within LANE_PLANE_MAX, code within LANE_MACS_MAX). */
export function laneGeomOk(g: LaneGeom): boolean {
  if (g.H * g.W > LANE_PLANE_MAX || g.OH * g.OW > LANE_PLANE_MAX) return false;
  // The code-size measure walks every output row and column: once per geometry (a compiled step asks per call).
  const key = geomKey(g);
  let ok = fits.get(key);
  if (ok === undefined) fits.set(key, (ok = emittedMacs(g) <= LANE_MACS_MAX));
  return ok;
}

/** Whether each geometry seen so far (by geomKey) fits LANE_MACS_MAX. */
const fits = new Map<string, boolean>();
const geomKey = (g: LaneGeom): string => `${g.H},${g.W},${g.OH},${g.OW},${g.kh},${g.kw},${g.sh},${g.sw},${g.dh},${g.dw},${g.pt},${g.pl}`;

/** Bytes of the dump plane (one output plane, rounded up to whole vectors) at the start of the scratch. */
const dumpBytes = (g: LaneGeom): number => 16 * Math.ceil((g.OH * g.OW) / 4);

/** Scratch bytes a call needs: the dump plane, the transposed weights, scale and shift, the transposed input. */
export const laneScratchBytes = (g: LaneGeom): number => dumpBytes(g) + 16 * (g.kh * g.kw + 2 + g.H * g.W);

/**
 * dwLanes(x, w, scale, shift, y, C, O, N, g0, g1, scratch[, sums]): output channel groups g0..g1 of every image; x
 * is N·C planes of H·W floats, y N·O planes of OH·OW, output channel o reads input plane ⌊o / (O / C)⌋ and w[o]
 * (kh·kw floats, read back to front when `flipped`); scale and shift (O floats each) are read by the 'affine' and
 * 'silu' variants only. With `sums`, the sum over output plane (n, o) goes to sums[n·O + o].
 */
function laneFn(g: LaneGeom, epi: LaneEpilogue, flipped: boolean, sums: boolean): Fn {
  const f = new Fn('dwLanes', Array.from({ length: sums ? 12 : 11 }, () => T.i32));
  const [x, w, sc, sh, y, C, O, N, g0, g1, scr, ps] = f.params;
  const HW = g.H * g.W, P = g.OH * g.OW, TAPS = g.kh * g.kw;
  const gi = f.local(T.i32), n = f.local(T.i32), o = f.local(T.i32), M = f.local(T.i32), last = f.local(T.i32);
  const dump = f.local(T.i32), wT = f.local(T.i32), ss = f.local(T.i32), xT = f.local(T.i32);
  const px = [0, 1, 2, 3].map(() => f.local(T.i32)), py = [0, 1, 2, 3].map(() => f.local(T.i32)), ystep = [0, 1, 2, 3].map(() => f.local(T.i32));
  const ol = f.local(T.i32), wo = f.local(T.i32);
  const a = [0, 1, 2, 3].map(() => f.local(T.v128)), t = [0, 1, 2, 3].map(() => f.local(T.v128)), b = [0, 1, 2, 3].map(() => f.local(T.v128));
  const wv = f.local(T.v128), vsc = f.local(T.v128), vsh = f.local(T.v128);
  const st = [0, 1, 2, 3].map(() => f.local(T.v128));
  // The plane sums: channels 0–1 and 2–3 of the group (f64x2 each), the group's sum vector, where image n's go.
  const sl = sums ? { lo: f.local(T.v128), hi: f.local(T.v128), v: f.local(T.v128) } : undefined;
  const pso = sums ? f.local(T.i32) : -1;
  const L: GroupLocals = { wT, py, acc: a, t, b, xr: Array.from({ length: XREGS }, () => f.local(T.v128)), wv, vsc, vsh, st, sums: sl };
  const c = new Consts(f);
  const start = f.code.length;

  f.set(dump, get(scr));
  f.set(wT, add(get(scr), i32(dumpBytes(g))));
  f.set(ss, add(get(wT), i32(16 * TAPS)));
  f.set(xT, add(get(ss), i32(32)));
  f.set(M, divU(get(O), get(C)));
  f.set(last, sub(get(O), i32(1)));
  f.for(gi, get(g0), get(g1), i32(1), () => {
    f.set(o, mul(get(gi), i32(4)));
    // Per lane: its channel (the last one for a spare lane), transposed weights, affine, plane pointers.
    for (let l = 0; l < 4; l++) {
      f.set(ol, min_s(add(get(o), i32(l)), get(last)));
      f.set(wo, add(get(w), mul(get(ol), i32(4 * TAPS))));
      for (let tp = 0; tp < TAPS; tp++) f.store('f32', get(wT), load('f32', get(wo), 4 * (flipped ? TAPS - 1 - tp : tp)), 16 * tp + 4 * l);
      if (epi !== 'none') {
        f.store('f32', get(ss), load('f32', add(get(sc), mul(get(ol), i32(4)))), 4 * l);
        f.store('f32', get(ss), load('f32', add(get(sh), mul(get(ol), i32(4)))), 16 + 4 * l);
      }
      f.set(px[l], add(get(x), mul(divU(get(ol), get(M)), i32(4 * HW))));
      // A spare lane writes to the dump plane, which stays put from image to image.
      f.if(lt_s(add(get(o), i32(l)), get(O)), () => {
        f.set(py[l], add(get(y), mul(get(ol), i32(4 * P))));
        f.set(ystep[l], mul(get(O), i32(4 * P)));
      }, () => {
        f.set(py[l], get(dump));
        f.set(ystep[l], i32(0));
      });
    }
    if (epi !== 'none') {
      f.set(vsc, load('v128', get(ss)));
      f.set(vsh, load('v128', get(ss), 16));
    }
    if (sl) f.set(pso, add(get(ps), mul(get(o), i32(4))));
    f.for(n, i32(0), get(N), i32(1), () => {
      if (sl) {
        f.set(sl.lo, vzero);
        f.set(sl.hi, vzero);
      }
      transposeIn(f, g.H * g.W, px, xT, a, t, b);
      sweep(f, g, xT, (kys, j0, xp, yo) => columnGroup(f, g, epi, L, c, kys, j0, xp, yo));
      if (sl) {
        // Lane l's sum is channel o + l's (spare lanes are not stored).
        for (let l = 0; l < 4; l++) f.if(lt_s(add(get(o), i32(l)), get(O)), () => f.store('f32', get(pso), f32ofD(extractLaneF64(get(l < 2 ? sl.lo : sl.hi), l & 1)), 4 * l));
        f.set(pso, add(get(pso), mul(get(O), i32(4))));
      }
      for (let l = 0; l < 4; l++) {
        f.set(px[l], add(get(px[l]), mul(get(C), i32(4 * HW))));
        f.set(py[l], add(get(py[l]), get(ystep[l])));
      }
    });
  });
  f.code.splice(start, 0, ...c.prologue());
  return f;
}

/** Pixels per turn of the input transpose's loop (planes of up to this many pixels are transposed unrolled). */
const TRANSPOSE_TURN = 32;

/**
 * xT[p] = (x0[p], x1[p], x2[p], x3[p]) for four planes of HW pixels: four pixels per 4×4 transpose, in a loop of
 * TRANSPOSE_TURN pixels a turn over large planes (the code stays small), then the last pixels one by one.
 */
function transposeIn(f: Fn, HW: number, px: readonly number[], xT: number, a: readonly number[], t: readonly number[], b: readonly number[]): void {
  const quads = (src: Expr[], dst: Expr, q0: number, q1: number) => {
    for (let q = q0; q + 4 <= q1; q += 4) {
      for (let l = 0; l < 4; l++) f.set(a[l], load('v128', src[l], 4 * q));
      transpose4(f, a, t, b);
      for (let i = 0; i < 4; i++) f.store('v128', dst, get(b[i]), 16 * (q + i));
    }
  };
  let done = 0;
  if (HW > TRANSPOSE_TURN) {
    done = HW - (HW % TRANSPOSE_TURN);
    const qo = f.local(T.i32), xo = f.local(T.i32);
    f.for(qo, i32(0), i32(4 * done), i32(4 * TRANSPOSE_TURN), () => {
      f.set(xo, add(get(xT), mul(get(qo), i32(4))));
      quads(px.map((p) => add(get(p), get(qo))), get(xo), 0, TRANSPOSE_TURN);
    });
  }
  quads(px.map((p) => get(p)), get(xT), done, HW);
  for (let p = HW & ~3; p < HW; p++) for (let l = 0; l < 4; l++) f.store('f32', get(xT), load('f32', get(px[l]), 4 * p), 16 * p + 4 * l);
}

/**
 * Runs of consecutive output rows whose taps fall inside the plane in the same kernel rows (the top and bottom rows
 * under the padding, then the interior rows): one loop each, the row's code unrolled over its columns.
 */
export function rowRuns(g: LaneGeom): { r0: number; r1: number; kys: number[] }[] {
  const runs: { r0: number; r1: number; kys: number[] }[] = [];
  for (let oi = 0; oi < g.OH; oi++) {
    const kys = Array.from({ length: g.kh }, (_, ky) => ky).filter((ky) => {
      const iy = oi * g.sh - g.pt + ky * g.dh;
      return iy >= 0 && iy < g.H;
    });
    const last = runs[runs.length - 1];
    if (last && last.kys.join() === kys.join()) last.r1 = oi + 1;
    else runs.push({ r0: oi, r1: oi + 1, kys });
  }
  return runs;
}

/**
 * The taps (ky, kx) of output column oj inside the plane, for the kernel rows `kys`; `off`: the tap's input pixel
 * relative to the row's base pixel (rowShift: under the first of the kernel rows `kys`, column 0).
 */
export function columnTaps(g: LaneGeom, oj: number, kys: readonly number[]): { tap: number; off: number }[] {
  const out: { tap: number; off: number }[] = [];
  for (const ky of kys) {
    for (let kx = 0; kx < g.kw; kx++) {
      const ix = oj * g.sw - g.pl + kx * g.dw;
      if (ix >= 0 && ix < g.W) out.push({ tap: ky * g.kw + kx, off: (ky - kys[0]) * g.dh * g.W + ix });
    }
  }
  return out;
}

/**
 * Output row oi's taps are addressed from input row oi·sh + rowShift (column 0): the row under the first kernel row
 * inside the plane (row 0 where none is). Never above the plane: a pointer formed under the padding rows above (a
 * gradient's turned kernel has up to (k − 1)·d of them) could fall below address 0 and trap, as the scratch may lie
 * that low.
 */
export const rowShift = (g: LaneGeom, kys: readonly number[]): number => (kys.length ? kys[0] * g.dh - g.pt : 0);

/** Whether the four columns from j0 all have every tap of the kernel rows `kys` inside the plane (an interior group). */
const interior = (g: LaneGeom, j0: number, kys: readonly number[]): boolean =>
  j0 + 4 <= g.OW && [0, 1, 2, 3].every((i) => columnTaps(g, j0 + i, kys).length === kys.length * g.kw);

/** The column groups of a row: edge groups unrolled, and a range [ja, jb) of interior groups run as one loop. */
function columnPlan(g: LaneGeom, kys: readonly number[]): { ja: number; jb: number } {
  const inner = Array.from({ length: Math.ceil(g.OW / 4) }, (_, q) => 4 * q).filter((j0) => interior(g, j0, kys));
  // Interior groups are contiguous (the padding is at the ends); a loop pays from two groups on.
  return inner.length >= 2 ? { ja: inner[0], jb: inner[inner.length - 1] + 4 } : { ja: 0, jb: 0 };
}

/** Multiply-adds of the emitted code (one row per run, one interior column group per row), the size limit's measure. */
const emittedMacs = (g: LaneGeom): number =>
  rowRuns(g).reduce((s, r) => {
    const { ja, jb } = columnPlan(g, r.kys);
    const cols = Array.from({ length: g.OW }, (_, oj) => oj).filter((oj) => oj < ja || oj >= jb - (jb > ja ? 4 : 0));
    return s + cols.reduce((u, oj) => u + columnTaps(g, oj, r.kys).length, 0);
  }, 0);

/**
 * Input pixels of a kernel row that four output columns read, held in locals (4 + kw − 1 at stride 1, 4·sw + kw − 2
 * at stride 2): loading each once instead of once per tap measured 1.3–1.6× (3×3 and 5×5, stride 1).
 */
const XREGS = 12;

/** The locals a column group's code works in. */
interface GroupLocals {
  readonly wT: number;
  readonly py: readonly number[];
  readonly acc: readonly number[];
  readonly t: readonly number[];
  readonly b: readonly number[];
  readonly xr: readonly number[];
  readonly wv: number;
  readonly vsc: number;
  readonly vsh: number;
  readonly st: number[];
  /** The plane sums' accumulators (f64x2: lanes 0–1, 2–3) and a temporary, when the kernel writes them. */
  readonly sums?: { readonly lo: number; readonly hi: number; readonly v: number };
}

/**
 * Output columns j0..j0+3 (fewer at the row's end) of a row whose kernel rows inside the plane are `kys`: the sums of
 * their taps (each weight vector and input pixel loaded once for the four), the epilogue, the transpose back, the
 * stores. Input pixel (ky, ix) is at xp + 16·(ky·dh·W + ix); output column j of lane l at py[l] + yo + 4·j.
 */
function columnGroup(f: Fn, g: LaneGeom, epi: LaneEpilogue, L: GroupLocals, c: Consts, kys: readonly number[], j0: number, xp: number, yo: number): void {
  const { acc, wv, xr } = L;
  const cols = Array.from({ length: Math.min(4, g.OW - j0) }, (_, i) => j0 + i);
  const taps = cols.map((oj) => new Map(columnTaps(g, oj, kys).map((e) => [e.tap, e.off])));
  const started = cols.map(() => false);
  for (const ky of kys) {
    const rowTaps = Array.from({ length: g.kw }, (_, kx) => ky * g.kw + kx).filter((tp) => taps.some((m) => m.has(tp)));
    const at = rowPixels(f, xr, xp, [...new Set(rowTaps.flatMap((tp) => taps.flatMap((m) => (m.has(tp) ? [m.get(tp)!] : []))))]);
    for (const tp of rowTaps) {
      f.set(wv, load('v128', get(L.wT), 16 * tp));
      cols.forEach((_, i) => {
        const off = taps[i].get(tp);
        if (off === undefined) return;
        const prod = vmul(get(wv), at(off));
        f.set(acc[i], started[i] ? vadd(get(acc[i]), prod) : prod);
        started[i] = true;
      });
    }
  }
  for (let i = 0; i < 4; i++) {
    if (i >= cols.length || !started[i]) f.set(acc[i], vzero);
    if (i >= cols.length || epi === 'none') continue;
    f.set(acc[i], vadd(vmul(get(acc[i]), get(L.vsc)), get(L.vsh)));
    if (epi === 'silu') f.set(acc[i], siluV(f, c, get(acc[i]), L.st));
  }
  if (L.sums) {
    // The group's columns added in float32 (pairwise), then into the float64 running sums.
    const { lo, hi, v } = L.sums;
    const col = (i: number) => get(acc[i]);
    f.set(v, cols.length === 1 ? col(0) : cols.length === 2 ? vadd(col(0), col(1)) : cols.length === 3 ? vadd(vadd(col(0), col(1)), col(2)) : vadd(vadd(col(0), col(1)), vadd(col(2), col(3))));
    f.set(lo, dadd(get(lo), promoteLow(get(v))));
    f.set(hi, dadd(get(hi), promoteLow(shuffle(get(v), get(v), [2, 3, 0, 1]))));
  }
  transpose4(f, acc, L.t, L.b);
  for (let l = 0; l < 4; l++) {
    const at = add(get(L.py[l]), get(yo));
    if (cols.length === 4) f.store('v128', at, get(L.b[l]), 4 * j0);
    else for (let i = 0; i < cols.length; i++) f.store('f32', at, extractLane(get(L.b[l]), i), 4 * (j0 + i));
  }
}

/**
 * Every output pixel: per run of rows (the same kernel rows inside the plane) a loop; in a row, the edge column
 * groups unrolled and the interior ones one loop, whose code is the first interior group's with the pointers moved.
 */
function sweep(f: Fn, g: LaneGeom, xT: number, group: (kys: readonly number[], j0: number, xp: number, yo: number) => void): void {
  const ri = f.local(T.i32), xb = f.local(T.i32), yr = f.local(T.i32), j = f.local(T.i32), xj = f.local(T.i32), yj = f.local(T.i32);
  for (const run of rowRuns(g)) {
    const { ja, jb } = columnPlan(g, run.kys);
    f.for(ri, i32(run.r0), i32(run.r1), i32(1), () => {
      // xb: the row's base pixel (rowShift); an output row with no taps inside reads nothing.
      const row = run.kys.length ? add(mul(get(ri), i32(g.sh)), i32(rowShift(g, run.kys))) : i32(0);
      f.set(xb, add(get(xT), mul(row, i32(16 * g.W))));
      f.set(yr, mul(get(ri), i32(4 * g.OW)));
      for (let j0 = 0; j0 < ja; j0 += 4) group(run.kys, j0, xb, yr);
      if (jb > ja) {
        f.for(j, i32(0), i32(jb - ja), i32(4), () => {
          f.set(xj, add(get(xb), mul(get(j), i32(16 * g.sw))));
          f.set(yj, add(get(yr), mul(get(j), i32(4))));
          group(run.kys, ja, xj, yj);
        });
      }
      for (let j0 = jb; j0 < g.OW; j0 += 4) group(run.kys, j0, xb, yr);
    });
  }
}

/**
 * The kernel row ky's input pixels that output columns j0.. read, loaded into the locals xr (or, past XREGS of
 * them, left in memory): `at(off)` reads input pixel `off` (relative to xp) either way.
 */
function rowPixels(f: Fn, xr: readonly number[], xp: number, offs: readonly number[]): (off: number) => Expr {
  const reg = offs.length <= xr.length;
  if (reg) offs.forEach((o, m) => f.set(xr[m], load('v128', get(xp), 16 * o)));
  return (off) => (reg ? get(xr[offs.indexOf(off)]) : load('v128', get(xp), 16 * off));
}

/**
 * dwLanesGradFilter(x, g, wbar, C, O, N, g0, g1, scratch): for output channel groups g0..g1, w̄[o, tap] = Σ over
 * every image and output pixel of ȳ[n, o, p] · x[n, ⌊o / (O / C)⌋, the tap's input pixel of p] (written, not added
 * to). The forward's sweep with the roles turned: ȳ is transposed too, each column group's four ȳ vectors are held
 * while every tap's running sum (a vector per tap in the scratch, lanes = channels) takes their products.
 */
function gradFilterFn(g: LaneGeom): Fn {
  const f = new Fn('dwLanesGradFilter', Array.from({ length: 9 }, () => T.i32));
  const [x, gy, wbar, C, O, N, g0, g1, scr] = f.params;
  const HW = g.H * g.W, P = g.OH * g.OW, TAPS = g.kh * g.kw;
  const gi = f.local(T.i32), n = f.local(T.i32), o = f.local(T.i32), M = f.local(T.i32), ol = f.local(T.i32);
  const sum = f.local(T.i32), xT = f.local(T.i32), gT = f.local(T.i32), gp = f.local(T.i32);
  const px = [0, 1, 2, 3].map(() => f.local(T.i32)), pg = [0, 1, 2, 3].map(() => f.local(T.i32));
  const a = [0, 1, 2, 3].map(() => f.local(T.v128)), t = [0, 1, 2, 3].map(() => f.local(T.v128)), b = [0, 1, 2, 3].map(() => f.local(T.v128));
  const sv = f.local(T.v128), xr = Array.from({ length: XREGS }, () => f.local(T.v128));
  f.set(sum, get(scr));
  f.set(xT, add(get(sum), i32(16 * TAPS)));
  f.set(gT, add(get(xT), i32(16 * HW)));
  f.set(M, divU(get(O), get(C)));
  f.for(gi, get(g0), get(g1), i32(1), () => {
    f.set(o, mul(get(gi), i32(4)));
    for (let tp = 0; tp < TAPS; tp++) f.store('v128', get(sum), vzero, 16 * tp);
    for (let l = 0; l < 4; l++) {
      f.set(ol, min_s(add(get(o), i32(l)), sub(get(O), i32(1))));
      f.set(px[l], add(get(x), mul(divU(get(ol), get(M)), i32(4 * HW))));
      f.set(pg[l], add(get(gy), mul(get(ol), i32(4 * P))));
    }
    f.for(n, i32(0), get(N), i32(1), () => {
      transposeIn(f, HW, px, xT, a, t, b);
      transposeIn(f, P, pg, gT, a, t, b);
      sweep(f, g, xT, (kys, j0, xp, yo) => {
        // The group's ȳ vectors (yo: the forward's output offset, 4 bytes a pixel; gT holds 16).
        const cols = Array.from({ length: Math.min(4, g.OW - j0) }, (_, i) => j0 + i);
        f.set(gp, add(get(gT), mul(get(yo), i32(4))));
        cols.forEach((oj, i) => f.set(a[i], load('v128', get(gp), 16 * oj)));
        const taps = cols.map((oj) => new Map(columnTaps(g, oj, kys).map((e) => [e.tap, e.off])));
        for (const ky of kys) {
          const rowTaps = Array.from({ length: g.kw }, (_, kx) => ky * g.kw + kx).filter((tp) => taps.some((m) => m.has(tp)));
          const at = rowPixels(f, xr, xp, [...new Set(rowTaps.flatMap((tp) => taps.flatMap((m) => (m.has(tp) ? [m.get(tp)!] : []))))]);
          for (const tp of rowTaps) {
            f.set(sv, load('v128', get(sum), 16 * tp));
            cols.forEach((_, i) => {
              const off = taps[i].get(tp);
              if (off !== undefined) f.set(sv, vadd(get(sv), vmul(get(a[i]), at(off))));
            });
            f.store('v128', get(sum), get(sv), 16 * tp);
          }
        }
      });
      for (let l = 0; l < 4; l++) {
        f.set(px[l], add(get(px[l]), mul(get(C), i32(4 * HW))));
        f.set(pg[l], add(get(pg[l]), mul(get(O), i32(4 * P))));
      }
    });
    // Lane l of tap sum tp is w̄[o + l, tp]; spare lanes are not written.
    for (let l = 0; l < 4; l++) {
      f.if(lt_s(add(get(o), i32(l)), get(O)), () => {
        f.set(ol, add(get(wbar), mul(add(get(o), i32(l)), i32(4 * TAPS))));
        for (let tp = 0; tp < TAPS; tp++) f.store('f32', get(ol), extractLane(load('v128', get(sum), 16 * tp), l), 4 * tp);
      });
    }
  });
  return f;
}

/** Scratch bytes a filter-gradient call needs: the tap sums, the transposed input and ȳ planes. */
export const laneGradFilterScratchBytes = (g: LaneGeom): number => 16 * (g.kh * g.kw + g.H * g.W + g.OH * g.OW);

const modules = new Map<string, PoolKernel>();

/** The lane kernel of a kind for a geometry, generated, compiled and loaded into the pool once. */
export function laneKernel(g: LaneGeom, kind: LaneKind): PoolKernel {
  const h = wasmHeap();
  if (!h) throw new Error('dwlanes: WebAssembly SIMD is not available');
  const key = `${geomKey(g)},${kind}`;
  let k = modules.get(key);
  if (!k) {
    const fn = kind === 'gradFilter' ? gradFilterFn(g) : kind === 'flipped' ? laneFn(g, 'none', true, false) : laneFn(g, kind.replace('+sums', '') as LaneEpilogue, false, kind.endsWith('+sums'));
    k = loadKernels(assemble({ functions: [fn], memory: h.importSpec() }), [fn.name])[fn.name];
    modules.set(key, k);
  }
  return k;
}
