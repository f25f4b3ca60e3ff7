/**
 * Function transforms in JAX's style: `vjp` is the one primitive transform; `valueAndGrad` and
 * `grad` are built from it. Inputs and outputs are trees of tensors.
 */
import { fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import { add, cast, onesLike, sumTo, zerosLike } from '../tensor/ops.ts';
import { flatten, unflatten } from './pytree.ts';
import { backward, closeTrace, leafOf, openTrace, release } from './trace.ts';

const coreOps = { sumTo, add, cast };

/**
 * Runs `f` at `x` and returns its value and a pullback that maps a cotangent of the value (same
 * tree as the value) to the cotangent of `x` (same tree as `x`).
 * @example const [y, pullback] = vjp((x) => mul(x, x), tensor([1, 2])); pullback(ones([2]))
 */
export function vjp<X, Y>(f: (x: X) => Y, x: X): [Y, (ct: Y) => X] {
  const id = openTrace();
  const [xs, xdef] = flatten(x);
  xs.forEach((l, i) => {
    if (l.dtype === 'uint8') {
      closeTrace(id);
      throw new Error(`vjp: input ${i} of the differentiated tree (shape [${l.shape.join(', ')}]) is uint8 (an image as decoded), which has no gradient; differentiate with respect to float tensors`);
    }
  });
  const leaves = xs.map((l) => leafOf(l, id));
  let y: Y;
  try {
    y = f(unflatten<X>(xdef, leaves));
  } finally {
    closeTrace(id);
  }
  const [ys, ydef] = flatten(y);
  const pullback = (ct: Y): X => {
    const [cts] = flatten(ct);
    if (cts.length !== ys.length) throw new Error(`vjp: cotangent has ${cts.length} tensors, the output ${ys.length}`);
    const gs = backward(id, ys, cts, leaves, coreOps);
    return unflatten<X>(xdef, gs.map((g, i) => release(g ?? zerosLike(xs[i]))));
  };
  return [unflatten<Y>(ydef, ys.map(release)), pullback];
}

export interface GradOptions {
  /** `f` returns `[loss, aux]`; aux (e.g. new batch-norm state) is returned beside the value. */
  readonly hasAux?: boolean;
}

function scalarOut(y: unknown, who: string): Tensor {
  if (!(y instanceof Tensor)) throw new Error(`${who}: f must return a scalar tensor`);
  if (y.size !== 1) throw new Error(`${who}: f must return a scalar tensor, got shape ${fmt(y.shape)}`);
  return y;
}

/** `valueAndGrad(f)(x)` → `[f(x), ∇f(x)]`; with `{hasAux: true}`, `f` returns `[loss, aux]` and the value is `[loss, aux]`. */
export function valueAndGrad<X>(f: (x: X) => Tensor, opts?: { hasAux?: false }): (x: X) => [Tensor, X];
export function valueAndGrad<X, Aux>(
  f: (x: X) => [Tensor, Aux],
  opts: { hasAux: true },
): (x: X) => [[Tensor, Aux], X];
export function valueAndGrad(f: (x: any) => any, opts: GradOptions = {}) {
  return (x: unknown) => {
    let aux: unknown;
    const [y, pullback] = vjp((xx: unknown) => {
      const r = f(xx);
      if (opts.hasAux) {
        if (!Array.isArray(r) || r.length !== 2) throw new Error('valueAndGrad: with hasAux, f must return [loss, aux]');
        aux = r[1];
        return scalarOut(r[0], 'valueAndGrad');
      }
      return scalarOut(r, 'valueAndGrad');
    }, x);
    const g = pullback(onesLike(y) as never);
    return [opts.hasAux ? [y, releaseTree(aux)] : y, g];
  };
}

const releaseTree = (t: unknown): unknown => {
  const [ls, def] = flatten(t);
  return unflatten(def, ls.map(release));
};

/** `grad(f)(x)` → ∇f(x), the same tree as `x`. */
export function grad<X>(f: (x: X) => Tensor): (x: X) => X {
  const vg = valueAndGrad(f);
  return (x) => vg(x)[1];
}
