/**
 * The stochastic conv's forward and filter-gradient kernels in WebAssembly SIMD, generated per tap geometry
 * (kh, kw, row stride, column stride 1 or 2). Each call handles one (image, output channel) window of all C input
 * planes (a runtime loop), so a window is read once per pass, row by row, while its rows are hot:
 *
 *   fwd  y[i, j] = Σ_{c, ky, kx} w[c, ky, kx] · x[c, i·sh + ky, j·sw + kx]
 *        blocks of R output rows × 4·VF columns: the block's input rows are each loaded (and, for sw = 2, split
 *        into even / odd lanes: convsimd.ts `rowTaps`) once and feed every output row that reads them (with sh = 2,
 *        kh = 3 two rows share one input row). One input plane at a time, its kh·kw weights in registers. The
 *        ragged last block stores only its lanes inside the row, so a call writes nothing outside its own output
 *        plane (threads write neighbouring planes).
 *   gw   out[c, ky, kx] = Σ_{i, j} g[i, j] · x[c, i·sh + ky, j·sw + kx], written (not accumulated)
 *        kh·kw accumulators per pass (fewer tap rows per pass for wide kernels), all in registers across the
 *        whole plane; blocks of R output rows share input rows as in fwd. In the ragged last block the products of
 *        lanes past the row are masked (the x read there may be anything, NaN included).
 *
 * Each tap's product and sum is one fma.ts `madd` (fused where relaxed SIMD is on), except in gw's ragged last
 * block, where the product is masked before it is added. Reads may run up to SLACK bytes (heap.ts) past a window's
 * last row.
 */
import { Fn, T, type Expr, add, assemble, eqz, extractLane, fadd, get, i32, load, loadSplat, lt_s, mul, sub, swizzle, vadd, vand, vcvtS, vmul, vzero } from './wasm.ts';
import { type Geom, masks, rowTaps } from './convsimd.ts';
import { wasmHeap } from './heap.ts';
import { fmaEnabled, madd } from './fma.ts';
import { type PoolKernel, loadKernels } from './pool.ts';

/** The taps a module is generated for. */
export interface TapGeom {
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: 1 | 2;
  /** The image is uint8 (one byte per pixel, read as its integer value) rather than float32. */
  readonly u8?: boolean;
}

/** Bytes per image element. */
const esize = (g: TapGeom): number => (g.u8 ? 1 : 4);

/**
 * The tap vectors of one input row, X(v, kx) = x[p + (4v + j)·sw + kx] for lanes j = 0..3: float32 rows through
 * convsimd.ts `rowTaps`; uint8 rows as one 16-byte load per 8 columns, from which each tap's 4 bytes are swizzled
 * into the low byte of 4 lanes (zeros above) and converted to float (as signed integers: they are below 256).
 */
function taps(f: Fn, p: number, g: TapGeom, nv: number, tmp: Map<number, number>, use: (v: number, kx: number, X: Expr) => void): void {
  if (!g.u8) return rowTaps(f, p, rowGeom(g), nv, tmp, use);
  const loaded = new Map<number, number>();
  const ld = (q: number): Expr => {
    let l = loaded.get(q);
    if (l === undefined) {
      let t = tmp.get(loaded.size);
      if (t === undefined) tmp.set(loaded.size, (t = f.local(T.v128)));
      f.set(t, load('v128', get(p), q));
      loaded.set(q, (l = t));
    }
    return get(l);
  };
  for (let v = 0; v < nv; v++) {
    for (let kx = 0; kx < g.kw; kx++) {
      const c0 = 4 * v * g.sw + kx, q = c0 & ~7;
      const bytes = [0, 1, 2, 3].flatMap((j) => [c0 - q + j * g.sw, 0x80, 0x80, 0x80]);
      use(v, kx, vcvtS(swizzle(ld(q), bytes)));
    }
  }
}

/**
 * Output rows per block in fwd / gw (input rows shared between them when sh < kh) and vectors of 4 outputs per
 * block row: the fastest measured on the 3×3 stride-2 stem (1024² image, random 225² windows, 2 threads) among
 * R ∈ 1–4, V ∈ 1–4. The windows come from DRAM, each row of a 1024-wide image on its own page, where the
 * prefetchers start cold: two output rows keep more rows' misses in flight (with windows in cache one row of
 * fwd was faster); one vector per row leaves the registers to the weights and gw's kh·kw sums.
 */
const R_FWD = 2;
const VF = 1;
const R_GW = 2;
const VG = 1;
/** At most this many gw accumulators per pass (x64 has 16 vector registers; the rest hold g and the taps). */
const GW_ACCS = 12;

