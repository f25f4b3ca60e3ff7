/**
 * The SGEMM WebAssembly module, generated at run time: a GotoBLAS/BLIS-style blocked GEMM with packing and an
 * MR×NR register-tiled f32x4 micro-kernel. Everything runs in wasm, including the block loops, so a worker
 * thread only has to call `gemm(descriptor)` on its share of C.
 *
 *   for jc (NC columns of C)            B block  kc×nc  packed in NR-wide panels  (stays in L2/L3)
 *     for pc (KC of the k dimension)    A block  mc×kc  packed in MR-high panels  (stays in L2)
 *       for ic (MC rows of C)
 *         for jr, ir: micro-kernel       MR×NR accumulators in registers, B micro-panel (kc×NR) in L1
 *
 * Strides are in bytes; op(A)(i, k) sits at A + i·rsA + k·csA and op(B)(k, j) at B + k·rsB + j·csB, so the
 * transposes are just strides given to the packing routines. alpha is folded into the packed A; beta is applied
 * by the micro-kernel on the first k block (beta = 0 never reads C, as BLAS requires). An optional per-row epilogue
 * (a folded batch norm's scale and shift, then SiLU) is applied by the micro-kernel to the final sums of the last k
 * block as it stores them, so C is written once, while its tile is in registers.
 */
import { Consts, siluV } from './vmath.ts';
import { madd } from './fma.ts';
import {
  Fn, T, add, and, assemble, divU, eq, extractLane, f32, feq, fadd, fmul, ge_s, get, i32, load, loadSplat, lt_s, min_s, mul, remU, sub, vadd, vmul, splat, vzero,
  transpose4, type Expr, wasmApi,
} from './wasm.ts';

export interface GemmShape {
  /** Micro-tile rows (A panel height) and columns (B panel width, a multiple of 4). */
  readonly MR: number;
  readonly NR: number;
  /** Cache blocks. MC is a multiple of MR, NC of NR. */
  readonly MC: number;
  readonly KC: number;
  readonly NC: number;
  /** Use relaxed-SIMD f32x4.relaxed_madd (fused multiply-add where the engine has it). */
  readonly fma: boolean;
  /** k-loop unroll of the micro-kernel (default 1). */
  readonly unroll?: number;
}

/** Descriptor field offsets (bytes) — one descriptor per thread, written by the host (sgemm.ts). */
export const D = {
  M: 0, N: 4, K: 8,
  A: 12, rsA: 16, csA: 20,
  B: 24, rsB: 28, csB: 32,
  C: 36, ldc: 40,
  alpha: 44, beta: 48,
  /** Epilogue: 0 none, 1 per-row affine, 2 affine + SiLU (EPI_MODE); byte addresses of row 0's scale and shift. */
  epi: 52, scale: 56, shift: 60,
  /** C ← alpha·Σ_p op(A_p)·op(B_p) + beta·C over `parts` products, A_p at A + p·partA and B_p at B + p·partB (bytes). */
  parts: 64, partA: 68, partB: 72,
  /**
   * Columns of op(B) and C in images of `cpi` columns: column j = n·cpi + p of op(B) at B + n·imgB + p·csB + k·rsB,
   * of C at C + n·imgC + p·4 + i·ldc (bytes). col0 is the stripe's first column (B and C address column 0). A plain
   * matrix is one image (cpi = FLAT_COLS, imgB = imgC = 0). cpi is a multiple of NR, so no panel or tile straddles
   * two images. Only the first `live` columns of an image exist (the rest round it up to whole panels: the last
   * panel of an image is ragged), and only the first `nLive` live columns of the product (counted over the images:
   * a short last image); a plain matrix has live = FLAT_COLS and nLive = its N.
   */
  col0: 76, cpi: 80, imgB: 84, imgC: 88, live: 104, nLive: 108,
  /**
   * With bScale ≠ 0: row k of op(B) is multiplied by the float at bScale + 4k + n·imgS (bytes) as it is packed, n the
   * column's image (a 1×1 conv's input scaled per image and channel: squeeze-excite's gate). 0: no scale.
   */
  bScale: 96, imgS: 100,
  size: 112,
} as const;

/** D.cpi of a plain matrix: more columns than any product has, so every column is in image 0. */
export const FLAT_COLS = 0x40000000;

