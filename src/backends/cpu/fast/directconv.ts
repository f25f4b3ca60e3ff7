/**
 * A direct float32 conv2d in WebAssembly SIMD for dense convs (one group) over few input channels: at most
 * DIRECT_MAX_CHANNELS (8) of them and DIRECT_MAX_TAPS (200) taps C·kh·kw. EfficientNet's stem (3 channels under a
 * 3×3 kernel, stride 2) is the case it was made for. There im2col + sgemm (conv.ts) writes and reads back a matrix
 * of C·kh·kw floats per output pixel (27: 11 MB for 8 images at 224²) and packs it again, for a product whose K is
 * too short for the packing to pay off; this kernel reads each input row from the running thread's L1 instead.
 *
 * Work goes by (image, band of output rows) units on the pool's threads. A task first packs the weights into its
 * thread's scratch as the sgemm packs A (per block of OB output channels, a K × OB matrix) next to a table of each
 * tap's offset (directPack). Each unit then copies the band's input rows into the scratch, zero-padded on every side
 * and split by column phase (a column stride sw puts padded column q + m·sw of a row at index m of phase q: even /
 * odd columns at stride 2), so that output column j's tap kx lies at index j + ⌊kx·dw / sw⌋ of phase (kx·dw) mod sw:
 * every tap of 4 consecutive output columns is one contiguous vector load, with no shuffles and no bounds tests.
 * Then, per output row, blocks of OB (4) output channels × VB (2) vectors of 4 columns stay in registers while the
 * taps run through them, one tap per loop turn as the sgemm's micro-kernel (each input vector loaded once for the
 * OB channels, each weight splat once for the VB vectors; unrolled taps measured 1.5–1.7× slower: V8 then spills
 * the accumulators), and the epilogue — the per-channel affine act(y·scale + shift) with an optional SiLU (vmath.ts
 * `siluV`), eval-mode batch norm folded into the conv — is applied in registers before the store. The geometry
 * (sizes, kernel, strides, dilations, padding, channel counts) is compiled in: the ragged last channel block and
 * column block are emitted for their exact sizes, and their columns past the row are never stored (a band's last
 * row borders another thread's).
 *
 * Arithmetic: each output is Σ_t w_t·x_t accumulated in float32 from 0 in tap order (c, ky, kx), a multiply-add
 * per tap (fma.ts `madd`: fused where relaxed SIMD is on, as in the sgemm, else a product then an add; either way
 * bit for bit the im2col + sgemm path's sum), so |error| ≤ γ_K·Σ_t |w_t·x_t| with γ_K = K·u/(1 − K·u),
 * u = 2⁻²⁴, K = C·kh·kw. The epilogue is the affine kernel's vmul, vadd and SiLU (activations.ts) on that sum, so
 * conv2dAffine here equals this kernel's conv2d followed by the affine kernel exactly.
 *
 * `directConvOk` says whether a conv takes this kernel; `directConvForwardPtr` takes byte addresses in the heap,
 * `directConvForwardF32` typed arrays (views of the heap in place, others copied in and the output out);
 * `directConvCalls` counts the calls (tests check the path).
 */
import { Fn, T, type Expr, add, and, assemble, divU, extractLane, get, i32, load, loadSplat, lt_s, mul, ne, remU, shuffle, sub, vadd, vmul, vzero, ge_s } from './wasm.ts';
import { fmaEnabled, madd } from './fma.ts';
import { Consts, siluV } from './vmath.ts';
import type { ConvGeometry } from '../conv_geom.ts';
import { wasmHeap } from './heap.ts';
import { Job, type PoolKernel, S, loadKernels } from './pool.ts';
import { SLACK, paddedBytes, rangeAt, simdHeap, taskCountFor } from './convsimd.ts';
import type { RowEpilogue } from './activations.ts';