const rowGeom = (g: TapGeom): Geom => ({ cn: 1, kh: g.kh, kw: g.kw, sh: g.sh, sw: g.sw, dh: 1, dw: 1 });

/**
 * The input rows ρ (relative to the block's first) that a block of R output rows reads, each with the
 * (output row a, tap row ky) pairs it feeds: ρ = a·sh + ky, for the tap rows in `kys`.
 */
function blockRows(g: TapGeom, R: number, kys: readonly number[]): { rho: number; uses: [number, number][] }[] {
  const rows: { rho: number; uses: [number, number][] }[] = [];
  for (let rho = 0; rho < (R - 1) * g.sh + g.kh; rho++) {
    const uses: [number, number][] = [];
    for (let a = 0; a < R; a++) {
      const ky = rho - a * g.sh;
      if (ky >= 0 && ky < g.kh && kys.includes(ky)) uses.push([a, ky]);
    }
    if (uses.length) rows.push({ rho, uses });
  }
  return rows;
}

/**
 * Loops i over the output rows (locals OH, OW hold the sizes) in groups of R, then the rest one at a time:
 * `group(i, Rn, blocks)` emits a group of Rn rows (i: the local holding its first output row), calling `blocks()`
 * where the loop over its column blocks goes: blocks of BW columns, then the ragged last block. `block(Rn, rem)`
 * emits a block (`rem` null for a full block, else the local holding the columns left), `advance()` the step to
 * the next block.
 */
function rowsAndBlocks(
  f: Fn, OH: number, OW: number, R: number, BW: number,
  group: (i: number, Rn: number, blocks: () => void) => void, block: (Rn: number, rem: number | null) => void, advance: () => void,
): void {
  const i = f.local(T.i32), j = f.local(T.i32), rem = f.local(T.i32);
  const rowGroup = (Rn: number) => group(i, Rn, () => {
    f.for(j, i32(0), sub(get(OW), i32(BW - 1)), i32(BW), () => {
      block(Rn, null);
      advance();
    });
    f.if(lt_s(get(j), get(OW)), () => {
      f.set(rem, sub(get(OW), get(j)));
      block(Rn, rem);
    });
  });
  f.for(i, i32(0), sub(get(OH), i32(R - 1)), i32(R), () => rowGroup(R));
  if (R > 1) f.for(i, get(i), get(OH), i32(1), () => rowGroup(1));
}

/**
 * fwd(x, xrs, xps, C, w, y, yrs, OH, OW[, b]): x at the window's top-left of plane 0; strides in bytes; for a uint8
 * image, the float at b starts every sum (the bias of the image's decode). One input plane
 * at a time over the whole window (its kh·kw weights in registers, the partial sums of the planes before it read
 * back from y): each plane is streamed row after row, which the hardware prefetchers follow, where interleaving
 * the planes' rows block by block measured slower.
 */
