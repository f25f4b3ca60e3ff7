/**
 * The primitive table's registry. An entry names an op, gives its shape/dtype rule and its
 * vector–Jacobian product (written with the public ops, so it is differentiable in turn), and
 * optionally how to generate gradient-check cases. See src/autograd/primitives.ts.
 */
import type { Arbitrary } from 'fast-check';
import type { DType } from '../backends/backend.ts';
import type { Shape } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';

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
  /** Cotangents of the inputs (broadcast shapes are fine: the core sums them back). Absent = not differentiable. */
  vjp?(ct: Tensor, res: Residuals<A>): readonly (Tensor | null)[];
  /** Gradient-check cases; the gradcheck suite and CLI run every primitive that has them. */
  check?: CheckGen;
  /** Tolerance override for the gradient check (default 1e-6, float64). */
  tolerance?: number;
  /** Finite-difference step override (default 1e-6). */
  step?: number;
}

const table = new Map<string, Primitive<any>>();

export function definePrimitive<A>(p: Primitive<A>): Primitive<A> {
  if (table.has(p.name)) throw new Error(`definePrimitive: '${p.name}' is already defined`);
  table.set(p.name, p);
  return p;
}

export function getPrimitive(name: string): Primitive<any> {
  const p = table.get(name);
  if (!p) throw new Error(`unknown primitive '${name}'`);
  return p;
}

export const listPrimitives = (): Primitive<any>[] => [...table.values()];

/** Composite ops (built from primitives) checked by the same suite. */
export interface CompositeCheck {
  readonly name: string;
  readonly fn: (inputs: Tensor[], attrs: any) => Tensor;
  readonly check: CheckGen;
  readonly tolerance?: number;
  readonly step?: number;
}
const composites = new Map<string, CompositeCheck>();
export function defineCompositeCheck(c: CompositeCheck): void {
  composites.set(c.name, c);
}
export const listCompositeChecks = (): CompositeCheck[] => [...composites.values()];
