/**
 * The memory-bound float32 kernels in WebAssembly SIMD (generated at run time), on the shared heap (heap.ts) and
 * the pool's threads when large: SiLU and sigmoid, the batch-norm affine with an optional fused SiLU (forward),
 * SiLU's gradient (alone, or fused with the affine that recomputes its input), and per-channel sums and moments
 * (BN statistics, bias and broadcast gradients) accumulated in float64.
 *
 * sigmoid(x) = 1 / (1 + e^(−x)) and silu(x) = x / (1 + e^(−x)), with e^(−x) on 4 lanes by range reduction, a
 * degree-5 polynomial and 2ⁿ built in the exponent bits (vmath.ts; error bounds at `sig`, `siluV`); the reference
 * loops call Math.exp per element (~20 ns each here).
 *
 * Layouts: "planes" are NCHW activations seen as N·C planes of HW floats, plane p in channel p mod C. An affine
 * operand is per channel ('c': one float per channel) or full ('f': the activation's shape).
 */
import {
  Fn, T, add, assemble, extractLane, extractLaneF64, f32ofD, f64add, f64div, f64ofF, f64ofI, get, i32, load, mul, remU, shuffle, simdBin, simdUn, splat,
  sub, vadd, vmul, vsub, vzero, type Expr,
} from './wasm.ts';
import { type WasmHeap, wasmHeap } from './heap.ts';
import { Job, type PoolKernel, type ScratchArg, loadKernels, poolThreads, taskCount } from './pool.ts';
import { rangeAt, rangeCount } from './convsimd.ts';
import type { Kernel, TypedArray } from '../../backend.ts';
import { sizeOf } from '../../../tensor/shape.ts';
import { Consts, sig, siluGradV, siluV } from './vmath.ts';

/** Elements per task of a threaded elementwise kernel (below two of them a call runs on one thread). */
const GRAIN = 1 << 16;

/** The f64 value type. */
export const F64 = 0x7c as T;
/** f64x2.promote_low_f32x4 */
export const promoteLow = simdUn(0x5f);
/** f64x2.add */
export const dadd = simdBin(0xf0);

/**
 * A loop over `count` floats from byte offset `base` (a local) of every stream: `body(loads)` gives the output
 * vector from the input vectors. 4 at a time, then a scalar tail run through the same vector code (one lane).
 */
function streamLoop(f: Fn, ins: readonly ({ ptr: number } | { splat: number })[], out: number, base: number, count: Expr, body: (xs: Expr[]) => Expr): void {
  const j = f.local(T.i32), end = f.local(T.i32), xv = ins.map(() => f.local(T.v128));
  f.set(end, mul(count, i32(4)));
  const run = (vec: boolean) => {
    ins.forEach((s, i) => {
      if ('splat' in s) f.set(xv[i], get(s.splat));
      else f.set(xv[i], vec ? load('v128', add(get(s.ptr), add(get(base), get(j)))) : splat(load('f32', add(get(s.ptr), add(get(base), get(j))))));
    });
    const y = body(xv.map((l) => get(l)));
    if (vec) f.store('v128', add(get(out), add(get(base), get(j))), y);
    else f.store('f32', add(get(out), add(get(base), get(j))), extractLane(y, 0));
  };
  f.for(j, i32(0), sub(get(end), i32(12)), i32(16), () => run(true));
  f.for(j, get(j), get(end), i32(4), () => run(false));
}

