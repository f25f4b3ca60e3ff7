/** Where the CPU backend's float32 kernel outputs live. */
import type { OutSpec } from '../backend.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { OWNED_MIN_FLOATS, wasmHeap } from './fast/heap.ts';

/** The caller's float32 output slot (jit's arena: a view of the wasm heap, written in place), if any. */
export const into = (out: OutSpec): Float32Array | undefined => (out.into instanceof Float32Array ? out.into : undefined);

/**
 * A wasm kernel's float32 output: the caller's slot, else for a large output an array of the wasm heap owned by the
 * tensor (fast/heap.ts `owned`), which the kernel writes in place: no copy out of the heap, the next kernel reads it
 * in place, and the memory is memory the process has touched before instead of fresh pages (the page faults of a
 * fresh 12.8 MB output cost about as much as the stem's forward). Undefined: the kernel allocates its output (a small
 * one, or the heap declined).
 */
export function heapOut(out: OutSpec): Float32Array | undefined {
  const n = sizeOf(out.shape);
  return into(out) ?? (n >= OWNED_MIN_FLOATS ? (wasmHeap()?.owned(n) ?? undefined) : undefined);
}
