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
 * by the micro-kernel on the first k block (beta = 0 never reads C, as BLAS requires).
 */
import {
  Fn, T, add, assemble, eq, f32, feq, fadd, fmul, ge_s, get, i32, load, loadSplat, lt_s, min_s, mul, ne, sub, vadd, vmadd, vmul, splat, vzero,
  type Expr, wasmApi,
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
  size: 64,
} as const;

const FN_PACK_A = 0;
const FN_PACK_B = 1;
const FN_KERNEL = 2;

/** packA(src, rs, cs, mc, kc, alpha, dst): MR-high panels, panel p at dst + p·kc·MR·4, k-major inside. */
function packA(g: GemmShape): Fn {
  const { MR } = g;
  const f = new Fn('packA', [T.i32, T.i32, T.i32, T.i32, T.i32, T.f32, T.i32]);
  const [src, rs, cs, mc, kc, alpha, dst] = f.params;
  const i0 = f.local(T.i32), k = f.local(T.i32), h = f.local(T.i32), row = f.local(T.i32), out = f.local(T.i32), i = f.local(T.i32);
  f.set(out, get(dst));
  f.for(i0, i32(0), get(mc), i32(MR), () => {
    f.set(h, min_s(i32(MR), sub(get(mc), get(i0))));
    f.set(row, add(get(src), mul(get(i0), get(rs))));
    f.if(eq(get(h), i32(MR)), () => {
      // Full panel: MR strided loads per k, unrolled.
      f.for(k, i32(0), get(kc), i32(1), () => {
        for (let r = 0; r < MR; r++) {
          const addr: Expr = r === 0 ? get(row) : add(get(row), mul(get(rs), i32(r)));
          f.store('f32', get(out), fmul(load('f32', addr), get(alpha)), r * 4);
        }
        f.set(row, add(get(row), get(cs)));
        f.set(out, add(get(out), i32(MR * 4)));
      });
    }, () => {
      // Ragged last panel: zero rows below h.
      f.for(k, i32(0), get(kc), i32(1), () => {
        for (let r = 0; r < MR; r++) f.store('f32', get(out), f32(0), r * 4);
        f.for(i, i32(0), get(h), i32(1), () => {
          f.store('f32', add(get(out), mul(get(i), i32(4))), fmul(load('f32', add(get(row), mul(get(i), get(rs)))), get(alpha)));
        });
        f.set(row, add(get(row), get(cs)));
        f.set(out, add(get(out), i32(MR * 4)));
      });
    });
  });
  return f;
}

