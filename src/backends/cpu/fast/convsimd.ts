/**
 * Direct window convolutions in WebAssembly SIMD, generated at run time per geometry (taps, strides, dilations),
 * for the convs where no two output channels share an im2col matrix: depthwise (dwconv.ts) and the stochastic
 * conv's input gradient (stochconv.ts; its forward and filter gradient, stochsimd.ts, build on `rowTaps` and
 * `masks`). Three kernels, all on float32 planes in wasm memory, strides in bytes:
 *
 *   fwd   y[i, j] (+)= Σ_{c, ky, kx} w[c, ky, kx] · x[c, i·sh + ky·dh, j·sw + kx·dw]
 *         4·V outputs of a row at once; a stride-2 row is read as two vectors and split into even / odd lanes
 *         with one shuffle per tap column, so every tap is a full-width multiply-add.
 *   gin   the input gradient as a gather over dx (each dx vector is read and written once per tap row, never
 *         scattered): dx[c, y, x] += Σ_{ky, kx} w[c, ky, kx] · g[(y − ky·dh)/sh, (x − kx·dw)/sw] over the taps where
 *         both divisions are exact; g is a zero-padded copy, so no bounds checks. With sw = 2 the even and the odd
 *         columns of 8 dx values are two 4-lane sums over g, interleaved by two shuffles.
 *   gwRow the filter gradient of one tap row: dw[kx] += Σ_{i, j} g[i, j] · x[i·sh, j·sw + kx·dw] (the caller points x
 *         at the row's first tap), per-lane partial sums reduced once at the end.
 *
 * The ragged last block of a row is masked: outputs beyond the row are neither written nor (in gwRow) summed, so
 * garbage read past the end of a row never reaches a result. Reads may run up to SLACK bytes past the last plane.
 * Only sw ∈ {1, 2} are generated (for other strides conv.ts takes im2col + sgemm, or the reference). Modules import
 * the shared heap (heap.ts) and are loaded into the pool (pool.ts), so jobs of their calls run on every thread.
 */
import {
  Fn, T, type Expr, add, assemble, eq, extractLane, fadd, get, i32, isplat, load, loadSplat, lt_s, mul, shrU, shuffle, sub, vadd, vand, vconstI4, vigt, vmul, vzero,
} from './wasm.ts';
import { SLACK, type WasmHeap, wasmHeap } from './heap.ts';
import { type PoolKernel, loadKernels, poolThreads } from './pool.ts';

export { SLACK };

const EVEN = [0, 2, 4, 6];
const ODD = [1, 3, 5, 7];

/** Geometry a module is generated for. `cn`: input planes per fwd call. */
export interface Geom {
  readonly cn: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: 1 | 2;
  readonly dh: number;
  readonly dw: number;
}

/** Vectors per block: fwd / gwRow handle 4·V outputs of a row, gin 4·V (sw = 1) or 8·V (sw = 2) dx values. */
const V = 2;
/** fwd's vectors per block (1–4 measured within noise on the shared box; 2 keeps 8 outputs per row pass). */
const VF = 2;

/**
 * Emits the tap vectors of one input row: X(v, kx) = x[p + (4v + j)·sw + kx·dw] for lanes j = 0..3, with loads shared
 * between taps (stride 2: two loads and an even/odd shuffle per tap column).
 */
export function rowTaps(f: Fn, p: number, g: Geom, nv: number, tmp: Map<number, number>, use: (v: number, kx: number, X: Expr) => void): void {
  const loaded = new Map<number, number>();
  const ld = (off: number): Expr => {
    let l = loaded.get(off);
    if (l === undefined) {
      let t = tmp.get(loaded.size);
      if (t === undefined) tmp.set(loaded.size, (t = f.local(T.v128)));
      f.set(t, load('v128', get(p), off * 4));
      loaded.set(off, (l = t));
    }
    return get(l);
  };
  for (let v = 0; v < nv; v++) {
    for (let kx = 0; kx < g.kw; kx++) {
      const t = kx * g.dw;
      if (g.sw === 1) use(v, kx, load('v128', get(p), (4 * v + t) * 4));
      else {
        const base = 8 * v + (t & ~1);
        const a = ld(base), b = ld(base + 4);
        use(v, kx, shuffle(a, b, t & 1 ? ODD : EVEN));
      }
    }
  }
}

