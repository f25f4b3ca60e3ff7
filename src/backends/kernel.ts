/**
 * The helpers kernel modules are written with. This module imports nothing, and kernel modules
 * import only modules like it (and `src/tensor/shape.ts`), never the tensor or autograd layers nor
 * the registry in backend.ts, which imports the built-in backends: so the backends form no import
 * cycle with the rest of the engine and any of their modules can be loaded first
 * (test/imports.test.ts checks the rule).
 */
import type { DType, TypedArray } from './backend.ts';

/** A fresh zeroed array of `n` elements of `dtype`. */
export const arrayFor = (dtype: DType, n: number): TypedArray =>
  dtype === 'float64' ? new Float64Array(n) : dtype === 'uint8' ? new Uint8Array(n) : new Float32Array(n);

/** Bytes per element of `dtype`. */
export const bytesPerElement = (dtype: DType): number => (dtype === 'float64' ? 8 : dtype === 'uint8' ? 1 : 4);

/** The dtype of a typed array's elements. */
export const dtypeOf = (a: TypedArray): DType => (a instanceof Float64Array ? 'float64' : a instanceof Uint8Array ? 'uint8' : 'float32');

/** Marks a kernel as writing into `OutSpec.into` when given. */
export const writesInto = <K extends (...a: any[]) => unknown>(k: K): K & { readonly writesInto: true } => Object.assign(k, { writesInto: true as const });

/** Marks a kernel as writing the sums over its output's planes into `attrs.sums` when given (Kernel.writesSums). */
export const writesSums = <K extends (...a: any[]) => unknown>(k: K): K & { readonly writesSums: true } => Object.assign(k, { writesSums: true as const });

/** Marks a 1×1 conv kernel as taking a per-image channel scale of its input as one more input (Kernel.inputScale). */
export const takesInputScale = <K extends (...a: any[]) => unknown>(k: K): K & { readonly inputScale: true } => Object.assign(k, { inputScale: true as const });
