/**
 * jit vs eager for every primitive of the table, forward and VJP, on cases drawn from the table's
 * own `check` generators (so a new primitive is covered the day it lands). The jitted function is
 * the primitive and its pullback traced together, so fusion (elementwise pullbacks), the memory
 * plan and the `into` kernels all run.
 *
 * float64: |jit − eager| ≤ 1e-12·(1 + max|eager|): fused loops evaluate the same double
 * expressions in the same order (measured: bit-identical on every case).
 * float32: ≤ 1e-6·(1 + max|eager|): a fused loop keeps its intermediates in double precision where
 * eager rounds each to float32 (measured worst 7.3e-8, in pow's pullback).
 */
import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as E from '../../src/index.ts';
import type { CheckCase } from '../../src/autograd/registry.ts';
import { forwardOnlyCases } from '../../src/autograd/checkgen.ts';
import { bind } from '../../src/autograd/trace.ts';
import { worstRel } from '../helpers/jit.ts';

// Primitives without a gradient check get forward-only cases; float64 casts run on the CPU kernels by design.
const forwardOnly = forwardOnlyCases;

type DT = 'float32' | 'float64';
const TOL: Record<DT, number> = { float64: 1e-12, float32: 1e-6 };

/** The primitive and (when it has one) its pullback at `ct`, as one function of tensors. */
const program = (name: string, attrs: unknown, grad: boolean) => (xs: E.Tensor[], ct: E.Tensor | null) => {
  if (!grad || !ct) return [bind(name, xs, attrs)];
  const [y, pullback] = E.vjp((ins: E.Tensor[]) => bind(name, ins, attrs), xs);
  return [y, ...(pullback(ct) as unknown as E.Tensor[])];
};

function compare(name: string, c: CheckCase, dtype: DT, grad: boolean, seed: number): number {
  const cast = (v: readonly number[]) => (dtype === 'float64' ? Float64Array.from(v) : Float32Array.from(v));
  const xs = c.inputs.map((x) => E.fromArray(cast(x.values), x.shape));
  const f = program(name, c.attrs, grad);
  const y0 = f(xs, null)[0];
  const ct = grad ? E.fromArray(cast(Array.from({ length: y0.size }, (_, i) => ((seed + i * 7919) % 4001) / 1000 - 2)), y0.shape) : null;
  const want = f(xs, ct);
  const jf = E.jit(f);
  let err = 0;
  for (let rep = 0; rep < 2; rep++) {
    const got = jf(xs, ct);
    want.forEach((w, i) => {
      if (grad && i > 0 && c.constant?.includes(i - 1)) return;
      err = Math.max(err, worstRel(E.dataSync(got[i]), E.dataSync(w)));
    });
  }
  expect(jf.compiles).toBe(1);
  return err;
}

describe.each(['float64', 'float32'] as const)('jit vs eager, every primitive (%s)', (dtype) => {
  for (const prim of E.listPrimitives()) {
    const gen = prim.check ?? forwardOnly[prim.name];
    it(`${prim.name}`, () => {
      expect(gen, `${prim.name} has no case generator`).toBeDefined();
      const grad = !!prim.vjp && !!prim.check;
      const cases = fc.sample(gen!(fc).chain((c) => fc.integer({ min: 0, max: 2 ** 30 }).map((s) => [c, s] as const)), { numRuns: 4, seed: 99 + prim.name.length });
      for (const [c, seed] of cases) {
        const err = compare(prim.name, c, dtype, grad, seed);
        expect(err, `${prim.name} ${dtype} ${JSON.stringify({ shapes: c.inputs.map((x) => x.shape), attrs: c.attrs })}`).toBeLessThanOrEqual(TOL[dtype]);
      }
    });
  }
});
