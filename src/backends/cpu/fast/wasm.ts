/**
 * A tiny typed WebAssembly binary emitter: enough to write the SIMD kernels as TypeScript that *generates* code
 * (unrolled micro-kernels are TS loops that emit instructions), with no assembler dependency.
 *
 * Code is built from expression closures (`Expr = (f) => void`, each pushes its value on the wasm stack), so a
 * statement reads like `f.set(x, add(get(x), i32(4)))`. The validator of the engine (`WebAssembly.Module`)
 * checks types; this layer only encodes.
 */

/** Value types. */
export const T = { i32: 0x7f, f32: 0x7d, v128: 0x7b } as const;
export type T = (typeof T)[keyof typeof T];

export type Expr = (f: Fn) => void;

/** Unsigned / signed LEB128. */
export function uleb(n: number, out: number[] = []): number[] {
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number, out: number[] = []): number[] {
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const f32Bytes = (x: number): number[] => Array.from(new Uint8Array(new Float32Array([x]).buffer));
const str = (s: string): number[] => {
  const b = Array.from(new TextEncoder().encode(s));
  return [...uleb(b.length), ...b];
};

/** One function body under construction. Locals are numbered after the parameters. */
export class Fn {
  readonly code: number[] = [];
  private readonly localTypes: T[] = [];
  readonly params: number[];

  constructor(
    readonly name: string,
    readonly paramTypes: readonly T[],
    readonly resultTypes: readonly T[] = [],
    readonly exported = true,
  ) {
    this.params = paramTypes.map((_, i) => i);
  }

  local(t: T): number {
    this.localTypes.push(t);
    return this.paramTypes.length + this.localTypes.length - 1;
  }

  op(...bytes: number[]): this {
    for (const b of bytes) this.code.push(b);
    return this;
  }

  simd(opcode: number, ...imm: number[]): this {
    this.code.push(0xfd, ...uleb(opcode), ...imm);
    return this;
  }

  emit(...es: Expr[]): this {
    for (const e of es) e(this);
    return this;
  }

  set(l: number, e: Expr): this {
    e(this);
    return this.op(0x21, ...uleb(l));
  }

  /** Structured control: `block` (br 0 = exit), `loop` (br 0 = continue), `if`. */
  block(body: () => void): this {
    this.op(0x02, 0x40);
    body();
    return this.op(0x0b);
  }

  loop(body: () => void): this {
    this.op(0x03, 0x40);
    body();
    return this.op(0x0b);
  }

  if(cond: Expr, then: () => void, otherwise?: () => void): this {
    cond(this);
    this.op(0x04, 0x40);
    then();
    if (otherwise) {
      this.op(0x05);
      otherwise();
    }
    return this.op(0x0b);
  }

  br(depth: number): this {
    return this.op(0x0c, ...uleb(depth));
  }

  brIf(depth: number, cond: Expr): this {
    cond(this);
    return this.op(0x0d, ...uleb(depth));
  }

  /** for (v = from; v < to; v += step) body — `to` is re-evaluated each turn (signed compare). */
  for(v: number, from: Expr, to: Expr, step: Expr, body: () => void): this {
    this.set(v, from);
    return this.block(() => {
      this.brIf(0, ge_s(get(v), to));
      this.loop(() => {
        body();
        this.set(v, add(get(v), step));
        this.brIf(0, lt_s(get(v), to));
      });
    });
  }

  /** memory.fill (bulk memory): `bytes` bytes from `dst` set to the low byte of `value`. */
  memoryFill(dst: Expr, value: Expr, bytes: Expr): this {
    return this.emit(dst, value, bytes).op(0xfc, 0x0b, 0x00);
  }

  /** memory.copy (bulk memory): `bytes` bytes from `src` to `dst` (the ranges may overlap). */
  memoryCopy(dst: Expr, src: Expr, bytes: Expr): this {
    return this.emit(dst, src, bytes).op(0xfc, 0x0a, 0x00, 0x00);
  }

  /** Store: `addr` then `value`, with a constant byte offset. */
  store(kind: 'i32' | 'f32' | 'v128', addr: Expr, value: Expr, offset = 0): this {
    addr(this);
    value(this);
    if (kind === 'i32') return this.op(0x36, 2, ...uleb(offset));
    if (kind === 'f32') return this.op(0x38, 2, ...uleb(offset));
    return this.simd(0x0b, 4, ...uleb(offset));
  }

  call(fn: number, ...args: Expr[]): this {
    for (const a of args) a(this);
    return this.op(0x10, ...uleb(fn));
  }

  /** The body as bytes: local declarations, code, end. */
  body(): number[] {
    const groups: [number, T][] = [];
    for (const t of this.localTypes) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const decl = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), t])];
    const all = [...decl, ...this.code, 0x0b];
    return [...uleb(all.length), ...all];
  }
}