/** packB(src, rs, cs, kc, nc, dst): NR-wide panels, panel q at dst + q·kc·NR·4, k-major inside. */
function packB(g: GemmShape): Fn {
  const { NR } = g;
  const NV = NR / 4;
  const f = new Fn('packB', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [src, rs, cs, kc, nc, dst] = f.params;
  const j0 = f.local(T.i32), k = f.local(T.i32), w = f.local(T.i32), row = f.local(T.i32), out = f.local(T.i32), j = f.local(T.i32);
  f.set(out, get(dst));
  f.for(j0, i32(0), get(nc), i32(NR), () => {
    f.set(w, min_s(i32(NR), sub(get(nc), get(j0))));
    f.set(row, add(get(src), mul(get(j0), get(cs))));
    f.if(eq(get(w), i32(NR)), () => {
      f.if(eq(get(cs), i32(4)), () => {
        // Contiguous row of op(B): vector copy.
        f.for(k, i32(0), get(kc), i32(1), () => {
          for (let v = 0; v < NV; v++) f.store('v128', get(out), load('v128', get(row), v * 16), v * 16);
          f.set(row, add(get(row), get(rs)));
          f.set(out, add(get(out), i32(NR * 4)));
        });
      }, () => {
        f.for(k, i32(0), get(kc), i32(1), () => {
          for (let c = 0; c < NR; c++) {
            const addr: Expr = c === 0 ? get(row) : add(get(row), mul(get(cs), i32(c)));
            f.store('f32', get(out), load('f32', addr), c * 4);
          }
          f.set(row, add(get(row), get(rs)));
          f.set(out, add(get(out), i32(NR * 4)));
        });
      });
    }, () => {
      f.for(k, i32(0), get(kc), i32(1), () => {
        for (let v = 0; v < NV; v++) f.store('v128', get(out), vzero, v * 16);
        f.for(j, i32(0), get(w), i32(1), () => {
          f.store('f32', add(get(out), mul(get(j), i32(4))), load('f32', add(get(row), mul(get(j), get(cs)))));
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
 * (Reading B rows in place instead of packing them was measured: no gain at B0 shapes, a loss at large K.)
 */
function kernel(g: GemmShape): Fn {
  const { MR, NR, fma } = g;
  const NV = NR / 4;
  const f = new Fn('kernel', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.f32, T.i32]);
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
        f.set(acc[r][v], fma ? vmadd(get(a), get(b[v]), get(acc[r][v])) : vadd(get(acc[r][v]), vmul(get(a), get(b[v]))));
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
          f.store('v128', get(row), fma ? vmadd(get(vb), load('v128', get(row), v * 16), get(acc[r][v])) : vadd(get(acc[r][v]), vmul(get(vb), load('v128', get(row), v * 16))), v * 16);
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
  const pA = L(), pB = L(), tile = L();
  const jc = L(), nc = L(), pc = L(), kc = L(), ic = L(), mc = L(), jr = L(), ir = L();
  const fields: [number, number][] = [[M, D.M], [N, D.N], [K, D.K], [A, D.A], [rsA, D.rsA], [csA, D.csA], [B, D.B], [rsB, D.rsB], [csB, D.csB], [C, D.C], [ldc, D.ldc]];
  for (const [l, off] of fields) f.set(l, load('i32', get(d), off));
  f.set(pA, get(scratch));
  f.set(pB, add(get(scratch), i32(sb.packA)));
  f.set(tile, add(get(scratch), i32(sb.packA + sb.packB)));
  f.set(alpha, load('f32', get(d), D.alpha));
  f.set(beta, load('f32', get(d), D.beta));
  f.for(jc, i32(0), get(N), i32(NC), () => {
    f.set(nc, min_s(i32(NC), sub(get(N), get(jc))));
    f.for(pc, i32(0), get(K), i32(KC), () => {
      f.set(kc, min_s(i32(KC), sub(get(K), get(pc))));
      f.call(FN_PACK_B, add(add(get(B), mul(get(pc), get(rsB))), mul(get(jc), get(csB))), get(rsB), get(csB), get(kc), get(nc), get(pB));
      f.set(betaEff, (h) => {
        // select(beta, 1, pc == 0)
        get(beta)(h);
        f32(1)(h);
        eq(get(pc), i32(0))(h);
        h.op(0x1b);
      });
      f.for(ic, i32(0), get(M), i32(MC), () => {
        f.set(mc, min_s(i32(MC), sub(get(M), get(ic))));
        f.call(FN_PACK_A, add(add(get(A), mul(get(ic), get(rsA))), mul(get(pc), get(csA))), get(rsA), get(csA), get(mc), get(kc), get(alpha), get(pA));
        f.for(jr, i32(0), get(nc), i32(NR), () => {
          f.for(ir, i32(0), get(mc), i32(MR), () => {
            f.call(
              FN_KERNEL,
              add(get(pA), mul(mul(get(ir), get(kc)), i32(4))),
              add(get(pB), mul(mul(get(jr), get(kc)), i32(4))),
              get(kc),
              add(add(get(C), mul(add(get(ic), get(ir)), get(ldc))), mul(add(get(jc), get(jr)), i32(4))),
              get(ldc),
              min_s(i32(MR), sub(get(mc), get(ir))),
              min_s(i32(NR), sub(get(nc), get(jr))),
              get(betaEff),
              get(tile),
            );
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
  return assemble({ functions: [packA(g), packB(g), kernel(g), driver(g)], memory });
}

/** Whether this engine validates relaxed-SIMD f32x4.relaxed_madd (Node ≥ 22 ships it; Node 20 needs a flag). */
export function hasRelaxedSimd(): boolean {
  const f = new Fn('t', [], [T.v128]);
  f.emit(vmadd(vzero, vzero, vzero));
  try {
    return wasmApi !== undefined && wasmApi.validate(assemble({ functions: [f], memory: { initial: 1, maximum: 1, shared: false } }));
  } catch {
    return false;
  }
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
