/** Helpers of the jit tests that compare jitted against eager runs on one backend. */
import * as fc from 'fast-check';
import * as E from '../../src/index.ts';
import type { CheckCase } from '../../src/autograd/registry.ts';
import { bind } from '../../src/autograd/trace.ts';
import { isElementwise } from '../../src/jit/fuse.ts';

/** max |got − want| / (1 + max|want|), with non-finite values required to match exactly (length mismatch: Infinity). */
export function worstRel(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  let err = got.length === want.length ? 0 : Infinity;
  for (let i = 0; i < want.length; i++) {
    const e = Number.isFinite(want[i]) ? Math.abs(got[i] - want[i]) : Object.is(got[i], want[i]) ? 0 : Infinity;
    err = Math.max(err, Number.isNaN(e) ? Infinity : e);
  }
  return err / (1 + scale);
}

/** Runs `f` with `backend` selected, restoring the previous backend after. */
export function onBackend<T>(backend: E.Backend<any>, f: () => T): T {
  const prev = E.getBackend();
  E.setBackend(backend.name);
  try {
    return f();
  } finally {
    E.setBackend(prev.name);
  }
}

/**
 * Eager and jitted `f` on a gpu backend: the worst error over the outputs, the kernels each one dispatched (the
 * jitted count from a second call, after compilation) and the jit's stats.
 */
export function compareJit(backend: E.GpuBackend, f: (xs: E.Tensor[]) => E.Tensor[], xs: E.Tensor[]): { err: number; eager: number; jitted: number; stats: E.Lowered['stats'] } {
  return onBackend(backend as E.Backend<any>, () => {
    let d = backend.dispatches();
    const want = f(xs).map((t) => E.dataSync(t));
    const eager = backend.dispatches() - d;
    const jf = E.jit(f);
    jf(xs);
    d = backend.dispatches();
    const got = jf(xs).map((t) => E.dataSync(t));
    const jitted = backend.dispatches() - d;
    const err = Math.max(...want.map((w, i) => worstRel(got[i], w)));
    return { err, eager, jitted, stats: jf.lower(xs).stats };
  });
}

/** A training step of `model`: BCE loss, the new BN state and the gradients (what the trainer compiles, without the optimizer). */
export function trainStep(model: E.nn.Model) {
  return (p: E.nn.Params, s: E.nn.State, x: E.Tensor, y: E.Tensor, k: E.random.Key) => {
    const [[loss, st], grads] = E.valueAndGrad(
      (q: E.nn.Params) => {
        const [logits, ns] = E.nn.apply(model.config, q, s, x, { training: true, key: k });
        return [E.binaryCrossEntropyWithLogits(logits, y), ns] as [E.Tensor, E.nn.State];
      },
      { hasAux: true },
    )(p);
    return { loss, state: st, grads };
  };
}

/**
 * Every elementwise primitive's forward and pullback (at ct = 0.5·y + 0.25) as one function, on `numRuns` cases
 * of its gradient-check generator (fixed seeds): the chains a backward pass fuses.
 */
export function elementwisePullbacks(numRuns: number): { name: string; inputs: CheckCase['inputs']; f: (xs: E.Tensor[]) => E.Tensor[] }[] {
  return E.listPrimitives()
    .filter((p) => isElementwise(p.name) && p.vjp && p.check)
    .flatMap((prim) =>
      (fc.sample(prim.check!(fc), { numRuns, seed: 7 + prim.name.length }) as CheckCase[]).map((c) => ({
        name: `${prim.name} ${JSON.stringify(c.inputs.map((x) => x.shape))}`,
        inputs: c.inputs,
        f: (ins: E.Tensor[]) => {
          const [y, pullback] = E.vjp((a: E.Tensor[]) => bind(prim.name, a, c.attrs), ins);
          const ct = E.add(E.mul(y, 0.5), 0.25);
          return [y, ...(pullback(ct) as unknown as E.Tensor[])].filter((_, i) => !(i > 0 && c.constant?.includes(i - 1)));
        },
      })),
    );
}