/** Sets mask[v] to the lanes of block vector v below `rem` (all ones = keep). */
export function masks(f: Fn, rem: Expr, per: number, n: number): number[] {
  const r = f.local(T.v128);
  f.set(r, isplat(rem));
  const m: number[] = [];
  for (let v = 0; v < n; v++) {
    const l = f.local(T.v128);
    f.set(l, vigt(get(r), vconstI4([0, 1, 2, 3].map((k) => v * per + k))));
    m.push(l);
  }
  return m;
}

/** fwd{acc}(x, xrs, xps, w, y, yrs, OH, OW): x at the window's top-left tap of plane 0; xrs = bytes per input row. */
function fwd(g: Geom, acc: boolean): Fn {
  const f = new Fn(acc ? 'fwdAcc' : 'fwd', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [x, xrs, xps, w, y, yrs, OH, OW] = f.params;
  const taps = g.cn * g.kh * g.kw;
  const wv = Array.from({ length: taps }, () => f.local(T.v128));
  const ro = Array.from({ length: g.cn * g.kh }, () => f.local(T.i32));
  const i = f.local(T.i32), j = f.local(T.i32), xr = f.local(T.i32), yr = f.local(T.i32), xb = f.local(T.i32), yb = f.local(T.i32), p = f.local(T.i32);
  const accs = Array.from({ length: VF }, () => f.local(T.v128));
  const tmp = new Map<number, number>();
  for (let t = 0; t < taps; t++) f.set(wv[t], loadSplat(get(w), t * 4));
  for (let c = 0; c < g.cn; c++) for (let ky = 0; ky < g.kh; ky++) f.set(ro[c * g.kh + ky], add(mul(get(xps), i32(c)), mul(get(xrs), i32(ky * g.dh))));
  const BW = 4 * VF;
  const block = (m: number[] | null) => {
    for (let v = 0; v < VF; v++) f.set(accs[v], vzero);
    for (let c = 0; c < g.cn; c++) {
      for (let ky = 0; ky < g.kh; ky++) {
        f.set(p, add(get(xb), get(ro[c * g.kh + ky])));
        rowTaps(f, p, g, VF, tmp, (v, kx, X) => f.set(accs[v], vadd(get(accs[v]), vmul(get(wv[(c * g.kh + ky) * g.kw + kx]), X))));
      }
    }
    for (let v = 0; v < VF; v++) {
      let val: Expr = acc ? vadd(load('v128', get(yb), v * 16), get(accs[v])) : get(accs[v]);
      if (m) {
        const keep = m[v];
        const old = load('v128', get(yb), v * 16);
        const nv = val;
        val = (h) => {
          nv(h);
          old(h);
          get(keep)(h);
          h.simd(0x52); // v128.bitselect(new, old, mask)
        };
      }
      f.store('v128', get(yb), val, v * 16);
    }
  };
  f.for(i, i32(0), get(OH), i32(1), () => {
    f.set(xr, add(get(x), mul(get(i), mul(get(xrs), i32(g.sh)))));
    f.set(yr, add(get(y), mul(get(i), get(yrs))));
    f.set(xb, get(xr));
    f.set(yb, get(yr));
    f.for(j, i32(0), sub(get(OW), i32(BW - 1)), i32(BW), () => {
      block(null);
      f.set(xb, add(get(xb), i32(BW * g.sw * 4)));
      f.set(yb, add(get(yb), i32(BW * 4)));
    });
    f.if(lt_s(get(j), get(OW)), () => {
      // j ≥ OW − BW + 1 here: the ragged last block (the loop variable keeps its final value).
      const m = masks(f, sub(get(OW), get(j)), 4, VF);
      block(m);
    });
  });
  return f;
}

/**
 * gin(gp, grs, w, dx, dxrs, dxps, y0, y1, ncols, groups): dx rows y0..y1 (window coordinates; dx points at row y0's
 * first column), `ncols` columns from a first column whose parity the variant fixes (sw = 2). gp points at g(0, c0)
 * where c0 is the first g column the block reads (the caller's column base), inside a zero-padded g plane. `groups`
 * runs of the cn planes one after the other from the same g: run p takes the weights from w + p·cn·kh·kw floats and
 * adds into dx + p·cn·dxps bytes (a stochastic window's C planes in one call). The ragged last block stores only its
 * lanes inside the row (whole vectors where they fit): a call writes no dx value outside its rows' `ncols` columns,
 * so it may add into an output that other threads write next to (stochconv.ts adds into x̄ in place).
 */
function gin(g: Geom, phase: 0 | 1): Fn {
  const f = new Fn(`gin${phase}`, [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [gp, grs, w, dx, dxrs, dxps, y0, y1, ncols, groups] = f.params;
  const taps = g.cn * g.kh * g.kw;
  const wv = Array.from({ length: taps }, () => f.local(T.v128));
  const y = f.local(T.i32), j = f.local(T.i32), gr = f.local(T.i32), dr = f.local(T.i32), gb = f.local(T.i32), db = f.local(T.i32), pr = f.local(T.i32);
  const grp = f.local(T.i32);
  const BW = (g.sw === 1 ? 4 : 8) * V; // dx values per block (sw = 2: V pairs of vectors)
  // Column shifts: dx column x (block lane) reads g column base + s, s ≥ 0 after the caller's offset.
  // sw = 1: lane l of vector v reads g[x0 + 4v + l − kx·dw]; base = x0 − (kw−1)·dw, so s = 4v + (kw−1)·dw − kx·dw.
  // sw = 2: dx lanes 2m (+ 8v) have parity `phase`, read g[u + 4v + m + (phase − kx·dw)/2] for kx·dw ≡ phase;
  //         lanes 2m+1 read g[u + 4v + m + (phase + 1 − kx·dw)/2] for kx·dw ≡ 1 − phase; base = u + smin.
  const smin = g.sw === 1 ? -(g.kw - 1) * g.dw : Math.floor((phase - (g.kw - 1) * g.dw) / 2);
  const sums = Array.from({ length: g.cn * 2 }, () => f.local(T.v128));
  const sum = f.local(T.v128), rem = f.local(T.i32); // the ragged last block: one vector's new dx values, the columns left
  // Row taps per row parity: ky with (y − ky·dh) divisible by sh; the g row is (y − py)/sh + (py − ky·dh)/sh.
  const rowVariants = g.sh === 1 ? [0] : Array.from({ length: g.sh }, (_, k) => k);
  const rowOff = new Map<string, number>();
  for (const py of rowVariants) {
    for (let ky = 0; ky < g.kh; ky++) {
      if (((py - ky * g.dh) % g.sh + g.sh) % g.sh !== 0) continue;
      const l = f.local(T.i32);
      f.set(l, mul(get(grs), i32((py - ky * g.dh) / g.sh)));
      rowOff.set(`${py},${ky}`, l);
    }
  }
  const rowBody = (py: number, ragged: boolean) => {
    const kys = Array.from({ length: g.kh }, (_, k) => k).filter((ky) => rowOff.has(`${py},${ky}`));
    for (let v = 0; v < V; v++) {
      // A sum's first product sets it (no zeroing and adding to zero); a sum no tap reaches is zeroed after.
      const started = new Set<number>();
      for (const ky of kys) {
        f.set(pr, add(get(gb), get(rowOff.get(`${py},${ky}`)!)));
        for (let kx = 0; kx < g.kw; kx++) {
          const t = kx * g.dw;
          let s: number, half: 0 | 1;
          if (g.sw === 1) [s, half] = [4 * v - t - smin, 0];
          else if ((t & 1) === phase) [s, half] = [4 * v + (phase - t) / 2 - smin, 0];
          else [s, half] = [4 * v + (phase + 1 - t) / 2 - smin, 1];
          const G = load('v128', get(pr), s * 4);
          for (let c = 0; c < g.cn; c++) {
            const acc = sums[2 * c + half];
            const prod = vmul(get(wv[(c * g.kh + ky) * g.kw + kx]), G);
            f.set(acc, started.has(acc) ? vadd(get(acc), prod) : prod);
            started.add(acc);
          }
        }
      }
      for (const s of sums) if (!started.has(s)) f.set(s, vzero);
      for (let c = 0; c < g.cn; c++) {
        const outs: Expr[] = g.sw === 1 ? [get(sums[2 * c])] : [shuffle(get(sums[2 * c]), get(sums[2 * c + 1]), [0, 4, 1, 5]), shuffle(get(sums[2 * c]), get(sums[2 * c + 1]), [2, 6, 3, 7])];
        outs.forEach((o, k) => {
          const vi = g.sw === 1 ? v : 2 * v + k;
          const addr = c === 0 ? get(db) : add(get(db), mul(get(dxps), i32(c)));
          if (!ragged) {
            f.store('v128', addr, vadd(load('v128', addr, vi * 16), o), vi * 16);
            return;
          }
          // A vector inside the row is stored whole, the one the row ends in lane by lane, those past it not at all.
          f.if(lt_s(i32(4 * vi), get(rem)), () => {
            f.set(sum, vadd(load('v128', addr, vi * 16), o));
            f.if(lt_s(i32(4 * vi + 3), get(rem)), () => f.store('v128', addr, get(sum), vi * 16), () => {
              for (let l = 0; l < 3; l++) f.if(lt_s(i32(4 * vi + l), get(rem)), () => f.store('f32', addr, extractLane(get(sum), l), (4 * vi + l) * 4));
            });
          });
        });
      }
    }
  };
  const row = (py: number) => {
    f.set(gb, get(gr));
    f.set(db, get(dr));
    f.for(j, i32(0), sub(get(ncols), i32(BW - 1)), i32(BW), () => {
      rowBody(py, false);
      f.set(gb, add(get(gb), i32(4 * V * 4)));
      f.set(db, add(get(db), i32(BW * 4)));
    });
    f.if(lt_s(get(j), get(ncols)), () => {
      f.set(rem, sub(get(ncols), get(j)));
      rowBody(py, true);
    });
  };
  f.for(grp, i32(0), get(groups), i32(1), () => {
    for (let t = 0; t < taps; t++) f.set(wv[t], loadSplat(get(w), t * 4));
    f.set(dr, get(dx));
    f.for(y, get(y0), get(y1), i32(1), () => {
      if (g.sh === 1) {
        f.set(gr, add(get(gp), mul(get(y), get(grs))));
        row(0);
      } else {
        // (y − py)/sh with py = y mod sh, y ≥ 0
        const py = f.local(T.i32);
        f.set(py, (h) => {
          get(y)(h);
          i32(g.sh)(h);
          h.op(0x70); // i32.rem_u
        });
        f.set(gr, add(get(gp), mul((h) => {
          get(y)(h);
          i32(g.sh)(h);
          h.op(0x6e); // i32.div_u
        }, get(grs))));
        const chain = (k: number): void => {
          if (k === g.sh - 1) row(k);
          else f.if(lt_s(get(py), i32(k + 1)), () => row(k), () => chain(k + 1));
        };
        chain(0);
      }
      f.set(dr, add(get(dr), get(dxrs)));
    });
    f.set(w, add(get(w), i32(taps * 4)));
    f.set(dx, add(get(dx), mul(get(dxps), i32(g.cn))));
  });
  return f;
}

/** gwRow(x, xis, g, grs, OH, OW, out): out[kx] += Σ g[i, j]·x[i·xis + (j·sw + kx·dw)·4]; xis = bytes per output row. */
function gwRow(g: Geom): Fn {
  const f = new Fn('gwRow', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [x, xis, gp, grs, OH, OW, out] = f.params;
  const i = f.local(T.i32), j = f.local(T.i32), p = f.local(T.i32), gb = f.local(T.i32);
  const acc = Array.from({ length: g.kw * V }, () => f.local(T.v128));
  const gv = Array.from({ length: V }, () => f.local(T.v128));
  const tmp = new Map<number, number>();
  for (const a of acc) f.set(a, vzero);
  const BW = 4 * V;
  const block = (m: number[] | null) => {
    for (let v = 0; v < V; v++) f.set(gv[v], load('v128', get(gb), v * 16));
    rowTaps(f, p, { ...g, cn: 1 }, V, tmp, (v, kx, X) => {
      const a = acc[kx * V + v];
      const prod = vmul(get(gv[v]), X);
      f.set(a, vadd(get(a), m ? vand(prod, get(m[v])) : prod));
    });
  };
  f.for(i, i32(0), get(OH), i32(1), () => {
    f.set(p, add(get(x), mul(get(i), get(xis))));
    f.set(gb, add(get(gp), mul(get(i), get(grs))));
    f.for(j, i32(0), sub(get(OW), i32(BW - 1)), i32(BW), () => {
      block(null);
      f.set(p, add(get(p), i32(BW * g.sw * 4)));
      f.set(gb, add(get(gb), i32(BW * 4)));
    });
    f.if(lt_s(get(j), get(OW)), () => block(masks(f, sub(get(OW), get(j)), 4, V)));
  });
  for (let kx = 0; kx < g.kw; kx++) {
    let s: Expr = get(acc[kx * V]);
    for (let v = 1; v < V; v++) s = vadd(s, get(acc[kx * V + v]));
    const sv = f.local(T.v128);
    f.set(sv, s);
    f.store('f32', get(out), fadd(load('f32', get(out), kx * 4), fadd(fadd(extractLane(get(sv), 0), extractLane(get(sv), 1)), fadd(extractLane(get(sv), 2), extractLane(get(sv), 3)))), kx * 4);
  }
  return f;
}

/**
 * copy3d(src, srcPlane, srcRow, dst, dstPlane, dstRow, planes, rows, cols): `planes` × `rows` rows of `cols` floats
 * (strides in bytes), 4 floats at a time; a single 2-D block is `planes` = 1.
 */
function copy3d(): Fn {
  const f = new Fn('copy3d', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [src, sps, ss, dst, dps, ds, planes, rows, cols] = f.params;
  const q = f.local(T.i32), r = f.local(T.i32), j = f.local(T.i32), a = f.local(T.i32), b = f.local(T.i32), end = f.local(T.i32);
  f.set(end, mul(get(cols), i32(4)));
  f.for(q, i32(0), get(planes), i32(1), () => {
    f.for(r, i32(0), get(rows), i32(1), () => {
      f.set(a, add(add(get(src), mul(get(q), get(sps))), mul(get(r), get(ss))));
      f.set(b, add(add(get(dst), mul(get(q), get(dps))), mul(get(r), get(ds))));
      f.for(j, i32(0), sub(get(end), i32(15)), i32(16), () => f.store('v128', add(get(b), get(j)), load('v128', add(get(a), get(j)))));
      f.for(j, get(j), get(end), i32(4), () => f.store('f32', add(get(b), get(j)), load('f32', add(get(a), get(j)))));
    });
  });
  return f;
}

/**
 * gather(src, srcRow, srcCol, dst, dstRow, rows, cols): dst[r, j] = src[r·srcRow + j·srcCol] (strides in bytes, dst
 * columns contiguous): 4 at a time for srcCol = 4, or 8 (the even lanes of two vectors: a stride-2 conv's im2col
 * rows), one at a time otherwise.
 */
function gather(): Fn {
  const f = new Fn('gather', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [src, sr, sc, dst, dr, rows, cols] = f.params;
  const r = f.local(T.i32), j = f.local(T.i32), a = f.local(T.i32), b = f.local(T.i32), end = f.local(T.i32);
  f.set(end, mul(get(cols), i32(4)));
  f.for(r, i32(0), get(rows), i32(1), () => {
    f.set(a, add(get(src), mul(get(r), get(sr))));
    f.set(b, add(get(dst), mul(get(r), get(dr))));
    f.set(j, i32(0));
    f.if(eq(get(sc), i32(4)), () => f.for(j, i32(0), sub(get(end), i32(15)), i32(16), () => f.store('v128', add(get(b), get(j)), load('v128', add(get(a), get(j))))));
    // Two vectors hold 8 source floats, of which the even lanes are the next 4 outputs; the last block is left to
    // the scalar loop so that no read goes past the row's last source float.
    f.if(eq(get(sc), i32(8)), () =>
      f.for(j, i32(0), sub(get(end), i32(16)), i32(16), () =>
        f.store('v128', add(get(b), get(j)), shuffle(load('v128', add(get(a), add(get(j), get(j)))), load('v128', add(get(a), add(get(j), get(j))), 16), EVEN)),
      ),
    );
    f.for(j, get(j), get(end), i32(4), () => f.store('f32', add(get(b), get(j)), load('f32', add(get(a), mul(shrU(get(j), i32(2)), get(sc))))));
  });
  return f;
}

/** fill(dst, value, bytes): memory.fill (bulk memory), for zeroing scratch planes and outputs. */
function fill(): Fn {
  const f = new Fn('fill', [T.i32, T.i32, T.i32]);
  const [dst, v, n] = f.params;
  f.memoryFill(get(dst), get(v), get(n));
  return f;
}

/** fillPlanes(dst, planeStride, planes, bytes): `fill` of `bytes` zero bytes in each of `planes` planes (strides in bytes). */
function fillPlanes(): Fn {
  const f = new Fn('fillPlanes', [T.i32, T.i32, T.i32, T.i32]);
  const [dst, ps, planes, n] = f.params;
  const q = f.local(T.i32);
  f.for(q, i32(0), get(planes), i32(1), () => f.memoryFill(add(get(dst), mul(get(q), get(ps))), i32(0), get(n)));
  return f;
}

export type Kernels = Record<'copy3d' | 'gather' | 'fwd' | 'fwdAcc' | 'gin0' | 'gin1' | 'gwRow' | 'fill' | 'fillPlanes', PoolKernel>;
const NAMES = ['fwd', 'fwdAcc', 'gin0', 'gin1', 'gwRow', 'copy3d', 'gather', 'fill', 'fillPlanes'] as const;

/** First g column a gin block reads, relative to the block's base (see gin): the caller offsets gp by it. */
export function ginColumnShift(g: Geom, phase: 0 | 1): number {
  return g.sw === 1 ? -(g.kw - 1) * g.dw : Math.floor((phase - (g.kw - 1) * g.dw) / 2);
}

/** Zero padding a g plane needs around it for gin: rows above / below, columns left / right. */
export function ginPadding(g: Geom): { top: number; bottom: number; left: number; right: number } {
  const top = Math.ceil(((g.kh - 1) * g.dh) / g.sh) + 1;
  const left = Math.ceil(((g.kw - 1) * g.dw) / g.sw) + 1;
  return { top, bottom: top + 2, left, right: left + 4 * V + 4 };
}

/** Whether the wasm SIMD conv kernels can run here (else callers take the GEMM path or the reference). */
export function convSimdAvailable(): boolean {
  return wasmHeap() !== null;
}

const modules = new Map<string, Kernels>();

/** The kernels for a geometry, generated, compiled and loaded into the pool once (they run on the shared heap). */
export function kernels(g: Geom): Kernels {
  const h = wasmHeap();
  if (!h) throw new Error('convsimd: WebAssembly SIMD is not available');
  const key = `${g.cn},${g.kh},${g.kw},${g.sh},${g.sw},${g.dh},${g.dw}`;
  let k = modules.get(key);
  if (!k) {
    const bytes = assemble({ functions: [fwd(g, false), fwd(g, true), gin(g, 0), gin(g, 1), gwRow(g), copy3d(), gather(), fill(), fillPlanes()], memory: h.importSpec() });
    k = loadKernels(bytes, NAMES) as Kernels;
    modules.set(key, k);
  }
  return k;
}

/** The shared heap, or an error naming the kernel family (`what`) where WebAssembly SIMD is missing. */
export function simdHeap(what: string): WasmHeap {
  const h = wasmHeap();
  if (!h) throw new Error(`${what}: WebAssembly SIMD is not available`);
  return h;
}

/** Heap bytes to reserve for `bytes` of scratch: with SLACK for the reads past its end, rounded up to 64. */
export const paddedBytes = (bytes: number): number => Math.ceil((bytes + SLACK) / 64) * 64;

/**
 * A job's tasks as contiguous ranges of [0, n): `rangeCount(n, parts)` of them (fewer when n is small, one when n is
 * 0), range i being [rangeAt(i, n, k), rangeAt(i + 1, n, k)). No arrays: compiled steps build hundreds of jobs per
 * call. Kernels loop over the ranges in their own body, not through a callback: a callback written in place is a new
 * closure on every call, and V8 keeps a closure's optimized code only while a closure of it survives a full
 * collection, so a job-building loop in one would run unoptimized after every collection and be compiled again
 * (10–27 ms of compiler time each, on the two cores the kernels use; test/backends/cpu/fast/recompile.test.ts).
 */
export const rangeCount = (n: number, parts: number): number => Math.max(1, Math.min(n, parts));
export const rangeAt = (i: number, n: number, k: number): number => Math.round((i * n) / k);

/** Tasks for a job over n units: small enough ranges that a thread the scheduler delays leaves little for the others. */
const TASKS_PER_THREAD = 4;
/** How many ranges a job over n units is split into. */
export const taskCountFor = (n: number): number => rangeCount(n, TASKS_PER_THREAD * poolThreads());