/** The epilogues the micro-kernel can apply to C as it stores its last k block, by descriptor code. */
export const EPI_MODE = { affine: 1, silu: 2 } as const;
export type GemmEpilogue = keyof typeof EPI_MODE;

const FN_PACK_A = 0;
const FN_PACK_B = 1;
const FN_KERNEL = 2;
/** The kernels with an epilogue follow the driver (index 3): kernel_affine, kernel_silu; then packB with row scales. */
const FN_KERNEL_EPI: Record<GemmEpilogue, number> = { affine: 4, silu: 5 };
const FN_PACK_B_SCALED = 6;

/**
 * packA(src, rs, cs, mc, kc, alpha, dst): alpha·op(A)'s rows in MR-high panels, panel p at dst + p·kc·MR·4, k-major
 * inside (the MR values of one k together). Full panels of an MR that is a multiple of 4 move whole vectors: rows
 * contiguous in k (A as stored, cs = 4) four k at a time, loaded as one vector per row and transposed 4×4 with
 * shuffles; a transposed A (rs = 4) one vector per 4 rows per k. The k tail, ragged panels and other strides go
 * element by element. alpha = 1 skips the multiply (x·1 = x: the same bits).
 */
function packA(g: GemmShape): Fn {
  const { MR } = g;
  const G = MR % 4 === 0 ? MR / 4 : 0; // vector groups of 4 rows per panel
  const f = new Fn('packA', [T.i32, T.i32, T.i32, T.i32, T.i32, T.f32, T.i32]);
  const [src, rs, cs, mc, kc, alpha, dst] = f.params;
  const i0 = f.local(T.i32), k = f.local(T.i32), h = f.local(T.i32), row = f.local(T.i32), out = f.local(T.i32), i = f.local(T.i32), k4 = f.local(T.i32);
  const va = f.local(T.v128);
  const a = [0, 1, 2, 3].map(() => f.local(T.v128)), t = [0, 1, 2, 3].map(() => f.local(T.v128)), b = [0, 1, 2, 3].map(() => f.local(T.v128));
  f.set(va, splat(get(alpha)));
  f.set(k4, and(get(kc), i32(-4)));
  const emit = (scaled: boolean): void => {
    const sc = (x: Expr): Expr => (scaled ? fmul(x, get(alpha)) : x);
    const vsc = (x: Expr): Expr => (scaled ? vmul(x, get(va)) : x);
    const rowAddr = (r: number): Expr => (r === 0 ? get(row) : add(get(row), mul(get(rs), i32(r))));
    // Full panel, element by element from k on: MR strided loads per k, unrolled.
    const scalarFrom = (from: Expr): void => {
      f.for(k, from, get(kc), i32(1), () => {
        for (let r = 0; r < MR; r++) f.store('f32', get(out), sc(load('f32', rowAddr(r))), r * 4);
        f.set(row, add(get(row), get(cs)));
        f.set(out, add(get(out), i32(MR * 4)));
      });
    };
    const full = (): void => {
      if (!G) return scalarFrom(i32(0));
      f.if(eq(get(cs), i32(4)), () => {
        // Rows contiguous in k: per 4 k, one vector per row, transposed into one vector (4 rows) per k.
        f.for(k, i32(0), get(k4), i32(4), () => {
          for (let q = 0; q < G; q++) {
            for (let r = 0; r < 4; r++) f.set(a[r], load('v128', rowAddr(4 * q + r)));
            transpose4(f, a, t, b);
            for (let r = 0; r < 4; r++) f.store('v128', get(out), vsc(get(b[r])), (r * MR + 4 * q) * 4);
          }
          f.set(row, add(get(row), i32(16)));
          f.set(out, add(get(out), i32(4 * MR * 4)));
        });
        scalarFrom(get(k4));
      }, () => f.if(eq(get(rs), i32(4)), () => {
        // Transposed A: the panel's MR values of one k are contiguous.
        f.for(k, i32(0), get(kc), i32(1), () => {
          for (let q = 0; q < G; q++) f.store('v128', get(out), vsc(load('v128', get(row), 16 * q)), 16 * q);
          f.set(row, add(get(row), get(cs)));
          f.set(out, add(get(out), i32(MR * 4)));
        });
      }, () => scalarFrom(i32(0))));
    };
    f.for(i0, i32(0), get(mc), i32(MR), () => {
      f.set(h, min_s(i32(MR), sub(get(mc), get(i0))));
      f.set(row, add(get(src), mul(get(i0), get(rs))));
      f.if(eq(get(h), i32(MR)), full, () => {
        // Ragged last panel: zero rows below h.
        f.for(k, i32(0), get(kc), i32(1), () => {
          for (let r = 0; r < MR; r++) f.store('f32', get(out), f32(0), r * 4);
          f.for(i, i32(0), get(h), i32(1), () => {
            f.store('f32', add(get(out), mul(get(i), i32(4))), sc(load('f32', add(get(row), mul(get(i), get(rs))))));
          });
          f.set(row, add(get(row), get(cs)));
          f.set(out, add(get(out), i32(MR * 4)));
        });
      });
    });
  };
  f.set(out, get(dst));
  f.if(feq(get(alpha), f32(1)), () => emit(false), () => emit(true));
  return f;
}