/**
 * The convs this kernel takes: at most DIRECT_MAX_CHANNELS input channels and DIRECT_MAX_TAPS taps (C·kh·kw). Within
 * them it measured 1.1–1.5× less CPU time than im2col + sgemm at the shapes tried (1–8 channels under 2×2 to 7×7
 * kernels, strides 1–3, 8 to 256 output channels, planes of 28² to 224²; planes of a few pixels, where both take
 * microseconds, excepted); it tied at 16–32 channels and lost at 64, where a band's input rows outgrow L1 (every
 * channel block reads them again) and the sgemm's packed panels do not.
 */
export const DIRECT_MAX_CHANNELS = 8;
export const DIRECT_MAX_TAPS = 200;
/** Output channels × vectors of 4 columns per register block (8 accumulators, 2 input vectors, a weight: 11 of x64's 16). */
const OB = 4;
const VB = 2;
/**
 * Scratch bytes of a band's input rows: the rows an output row reads (C·kh phase rows) stay in L1 for its channel
 * blocks, and the band stays in L2 for its rows.
 */
const BAND_BYTES = 48 * 1024;
/** Units (image × band) wanted per job: with fewer images, the planes are cut into more bands. */
const UNITS_WANTED = 16;

/** The fields of a conv's geometry record (../conv_geom.ts) this kernel reads. */
export type DirectGeom = Pick<ConvGeometry, 'N' | 'C' | 'H' | 'W' | 'O' | 'OH' | 'OW' | 'kh' | 'kw' | 'stride' | 'dilation' | 'padding' | 'groups'>;

/**
 * Whether a float32 conv2d forward takes this kernel: one group, 1 to DIRECT_MAX_CHANNELS input channels,
 * C·kh·kw ≤ DIRECT_MAX_TAPS, not pointwise (1×1, stride 1, unpadded: the sgemm reads its planes in place), no
 * negative padding, and wasm SIMD available.
 */
export function directConvOk(p: DirectGeom & Pick<ConvGeometry, 'pointwise'>): boolean {
  const { C } = p;
  return p.groups === 1 && !p.pointwise && C > 0 && C <= DIRECT_MAX_CHANNELS && C * p.kh * p.kw <= DIRECT_MAX_TAPS && p.padding.every((q) => q >= 0) && wasmHeap() !== null;
}

/** The compile-time layout of a geometry's kernel: band rows, scratch rows per band, phase row pitch (floats). */
interface Layout {
  readonly band: number;
  /** Input rows per band (the most a band of `band` output rows reads). */
  readonly IR: number;
  /** Floats per phase row: the widest read of a column block, and every input column, fit. */
  readonly RP: number;
  readonly bands: number;
  /** Scratch byte offsets of the packed weights and of the input rows (the tap table is at 0). */
  readonly wOff: number;
  readonly xOff: number;
  /** Scratch bytes a call needs. */
  readonly bytes: number;
}

function layout(g: DirectGeom): Layout {
  const [sh, sw] = g.stride, [dh, dw] = g.dilation, pl = g.padding[2];
  const OWr = Math.ceil(g.OW / 4) * 4;
  const RP = Math.ceil(Math.max(OWr + Math.floor(((g.kw - 1) * dw) / sw), Math.ceil((pl + g.W) / sw)) / 4) * 4;
  const rowBytes = g.C * sw * RP * 4;
  const rows = (b: number) => (b - 1) * sh + (g.kh - 1) * dh + 1;
  let band = 1;
  while (band < g.OH && rows(band + 1) * rowBytes <= BAND_BYTES) band++;
  // Enough units for the threads when there are few images.
  band = Math.max(1, Math.min(band, Math.ceil(g.OH / Math.ceil(UNITS_WANTED / Math.max(1, g.N)))));
  const K = g.C * g.kh * g.kw, up = (n: number) => Math.ceil(n / 64) * 64;
  const wOff = up(4 * K), xOff = wOff + up(4 * Math.ceil(g.O / OB) * OB * K);
  return { band, IR: rows(band), RP, bands: Math.ceil(g.OH / band), wOff, xOff, bytes: xOff + rows(band) * rowBytes };
}

type Epi = 'none' | 'affine' | 'silu';

