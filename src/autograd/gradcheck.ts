/**
 * Finite-difference gradient checking. For a case (inputs, attrs) and a random cotangent w, the
 * autograd VJP is compared with central differences of L(x) = Σ w·f(x) in float64:
 *   err = max_i |g_ad − g_fd| / max(1, max_i |g_fd|)   (documented tolerance: 1e-6 by default).
 */
import type { CheckCase } from './registry.ts';
import { flatten } from './pytree.ts';
import { vjp } from './transforms.ts';
import { type Tensor, dataSync, tensor } from '../tensor/tensor.ts';
import { cast, mul, sum } from '../tensor/ops.ts';
import { key, uniformArray } from '../tensor/random.ts';

export interface GradCheckResult {
  readonly maxError: number;
  /** Per differentiated input: analytic and numeric gradients. */
  readonly details: { analytic: Float64Array; numeric: Float64Array }[];
}

export const DEFAULT_TOLERANCE = 1e-6;

export function checkGradients(
  fn: (inputs: Tensor[], attrs: unknown) => Tensor,
  c: CheckCase,
  opts: { step?: number; seed?: number } = {},
): GradCheckResult {
  const h = opts.step ?? 1e-6;
  const xs = c.inputs.map((x) => tensor(Float64Array.from(x.values), x.shape));
  const constant = new Set(c.constant ?? []);
  const free = xs.map((_, i) => i).filter((i) => !constant.has(i));
  const f = (vars: Tensor[]) => {
    const all = [...xs];
    free.forEach((i, j) => (all[i] = vars[j]));
    return fn(all, c.attrs);
  };
  const [y, pullback] = vjp(f, free.map((i) => xs[i]));
  // (the cotangent w is float64; the VJP casts it to the output's dtype)
  const w = tensor(Float64Array.from(uniformArray(key(opts.seed ?? 7), y.size), (u) => 2 * u - 1), y.shape);
  const analytic = (pullback(w) as Tensor[]).map((g) => Float64Array.from(dataSync(g)));
  const loss = (vars: Tensor[]) => dataSync(sum(mul(cast(f(vars), 'float64'), w)))[0];
  let maxError = 0;
  const details = free.map((i, j) => {
    const base = Float64Array.from(c.inputs[i].values);
    const numeric = new Float64Array(base.length);
    for (let e = 0; e < base.length; e++) {
      const at = (delta: number) => {
        const v = base.slice();
        v[e] += delta;
        const vars = free.map((k) => xs[k]);
        vars[j] = tensor(v, c.inputs[i].shape);
        return loss(vars);
      };
      numeric[e] = (at(h) - at(-h)) / (2 * h);
    }
    let scale = 1;
    for (const g of numeric) scale = Math.max(scale, Math.abs(g));
    for (let e = 0; e < numeric.length; e++) {
      const err = Math.abs(analytic[j][e] - numeric[e]) / scale;
      maxError = Math.max(maxError, Number.isNaN(err) ? Infinity : err);
    }
    return { analytic: analytic[j], numeric };
  });
  return { maxError, details };
}