/** Byte offset of column j in images of cpi columns, `img` bytes apart, columns `cs` bytes apart (D.cpi). */
const colOffset = (j: Expr, cpi: number, img: number, cs: Expr): Expr => add(mul(divU(j, get(cpi)), get(img)), mul(remU(j, get(cpi)), cs));

/**
 * The live columns of the panel from column j (D.live, D.nLive), at most NR and `rest`: min(NR, rest, live − p,
 * nLive − n·live − p) with n = j div cpi, p = j mod cpi (locals cpi, live, nLive).
 */
const panelWidth = (NR: number, j: Expr, rest: Expr, cpi: number, live: number, nLive: number): Expr => {
  const p = remU(j, get(cpi));
  return min_s(min_s(i32(NR), rest), min_s(sub(get(live), p), sub(sub(get(nLive), mul(divU(j, get(cpi)), get(live))), p)));
};

/**
 * packB(src, rs, cs, kc, nc, dst, col, cpi, img, live, nLive): columns col…col + nc of op(B) (column j at src +
 * colOffset(j), see D.cpi) in NR-wide panels, panel q at dst + q·kc·NR·4, k-major inside, the columns past a panel's
 * live ones zero. col and cpi are multiples of NR: each panel lies in one image.
 */
function packB(g: GemmShape, scaled = false): Fn {
  const { NR } = g;
  const NV = NR / 4;
  const f = new Fn(scaled ? 'packBScaled' : 'packB', Array.from({ length: scaled ? 13 : 11 }, () => T.i32));
  const [src, rs, cs, kc, nc, dst, col, cpi, img, live, nLive, scale, imgS] = f.params;
  const j0 = f.local(T.i32), k = f.local(T.i32), w = f.local(T.i32), row = f.local(T.i32), out = f.local(T.i32), j = f.local(T.i32);
  const ps = f.local(T.i32), vs = f.local(T.v128);
  // Each row k of a panel times its image's scale of row k (packBScaled), in the same float32 product as x·s.
  const rowScale = () => {
    if (!scaled) return;
    f.set(vs, splat(load('f32', get(ps))));
    f.set(ps, add(get(ps), i32(4)));
  };
  const sv = (x: Expr): Expr => (scaled ? vmul(x, get(vs)) : x);
  const sf = (x: Expr): Expr => (scaled ? fmul(x, extractLane(get(vs), 0)) : x);
  f.set(out, get(dst));
  f.for(j0, i32(0), get(nc), i32(NR), () => {
    f.set(w, panelWidth(NR, add(get(col), get(j0)), sub(get(nc), get(j0)), cpi, live, nLive));
    f.set(row, add(get(src), colOffset(add(get(col), get(j0)), cpi, img, get(cs))));
    if (scaled) f.set(ps, add(get(scale), mul(divU(add(get(col), get(j0)), get(cpi)), get(imgS))));
    f.if(eq(get(w), i32(NR)), () => {
      f.if(eq(get(cs), i32(4)), () => {
        // Contiguous row of op(B): vector copy.
        f.for(k, i32(0), get(kc), i32(1), () => {
          rowScale();
          for (let v = 0; v < NV; v++) f.store('v128', get(out), sv(load('v128', get(row), v * 16)), v * 16);
          f.set(row, add(get(row), get(rs)));
          f.set(out, add(get(out), i32(NR * 4)));
        });
      }, () => {
        f.for(k, i32(0), get(kc), i32(1), () => {
          rowScale();
          for (let c = 0; c < NR; c++) {
            const addr: Expr = c === 0 ? get(row) : add(get(row), mul(get(cs), i32(c)));
            f.store('f32', get(out), sf(load('f32', addr)), c * 4);
          }
          f.set(row, add(get(row), get(rs)));
          f.set(out, add(get(out), i32(NR * 4)));
        });
      });
    }, () => {
      f.for(k, i32(0), get(kc), i32(1), () => {
        rowScale();
        for (let v = 0; v < NV; v++) f.store('v128', get(out), vzero, v * 16);
        f.for(j, i32(0), get(w), i32(1), () => {
          f.store('f32', add(get(out), mul(get(j), i32(4))), sf(load('f32', add(get(row), mul(get(j), get(cs))))));
        });
        f.set(row, add(get(row), get(rs)));
        f.set(out, add(get(out), i32(NR * 4)));
      });
    });
  });
  return f;
}