/**
 * directConv(x, scale, shift, y, i0, i1, scratch): output rows i0..i1 (one band) of one image, with the tap table and
 * packed weights directPack left in the scratch; x at the image's first input plane, y at its first output plane;
 * scale and shift (O floats) are read by the 'affine' and 'silu' variants only. The band's input rows go to the
 * scratch (copyBand), then each output row runs its channel blocks (of OB, the last one ragged), each over the row's
 * column blocks (of 4·VB columns, the last one ragged).
 */
function directFn(g: DirectGeom, L: Layout, epi: Epi): Fn {
  const f = new Fn('directConv', Array.from({ length: 7 }, () => T.i32));
  const [x, sc, sh, y, i0, i1, scr] = f.params;
  const { O, OW } = g, K = g.C * g.kh * g.kw, P = g.OH * OW;
  const [sy, sx] = g.stride;
  const c = new Consts(f);
  const start = f.code.length;
  const xs = f.local(T.i32);
  f.set(xs, add(get(scr), i32(L.xOff)));
  copyBand(f, g, L, x, i0, i1, xs);
  const i = f.local(T.i32), ob = f.local(T.i32), j = f.local(T.i32), xrow = f.local(T.i32), yrow = f.local(T.i32);
  const B = blockLocals(f, scr);
  const BW = 4 * VB, full = OW - (OW % BW);
  /** Every column block of the row for `no` channels (output at B.yb, weights at B.wb). */
  const rowBlocks = (no: number) => {
    if (full > 0) {
      f.for(j, i32(0), i32(full), i32(BW), () => {
        f.set(B.px, add(get(xrow), mul(get(j), i32(4))));
        f.set(B.py, add(get(B.yb), mul(get(j), i32(4))));
        block(f, c, B, epi, P, no, BW);
      });
    }
    if (full < OW) {
      f.set(B.px, add(get(xrow), i32(4 * full)));
      f.set(B.py, add(get(B.yb), i32(4 * full)));
      block(f, c, B, epi, P, no, OW - full);
    }
  };
  const blocks = Math.floor(O / OB), lastO = O % OB;
  f.set(B.end, add(get(scr), i32(4 * K)));
  f.for(i, get(i0), get(i1), i32(1), () => {
    f.set(xrow, add(get(xs), mul(mul(sub(get(i), get(i0)), i32(sy)), i32(sx * L.RP * 4))));
    f.set(yrow, add(get(y), mul(get(i), i32(4 * OW))));
    const setBlock = (o0: Expr) => {
      f.set(B.wb, add(get(scr), add(i32(L.wOff), mul(o0, i32(4 * K)))));
      f.set(B.yb, add(get(yrow), mul(o0, i32(4 * P))));
      f.set(B.scb, add(get(sc), mul(o0, i32(4))));
      f.set(B.shb, add(get(sh), mul(o0, i32(4))));
    };
    if (blocks > 0) {
      f.for(ob, i32(0), i32(blocks * OB), i32(OB), () => {
        setBlock(get(ob));
        rowBlocks(OB);
      });
    }
    if (lastO > 0) {
      setBlock(i32(blocks * OB));
      rowBlocks(lastO);
    }
  });
  f.code.splice(start, 0, ...c.prologue());
  return f;
}

/**
 * The band's input rows (from row i0·sy − pt on) into the scratch at xs, each row of the plane split by column phase
 * (copyRow). A row slot's padding columns were zeroed by directPack and no copy writes them; a slot above or below
 * the plane (a padding row) is zeroed here, as an earlier band may have left a row of the plane in it.
 */