function fwd(g: TapGeom): Fn {
  const f = new Fn('fwd', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, ...(g.u8 ? [T.i32] : [])]);
  const [x, xrs, xps, C, w, y, yrs, OH, OW, pb] = f.params;
  const R = R_FWD, BW = 4 * VF, T2 = g.kh * g.kw;
  const c = f.local(T.i32), xb = f.local(T.i32), yb = f.local(T.i32), pc = f.local(T.i32), wc = f.local(T.i32), p = f.local(T.i32), tx = f.local(T.v128);
  const acc = Array.from({ length: R }, () => Array.from({ length: VF }, () => f.local(T.v128)));
  const wv = Array.from({ length: T2 }, () => f.local(T.v128));
  const nrows = (R - 1) * g.sh + g.kh;
  const ro = Array.from({ length: nrows }, () => f.local(T.i32));
  const yo = Array.from({ length: R }, () => f.local(T.i32));
  for (let r = 0; r < nrows; r++) f.set(ro[r], mul(get(xrs), i32(r)));
  for (let a = 0; a < R; a++) f.set(yo[a], mul(get(yrs), i32(a)));
  const tmp = new Map<number, number>();
  const kys = Array.from({ length: g.kh }, (_, k) => k);
  const block = (Rn: number, rem: number | null) => {
    const at = (a: number) => (a === 0 ? get(yb) : add(get(yb), get(yo[a])));
    f.if(
      eqz(get(c)),
      () => {
        for (let a = 0; a < Rn; a++) for (let v = 0; v < VF; v++) f.set(acc[a][v], g.u8 ? loadSplat(get(pb)) : vzero);
      },
      () => {
        for (let a = 0; a < Rn; a++) for (let v = 0; v < VF; v++) f.set(acc[a][v], load('v128', at(a), v * 16));
      },
    );
    for (const { rho, uses } of blockRows(g, Rn, kys)) {
      f.set(p, add(get(xb), get(ro[rho])));
      taps(f, p, g, VF, tmp, (v, kx, X) => {
        let Xv: Expr = X;
        if (uses.length > 1) {
          f.set(tx, X);
          Xv = get(tx);
        }
        for (const [a, ky] of uses) f.set(acc[a][v], madd(get(wv[ky * g.kw + kx]), Xv, get(acc[a][v])));
      });
    }
    for (let a = 0; a < Rn; a++) {
      for (let v = 0; v < VF; v++) {
        if (rem === null) f.store('v128', at(a), get(acc[a][v]), v * 16);
        else {
          for (let l = 0; l < 4; l++) f.if(lt_s(i32(4 * v + l), get(rem)), () => f.store('f32', at(a), extractLane(get(acc[a][v]), l), (4 * v + l) * 4));
        }
      }
    }
  };
  f.set(pc, get(x));
  f.set(wc, get(w));
  f.for(c, i32(0), get(C), i32(1), () => {
    for (let t = 0; t < T2; t++) f.set(wv[t], loadSplat(get(wc), t * 4));
    rowsAndBlocks(f, OH, OW, R, BW, (i, _Rn, blocks) => {
      f.set(xb, add(get(pc), mul(get(i), mul(get(xrs), i32(g.sh)))));
      f.set(yb, add(get(y), mul(get(i), get(yrs))));
      blocks();
    }, block, () => {
      f.set(xb, add(get(xb), i32(BW * g.sw * esize(g))));
      f.set(yb, add(get(yb), i32(BW * 4)));
    });
    f.set(pc, add(get(pc), get(xps)));
    f.set(wc, add(get(wc), i32(T2 * 4)));
  });
  return f;
}

/** Tap rows per gw pass: as many as keep kw accumulators each within GW_ACCS. */
export function gwPasses(g: TapGeom): number[][] {
  const per = Math.max(1, Math.floor(GW_ACCS / g.kw));
  const passes: number[][] = [];
  for (let k0 = 0; k0 < g.kh; k0 += per) passes.push(Array.from({ length: Math.min(per, g.kh - k0) }, (_, k) => k0 + k));
  return passes;
}

/**
 * gw(x, xrs, xps, C, g, grs, OH, OW, out): out[c·kh·kw + ky·kw + kx] = the sums above, for c < C; for a uint8 image
 * also out[C·kh·kw] = Σ_{i, j} g[i, j].
 */
