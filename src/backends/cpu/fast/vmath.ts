/**
 * Vector math emitters shared by the generated wasm kernels (activations, the fused elementwise loops, the sgemm's
 * and the depthwise conv's epilogues): constants held in locals, e^(−x), the logistic function, SiLU and its gradient.
 */
import { Fn, T, type Expr, get, i32, vadd, vconst, vconstI, vdiv, vishl, vmul, vpmax, vpmin, vsub } from './wasm.ts';

/**
 * Vector constants live in locals set before the loop (V8 does not hoist `f32x4.splat` out of wasm loops).
 * `k(x)` returns a read of the local holding splat(x); `prologue` holds the code that fills them.
 */
export class Consts {
  private readonly locals = new Map<number, number>();
  private readonly ints = new Map<number, number>();
  constructor(private readonly f: Fn) {}
  k = (x: number): Expr => {
    let l = this.locals.get(x);
    if (l === undefined) this.locals.set(x, (l = this.f.local(T.v128)));
    return get(l);
  };
  ki = (x: number): Expr => {
    let l = this.ints.get(x);
    if (l === undefined) this.ints.set(x, (l = this.f.local(T.v128)));
    return get(l);
  };
  prologue(): number[] {
    const g = new Fn('', []);
    for (const [x, l] of this.locals) g.set(l, vconst(x));
    for (const [x, l] of this.ints) g.set(l, vconstI(x));
    return g.code;
  }
}

/**
 * e^(−x) on 4 lanes for the logistic function (tmp: three v128 locals). x is first clamped to [−88.5, 87.3]; then
 * −x = n·ln2 + r with n = round(−x·log2 e) and |r| ≤ ln2/2 (Cody–Waite: ln2 in two parts, n·C1 exact), e^r by a
 * degree-5 polynomial (1 + r + r²·q(r), q fitted for least maximum relative error: 1.05e−7 on the interval), times
 * 2ⁿ built in the exponent bits. Evaluated as a polynomial in r′ = −r = x + n·ln2 (odd coefficients negated), so −x
 * is never formed. The clamp keeps 2ⁿ normal down to e^−87.3 and makes n = 128 below x = −88.38, where the
 * exponent bits give +∞ (the true value overflows float32 near there too). NaN stays NaN.
 */
function vexpNeg(f: Fn, c: Consts, x: Expr, t: readonly number[]): Expr {
  const { k } = c;
  const [lx, lfx, ln] = t;
  // n = round(−x·log2 e) by the 1.5·2²³ trick: the float's low mantissa bits then hold n + 127 (the exponent bias
  // is in the magic number), so shifting them into the exponent field gives 2ⁿ in one op.
  const MAGIC = 12582912 + 127;
  f.set(lx, vpmin(vpmax(x, k(-88.5)), k(87.3)));
  f.set(lfx, vadd(vmul(get(lx), k(-Math.LOG2E)), k(MAGIC)));
  f.set(ln, vishl(get(lfx), i32(23)));
  f.set(lfx, vsub(get(lfx), k(MAGIC)));
  f.set(lx, vadd(vadd(get(lx), vmul(get(lfx), k(0.693359375))), vmul(get(lfx), k(-2.12194440e-4))));
  const r = get(lx);
  // e^r = p(−r′), Horner from the highest power: −q3, q2, −q1, q0, −1, 1.
  let p: Expr = k(-EXP_Q[3]);
  for (const cf of [EXP_Q[2], -EXP_Q[1], EXP_Q[0], -1, 1]) p = vadd(vmul(p, r), k(cf));
  return vmul(p, get(ln));
}

/** q(r) of e^r ≈ 1 + r + r²·(q0 + q1·r + q2·r² + q3·r³) on [−ln2/2, ln2/2] (Lawson's minimax, relative error). */
const EXP_Q = [0.49999231789780746, 0.16667114465652957, 0.04189011341443417, 0.008312524930040229] as const;

/**
 * σ(v) = 1 / (1 + e^(−v)) on 4 lanes (t: three v128 locals for the exp). Measured against float64 over every
 * float32 in [−90, 90] (sigmoid.test): relative error ≤ SIG_REL_ERR for v ≥ −87.3; below, σ < 1.2e−38 and the
 * result is within 1.2e−38 of it (exactly 0 below −88.38). σ(+∞) = 1, σ(−∞) = 0, NaN stays NaN.
 */
export const sig = (f: Fn, c: Consts, v: Expr, t: readonly number[]): Expr => vdiv(c.k(1), vadd(c.k(1), vexpNeg(f, c, v, t)));
/** silu(v) = v / (1 + e^(−v)) on 4 lanes (`v` a local read: it is evaluated twice), σ's error bound; silu(−∞) = NaN as −∞·0. */
export const siluV = (f: Fn, c: Consts, v: Expr, t: readonly number[]): Expr => vdiv(v, vadd(c.k(1), vexpNeg(f, c, v, t)));
/** silu'(v)·ct = ct·σ(1 + v(1 − σ)) (`v` a local read; vs: a local for σ). */
export const siluGradV = (f: Fn, c: Consts, v: Expr, ct: Expr, t: readonly number[], vs: number): Expr => {
  f.set(vs, sig(f, c, v, t));
  return vmul(ct, vmul(get(vs), vadd(c.k(1), vmul(v, vsub(c.k(1), get(vs))))));
};