function copyBand(f: Fn, g: DirectGeom, L: Layout, x: number, i0: number, i1: number, xs: number): void {
  const { C, H, W, kh } = g, [sy, sx] = g.stride, [dy] = g.dilation, [pt] = g.padding, { IR, RP } = L;
  const cc = f.local(T.i32), r = f.local(T.i32), rows = f.local(T.i32), iy = f.local(T.i32), src = f.local(T.i32), dst = f.local(T.i32);
  f.set(rows, add(mul(sub(sub(get(i1), get(i0)), i32(1)), i32(sy)), i32((kh - 1) * dy + 1)));
  f.for(cc, i32(0), i32(C), i32(1), () => {
    f.for(r, i32(0), get(rows), i32(1), () => {
      f.set(iy, sub(add(mul(get(i0), i32(sy)), get(r)), i32(pt)));
      f.set(dst, add(get(xs), mul(add(mul(get(cc), i32(IR)), get(r)), i32(sx * RP * 4))));
      f.if(
        and(ge_s(get(iy), i32(0)), lt_s(get(iy), i32(H))),
        () => {
          f.set(src, add(get(x), mul(add(mul(get(cc), i32(H)), get(iy)), i32(4 * W))));
          copyRow(f, g, RP, src, dst);
        },
        () => f.memoryFill(get(dst), i32(0), i32(sx * RP * 4)),
      );
    });
  });
}

/** The locals a register block's code works in (pointers set by directFn, registers, the tap loop's cursors). */
interface BlockLocals {
  /** The block's first input column (tap offsets from the table are added), its first output, packed weights, scale, shift. */
  readonly px: number; readonly py: number; readonly yb: number; readonly wb: number; readonly scb: number; readonly shb: number;
  /** The tap table's start (the scratch) and end. */
  readonly scr: number; readonly end: number;
  readonly ptab: number; readonly pwt: number; readonly xo: number;
  readonly acc: readonly number[]; readonly xv: readonly number[];
  readonly wv: number; readonly a: number; readonly b: number; readonly tmp: readonly number[];
}

function blockLocals(f: Fn, scr: number): BlockLocals {
  const i32s = () => f.local(T.i32), vs = (n: number) => Array.from({ length: n }, () => f.local(T.v128));
  return {
    px: i32s(), py: i32s(), yb: i32s(), wb: i32s(), scb: i32s(), shb: i32s(), scr, end: i32s(), ptab: i32s(), pwt: i32s(), xo: i32s(),
    acc: vs(OB * VB), xv: vs(VB), wv: f.local(T.v128), a: f.local(T.v128), b: f.local(T.v128), tmp: vs(4),
  };
}

/**
 * The block of `no` channels × `cols` columns (≤ 4·VB): the taps, one per loop turn as the sgemm's micro-kernel
 * (input vectors at px + tab[t], weights a row of the packed matrix), then the epilogue and the stores (lanes past
 * the row's end are not stored). Output channel o's plane is P floats after channel o − 1's.
 */
function block(f: Fn, c: Consts, B: BlockLocals, epi: Epi, P: number, no: number, cols: number): void {
  const { acc, xv, wv } = B;
  const nv = Math.ceil(cols / 4);
  for (let o = 0; o < no; o++) for (let q = 0; q < nv; q++) f.set(acc[o * VB + q], vzero);
  f.set(B.ptab, get(B.scr));
  f.set(B.pwt, get(B.wb));
  f.loop(() => {
    f.set(B.xo, add(get(B.px), load('i32', get(B.ptab))));
    for (let q = 0; q < nv; q++) f.set(xv[q], load('v128', get(B.xo), 16 * q));
    for (let o = 0; o < no; o++) {
      f.set(wv, loadSplat(get(B.pwt), 4 * o));
      for (let q = 0; q < nv; q++) {
        const k = acc[o * VB + q];
        f.set(k, madd(get(wv), get(xv[q]), get(k)));
      }
    }
    f.set(B.ptab, add(get(B.ptab), i32(4)));
    f.set(B.pwt, add(get(B.pwt), i32(4 * OB)));
    f.brIf(0, ne(get(B.ptab), get(B.end))); // addresses: ≠, as a signed < would fail across 2 GiB
  });
  for (let o = 0; o < no; o++) {
    if (epi !== 'none') {
      f.set(B.a, loadSplat(get(B.scb), 4 * o));
      f.set(B.b, loadSplat(get(B.shb), 4 * o));
    }
    for (let q = 0; q < nv; q++) {
      const k = acc[o * VB + q];
      if (epi !== 'none') f.set(k, vadd(vmul(get(k), get(B.a)), get(B.b)));
      if (epi === 'silu') f.set(k, siluV(f, c, get(k), B.tmp));
      const at = 4 * (o * P) + 16 * q, lanes = Math.min(4, cols - 4 * q);
      if (lanes === 4) f.store('v128', get(B.py), get(k), at);
      else for (let l = 0; l < lanes; l++) f.store('f32', get(B.py), extractLane(get(k), l), at + 4 * l);
    }
  }
}