// ---- expressions ---------------------------------------------------------------------------------------------
export const get = (l: number): Expr => (f) => f.op(0x20, ...uleb(l));
export const tee = (l: number, e: Expr): Expr => (f) => {
  e(f);
  f.op(0x22, ...uleb(l));
};
export const i32 = (c: number): Expr => (f) => f.op(0x41, ...sleb(c | 0));
export const f32 = (c: number): Expr => (f) => f.op(0x43, ...f32Bytes(c));
const bin = (...op: number[]) => (a: Expr, b: Expr): Expr => (f) => {
  a(f);
  b(f);
  f.op(...op);
};
const un = (op: number) => (a: Expr): Expr => (f) => {
  a(f);
  f.op(op);
};
export const add = bin(0x6a);
export const sub = bin(0x6b);
export const mul = bin(0x6c);
export const and = bin(0x71);
export const shl = bin(0x74);
export const shrU = bin(0x76);
export const eq = bin(0x46);
export const ne = bin(0x47);
export const lt_s = bin(0x48);
export const gt_s = bin(0x4a);
export const le_s = bin(0x4c);
export const ge_s = bin(0x4e);
export const eqz = un(0x45);
export const min_s = (a: Expr, b: Expr): Expr => (f) => {
  // select(a, b, a < b)
  a(f);
  b(f);
  a(f);
  b(f);
  f.op(0x48, 0x1b);
};
export const fadd = bin(0x92);
export const fmul = bin(0x94);
export const feq = bin(0x5b);
export const remU = bin(0x70);
export const divU = bin(0x6e);
export const f64add = bin(0xa0);
export const f64div = bin(0xa3);
/** f64.convert_i32_s */
export const f64ofI = un(0xb7);
/** f64.promote_f32 */
export const f64ofF = un(0xbb);
/** f32.demote_f64 */
export const f32ofD = un(0xb6);
export const load = (kind: 'i32' | 'f32' | 'v128', addr: Expr, offset = 0): Expr => (f) => {
  addr(f);
  if (kind === 'i32') f.op(0x28, 2, ...uleb(offset));
  else if (kind === 'f32') f.op(0x2a, 2, ...uleb(offset));
  else f.simd(0x00, 4, ...uleb(offset));
};
/** v128.load32_splat: one f32 from memory broadcast to 4 lanes. */
export const loadSplat = (addr: Expr, offset = 0): Expr => (f) => {
  addr(f);
  f.simd(0x09, 2, ...uleb(offset));
};
export const splat = (a: Expr): Expr => (f) => {
  a(f);
  f.simd(0x13);
};
export const vadd = (a: Expr, b: Expr): Expr => (f) => {
  a(f);
  b(f);
  f.simd(0xe4);
};
export const vmul = (a: Expr, b: Expr): Expr => (f) => {
  a(f);
  b(f);
  f.simd(0xe6);
};
/** relaxed SIMD f32x4.relaxed_madd(a, b, c) = a·b + c (fused or not, per the engine). */
export const vmadd = (a: Expr, b: Expr, c: Expr): Expr => (f) => {
  a(f);
  b(f);
  c(f);
  f.simd(0x105);
};
export const vzero: Expr = (f) => f.simd(0x0c, ...new Array<number>(16).fill(0));

// ---- module ----------------------------------------------------------------------------------------------------
export interface ModuleSpec {
  readonly functions: readonly Fn[];
  /** Import `env.mem` as a memory (shared when `shared`), limits in 64 KiB pages. */
  readonly memory: { readonly initial: number; readonly maximum: number; readonly shared: boolean };
}

const section = (id: number, content: number[]): number[] => [id, ...uleb(content.length), ...content];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];

export function assemble({ functions, memory }: ModuleSpec): Uint8Array {
  const sigs: string[] = [];
  const sigBytes: number[][] = [];
  const typeIdx = functions.map((fn) => {
    const b = [0x60, ...uleb(fn.paramTypes.length), ...fn.paramTypes, ...uleb(fn.resultTypes.length), ...fn.resultTypes];
    const key = b.join(',');
    let i = sigs.indexOf(key);
    if (i < 0) {
      i = sigs.push(key) - 1;
      sigBytes.push(b);
    }
    return i;
  });
  const limits = memory.shared ? [0x03, ...uleb(memory.initial), ...uleb(memory.maximum)] : [0x01, ...uleb(memory.initial), ...uleb(memory.maximum)];
  const exports = functions.flatMap((fn, i) => (fn.exported ? [[...str(fn.name), 0x00, ...uleb(i)]] : []));
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(sigBytes)),
    ...section(2, vec([[...str('env'), ...str('mem'), 0x02, ...limits]])),
    ...section(3, vec(typeIdx.map((t) => uleb(t)))),
    ...section(7, vec(exports)),
    ...section(10, vec(functions.map((fn) => fn.body()))),
  ];
  return new Uint8Array(bytes);
}