function gw(g: TapGeom): Fn {
  const f = new Fn('gw', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [x, xrs, xps, C, gp, grs, OH, OW, out] = f.params;
  const R = R_GW, BW = 4 * VG, T2 = g.kh * g.kw;
  const c = f.local(T.i32), xc = f.local(T.i32), oc = f.local(T.i32), xb = f.local(T.i32), gb = f.local(T.i32), p = f.local(T.i32), tx = f.local(T.v128);
  const nrows = (R - 1) * g.sh + g.kh;
  const ro = Array.from({ length: nrows }, () => f.local(T.i32));
  const go = Array.from({ length: R }, () => f.local(T.i32));
  for (let r = 0; r < nrows; r++) f.set(ro[r], mul(get(xrs), i32(r)));
  for (let a = 0; a < R; a++) f.set(go[a], mul(get(grs), i32(a)));
  const gv = Array.from({ length: R }, () => Array.from({ length: VG }, () => f.local(T.v128)));
  const maxPass = Math.max(...gwPasses(g).map((k) => k.length));
  const accs = Array.from({ length: maxPass * g.kw }, () => f.local(T.v128));
  const tmp = new Map<number, number>();
  // uint8 images: Σ g over the plane as well, written after the C·kh·kw sums (the caller's decode needs it).
  const gsum = g.u8 ? f.local(T.v128) : null;
  f.set(xc, get(x));
  f.set(oc, get(out));
  f.for(c, i32(0), get(C), i32(1), () => {
    for (const kys of gwPasses(g)) {
      const accOf = (ky: number, kx: number) => accs[kys.indexOf(ky) * g.kw + kx];
      for (const a of accs) f.set(a, vzero);
      if (gsum !== null && kys[0] === 0) f.set(gsum, vzero);
      const block = (Rn: number, rem: number | null) => {
        for (let a = 0; a < Rn; a++) for (let v = 0; v < VG; v++) f.set(gv[a][v], load('v128', a === 0 ? get(gb) : add(get(gb), get(go[a])), v * 16));
        const m = rem === null ? null : masks(f, get(rem), 4, VG);
        if (gsum !== null && kys[0] === 0) {
          for (let a = 0; a < Rn; a++) for (let v = 0; v < VG; v++) f.set(gsum, vadd(get(gsum), m ? vand(get(gv[a][v]), get(m[v])) : get(gv[a][v])));
        }
        for (const { rho, uses } of blockRows(g, Rn, kys)) {
          f.set(p, add(get(xb), get(ro[rho])));
          taps(f, p, g, VG, tmp, (v, kx, X) => {
            let Xv: Expr = X;
            if (uses.length > 1) {
              f.set(tx, X);
              Xv = get(tx);
            }
            for (const [a, ky] of uses) {
              const s = accOf(ky, kx);
              f.set(s, m ? vadd(get(s), vand(vmul(get(gv[a][v]), Xv), get(m[v]))) : madd(get(gv[a][v]), Xv, get(s)));
            }
          });
        }
      };
      rowsAndBlocks(f, OH, OW, R, BW, (i, _Rn, blocks) => {
        f.set(xb, add(get(xc), mul(get(i), mul(get(xrs), i32(g.sh)))));
        f.set(gb, add(get(gp), mul(get(i), get(grs))));
        blocks();
      }, block, () => {
        f.set(xb, add(get(xb), i32(BW * g.sw * esize(g))));
        f.set(gb, add(get(gb), i32(BW * 4)));
      });
      const hsum = (s: number) => fadd(fadd(extractLane(get(s), 0), extractLane(get(s), 1)), fadd(extractLane(get(s), 2), extractLane(get(s), 3)));
      for (const ky of kys) for (let kx = 0; kx < g.kw; kx++) f.store('f32', get(oc), hsum(accOf(ky, kx)), (ky * g.kw + kx) * 4);
      if (gsum !== null && kys[0] === 0) f.store('f32', add(get(out), mul(get(C), i32(T2 * 4))), hsum(gsum));
    }
    f.set(xc, add(get(xc), get(xps)));
    f.set(oc, add(get(oc), i32(T2 * 4)));
  });
  return f;
}

/**
 * touch(p, len, C, ps) → Σ of the i32 words it reads: one word per 64 bytes of each range [p + c·ps, + len) for
 * c < C, and the word at the range's last byte (up to 3 bytes past it, within SLACK); it brings those cache lines in
 * before fwd / gw read them. The kernels read a window row 8 bytes per block, so a row's next line is asked for
 * only once the ~100 instructions of the blocks before it have gone through the reorder window, and few misses are
 * ever in flight at once; this loop has little else to do than load, so many are. The sum only keeps the loads
 * from being dropped.
 */
function touch(): Fn {
  const f = new Fn('touch', [T.i32, T.i32, T.i32, T.i32], [T.i32]);
  const [p, len, C, ps] = f.params;
  const c = f.local(T.i32), o = f.local(T.i32), sum = f.local(T.i32), plane = f.local(T.i32);
  f.set(plane, get(p));
  f.for(c, i32(0), get(C), i32(1), () => {
    f.for(o, i32(0), get(len), i32(64), () => f.set(sum, add(get(sum), load('i32', add(get(plane), get(o))))));
    f.set(sum, add(get(sum), load('i32', add(get(plane), sub(get(len), i32(1))))));
    f.set(plane, add(get(plane), get(ps)));
  });
  f.emit(get(sum));
  return f;
}

export type StochKernels = Record<'fwd' | 'gw' | 'touch', PoolKernel>;
const modules = new Map<string, StochKernels>();

/** The kernels for a tap geometry, generated, compiled and loaded into the pool once. */
export function stochKernels(g: TapGeom): StochKernels {
  const h = wasmHeap();
  if (!h) throw new Error('stochastic conv: WebAssembly SIMD is not available');
  const key = `${g.kh},${g.kw},${g.sh},${g.sw},${g.u8 ? 'u8' : 'f32'},${fmaEnabled() ? 'fma' : ''}`;
  let k = modules.get(key);
  if (!k) {
    k = loadKernels(assemble({ functions: [fwd(g), gw(g), touch()], memory: h.importSpec() }), ['fwd', 'gw', 'touch']) as StochKernels;
    modules.set(key, k);
  }
  return k;
}