/**
 * directPack(w, scratch): the tap table and the packed weights into the running thread's scratch, once per task, and
 * the input rows' area zeroed (their padding columns stay zero: directConv's copies never write them).
 * Tap t = (ch, ky, kx) of output column j (for output row i) is at xrow + 4j + tab[t]: input row (ch, ky) lies at
 * ((ch·IR + ky·dy)·sx)·RP floats from xrow, its tap kx at ⌊kx·dx / sx⌋ in phase (kx·dx) mod sx. Channel block b's
 * weights are a K × OB matrix at wOff + 4·b·K·OB, row t the block's channels' weights of tap t (the sgemm's packed A).
 */
function packFn(g: DirectGeom, L: Layout): Fn {
  const f = new Fn('directPack', [T.i32, T.i32]);
  const [w, scr] = f.params;
  const { C, O, kh, kw } = g;
  const sx = g.stride[1], [dy, dx] = g.dilation;
  const { IR, RP } = L, K = C * kh * kw;
  const o = f.local(T.i32), t = f.local(T.i32), src = f.local(T.i32), dst = f.local(T.i32);
  for (let ch = 0; ch < C; ch++) {
    for (let ky = 0; ky < kh; ky++) {
      for (let kx = 0; kx < kw; kx++) {
        const off = (((ch * IR + ky * dy) * sx + ((kx * dx) % sx)) * RP + Math.floor((kx * dx) / sx)) * 4;
        f.store('i32', get(scr), i32(off), 4 * ((ch * kh + ky) * kw + kx));
      }
    }
  }
  f.memoryFill(add(get(scr), i32(L.xOff)), i32(0), i32(L.bytes - L.xOff));
  f.for(o, i32(0), i32(O), i32(1), () => {
    f.set(dst, add(get(scr), add(i32(L.wOff), mul(add(mul(divU(get(o), i32(OB)), i32(K * OB)), remU(get(o), i32(OB))), i32(4)))));
    f.set(src, add(get(w), mul(get(o), i32(4 * K))));
    f.for(t, i32(0), i32(K), i32(1), () => f.store('f32', add(get(dst), mul(get(t), i32(4 * OB))), load('f32', add(get(src), mul(get(t), i32(4))))));
  });
  return f;
}

/**
 * One input row (W floats at src) into its phase rows at dst (phase q at dst + 4·q·RP), padded column pl + col of
 * the row at index ⌊(pl + col) / sw⌋ of phase (pl + col) mod sw: a memory.copy at stride 1; at stride 2, 8 columns
 * per turn split into even and odd lanes by two shuffles, then the last columns one by one; wider strides column by column.
 */