/**
 * kernel(pa, pb, kc, c, ldc, mr, nr, beta, tile): C[0:mr, 0:nr] = acc + beta·C (beta = 0: C = acc), where
 * acc = Σ_k pa[k]ᵀ·pb[k] over packed panels. Ragged tiles go through `tile` (MR×NR scratch).
 * With `epi`, kernel_<epi>(…, tile, sc, sh) stores act((acc + beta·C)·sc[r] + sh[r]) in row r instead, from the
 * registers (the driver calls it for the last k block).
 * (Reading B rows in place instead of packing them was measured: no gain at B0 shapes, a loss at large K.)
 */
function kernel(g: GemmShape, epi?: GemmEpilogue): Fn {
  const { MR, NR, fma } = g;
  const NV = NR / 4;
  const f = new Fn(epi ? `kernel_${epi}` : 'kernel', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.f32, T.i32, ...(epi ? [T.i32, T.i32] : [])]);
  const [pa, pb, kc, c, ldc, mr, nr, beta, tile] = f.params;
  const acc: number[][] = [];
  for (let r = 0; r < MR; r++) acc.push(Array.from({ length: NV }, () => f.local(T.v128)));
  const b = Array.from({ length: NV }, () => f.local(T.v128));
  const a = f.local(T.v128);
  const kk = f.local(T.i32), row = f.local(T.i32), i = f.local(T.i32), j = f.local(T.i32), p = f.local(T.i32), q = f.local(T.i32);
  const vb = f.local(T.v128);
  for (const r of acc) for (const x of r) f.set(x, vzero);

  // One k step at byte offsets (oa, ob) from the current panel pointers.
  const step = (oa: number, ob: number): void => {
    for (let v = 0; v < NV; v++) f.set(b[v], load('v128', get(pb), ob + v * 16));
    for (let r = 0; r < MR; r++) {
      f.set(a, loadSplat(get(pa), oa + r * 4));
      for (let v = 0; v < NV; v++) {
        f.set(acc[r][v], madd(get(a), get(b[v]), get(acc[r][v]), fma));
      }
    }
  };
  const U = g.unroll ?? 1; // k steps per loop turn (1 measured fastest: V8 then keeps the whole tile in registers).
  f.set(kk, get(kc));
  f.block(() => {
    f.brIf(0, lt_s(get(kk), i32(U)));
    f.loop(() => {
      for (let u = 0; u < U; u++) step(u * MR * 4, u * NR * 4);
      f.set(pa, add(get(pa), i32(U * MR * 4)));
      f.set(pb, add(get(pb), i32(U * NR * 4)));
      f.set(kk, sub(get(kk), i32(U)));
      f.brIf(0, ge_s(get(kk), i32(U)));
    });
  });
  // Remainder: fewer than U steps.
  f.block(() => {
    f.loop(() => {
      f.brIf(1, eq(get(kk), i32(0)));
      step(0, 0);
      f.set(pa, add(get(pa), i32(MR * 4)));
      f.set(pb, add(get(pb), i32(NR * 4)));
      f.set(kk, sub(get(kk), i32(1)));
      f.br(0);
    });
  });

  f.set(vb, splat(get(beta)));
  const full: Expr = (h) => {
    eq(get(mr), i32(MR))(h);
    eq(get(nr), i32(NR))(h);
    h.op(0x71); // i32.and
  };
  if (epi) {
    storeWithEpilogue(f, g, epi, acc, { c, ldc, mr, nr, beta, tile, sc: f.params[9], sh: f.params[10], vb, full });
    return f;
  }
  f.if(full, () => {
    f.set(row, get(c));
    f.if(feq(get(beta), f32(0)), () => {
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < NV; v++) f.store('v128', get(row), get(acc[r][v]), v * 16);
        if (r < MR - 1) f.set(row, add(get(row), get(ldc)));
      }
    }, () => {
      for (let r = 0; r < MR; r++) {
        for (let v = 0; v < NV; v++) {
          f.store('v128', get(row), madd(get(vb), load('v128', get(row), v * 16), get(acc[r][v]), fma), v * 16);
        }
        if (r < MR - 1) f.set(row, add(get(row), get(ldc)));
      }
    });
  }, () => {
    for (let r = 0; r < MR; r++) for (let v = 0; v < NV; v++) f.store('v128', get(tile), get(acc[r][v]), (r * NR + v * 4) * 4);
    f.set(row, get(c));
    f.for(i, i32(0), get(mr), i32(1), () => {
      f.set(p, add(get(tile), mul(get(i), i32(NR * 4))));
      f.for(j, i32(0), get(nr), i32(1), () => {
        f.set(q, add(get(row), mul(get(j), i32(4))));
        f.if(feq(get(beta), f32(0)), () => {
          f.store('f32', get(q), load('f32', add(get(p), mul(get(j), i32(4)))));
        }, () => {
          f.store('f32', get(q), fadd(load('f32', add(get(p), mul(get(j), i32(4)))), fmul(get(beta), load('f32', get(q)))));
        });
      });
      f.set(row, add(get(row), get(ldc)));
    });
  });
  return f;
}