/** An elementwise map fn(in…, out, n) over contiguous arrays (`out` may be an input). */
function mapFn(name: string, arity: number, body: (f: Fn, c: Consts, xs: Expr[], t: number[]) => Expr): Fn {
  const f = new Fn(name, Array.from({ length: arity + 2 }, () => T.i32));
  const ps = f.params.slice(0, arity), out = f.params[arity], n = f.params[arity + 1];
  const zero = f.local(T.i32);
  const t = [f.local(T.v128), f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const c = new Consts(f);
  const start = f.code.length;
  f.set(zero, i32(0));
  streamLoop(f, ps.map((ptr) => ({ ptr })), out, zero, get(n), (xs) => body(f, c, xs, t));
  f.code.splice(start, 0, ...c.prologue());
  return f;
}

export type AffineMode = 'c' | 'f';

/**
 * Planes p0..p1 of HW floats, `stride` floats apart: y = act(x·a + b) (grad false), or y = ct·silu'(x·a + b) (grad
 * true, then `a`, `b` are per channel and the parameters are (x, a, b, ct, y, C, HW, stride, p0, p1)); else
 * (x, a, b, y, C, HW, stride, p0, p1). NCHW activations have stride = HW; a conv kernel's epilogue passes the rows
 * of a block of its output (affineRows).
 */
function affineFn(am: AffineMode, bm: AffineMode, act: 'silu' | 'none', grad: boolean): Fn {
  const name = grad ? 'affineSiluGrad' : `affine_${am}${bm}_${act}`;
  const f = new Fn(name, Array.from({ length: grad ? 10 : 9 }, () => T.i32));
  const [px, pa, pb] = f.params;
  const pct = grad ? f.params[3] : -1;
  const [py, C, HW, stride, p0, p1] = f.params.slice(grad ? 4 : 3);
  const p = f.local(T.i32), base = f.local(T.i32), ch = f.local(T.i32), va = f.local(T.v128), vb = f.local(T.v128);
  const t = [f.local(T.v128), f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const c = new Consts(f);
  const start = f.code.length;
  f.for(p, get(p0), get(p1), i32(1), () => {
    f.set(base, mul(mul(get(p), get(stride)), i32(4)));
    f.set(ch, mul(remU(get(p), get(C)), i32(4)));
    if (am === 'c') f.set(va, splat(load('f32', add(get(pa), get(ch)))));
    if (bm === 'c') f.set(vb, splat(load('f32', add(get(pb), get(ch)))));
    const ins: ({ ptr: number } | { splat: number })[] = [{ ptr: px }, am === 'c' ? { splat: va } : { ptr: pa }, bm === 'c' ? { splat: vb } : { ptr: pb }];
    if (grad) ins.push({ ptr: pct });
    streamLoop(f, ins, py, base, get(HW), ([x, a, b, ct]) => {
      const z = vadd(vmul(x, a), b);
      if (grad) {
        f.set(t[3], z);
        return siluGradV(f, c, get(t[3]), ct, t, f.local(T.v128));
      }
      if (act === 'none') return z;
      f.set(t[3], z);
      return siluV(f, c, get(t[3]), t);
    });
  });
  f.code.splice(start, 0, ...c.prologue());
  return f;
}

/**
 * Channels c0..c1 of N·C planes of HW floats: chanSum(x, C, HW, N, c0, c1, out) writes Σ over n and the plane to
 * out[c]; chanMoments(x, C, HW, N, c0, c1, mean, var) writes the mean and the biased variance (two passes: the
 * second sums (x − mean)², exact where E[x²] − E[x]² would cancel). Sums are float64 (two f64x2 accumulators).
 */
function statsFn(moments: boolean): Fn {
  const f = new Fn(moments ? 'chanMoments' : 'chanSum', Array.from({ length: moments ? 8 : 7 }, () => T.i32));
  const [px, C, HW, N, c0, c1, pm] = f.params;
  const pv = moments ? f.params[7] : -1;
  const ch = f.local(T.i32), n = f.local(T.i32), q = f.local(T.i32), e = f.local(T.i32), rowEnd = f.local(T.i32), pl = f.local(T.i32);
  const lo = f.local(T.v128), hi = f.local(T.v128), v = f.local(T.v128), vm = f.local(T.v128);
  const sum = f.local(F64), mean = f.local(F64);
  // One pass over channel ch: Σ x, or Σ (x − mean)² when `squared`.
  const pass = (squared: boolean): Expr => {
    f.set(lo, vzero);
    f.set(hi, vzero);
    f.set(sum, (h) => h.op(0x44, 0, 0, 0, 0, 0, 0, 0, 0)); // f64.const 0
    const elem = (x: Expr) => {
      f.set(v, x);
      if (squared) {
        f.set(v, vsub(get(v), get(vm)));
        f.set(v, vmul(get(v), get(v)));
      }
    };
    f.for(n, i32(0), get(N), i32(1), () => {
      // Offsets (not addresses) in the loop tests: the signed compares stay right above 2 GiB.
      f.set(pl, add(get(px), mul(mul(add(mul(get(n), get(C)), get(ch)), get(HW)), i32(4))));
      f.set(rowEnd, mul(get(HW), i32(4)));
      f.set(e, sub(get(rowEnd), i32(12)));
      f.for(q, i32(0), get(e), i32(16), () => {
        elem(load('v128', add(get(pl), get(q))));
        f.set(lo, dadd(get(lo), promoteLow(get(v))));
        f.set(hi, dadd(get(hi), promoteLow(shuffle(get(v), get(v), [2, 3, 0, 1]))));
      });
      f.for(q, get(q), get(rowEnd), i32(4), () => {
        elem(splat(load('f32', add(get(pl), get(q)))));
        f.set(sum, f64add(get(sum), f64ofF(extractLane(get(v), 0))));
      });
    });
    f.set(lo, dadd(get(lo), get(hi)));
    return f64add(get(sum), f64add(extractLaneF64(get(lo), 0), extractLaneF64(get(lo), 1)));
  };
  const at = (p: number) => add(get(p), mul(get(ch), i32(4)));
  f.for(ch, get(c0), get(c1), i32(1), () => {
    if (!moments) {
      f.store('f32', at(pm), f32ofD(pass(false)));
      return;
    }
    f.set(mean, f64div(pass(false), f64ofI(mul(get(N), get(HW)))));
    f.set(vm, splat(f32ofD(get(mean))));
    f.store('f32', at(pm), f32ofD(get(mean)));
    f.store('f32', at(pv), f32ofD(f64div(pass(true), f64ofI(mul(get(N), get(HW))))));
  });
  return f;
}

/** planeScale(x, s, y, HW, p0, p1): planes p0..p1 of HW floats, y = x·s[p] (a scale per plane: per image and channel). */
function planeScaleFn(): Fn {
  const f = new Fn('planeScale', Array.from({ length: 6 }, () => T.i32));
  const [px, ps, py, HW, p0, p1] = f.params;
  const p = f.local(T.i32), base = f.local(T.i32), vs = f.local(T.v128);
  f.for(p, get(p0), get(p1), i32(1), () => {
    f.set(base, mul(mul(get(p), get(HW)), i32(4)));
    f.set(vs, splat(load('f32', add(get(ps), mul(get(p), i32(4))))));
    streamLoop(f, [{ ptr: px }, { splat: vs }], py, base, get(HW), ([x, s]) => vmul(x, s));
  });
  return f;
}

const NAMES = ['sigmoid', 'silu', 'siluGrad', 'affine_cc_none', 'affine_cc_silu', 'affine_cf_none', 'affine_cf_silu', 'affine_fc_none', 'affine_fc_silu', 'affine_ff_none', 'affine_ff_silu', 'affineSiluGrad', 'chanSum', 'chanMoments', 'planeScale'] as const;
type Name = (typeof NAMES)[number];

let mod: Record<Name, PoolKernel> | null | undefined;

function kernelsOf(h: WasmHeap): Record<Name, PoolKernel> {
  const fns = [
    mapFn('sigmoid', 1, (f, c, [x], t) => sig(f, c, x, t)),
    mapFn('silu', 1, (f, c, [x], t) => {
      f.set(t[3], x);
      return siluV(f, c, get(t[3]), t);
    }),
    mapFn('siluGrad', 2, (f, c, [x, ct], t) => siluGradV(f, c, x, ct, t, f.local(T.v128))),
  ];
  for (const am of ['c', 'f'] as const) for (const bm of ['c', 'f'] as const) for (const act of ['none', 'silu'] as const) fns.push(affineFn(am, bm, act, false));
  fns.push(affineFn('c', 'c', 'silu', true), statsFn(false), statsFn(true), planeScaleFn());
  const bytes = assemble({ functions: fns, memory: h.importSpec() });
  return loadKernels(bytes, NAMES) as Record<Name, PoolKernel>;
}

function getKernels(): { h: WasmHeap; k: Record<Name, PoolKernel> } | null {
  const h = wasmHeap();
  if (!h) return null;
  if (mod === undefined) mod = kernelsOf(h);
  return mod ? { h, k: mod } : null;
}

/** Whether the wasm kernels of this module can run (else the callers keep their reference loops). */
export function fusedAvailable(): boolean {
  return getKernels() !== null;
}

const need = () => {
  const g = getKernels();
  if (!g) throw new Error('activations: WebAssembly SIMD is not available');
  return g;
};

/** Runs an elementwise kernel over [0, n) split into tasks of GRAIN elements (one task, on this thread, when small). */
function mapJob(k: PoolKernel, ins: readonly number[], out: number, n: number): void {
  if (n < 2 * GRAIN || poolThreads() === 1) {
    k.run(...ins, out, n);
    return;
  }
  const job = new Job();
  const parts = taskCount(Math.ceil(n / GRAIN));
  for (let i = 0; i < parts; i++) {
    const a = Math.floor((i * n) / parts / 4) * 4, b = i === parts - 1 ? n : Math.floor(((i + 1) * n) / parts / 4) * 4;
    if (b > a) job.callWith(k, [...ins.map((p) => p + 4 * a), out + 4 * a, b - a]).endTask();
  }
  job.run(0);
}

/** Splits [0, n) of units of `unit` elements into tasks of about GRAIN elements: (lo, hi) pairs. */
function unitTasks(n: number, unit: number): [number, number][] {
  const k = poolThreads() === 1 ? 1 : rangeCount(n, taskCount(Math.ceil((n * unit) / GRAIN)));
  const tasks: [number, number][] = [];
  for (let i = 0; i < k; i++) {
    const lo = rangeAt(i, n, k), hi = rangeAt(i + 1, n, k);
    if (hi > lo) tasks.push([lo, hi]);
  }
  return tasks;
}

// ---- pointer entry points (operands in the heap, byte addresses) ---------------------------------------------
/** out[i] = σ(x[i]) for n floats (out may be x). */
export function sigmoidPtr(px: number, pout: number, n: number): void {
  mapJob(need().k.sigmoid, [px], pout, n);
}

/** out[i] = x[i]·σ(x[i]) for n floats (out may be x). */
export function siluPtr(px: number, pout: number, n: number): void {
  mapJob(need().k.silu, [px], pout, n);
}

/** out[i] = ct[i]·silu'(x[i]), silu' = σ(1 + x(1 − σ)) (out may be x or ct). */
export function siluGradPtr(px: number, pct: number, pout: number, n: number): void {
  mapJob(need().k.siluGrad, [px, pct], pout, n);
}

/** Geometry of an affine over NCHW planes. */
export interface PlanesGeom {
  readonly N: number;
  readonly C: number;
  /** Floats per plane (H·W). */
  readonly HW: number;
}

/** y = act(x·a + b) over N·C planes; a and b per channel ('c') or full ('f'). */
export function affinePtr(px: number, pa: number, pb: number, py: number, g: PlanesGeom, am: AffineMode, bm: AffineMode, act?: 'silu'): void {
  const k = need().k[`affine_${am}${bm}_${act ?? 'none'}`];
  const job = new Job();
  for (const [p0, p1] of unitTasks(g.N * g.C, g.HW)) job.call(k, px, pa, pb, py, g.C, g.HW, g.HW, p0, p1).endTask();
  job.run(0);
}

/** out = ct·silu'(x·a + b), a and b per channel: the backward of a fused BN affine + SiLU in one pass (z is recomputed, never stored). */
export function affineSiluGradPtr(px: number, pa: number, pb: number, pct: number, pout: number, g: PlanesGeom): void {
  const k = need().k.affineSiluGrad;
  const job = new Job();
  for (const [p0, p1] of unitTasks(g.N * g.C, g.HW)) job.call(k, px, pa, pb, pct, pout, g.C, g.HW, g.HW, p0, p1).endTask();
  job.run(0);
}

/**
 * A per-row affine applied by a kernel to a block of its output while the block is in cache (batch norm folded
 * into a conv): row r of the block becomes act(row·scale[r] + shift[r]). `scale` and `shift` are byte addresses in
 * the heap of the values for the kernel's row 0 (its first output channel).
 */
export interface RowEpilogue {
  readonly scale: number;
  readonly shift: number;
  readonly act?: 'silu';
}

/** The epilogue for the rows from `row` on (a kernel's sub-block that starts at output channel `row`). */
export const epilogueFrom = (e: RowEpilogue, row: number): RowEpilogue => ({ scale: e.scale + 4 * row, shift: e.shift + 4 * row, act: e.act });

/**
 * Appends to `job`'s current task the epilogue `e` over `rows` rows of `len` floats, `ld` floats apart, from byte
 * address `py` (in the heap, or in the running thread's scratch), in place; row r takes the scale and shift of row
 * r mod `channels` (1: every row is one channel's, e.g. its planes of several images).
 */
export function affineRows(job: Job, e: RowEpilogue, py: number | ScratchArg, rows: number, len: number, ld: number, channels = rows): void {
  const k = need().k;
  job.call(e.act === 'silu' ? k.affine_cc_silu : k.affine_cc_none, py, e.scale, e.shift, py, channels, len, ld, 0, rows);
}

/** y = x·s[p] over `planes` planes of HW floats (s one float per plane, e.g. per image and channel of NCHW). */
export function planeScalePtr(px: number, ps: number, py: number, planes: number, HW: number): void {
  const k = need().k.planeScale;
  const job = new Job();
  for (const [p0, p1] of unitTasks(planes, HW)) job.call(k, px, ps, py, HW, p0, p1).endTask();
  job.run(0);
}

/** out[c] = Σ_{n, hw} x[n, c, hw] (C floats). */
export function channelSumPtr(px: number, pout: number, g: PlanesGeom): void {
  const k = need().k.chanSum;
  const job = new Job();
  for (const [c0, c1] of unitTasks(g.C, g.N * g.HW)) job.call(k, px, g.C, g.HW, g.N, c0, c1, pout).endTask();
  job.run(0);
}

/** mean[c], var[c] (biased) over n and the plane: BN's statistics. */
export function channelMomentsPtr(px: number, pmean: number, pvar: number, g: PlanesGeom): void {
  const k = need().k.chanMoments;
  const job = new Job();
  for (const [c0, c1] of unitTasks(g.C, g.N * g.HW)) job.call(k, px, g.C, g.HW, g.N, c0, c1, pmean, pvar).endTask();
  job.run(0);
}

// ---- typed-array entry points (views of the heap in place; other arrays copied in and out) -------------------
const planes = (g: PlanesGeom) => g.N * g.C * g.HW;
const modeLen = (m: AffineMode, g: PlanesGeom) => (m === 'c' ? g.C : planes(g));

function check(what: string, a: ArrayLike<number>, n: number): void {
  if (a.length !== n) throw new Error(`${what}: ${n} floats expected, got ${a.length}`);
}

function unary(kind: 'silu' | 'sigmoid', x: Float32Array, out?: Float32Array): Float32Array {
  const g = getKernels();
  if (!g) {
    const y = out ?? new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      const s = v >= 0 ? 1 / (1 + Math.exp(-v)) : Math.exp(v) / (1 + Math.exp(v));
      y[i] = kind === 'silu' ? v * s : s;
    }
    return y;
  }
  const { h } = g;
  return h.withF32(x, (px) => h.outF32(x.length, (py) => (kind === 'silu' ? siluPtr : sigmoidPtr)(px, py, x.length), out));
}

/** out[i] = x[i]·σ(x[i]) (float32; `out` may be `x`). */
export function siluF32(x: Float32Array, out?: Float32Array): Float32Array {
  return unary('silu', x, out);
}

/** out[i] = σ(x[i]) = 1 / (1 + e^(−x[i])) (float32; `out` may be `x`). */
export function sigmoidF32(x: Float32Array, out?: Float32Array): Float32Array {
  return unary('sigmoid', x, out);
}

/** ct·silu'(x) elementwise (same lengths). */
export function siluGradF32(x: Float32Array, ct: Float32Array, out?: Float32Array): Float32Array {
  check('siluGradF32', ct, x.length);
  const { h } = need();
  return h.withF32(x, (px) => h.withF32(ct, (pc) => h.outF32(x.length, (po) => siluGradPtr(px, pc, po, x.length), out)));
}

/** act(x·a + b) over NCHW planes, a and b per channel or full. */
export function affineF32(x: Float32Array, a: Float32Array, b: Float32Array, g: PlanesGeom, am: AffineMode, bm: AffineMode, act?: 'silu', out?: Float32Array): Float32Array {
  check('affineF32 x', x, planes(g));
  check('affineF32 a', a, modeLen(am, g));
  check('affineF32 b', b, modeLen(bm, g));
  const { h } = need();
  return h.withF32(x, (px) => h.withF32(a, (pa) => h.withF32(b, (pb) => h.outF32(x.length, (py) => affinePtr(px, pa, pb, py, g, am, bm, act), out))));
}

/** ct·silu'(x·a + b), a and b per channel. */
export function affineSiluGradF32(x: Float32Array, a: Float32Array, b: Float32Array, ct: Float32Array, g: PlanesGeom, out?: Float32Array): Float32Array {
  check('affineSiluGradF32 x', x, planes(g));
  check('affineSiluGradF32 ct', ct, planes(g));
  check('affineSiluGradF32 a', a, g.C);
  check('affineSiluGradF32 b', b, g.C);
  const { h } = need();
  return h.withF32(x, (px) => h.withF32(a, (pa) => h.withF32(b, (pb) => h.withF32(ct, (pc) => h.outF32(x.length, (po) => affineSiluGradPtr(px, pa, pb, pc, po, g), out)))));
}

/** Per-channel sums of NCHW planes (C floats). */
export function channelSumF32(x: Float32Array, g: PlanesGeom, out?: Float32Array): Float32Array {
  check('channelSumF32', x, planes(g));
  const { h } = need();
  return h.withF32(x, (px) => h.outF32(g.C, (po) => channelSumPtr(px, po, g), out));
}

/** Per-channel [mean…, biased variance…] of NCHW planes (2·C floats, the layout of the moments primitive). */
export function channelMomentsF32(x: Float32Array, g: PlanesGeom, out?: Float32Array): Float32Array {
  check('channelMomentsF32', x, planes(g));
  const { h } = need();
  return h.withF32(x, (px) => h.outF32(2 * g.C, (po) => channelMomentsPtr(px, po, po + 4 * g.C, g), out));
}

/**
 * A CPU kernel for the `silu` / `sigmoid` primitives: float32 through the SIMD path above, anything else through
 * `reference` (the backend's own kernel).
 */
export function fastActivationKernel(name: 'silu' | 'sigmoid', reference: Kernel<TypedArray>): Kernel<TypedArray> {
  const f = name === 'silu' ? siluF32 : sigmoidF32;
  return (inputs, attrs, out) => {
    const x = inputs[0].storage;
    if (out.dtype === 'float32' && x instanceof Float32Array && x.length === sizeOf(out.shape)) return f(x);
    return reference(inputs, attrs, out);
  };
}