function copyRow(f: Fn, g: DirectGeom, RP: number, src: number, dst: number): void {
  const sx = g.stride[1], pl = g.padding[2], W = g.W;
  const m = f.local(T.i32), v = f.local(T.i32), a = f.local(T.v128), b = f.local(T.v128);
  if (sx === 1) {
    f.memoryCopy(add(get(dst), i32(4 * pl)), get(src), i32(4 * W));
    return;
  }
  let done = 0;
  if (sx === 2) {
    // Input column 2t goes to phase pl mod 2 at index t + ⌊pl/2⌋, column 2t + 1 to the other phase at t + ⌈pl/2⌉.
    const even = 4 * ((pl & 1) * RP + (pl >> 1)), odd = 4 * ((1 - (pl & 1)) * RP + ((pl + 1) >> 1));
    done = W - (W % 8);
    if (done > 0) {
      f.for(m, i32(0), i32(done), i32(8), () => {
        f.set(a, load('v128', add(get(src), mul(get(m), i32(4)))));
        f.set(b, load('v128', add(get(src), mul(get(m), i32(4))), 16));
        f.set(v, add(get(dst), mul(get(m), i32(2))));
        f.store('v128', get(v), shuffle(get(a), get(b), [0, 2, 4, 6]), even);
        f.store('v128', get(v), shuffle(get(a), get(b), [1, 3, 5, 7]), odd);
      });
    }
  }
  if (done < W) {
    f.for(m, i32(done), i32(W), i32(1), () => {
      f.set(v, add(get(m), i32(pl)));
      f.store('f32', add(get(dst), mul(add(mul(remU(get(v), i32(sx)), i32(RP)), divU(get(v), i32(sx))), i32(4))), load('f32', add(get(src), mul(get(m), i32(4)))));
    });
  }
}

const geomKey = (g: DirectGeom): string =>
  [g.C, g.H, g.W, g.O, g.OH, g.OW, g.kh, g.kw, ...g.stride, ...g.dilation, g.padding[0], g.padding[2]].join(',');

interface Kernels {
  readonly pack: PoolKernel;
  readonly conv: PoolKernel;
}
const modules = new Map<string, Kernels>();

/** The kernels for a geometry (its band layout included) and epilogue, generated, compiled and loaded into the pool once. */
function directKernels(g: DirectGeom, L: Layout, epi: Epi): Kernels {
  const h = simdHeap('directconv');
  const key = `${geomKey(g)},${L.band},${epi},${fmaEnabled() ? 'fma' : ''}`;
  let k = modules.get(key);
  if (!k) {
    const fns = [packFn(g, L), directFn(g, L, epi)];
    const ks = loadKernels(assemble({ functions: fns, memory: h.importSpec() }), fns.map((fn) => fn.name));
    modules.set(key, (k = { pack: ks.directPack, conv: ks.directConv }));
  }
  return k;
}

/** Calls of the direct kernel's entry points since the process started (tests check that a conv took this path). */
let calls = 0;
export const directConvCalls = (): number => calls;

/**
 * y (at py) = conv2d(x at px, w at pw), then `epi` if given (act(y·scale + shift) per output channel), for a
 * geometry `directConvOk` takes. One job: tasks are ranges of (image, band) units.
 */
export function directConvForwardPtr(px: number, pw: number, py: number, g: DirectGeom, epi?: RowEpilogue): void {
  calls++;
  if (g.N * g.O * g.OH * g.OW === 0) return;
  const L = layout(g);
  const k = directKernels(g, L, epi ? (epi.act === 'silu' ? 'silu' : 'affine') : 'none');
  const sc = epi?.scale ?? 0, sh = epi?.shift ?? 0, scr = S(SLACK);
  const xImg = 4 * g.C * g.H * g.W, yImg = 4 * g.O * g.OH * g.OW;
  const job = new Job();
  const units = g.N * L.bands, kt = taskCountFor(units);
  for (let i = 0; i < kt; i++) {
    job.call(k.pack, pw, scr);
    for (let u = rangeAt(i, units, kt), u1 = rangeAt(i + 1, units, kt); u < u1; u++) {
      const n = Math.floor(u / L.bands), b = u % L.bands, i0 = b * L.band;
      job.call(k.conv, px + n * xImg, sc, sh, py + n * yImg, i0, Math.min(g.OH, i0 + L.band), scr);
    }
    job.endTask();
  }
  job.run(SLACK + paddedBytes(L.bytes));
}

/** y = conv2d(x, w) (then `epi`), typed arrays: views of the heap are used in place, others copied (`out` too). */
export function directConvForwardF32(X: Float32Array, Wt: Float32Array, g: DirectGeom, out?: Float32Array, epi?: RowEpilogue): Float32Array {
  const h = simdHeap('directconv');
  return h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(g.N * g.O * g.OH * g.OW, (py) => directConvForwardPtr(px, pw, py, g, epi), out)));
}
