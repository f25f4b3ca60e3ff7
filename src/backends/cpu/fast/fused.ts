/**
 * jit's fused elementwise groups as wasm SIMD loops over heap addresses (behind the CPU backend's `fuse`). One
 * function per group, all of a graph's groups in one module loaded on every pool thread; sizes and strides are
 * literals (shapes are static in a compiled graph). A group runs over its collapsed output shape as rows of the
 * last axis: per row each leaf's offset comes from the row index (outer strides), leaves constant along the row
 * (inner stride 0) are splatted once, the others read 4 floats at a time; the row's tail runs the same vector
 * code on one lane. Rows are split into tasks on the pool's threads when the group is large.
 *
 * A reducing group (`FusedGroup.reduce`) whose sums each cover whole rows of the inner axis (per-channel sums of
 * NCHW planes, per-plane sums, a full sum: `reduceLayout`) evaluates the same row code and adds the values into
 * float64 accumulators (storing them too where the group writes its values), in the order of eager's per-channel
 * sum kernel; its tasks are whole output elements, so the result does not depend on the thread count. Other
 * layouts run the JS loop.
 *
 * Every operation rounds to float32 as eager's kernels do, and SiLU / sigmoid / SiLU's gradient use the same
 * vector emitters as the eager fast kernels (vmath.ts), so a wasm group equals eager bit for bit on the plain
 * arithmetic and within those emitters' documented error bounds elsewhere. Buffers outside the heap (inputs and
 * outputs the caller allocated) are copied through heap scratch when small (heap.ts `STAGE_MAX_FLOATS`). Groups
 * with an op that has no exact vector form here (exp, log, tanh, pow, softplus), float64 groups, more than
 * MAX_LEAVES leaves, and calls with a larger buffer outside the heap run the group's JS loop (../fused.ts).
 */
import type { FusedGroup, KernelArg, TypedArray } from '../../backend.ts';
import { F64, dadd, promoteLow } from './activations.ts';
import { Consts, sig, siluGradV, siluV } from './vmath.ts';
import { type WasmHeap, wasmHeap } from './heap.ts';
import { Job, type PoolKernel, loadKernels, poolThreads, taskCount } from './pool.ts';
import { Fn, T, type Expr, add, assemble, extractLaneF64, f32ofD, f64add, f64ofF, get, i32, load, mul, shuffle, splat, vadd, vdiv, vmul, vsub, vzero } from './wasm.ts';

/** Leaves a group may have (pool calls take 12 arguments: the leaves, the output and a row range; one fewer leaf for a group writing values and sums). */
const MAX_LEAVES = 9;
/** Elements per task when a group is split across threads (below two of them it runs on the calling thread). */
const GRAIN = 1 << 16;

const simd = (op: number) => (...xs: Expr[]): Expr => (f) => {
  for (const x of xs) x(f);
  f.simd(op);
};
const vabs = simd(0xe0), vneg = simd(0xe1), vsqrt = simd(0xe3), vmin = simd(0xe8), vmax = simd(0xe9);
const veq = simd(0x41), vne = simd(0x42), vlt = simd(0x43), vgt = simd(0x44), vge = simd(0x46);
const vand = simd(0x4e), vor = simd(0x50), vbitselect = simd(0x52);
const divU = (a: Expr, b: Expr): Expr => (f) => { a(f); b(f); f.op(0x6e); };
const remU = (a: Expr, b: Expr): Expr => (f) => { a(f); b(f); f.op(0x70); };
const lane0 = (a: Expr): Expr => (f) => { a(f); f.simd(0x1f, 0); };

