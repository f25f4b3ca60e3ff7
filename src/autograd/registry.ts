/**
 * The primitive table. An entry names an op, gives its shape/dtype rule and its vector–Jacobian
 * product (written with the public ops, so it is differentiable in turn), and optionally how to
 * generate gradient-check cases.
 *
 * Wiring: the built-in entries are plain exported lists (src/autograd/primitives.ts, conv.ts, and
 * the composite checks in composites.ts) that this module imports, so every module that can run an
 * op (all of them go through trace.ts's `bind`, which imports this one) has the whole table, with
 * no import to remember and no import order. Those lists' modules import the public ops, which
 * import this module back; the table is therefore built from them on first use, never at import
 * time, when a list may not have been evaluated yet. `definePrimitive` adds user entries.
 * The backend registry (src/backends/backend.ts) likewise imports the built-in backends.
 */
import type { Arbitrary } from 'fast-check';
import type { DType } from '../backends/backend.ts';
import type { Shape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { compositeChecks } from './composites.ts';
import { convPrimitives } from './conv.ts';
import { primitives } from './primitives.ts';

export interface Residuals<A> {
  readonly inputs: readonly Tensor[];
  readonly out: Tensor;
  readonly attrs: A;
  /** Which inputs need a cotangent (skip the work for the others). */
  readonly needs: readonly boolean[];
}

/** A gradient-check case: input shapes and values (float64), plus attributes. Plain data, so shrunk counterexamples print readably. */
export interface CheckCase {
  readonly inputs: readonly { readonly shape: readonly number[]; readonly values: readonly number[] }[];
  readonly attrs?: unknown;
  /** Inputs not differentiated (indices, conditions). */
  readonly constant?: readonly number[];
}

/** Builds fast-check arbitraries of cases; `fc` is injected so the runtime does not depend on fast-check. */
export type CheckGen = (fc: typeof import('fast-check')) => Arbitrary<CheckCase>;

export interface Primitive<A = any> {
  readonly name: string;
  /** Output shape and dtype; throws an Error naming the op and the shapes on bad input. */
  infer(inputs: readonly { shape: Shape; dtype: DType }[], attrs: A): { shape: Shape; dtype: DType };
  /** The inputs that may be uint8 (images); a uint8 tensor anywhere else is an error naming the op (trace.ts `bind`). */
  readonly uint8Inputs?: readonly number[];
  /** Cotangents of the inputs (broadcast shapes are fine: the core sums them back). Absent = not differentiable. */
  vjp?(ct: Tensor, res: Residuals<A>): readonly (Tensor | null)[];
  /** Gradient-check cases; the gradcheck suite and CLI run every primitive that has them. */
  check?: CheckGen;
  /** Tolerance override for the gradient check (default 1e-6, float64). */
  tolerance?: number;
  /** Finite-difference step override (default 1e-6). */
  step?: number;
}

let table: Map<string, Primitive<any>> | undefined;
let composites: Map<string, CompositeCheck> | undefined;

/** The table, built from the built-in lists on first use (see the module comment). */
function builtIns(): { table: Map<string, Primitive<any>>; composites: Map<string, CompositeCheck> } {
  if (!table || !composites) {
    table = new Map();
    for (const p of [...primitives, ...convPrimitives]) {
      if (table.has(p.name)) throw new Error(`primitive table: '${p.name}' is listed twice`);
      table.set(p.name, p);
    }
    composites = new Map(compositeChecks.map((c) => [c.name, c]));
  }
  return { table, composites };
}

/** Adds a primitive to the table (give it a kernel per backend with `registerKernel`). */
export function definePrimitive<A>(p: Primitive<A>): Primitive<A> {
  const { table } = builtIns();
  if (table.has(p.name)) throw new Error(`definePrimitive: '${p.name}' is already defined`);
  table.set(p.name, p);
  return p;
}

export function getPrimitive(name: string): Primitive<any> {
  const p = builtIns().table.get(name);
  if (!p) throw new Error(`unknown primitive '${name}'`);
  return p;
}

/** Throws naming the op, the input and its shape when a uint8 tensor is passed where `p` takes floats only. */
export function checkUint8Inputs(p: Primitive<any>, inputs: readonly { shape: Shape; dtype: DType }[]): void {
  inputs.forEach((x, i) => {
    if (x.dtype === 'uint8' && !p.uint8Inputs?.includes(i)) {
      throw new Error(`${p.name}: input ${i} (shape [${x.shape.join(', ')}]) is uint8, which this op does not take; cast it to a float dtype first`);
    }
  });
}

export const listPrimitives = (): Primitive<any>[] => [...builtIns().table.values()];

/** Composite ops (built from primitives) checked by the same suite. */
export interface CompositeCheck {
  readonly name: string;
  readonly fn: (inputs: Tensor[], attrs: any) => Tensor;
  readonly check: CheckGen;
  readonly tolerance?: number;
  readonly step?: number;
}
export function defineCompositeCheck(c: CompositeCheck): void {
  builtIns().composites.set(c.name, c);
}
export const listCompositeChecks = (): CompositeCheck[] => [...builtIns().composites.values()];
