/**
 * SiLU and sigmoid on float32 in WebAssembly SIMD (generated at run time): the reference loops call Math.exp per
 * element (~20 ns each here); this evaluates exp on 4 lanes with Cephes' expf (range reduction x = n·ln2 + r, a
 * degree-6 polynomial for eʳ, 2ⁿ built in the exponent bits), about 1–2 ulp, and streams arrays through a
 * 64 KiB window of its own (non-shared) memory.
 *
 * sigmoid(x) = 1 / (1 + e^(−x)), silu(x) = x · sigmoid(x); e^(−x) is evaluated on −x clamped to [−87.3, 88.3], and
 * sigmoid is exactly 0 below x = −88 (the true value is a denormal < 6e−39); NaN stays NaN.
 */
import {
  Fn, T, add, assemble, get, i32, load, mul, vadd, vconst, vconstI, vandnot, vdiv, viadd, vishl, vlt, vmul, vneg, vpmax, vpmin, vsub,
  type Expr, type WasmApi, wasmApi,
} from './wasm.ts';
import { hasSimd } from './sgemm_wasm.ts';
import type { Kernel, TypedArray } from '../../backend.ts';
import { sizeOf } from '../../../tensor/shape.ts';

const CHUNK = 16384; // floats per window (64 KiB): in and out stay in L2

/**
 * Vector constants live in locals set before the loop (V8 does not hoist `f32x4.splat` out of wasm loops).
 * `k(x)` returns a read of the local holding splat(x); `prologue` holds the code that fills them.
 */
class Consts {
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

/** e^x on 4 lanes (Cephes expf). Locals: lx (x, then r), lfx (x·log2e + magic, then n), ln (2ⁿ). */
function vexp(f: Fn, c: Consts, x: Expr, lx: number, lfx: number, ln: number): Expr {
  const { k } = c;
  // n = round(x·log2 e) by the 1.5·2²³ trick: the float's low mantissa bits then hold n (cheaper in V8 than
  // f32x4.nearest + i32x4.trunc_sat).
  const MAGIC = 12582912;
  f.set(lx, vpmin(vpmax(x, k(-87.3)), k(88.3)));
  f.set(lfx, vadd(vmul(get(lx), k(Math.LOG2E)), k(MAGIC)));
  f.set(ln, vishl(viadd(get(lfx), c.ki(127 - 0x4b400000)), i32(23)));
  f.set(lfx, vsub(get(lfx), k(MAGIC)));
  // r = x − n·C1 − n·C2 with ln2 split for exactness
  f.set(lx, vsub(vsub(get(lx), vmul(get(lfx), k(0.693359375))), vmul(get(lfx), k(-2.12194440e-4))));
  const r = get(lx);
  let p: Expr = k(1.9875691500e-4);
  for (const cf of [1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1]) p = vadd(vmul(p, r), k(cf));
  // y = p·r² + r + 1, times 2ⁿ (the i32 lanes reinterpreted as f32)
  return vmul(vadd(vadd(vmul(p, vmul(r, r)), r), k(1)), get(ln));
}

function unary(name: string, body: (f: Fn, c: Consts, v: Expr, tmp: number[]) => Expr): Fn {
  const f = new Fn(name, [T.i32, T.i32]);
  const [ptr, n] = f.params;
  const end = f.local(T.i32), p = f.local(T.i32), v = f.local(T.v128);
  const tmp = [f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const c = new Consts(f);
  const start = f.code.length;
  f.set(end, add(get(ptr), mul(get(n), i32(4))));
  f.for(p, get(ptr), get(end), i32(16), () => {
    f.set(v, load('v128', get(p)));
    const out = body(f, c, get(v), tmp);
    f.store('v128', get(p), out);
  });
  f.code.splice(start, 0, ...c.prologue());
  return f;
}

interface Act {
  readonly heap: Float32Array;
  readonly silu: (ptr: number, n: number) => void;
  readonly sigmoid: (ptr: number, n: number) => void;
}
let act: Act | null | undefined;

function build(W: WasmApi): Act {
  // Below −88 the true σ is a denormal (< 6e−39): return exactly 0 there, as the reference's exp underflow does
  // (so silu(−∞) = −∞·0 = NaN like the reference).
  const sig = (f: Fn, c: Consts, v: Expr, t: number[]) => vandnot(vdiv(c.k(1), vadd(c.k(1), vexp(f, c, vneg(v), t[0], t[1], t[2]))), vlt(v, c.k(-88)));
  const fns = [
    unary('sigmoid', sig),
    unary('silu', (f, c, v, t) => vmul(v, sig(f, c, v, t))),
  ];
  const pages = Math.ceil((CHUNK * 4) / 65536);
  const memory = new W.Memory({ initial: pages, maximum: pages });
  const inst = new W.Instance(new W.Module(assemble({ functions: fns, memory: { initial: pages, maximum: pages, shared: false } })), { env: { mem: memory } });
  return {
    heap: new Float32Array(memory.buffer),
    sigmoid: inst.exports.sigmoid as (p: number, n: number) => void,
    silu: inst.exports.silu as (p: number, n: number) => void,
  };
}

function getAct(): Act | null {
  if (act === undefined) act = wasmApi !== undefined && hasSimd() ? build(wasmApi) : null;
  return act;
}

function apply(kind: 'silu' | 'sigmoid', x: Float32Array, out: Float32Array): Float32Array {
  const a = getAct();
  if (!a) {
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const s = v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v));
      out[i] = kind === 'silu' ? v * s : s;
    }
    return out;
  }
  const fn = a[kind];
  for (let i = 0; i < x.length; i += CHUNK) {
    const len = Math.min(CHUNK, x.length - i);
    a.heap.set(x.subarray(i, i + len), 0);
    fn(0, (len + 3) & ~3);
    out.set(a.heap.subarray(0, len), i);
  }
  return out;
}

/** out[i] = x[i]·σ(x[i]) (float32; `out` may be `x`). */
export function siluF32(x: Float32Array, out: Float32Array = new Float32Array(x.length)): Float32Array {
  return apply('silu', x, out);
}

/** out[i] = σ(x[i]) = 1 / (1 + e^(−x[i])) (float32; `out` may be `x`). */
export function sigmoidF32(x: Float32Array, out: Float32Array = new Float32Array(x.length)): Float32Array {
  return apply('sigmoid', x, out);
}

/**
 * A CPU kernel for the `silu` / `sigmoid` primitives: float32 through the SIMD path above, anything else through
 * `reference` (the backend's own kernel). To install on the CPU backend:
 *   for (const n of ['silu', 'sigmoid'] as const) kernels.set(n, fastActivationKernel(n, kernels.get(n)!));
 */
export function fastActivationKernel(name: 'silu' | 'sigmoid', reference: Kernel<TypedArray>): Kernel<TypedArray> {
  const f = name === 'silu' ? siluF32 : sigmoidF32;
  return (inputs, attrs, out) => {
    const x = inputs[0].storage;
    if (out.dtype === 'float32' && x instanceof Float32Array && x.length === sizeOf(out.shape)) return f(x);
    return reference(inputs, attrs, out);
  };
}