/** The primitives with a vector form here (arity checked by the graph). */
const VECTOR = new Set(['neg', 'abs', 'sqrt', 'sign', 'relu', 'sigmoid', 'silu', 'siluGrad', 'add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'greater', 'greaterEqual', 'equal', 'where', 'affine', 'broadcastTo']);

export function fusable(g: FusedGroup): boolean {
  if (g.dtype !== 'float32' || g.leaves.length > MAX_LEAVES || g.leaves.some((l) => l.dtype !== 'float32')) return false;
  if (!g.nodes.every((n) => VECTOR.has(n.prim))) return false;
  if (g.reduce && (!reduceLayout(g) || (g.reduce.values && g.leaves.length > MAX_LEAVES - 1))) return false;
  const r = g.loopShape.length;
  return r === 0 || g.leaves.every((l) => l.strides[r - 1] === 0 || l.strides[r - 1] === 1);
}

/** The vector value of one node from its operands' vectors. */
function nodeValue(f: Fn, c: Consts, prim: string, [a, b, cc]: Expr[], t: number[]): Expr {
  const one = c.k(1), zero = c.k(0);
  switch (prim) {
    case 'broadcastTo': return a;
    case 'neg': return vneg(a);
    case 'abs': return vabs(a);
    case 'sqrt': return vsqrt(a);
    case 'sign': {
      f.set(t[3], a);
      return vor(vand(vgt(get(t[3]), zero), one), vand(vlt(get(t[3]), zero), c.k(-1)));
    }
    case 'relu': {
      f.set(t[3], a);
      return vand(get(t[3]), vgt(get(t[3]), zero));
    }
    case 'sigmoid': return sig(f, c, a, t);
    case 'silu': {
      f.set(t[3], a);
      return siluV(f, c, get(t[3]), t);
    }
    case 'siluGrad': return siluGradV(f, c, a, b, t, f.local(T.v128));
    case 'add': return vadd(a, b);
    case 'sub': return vsub(a, b);
    case 'mul': return vmul(a, b);
    case 'div': return vdiv(a, b);
    case 'maximum': return vmax(a, b);
    case 'minimum': return vmin(a, b);
    case 'greater': return vand(vgt(a, b), one);
    case 'greaterEqual': return vand(vge(a, b), one);
    case 'equal': return vand(veq(a, b), one);
    case 'where': return vbitselect(b, cc, vne(a, zero));
    case 'affine': return vadd(vmul(a, b), cc);
  }
  throw new Error(`fused: no vector form for '${prim}'`);
}

/**
 * The group's expression along one row of its collapsed shape, in function `f` whose first parameters are the leaf
 * pointers: `setRow()` computes the leaves' offsets for the row in local `row` (and splats the leaves constant
 * along it); `value(vec)` loads the leaves at byte offset `j` of the row (4 lanes, or one splatted) and returns the
 * last node's vector. `prologue` fills the vector constants (spliced in at the function's start by the caller).
 */
function rowEvaluator(f: Fn, g: FusedGroup) {
  const ptrs = f.params.slice(0, g.leaves.length);
  const dims = g.loopShape.length ? g.loopShape : [1];
  const st = g.loopShape.length ? g.leaves.map((l) => l.strides) : g.leaves.map(() => [0]);
  const r = dims.length;
  const row = f.local(T.i32), j = f.local(T.i32);
  const base = ptrs.map(() => f.local(T.i32)), xv = ptrs.map(() => f.local(T.v128)), vals = g.nodes.map(() => f.local(T.v128));
  const t = [f.local(T.v128), f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const c = new Consts(f);
  // Row index → offset along the outer axes (row-major over dims[0..r-2]).
  const outer = (k: number): Expr => {
    let sum: Expr = i32(0);
    let inner = 1;
    for (let d = r - 2; d >= 0; d--) {
      const s = st[k][d];
      if (s !== 0) {
        const q = inner === 1 ? get(row) : divU(get(row), i32(inner));
        const idx = d === 0 ? q : remU(q, i32(dims[d]));
        const prev = sum;
        sum = add(prev, mul(idx, i32(s * 4)));
      }
      inner *= dims[d];
    }
    return sum;
  };
  const setRow = () =>
    ptrs.forEach((p, k) => {
      f.set(base[k], add(get(p), outer(k)));
      if (st[k][r - 1] === 0) f.set(xv[k], splat(load('f32', get(base[k]))));
    });
  const value = (vec: boolean): Expr => {
    ptrs.forEach((_, k) => {
      if (st[k][r - 1] === 0) return;
      const at = add(get(base[k]), get(j));
      f.set(xv[k], vec ? load('v128', at) : splat(load('f32', at)));
    });
    g.nodes.forEach((n, i) => {
      const args = n.args.map((a) => ('leaf' in a ? get(xv[a.leaf]) : get(vals[a.node])));
      f.set(vals[i], nodeValue(f, c, n.prim, args, t));
    });
    return get(vals[vals.length - 1]);
  };
  return { row, j, len: dims[r - 1], setRow, value, prologue: () => c.prologue() };
}

/** fn(leaf ptrs…, out, row0, row1): the group over rows [row0, row1) of its collapsed shape. */
function groupFn(name: string, g: FusedGroup): Fn {
  const L = g.leaves.length;
  const f = new Fn(name, Array.from({ length: L + 3 }, () => T.i32));
  const [out, r0, r1] = f.params.slice(L);
  const start = f.code.length;
  const e = rowEvaluator(f, g);
  const { row, j, len } = e;
  const ob = f.local(T.i32);
  f.for(row, get(r0), get(r1), i32(1), () => {
    f.set(ob, add(get(out), mul(get(row), i32(len * 4))));
    e.setRow();
    f.for(j, i32(0), i32(len * 4 - 12), i32(16), () => f.store('v128', add(get(ob), get(j)), e.value(true)));
    f.for(j, get(j), i32(len * 4), i32(4), () => f.store('f32', add(get(ob), get(j)), lane0(e.value(false))));
  });
  f.code.splice(start, 0, ...e.prologue());
  return f;
}

/**
 * A reducing group's rows seen as N × C rows (row n·C + c) of its summed inner axis, output element c summing rows
 * n·C + c over n: the per-channel sums of NCHW planes, per-plane sums, a full sum. Null for other layouts (a kept
 * inner axis, or kept and summed outer axes interleaved otherwise).
 */
export function reduceLayout(g: FusedGroup): { N: number; C: number } | null {
  const rs = g.reduce?.strides, dims = g.loopShape;
  if (!rs) return null;
  const r = dims.length;
  if (r === 0) return { N: 1, C: 1 };
  if (rs[r - 1] !== 0) return null;
  // The outer axes: a leading run of summed ones (n), then kept ones numbering the outputs row-major (c).
  let lead = 0;
  while (lead < r - 1 && rs[lead] === 0) lead++;
  let step = 1;
  for (let d = r - 2; d >= lead; d--) {
    if (rs[d] !== step) return null;
    step *= dims[d];
  }
  return { N: dims.slice(0, lead).reduce((p, d) => p * d, 1), C: step };
}

/**
 * fn(leaf ptrs…, [values,] out, c0, c1): output elements [c0, c1) of a reducing group of layout `N` × `C` rows
 * (`reduceLayout`), each the float64 sum of the values of its N rows, accumulated in the order of eager's
 * per-channel sum kernel (two f64x2 accumulators for the 4-lane part, one f64 for the row tails), so a group whose
 * values equal eager's stored input sums to eager's result bit for bit.
 */
function reduceFn(name: string, g: FusedGroup, N: number, C: number): Fn {
  const L = g.leaves.length;
  const values = !!g.reduce?.values;
  const f = new Fn(name, Array.from({ length: L + (values ? 4 : 3) }, () => T.i32));
  const [pv, out, c0, c1] = values ? f.params.slice(L) : [-1, ...f.params.slice(L)];
  const start = f.code.length;
  const e = rowEvaluator(f, g);
  const { row, j, len } = e;
  const ch = f.local(T.i32), n = f.local(T.i32), y = f.local(T.v128), lo = f.local(T.v128), hi = f.local(T.v128), sum = f.local(F64), vb = f.local(T.i32);
  // With `values`, each value is also stored at its index (row-major over the loop shape).
  const value = (vec: boolean): Expr => {
    f.set(y, e.value(vec));
    if (values) {
      const at = add(get(vb), get(j));
      if (vec) f.store('v128', at, get(y));
      else f.store('f32', at, lane0(get(y)));
    }
    return get(y);
  };
  f.for(ch, get(c0), get(c1), i32(1), () => {
    f.set(lo, vzero);
    f.set(hi, vzero);
    f.set(sum, (h) => h.op(0x44, 0, 0, 0, 0, 0, 0, 0, 0)); // f64.const 0
    f.for(n, i32(0), i32(N), i32(1), () => {
      f.set(row, add(mul(get(n), i32(C)), get(ch)));
      if (values) f.set(vb, add(get(pv), mul(get(row), i32(len * 4))));
      e.setRow();
      f.for(j, i32(0), i32(len * 4 - 12), i32(16), () => {
        f.set(y, value(true));
        f.set(lo, dadd(get(lo), promoteLow(get(y))));
        f.set(hi, dadd(get(hi), promoteLow(shuffle(get(y), get(y), [2, 3, 0, 1]))));
      });
      f.for(j, get(j), i32(len * 4), i32(4), () => f.set(sum, f64add(get(sum), f64ofF(lane0(value(false))))));
    });
    f.set(lo, dadd(get(lo), get(hi)));
    f.store('f32', add(get(out), mul(get(ch), i32(4))), f32ofD(f64add(get(sum), f64add(extractLaneF64(get(lo), 0), extractLaneF64(get(lo), 1)))));
  });
  f.code.splice(start, 0, ...e.prologue());
  return f;
}

/**
 * Runs k(args…, u0, u1) over units [0, units) of `per` elements each (an elementwise group's rows, a reducing
 * group's output elements), split into tasks of whole units when large, so every sum is computed by one thread in
 * one order whatever the thread count. `args`: the leaves' and outputs' addresses, then two slots this fills with
 * each task's unit range (the caller's array, reused call after call).
 */
function runUnits(k: PoolKernel, args: number[], units: number, per: number): void {
  const n = units * per;
  const lo = args.length - 2, hi = args.length - 1;
  if (n < 2 * GRAIN || poolThreads() === 1 || units === 1) {
    args[lo] = 0;
    args[hi] = units;
    k.run.apply(null, args);
    return;
  }
  const parts = Math.min(units, taskCount(Math.ceil(n / GRAIN)));
  const job = new Job();
  for (let i = 0; i < parts; i++) {
    args[lo] = Math.floor((i * units) / parts);
    args[hi] = Math.floor(((i + 1) * units) / parts);
    if (args[hi] > args[lo]) job.callWith(k, args).endTask();
  }
  job.run(0);
}

/**
 * Runs a group into `out` (its values, or a reducing group's sums) and `sums` (a group writing both) from its leaves
 * and returns true, or returns false when a buffer outside the heap is too large to stage (the caller runs the JS loop).
 */
export type WasmGroup = (out: TypedArray, ins: readonly KernelArg<TypedArray>[], sums: TypedArray | null) => boolean;

/**
 * A group's buffers for one call: its leaves, the output, and the sums of a group writing both (null otherwise), in
 * one array reused call after call. Buffers outside the heap of up to STAGE_MAX_FLOATS go through the heap's stage
 * (`WasmHeap.stageCall`: leaves copied in, outputs copied out around the kernel): a copy costs ~0.1 ns a float here
 * against ~1 ns (arithmetic) to ~20 ns (Math.exp) a float for the JS loop over at least as many elements, and the
 * kernel computes what it computes on heap buffers, bit for bit. In a compiled graph those are the small parameters
 * (biases, batch-norm vectors) given as inputs, and small outputs.
 */
function callBuffers(L: number): (ins: readonly KernelArg<TypedArray>[], y: TypedArray, sums: TypedArray | null) => (Float32Array | null)[] {
  const bufs = new Array<Float32Array | null>(L + 2).fill(null);
  return (ins, y, sums) => {
    for (let q = 0; q < L; q++) bufs[q] = ins[q].storage as Float32Array;
    bufs[L] = y as Float32Array;
    bufs[L + 1] = sums as Float32Array | null;
    return bufs;
  };
}

/** An elementwise group's kernel `k` as a `WasmGroup`. */
function bindRows(h: WasmHeap, k: PoolKernel, g: FusedGroup): WasmGroup {
  const shape = g.loopShape;
  const len = shape.length ? shape[shape.length - 1] : 1;
  const rows = shape.length ? shape.slice(0, -1).reduce((p, d) => p * d, 1) : 1;
  const L = g.leaves.length;
  const args = new Array<number>(L + 3).fill(0); // leaves, output, unit range
  const buffers = callBuffers(L);
  return (y, ins) => {
    const bufs = buffers(ins, y, null);
    if (!h.stageCall(bufs, L, args)) return false;
    if (rows * len > 0) runUnits(k, args, rows, len);
    h.unstage(bufs, L, args);
    bufs.fill(null);
    return true;
  };
}

/** A reducing group's kernel `k` (layout N × C rows of `len`) as a `WasmGroup`. */
function bindReduce(h: WasmHeap, k: PoolKernel, g: FusedGroup, { N, C }: { N: number; C: number }): WasmGroup {
  const len = g.loopShape.length ? g.loopShape[g.loopShape.length - 1] : 1;
  const L = g.leaves.length;
  // Leaves, [values,] sums, unit range: one array per form (with and without the values), reused.
  const forms = [new Array<number>(L + 3).fill(0), new Array<number>(L + 4).fill(0)];
  const buffers = callBuffers(L);
  return (y, ins, sums) => {
    const args = forms[sums ? 1 : 0];
    const bufs = buffers(ins, y, sums);
    if (!h.stageCall(bufs, L, args)) return false;
    runUnits(k, args, C, N * len);
    h.unstage(bufs, L, args);
    bufs.fill(null);
    return true;
  };
}

/** wasm SIMD kernels for the groups `fusable` accepts (undefined for the others), all in one module. */
export function compileWasmGroups(groups: readonly FusedGroup[]): (WasmGroup | undefined)[] {
  const out: (WasmGroup | undefined)[] = groups.map(() => undefined);
  const h = wasmHeap();
  if (!h) return out;
  const which = groups.map((g, i) => (fusable(g) ? i : -1)).filter((i) => i >= 0);
  if (!which.length) return out;
  const names = which.map((i) => `fused${i}`);
  const layouts = which.map((i) => reduceLayout(groups[i]));
  const fns = which.map((i, n) => (layouts[n] ? reduceFn(names[n], groups[i], layouts[n]!.N, layouts[n]!.C) : groupFn(names[n], groups[i])));
  const mod = loadKernels(assemble({ functions: fns, memory: h.importSpec() }), names);
  which.forEach((i, n) => {
    const layout = layouts[n];
    out[i] = layout ? bindReduce(h, mod[names[n]], groups[i], layout) : bindRows(h, mod[names[n]], groups[i]);
  });
  return out;
}