// ---- the runtime API, typed locally (the project's lib has no DOM/WebAssembly declarations) -----------------
export interface WasmMemory {
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}
export interface WasmModule {
  readonly __wasmModule?: never;
}
export interface WasmApi {
  readonly Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  readonly Module: new (bytes: Uint8Array) => WasmModule;
  readonly Instance: new (m: WasmModule, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}
/** `globalThis.WebAssembly`, or undefined where the engine has none. */
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

// ---- more SIMD expressions (for the activation and convolution kernels) -------------------------------------------
export const simdBin = (op: number) => (a: Expr, b: Expr): Expr => (f) => {
  a(f);
  b(f);
  f.simd(op);
};
export const simdUn = (op: number) => (a: Expr): Expr => (f) => {
  a(f);
  f.simd(op);
};
/** i8x16.shuffle of two vectors by 32-bit lane indices (0–3 from a, 4–7 from b). */
export const shuffle = (a: Expr, b: Expr, lanes: readonly number[]): Expr => (f) => {
  a(f);
  b(f);
  f.simd(0x0d, ...lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]));
};
/** f32x4.extract_lane */
export const extractLane = (a: Expr, l: number): Expr => (f) => {
  a(f);
  f.simd(0x1f, l);
};
/** f64x2.extract_lane */
export const extractLaneF64 = (a: Expr, l: number): Expr => (f) => {
  a(f);
  f.simd(0x21, l);
};
export const vand = simdBin(0x4e);
/** i32x4.gt_s */
export const vigt = simdBin(0x3b);
/** i32x4.splat */
export const isplat = simdUn(0x11);
/** An i32x4 constant from its four lanes. */
export const vconstI4 = (l: readonly number[]): Expr => (f) => f.simd(0x0c, ...l.flatMap((x) => [x & 255, (x >> 8) & 255, (x >> 16) & 255, (x >>> 24) & 255]));
export const vsub = simdBin(0xe5);
/** i8x16.swizzle by constant byte indices (an index ≥ 16 gives 0; 0x80 keeps x64's pshufb free of a fix-up). */
export const swizzle = (a: Expr, bytes: readonly number[]): Expr => (f) => {
  a(f);
  f.simd(0x0c, ...bytes);
  f.simd(0x0e);
};
/** f32x4.convert_i32x4_s (one instruction on x64, where the unsigned form is a sequence) */
export const vcvtS = simdUn(0xfa);
export const vdiv = simdBin(0xe7);
export const vmin = simdBin(0xe8);
export const vmax = simdBin(0xe9);
export const vneg = simdUn(0xe1);
export const vnearest = simdUn(0x6a);
/** i32x4.trunc_sat_f32x4_s */
export const vtruncI = simdUn(0xf8);
export const viadd = simdBin(0xae);
/** i32x4.shl by an i32 scalar. */
export const vishl = (a: Expr, n: Expr): Expr => (f) => {
  a(f);
  n(f);
  f.simd(0xab);
};
export const vconst = (x: number): Expr => splat(f32(x));
export const vconstI = (x: number): Expr => isplat(i32(x));
/** f32x4.lt → lane mask. */
export const vlt = simdBin(0x43);
/** v128.andnot(a, b) = a & ~b */
export const vandnot = simdBin(0x4f);
/** f32x4.pmin(a, b) = b < a ? b : a and pmax(a, b) = a < b ? b : a: one minps/maxps (min/max need NaN fix-ups); NaN in a passes through. */
export const vpmin = simdBin(0xea);
export const vpmax = simdBin(0xeb);

/** 4×4 transpose of the vectors in locals a (rows) into locals b (b[i] lane j = a[j] lane i). */
export function transpose4(f: Fn, a: readonly number[], t: readonly number[], b: readonly number[]): void {
  f.set(t[0], shuffle(get(a[0]), get(a[1]), [0, 4, 1, 5]));
  f.set(t[1], shuffle(get(a[0]), get(a[1]), [2, 6, 3, 7]));
  f.set(t[2], shuffle(get(a[2]), get(a[3]), [0, 4, 1, 5]));
  f.set(t[3], shuffle(get(a[2]), get(a[3]), [2, 6, 3, 7]));
  f.set(b[0], shuffle(get(t[0]), get(t[2]), [0, 1, 4, 5]));
  f.set(b[1], shuffle(get(t[0]), get(t[2]), [2, 3, 6, 7]));
  f.set(b[2], shuffle(get(t[1]), get(t[3]), [0, 1, 4, 5]));
  f.set(b[3], shuffle(get(t[1]), get(t[3]), [2, 3, 6, 7]));
}

