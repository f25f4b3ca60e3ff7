/**
 * Fused multiply-add in the generated kernels (sgemm, direct conv, stochastic conv): `madd(a, b, c)` = a·b + c as
 * one f32x4.relaxed_madd (relaxed SIMD: one vfmadd on x64 CPUs with FMA3, a multiply and an add elsewhere) where
 * `fmaEnabled()`, else as f32x4.mul and f32x4.add. A fused result may differ from the unfused one in the last bit of
 * each product.
 *
 * Relaxed SIMD is standard from V8 11.4 (Node 22); Node 20's V8 has it behind --experimental-wasm-relaxed-simd, which
 * the first `fmaEnabled()` sets (process-wide, as heap.ts sets --expose-gc) when the engine does not already
 * validate the instruction. It is then used only if a probe module validates and computes 2·3 + 1 = 7 in every lane.
 * STOCHCONV_FMA=0 in the environment turns it off.
 */
import { setFlagsFromString } from 'node:v8';
import { type Expr, Fn, T, assemble, get, load, vadd, vmadd, vmul, wasmApi } from './wasm.ts';

/** A module whose `probe(p)` writes a·b + c for the float32 vectors at p, p + 16, p + 32 to p + 48. */
function probe(): Uint8Array {
  const f = new Fn('probe', [T.i32]);
  const [p] = f.params;
  f.store('v128', get(p), vmadd(load('v128', get(p)), load('v128', get(p), 16), load('v128', get(p), 32)), 48);
  return assemble({ functions: [f], memory: { initial: 1, maximum: 1, shared: false } });
}

function detect(): boolean {
  const W = wasmApi;
  if (!W || process.env.STOCHCONV_FMA === '0') return false;
  try {
    const bytes = probe();
    if (!W.validate(bytes)) setFlagsFromString('--experimental-wasm-relaxed-simd');
    if (!W.validate(bytes)) return false;
    const memory = new W.Memory({ initial: 1, maximum: 1 });
    const run = new W.Instance(new W.Module(bytes), { env: { mem: memory } }).exports.probe as (p: number) => void;
    const m = new Float32Array(memory.buffer);
    m.set([2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1]);
    run(0);
    return [12, 13, 14, 15].every((i) => m[i] === 7);
  } catch {
    return false;
  }
}

let detected: boolean | undefined;
let override: false | undefined;

/** Whether kernels generated from now on fuse their multiply-adds (their module caches key on it). */
export function fmaEnabled(): boolean {
  return override ?? (detected ??= detect());
}

/**
 * `false` makes the kernels generated from now on use the unfused form; `undefined` gives back what the engine
 * offers. For tests and benchmarks that compare the two. The sgemm's module is generated once per process, at its
 * first use (sgemm.ts `reconfigureSgemm` generates it again).
 */
export function setFma(on: false | undefined): void {
  override = on;
}

/** a·b + c, fused where `fused` (by default, where `fmaEnabled()`; the sgemm's shape says it for its module). */
export const madd = (a: Expr, b: Expr, c: Expr, fused = fmaEnabled()): Expr => (fused ? vmadd(a, b, c) : vadd(vmul(a, b), c));