/**
 * The stores of kernel_<epi>: each vector v of C (acc, plus beta·C when beta ≠ 0) becomes act(v·sc[r] + sh[r]) on
 * its way out of the registers. A ragged tile is staged in `tile`: zeroed, the live part of C copied in (beta ≠ 0),
 * the whole tile computed as vectors (the rows past mr reuse row mr − 1's scale and shift), the live part copied out.
 */
function storeWithEpilogue(
  f: Fn, g: GemmShape, epi: GemmEpilogue, acc: readonly (readonly number[])[],
  l: { c: number; ldc: number; mr: number; nr: number; beta: number; tile: number; sc: number; sh: number; vb: number; full: Expr },
): void {
  const { MR, NR } = g;
  const NV = NR / 4;
  const cs = new Consts(f);
  const t = [f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const vs = f.local(T.v128), vh = f.local(T.v128), z = f.local(T.v128);
  const row = f.local(T.i32), i = f.local(T.i32), j = f.local(T.i32);
  // Constants are set here, after the k loop, so they are not live across it.
  const start = f.code.length;
  const rowParams = (r: Expr) => {
    f.set(vs, splat(load('f32', add(get(l.sc), mul(r, i32(4))))));
    f.set(vh, splat(load('f32', add(get(l.sh), mul(r, i32(4))))));
  };
  const fin = (x: Expr): Expr => {
    if (epi === 'affine') return vadd(vmul(x, get(vs)), get(vh));
    f.set(z, vadd(vmul(x, get(vs)), get(vh)));
    return siluV(f, cs, get(z), t);
  };
  const withBeta = (a: number, cv: Expr): Expr => vadd(get(a), vmul(get(l.vb), cv));
  f.if(l.full, () => {
    const rows = (readC: boolean) => {
      f.set(row, get(l.c));
      for (let r = 0; r < MR; r++) {
        rowParams(i32(r));
        for (let v = 0; v < NV; v++) {
          const y = fin(readC ? withBeta(acc[r][v], load('v128', get(row), v * 16)) : get(acc[r][v]));
          f.store('v128', get(row), y, v * 16);
        }
        if (r < MR - 1) f.set(row, add(get(row), get(l.ldc)));
      }
    };
    f.if(feq(get(l.beta), f32(0)), () => rows(false), () => rows(true));
  }, () => {
    // The live mr×nr part of C ↔ tile, element by element.
    const liveCopy = (toTile: boolean) => {
      f.set(row, get(l.c));
      f.for(i, i32(0), get(l.mr), i32(1), () => {
        f.for(j, i32(0), get(l.nr), i32(1), () => {
          const tAddr = add(get(l.tile), mul(add(mul(get(i), i32(NR)), get(j)), i32(4)));
          const cAddr = add(get(row), mul(get(j), i32(4)));
          f.store('f32', toTile ? tAddr : cAddr, load('f32', toTile ? cAddr : tAddr));
        });
        f.set(row, add(get(row), get(l.ldc)));
      });
    };
    for (let q = 0; q < MR * NV; q++) f.store('v128', get(l.tile), vzero, q * 16);
    f.if(feq(get(l.beta), f32(0)), () => {}, () => liveCopy(true));
    for (let r = 0; r < MR; r++) {
      rowParams(min_s(i32(r), sub(get(l.mr), i32(1))));
      for (let v = 0; v < NV; v++) {
        const off = (r * NR + v * 4) * 4;
        f.store('v128', get(l.tile), fin(withBeta(acc[r][v], load('v128', get(l.tile), off))), off);
      }
    }
    liveCopy(false);
  });
  f.code.splice(start, 0, ...cs.prologue());
}

/** gemm(d, scratch): the block loops over one task (a stripe of C) described at byte address d; `scratch` is the
 * calling thread's packing area (scratchBytes(g).total bytes). */
function driver(g: GemmShape): Fn {
  const { MR, NR, MC, KC, NC } = g;
  const sb = scratchBytes(g);
  const f = new Fn('gemm', [T.i32, T.i32]);
  const [d, scratch] = f.params;
  const L = (t: T = T.i32) => f.local(t);
  const M = L(), N = L(), K = L(), A = L(), rsA = L(), csA = L(), B = L(), rsB = L(), csB = L(), C = L(), ldc = L();
  const alpha = L(T.f32), beta = L(T.f32), betaEff = L(T.f32);
  const epi = L(), sc = L(), sh = L(), mode = L(), parts = L(), partA = L(), partB = L(), pt = L(), Ap = L(), Bp = L();
  const col0 = L(), cpi = L(), imgB = L(), imgC = L(), cj = L(), bScale = L(), imgS = L(), live = L(), nLive = L();
  const pA = L(), pB = L(), tile = L();
  const jc = L(), nc = L(), pc = L(), kc = L(), ic = L(), mc = L(), jr = L(), ir = L();
  const fields: [number, number][] = [[M, D.M], [N, D.N], [K, D.K], [A, D.A], [rsA, D.rsA], [csA, D.csA], [B, D.B], [rsB, D.rsB], [csB, D.csB], [C, D.C], [ldc, D.ldc], [col0, D.col0], [cpi, D.cpi], [imgB, D.imgB], [imgC, D.imgC], [bScale, D.bScale], [imgS, D.imgS], [live, D.live], [nLive, D.nLive]];
  for (const [l, off] of fields) f.set(l, load('i32', get(d), off));
  f.set(pA, get(scratch));
  f.set(pB, add(get(scratch), i32(sb.packA)));
  f.set(tile, add(get(scratch), i32(sb.packA + sb.packB)));
  f.set(alpha, load('f32', get(d), D.alpha));
  f.set(beta, load('f32', get(d), D.beta));
  f.set(epi, load('i32', get(d), D.epi));
  f.set(sc, load('i32', get(d), D.scale));
  f.set(sh, load('i32', get(d), D.shift));
  f.set(parts, load('i32', get(d), D.parts));
  f.set(partA, load('i32', get(d), D.partA));
  f.set(partB, load('i32', get(d), D.partB));
  f.for(jc, i32(0), get(N), i32(NC), () => {
    f.set(nc, min_s(i32(NC), sub(get(N), get(jc))));
    // The k blocks of every part in turn: the same sums, in the same order, as one call per part with beta = 1 after the first.
    f.for(pt, i32(0), get(parts), i32(1), () => {
      f.set(Ap, add(get(A), mul(get(pt), get(partA))));
      f.set(Bp, add(get(B), mul(get(pt), get(partB))));
      f.for(pc, i32(0), get(K), i32(KC), () => {
        f.set(kc, min_s(i32(KC), sub(get(K), get(pc))));
        const packArgs: Expr[] = [add(get(Bp), mul(get(pc), get(rsB))), get(rsB), get(csB), get(kc), get(nc), get(pB), add(get(col0), get(jc)), get(cpi), get(imgB), get(live), get(nLive)];
        f.if(eq(get(bScale), i32(0)), () => f.call(FN_PACK_B, ...packArgs), () => f.call(FN_PACK_B_SCALED, ...packArgs, add(get(bScale), mul(get(pc), i32(4))), get(imgS)));
        f.set(betaEff, (h) => {
          // select(beta, 1, first block of the first part)
          get(beta)(h);
          f32(1)(h);
          eq(add(get(pt), get(pc)), i32(0))(h);
          h.op(0x1b);
        });
        // The epilogue runs as the last k block of the last part is stored: select(epi, 0, that block).
        f.set(mode, (h) => {
          get(epi)(h);
          i32(0)(h);
          eq(add(get(pt), i32(1)), get(parts))(h);
          ge_s(add(get(pc), get(kc)), get(K))(h);
          h.op(0x71); // i32.and
          h.op(0x1b);
        });
        f.for(ic, i32(0), get(M), i32(MC), () => {
          f.set(mc, min_s(i32(MC), sub(get(M), get(ic))));
          f.call(FN_PACK_A, add(add(get(Ap), mul(get(ic), get(rsA))), mul(get(pc), get(csA))), get(rsA), get(csA), get(mc), get(kc), get(alpha), get(pA));
          f.for(jr, i32(0), get(nc), i32(NR), () => {
            f.set(cj, add(get(C), colOffset(add(add(get(col0), get(jc)), get(jr)), cpi, imgC, i32(4))));
            f.for(ir, i32(0), get(mc), i32(MR), () => {
              const args: Expr[] = [
                add(get(pA), mul(mul(get(ir), get(kc)), i32(4))),
                add(get(pB), mul(mul(get(jr), get(kc)), i32(4))),
                get(kc),
                add(get(cj), mul(add(get(ic), get(ir)), get(ldc))),
                get(ldc),
                min_s(i32(MR), sub(get(mc), get(ir))),
                panelWidth(NR, add(add(get(col0), get(jc)), get(jr)), sub(get(nc), get(jr)), cpi, live, nLive),
                get(betaEff),
                get(tile),
              ];
              const rowAt = (p: number) => add(get(p), mul(add(get(ic), get(ir)), i32(4)));
              const withEpi = (e: GemmEpilogue) => () => f.call(FN_KERNEL_EPI[e], ...args, rowAt(sc), rowAt(sh));
              f.if(eq(get(mode), i32(0)), () => f.call(FN_KERNEL, ...args), () => f.if(eq(get(mode), i32(EPI_MODE.affine)), withEpi('affine'), withEpi('silu')));
            });
          });
        });
      });
    });
  });
  return f;
}

/** Bytes of per-thread scratch: packed A block, packed B block, ragged tile. */
export function scratchBytes(g: GemmShape): { packA: number; packB: number; tile: number; total: number } {
  const packA = g.MC * g.KC * 4;
  const packB = g.KC * (g.NC + g.NR) * 4;
  const tile = g.MR * g.NR * 4;
  return { packA, packB, tile, total: packA + packB + tile };
}

export function sgemmModuleBytes(g: GemmShape, memory: { initial: number; maximum: number; shared: boolean }): Uint8Array {
  if (g.NR % 4 !== 0 || g.MC % g.MR !== 0 || g.NC % g.NR !== 0) throw new Error(`sgemm: bad blocking ${JSON.stringify(g)}`);
  return assemble({ functions: [packA(g), packB(g), kernel(g), driver(g), kernel(g, 'affine'), kernel(g, 'silu'), packB(g, true)], memory });
}

/** Whether this engine has fixed-width SIMD at all. */
export function hasSimd(): boolean {
  const f = new Fn('t', [], [T.v128]);
  f.emit(vzero);
  try {
    return wasmApi !== undefined && wasmApi.validate(assemble({ functions: [f], memory: { initial: 1, maximum: 1, shared: false } }));
  } catch {
    return false;
  }
}
