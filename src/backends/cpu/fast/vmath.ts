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
 * e^(−x) = 2^t, t = −x·log2 e, on 4 lanes for the logistic function (tmp: three v128 locals). x is first clamped to
 * [−88.5, 87.9]; t = n + f with n = round(t), |f| ≤ 1/2; 2^f by a degree-5 polynomial (coefficients fitted for least
 * maximum relative error: 1.1e−7 on the interval), times 2ⁿ built in the exponent bits. The rounding of t = −x·log2 e
 * (≤ |t|·2⁻²⁴) is the dominant error away from 0: it is the error of evaluating exactly at an x within half an ulp of
 * the input (the bound at `sig`). The clamp keeps n in [−127, 128]: the exponent bits give 2ⁿ = 0 above x = 87.68
 * (the true value is a denormal < 1e−38) and +∞ below x = −88.38 (it overflows float32 near there too). NaN stays NaN.
 */
function vexpNeg(f: Fn, c: Consts, x: Expr, t: readonly number[]): Expr {
  const { k } = c;
  const [lt, lfx, ln] = t;
  // n = round(t) by the 1.5·2²³ trick: the float's low mantissa bits then hold n + 127 (the exponent bias is in the
  // magic number), so shifting them into the exponent field gives 2ⁿ in one op; fx − MAGIC = n and t − n are exact.
  const MAGIC = 12582912 + 127;
  f.set(lt, vmul(vpmin(vpmax(x, k(-88.5)), k(87.9)), k(-Math.LOG2E)));
  f.set(lfx, vadd(get(lt), k(MAGIC)));
  f.set(ln, vishl(get(lfx), i32(23)));
  f.set(lt, vsub(get(lt), vsub(get(lfx), k(MAGIC))));
  let p: Expr = k(EXP2_C[4]);
  for (const cf of [EXP2_C[3], EXP2_C[2], EXP2_C[1], EXP2_C[0], 1]) p = vadd(vmul(p, get(lt)), k(cf));
  return vmul(p, get(ln));
}

/** 2^f ≈ 1 + c0·f + c1·f² + … + c4·f⁵ on [−1/2, 1/2] (Lawson's minimax for relative error). */
const EXP2_C = [0.6931469775989276, 0.2402224208498781, 0.05550733743425995, 0.009671512665031065, 0.0013264727221019151] as const;

/**
 * σ(v) = 1 / (1 + e^(−v)) on 4 lanes (t: three v128 locals for the exp), 20 vector ops. Measured against float64
 * over every float32 in [−90, 90] (test/backends/cpu/fast/activations.test.ts): relative error ≤ 1.5e−7·(1 + |v|)
 * for v ≥ −87.3 (≤ 4e−6 at the far end, what a one-ulp change of v does there); below, σ < 1.2e−38 and the result is
 * within 5e−39 of it (exactly 0 below −88.38). σ(+∞) = 1, σ(−∞) = 0, NaN stays NaN.
 */
export const sig = (f: Fn, c: Consts, v: Expr, t: readonly number[]): Expr => vdiv(c.k(1), vadd(c.k(1), vexpNeg(f, c, v, t)));
/**
 * silu(v) = v / (1 + e^(−v)) on 4 lanes (`v` a local read: it is evaluated twice): relative error ≤ 1.7e−7·(1 + |v|)
 * where silu(v) is a normal float (v ≥ −87.3), absolute ≤ 4e−37 elsewhere; silu(−∞) = NaN, as −∞·σ(−∞) = −∞·0.
 */
export const siluV = (f: Fn, c: Consts, v: Expr, t: readonly number[]): Expr => vdiv(v, vadd(c.k(1), vexpNeg(f, c, v, t)));
/**
 * silu'(v)·ct = ct·σ(1 + v(1 − σ)) (`v` a local read; vs: a local for σ), with 1 − σ = e^(−v)·σ (no cancellation
 * where σ nears 1): absolute error ≤ 2.6e−7·|ct| over every float32 v in [−90, 90] (activations.test).
 */
export const siluGradV = (f: Fn, c: Consts, v: Expr, ct: Expr, t: readonly number[], vs: number): Expr => {
  f.set(t[0], vexpNeg(f, c, v, t));
  f.set(vs, vdiv(c.k(1), vadd(c.k(1), get(t[0]))));
  // min(1, e·σ): where e = +∞ (v < −88.38), σ = 0 and e·σ is NaN; 1 − σ is 1 there.
  return vmul(ct, vmul(get(vs), vadd(c.k(1), vmul(v, vpmin(c.k(1), vmul(get(t[0]), get(vs)))))));
};

