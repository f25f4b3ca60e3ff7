/**
 * The CPU kernels of the convolution family, keyed by primitive name (spread into the CPU backend's kernel map in
 * ./index.ts). One geometry record per call (conv_geom.ts); one float64 TypeScript reference per op (conv_ref.ts,
 * which also serves float32 where no fast path applies) and one float32 fast path:
 *   - depthwise (one input channel per group), column stride 1–2: the wasm SIMD kernels of fast/dwconv.ts (four
 *     channels per vector over planes up to 128×128, fast/dwlanes.ts; row kernels otherwise);
 *   - dense (one group) over at most 8 input channels and 200 taps C·kh·kw, not pointwise (EfficientNet's stem): the
 *     direct wasm SIMD kernel of fast/directconv.ts, which copies each band of input rows into thread scratch
 *     instead of building an im2col matrix;
 *   - every other conv (depthwise with wider strides included): im2col into the wasm heap, the matrices of several
 *     images at once on the pool's threads (fast/im2col.ts), then the sgemm (fast/sgemm.ts), which reads them in
 *     place: with one group and the output in the heap (jit's arena), every image's product in one job
 *     (sgemmBatchPtr; the filter gradient's sum over images with sgemmSumPtr), else per image and group; a 1×1
 *     stride-1 unpadded (pointwise) conv skips im2col and multiplies the input planes directly, and over planes of
 *     fewer than 256 pixels (several images, one group) runs as one sgemm over all the images, addressed in place
 *     or laid side by side (fast/pointwise.ts);
 *   - stochastic conv, column stride 1–2: the wasm SIMD window kernels of fast/stochconv.ts.
 * conv2dAffine (a conv2d with eval-mode batch norm folded in) takes conv2d's fast path with an epilogue: the
 * per-channel affine (+ SiLU) runs on each block of output while it is in cache — the depthwise lane kernels'
 * registers (the row kernels' staging stack before its copy-out), the direct kernel's registers, the sgemm's
 * micro-tiles as they leave the registers (the batched 1×1 product's too) — instead of as a second pass over the
 * whole output.
 * All of them run on the pool's threads and write into `OutSpec.into` when given (jit's arena slots, views of the
 * wasm heap that the wasm kernels address in place). Tests compare them with the references (convReferenceKernels).
 *
 * conv2d and conv2dAffine also write the sum over each output plane into `attrs.sums` when given (`writesSums`:
 * jit's depthwise conv → global average pool): the depthwise lane kernels add up the values in their registers as
 * they store them (fast/dwlanes.ts states the error), every other path runs the `sum` kernel (reduce.ts) over the
 * output after it, so any geometry and dtype gets them.
 *
 * A 1×1 conv2d / conv2dAffine with `attrs.inputScale` takes one more input, a scale per image and input channel
 * (`takesInputScale`: jit's squeeze-excite gate folded into the conv): the sgemm multiplies the input's rows by it as
 * it packs them (the images-addressed small-plane product, or one product per image into the heap: `scalesAsPacked`);
 * other calls scale the input into heap scratch first (the mul's own float32 products either way).
 */
import type { FusedSums, Kernel, KernelArg, OutSpec, TypedArray } from '../backend.ts';
import { takesInputScale, writesSums } from '../kernel.ts';
import type {
  Conv2dAffineAttrs,
  Conv2dAttrs,
  Conv2dGradFilterAttrs,
  Conv2dGradInputAttrs,
  StochasticConv2dAttrs,
  StochasticConv2dGradFilterAttrs,
  StochasticConv2dGradInputAttrs,
} from '../../autograd/conv.ts';
import { sizeOf } from '../../tensor/shape.ts';
import { col2im, im2col } from './conv_gemm.ts';
import { type ConvGeometry, convGeometry, stochasticGeometry } from './conv_geom.ts';
import * as R from './conv_ref.ts';
import { depthwiseForwardF32, depthwiseGradFilterF32, depthwiseGradInputF32, depthwiseSimdOk } from './fast/dwconv.ts';
import { pointwiseBatchedOk, pointwiseForwardF32, pointwiseScalesOk, pointwiseGradFilterF32, pointwiseGradInputF32 } from './fast/pointwise.ts';
import { wasmHeap } from './fast/heap.ts';
import { heapOut, into } from './heap_out.ts';
import { im2colPtr } from './fast/im2col.ts';
import { directConvForwardF32, directConvOk } from './fast/directconv.ts';
import { type GemmRowScale, sgemm, sgemmBatchPtr, sgemmIsWasm, sgemmSumPtr } from './fast/sgemm.ts';
import { type RowEpilogue, epilogueFrom, fusedAvailable, planeScalePtr } from './fast/activations.ts';
import { type Decode, stochasticForwardF32, stochasticGradFilterF32, stochasticGradInputF32, stochasticSimdOk } from './fast/stochconv.ts';
import { sumImpl } from './reduce.ts';
import { elementwiseExprs, elementwiseKernel } from './elementwise.ts';

type Arg = KernelArg<TypedArray>;
const f32 = (a: Arg) => a.storage as Float32Array;
const isF32 = (args: readonly Arg[], out: OutSpec) => out.dtype === 'float32' && args.every((a) => a.storage instanceof Float32Array);
/** The float32 output: as `heapOut`, else a new array; zeroed when `zero` (kernels that accumulate). */
function outF32(out: OutSpec, zero: boolean): Float32Array {
  const y = heapOut(out);
  return y ? (zero ? y.fill(0) : y) : new Float32Array(sizeOf(out.shape));
}

/**
 * Runs `body` with a float32 im2col buffer of `n` floats: a view of the wasm heap when there is one (so the sgemm
 * reads it in place), else a plain array.
 */
function withCol<R>(n: number, body: (col: Float32Array) => R): R {
  const h = wasmHeap();
  if (!h) return body(new Float32Array(n));
  const p = h.alloc(n * 4);
  try {
    return body(h.view(p, n));
  } finally {
    h.release(p);
  }
}

/**
 * Runs `body` with `a` as a view of the wasm heap: `a` itself when it is one, else a copy made once for the whole
 * call (the sgemm would otherwise copy its operand per image and per column chunk). Without a heap, `a`.
 */
function inHeap<R>(a: Float32Array, body: (v: Float32Array) => R): R {
  const h = wasmHeap();
  if (!h || h.ptrOf(a) >= 0) return body(a);
  return h.withF32(a, (p) => body(h.view(p, a.length)));
}

/** Floats of im2col matrices built per job (at least one image's). */
const COL_FLOATS = 1 << 22;

/**
 * Calls f(n0, n1, col, colOff) for chunks of images [n0, n1) whose im2col matrices lie in col from colOff on,
 * image n's group g at colOff + ((n − n0)·groups + g)·KP (KP = Cg·kh·kw·OH·OW floats). For a pointwise conv the
 * matrices are the input planes themselves: one chunk, the input (a view of the heap when there is one). With the
 * wasm heap, the matrices of as many images as fit COL_FLOATS are built by one job on the pool's threads
 * (fast/im2col.ts); without, one image at a time here.
 */
function eachColChunk(x: Arg, p: ConvGeometry, f: (n0: number, n1: number, col: Float32Array, colOff: number) => void): void {
  const KP = p.Cg * p.kh * p.kw * p.OH * p.OW;
  const h = wasmHeap();
  if (p.pointwise) return h ? inHeap(f32(x), (xh) => f(0, p.N, xh, 0)) : f(0, p.N, f32(x), 0);
  if (!h) {
    return withCol(p.groups * KP, (col) => {
      for (let n = 0; n < p.N; n++) {
        for (let g = 0; g < p.groups; g++) im2col(f32(x), (n * p.C + g * p.Cg) * p.H * p.W, p, col, g * KP);
        f(n, n + 1, col, 0);
      }
    });
  }
  const per = Math.max(1, Math.min(p.N, Math.floor(COL_FLOATS / (KP * p.groups))));
  inHeap(f32(x), (xh) =>
    withCol(per * p.groups * KP, (col) => {
      for (let n0 = 0; n0 < p.N; n0 += per) {
        const n1 = Math.min(p.N, n0 + per);
        im2colPtr(h.ptrOf(xh), p, n0, n1, h.ptrOf(col));
        f(n0, n1, col, 0);
      }
    }),
  );
}

/** Calls f(n, g, col, colOff) for each image and group with the group's im2col matrix at col[colOff…] (eachColChunk). */
function eachGroupCol(x: Arg, p: ConvGeometry, f: (n: number, g: number, col: Float32Array, colOff: number) => void): void {
  const KP = p.Cg * p.kh * p.kw * p.OH * p.OW;
  eachColChunk(x, p, (n0, n1, col, colOff) => {
    for (let n = n0; n < n1; n++) for (let g = 0; g < p.groups; g++) f(n, g, col, colOff + ((n - n0) * p.groups + g) * KP);
  });
}

/** Calls f(n, g, xOff) for each image and group, with the offset of the group's first input plane. */
function eachGroup(p: ConvGeometry, f: (n: number, g: number, xOff: number) => void): void {
  for (let n = 0; n < p.N; n++) for (let g = 0; g < p.groups; g++) f(n, g, (n * p.C + g * p.Cg) * p.H * p.W);
}

/** A conv's attrs with, optionally, where the sums over its output planes go (`Kernel.writesSums`). */
type WithSums<A> = A & Partial<FusedSums<TypedArray>>;

/** sums[n, o] = Σ over output plane (n, o) of y: the `sum` kernel over axes [2, 3] (eager's sum), for the paths without their own. */
function planeSums(y: TypedArray, out: OutSpec, sums: TypedArray | undefined): TypedArray {
  if (sums) sumImpl([{ storage: y, shape: out.shape, dtype: out.dtype }], { axes: [2, 3], keepdims: false }, { shape: out.shape.slice(0, 2), dtype: out.dtype, into: sums });
  return y;
}

/**
 * jit's squeeze-excite fold (`Kernel.inputScale`): with `inputScale`, a 1×1 conv takes one more input, last, a scale
 * per image and input channel ([N, C, 1, 1]) its input is multiplied by.
 */
interface InputScaled {
  readonly inputScale?: boolean;
}

const mulLoop = elementwiseKernel('mul', 2, elementwiseExprs.mul[1]);

/** x·s with s one value per image and channel: the mul the fold replaced, by its own kernel (the reference paths' input). */
const scaledCopy = (x: Arg, s: Arg): Arg => ({ storage: mulLoop([x, s], {}, { shape: x.shape, dtype: x.dtype }), shape: x.shape, dtype: x.dtype });

export function conv2dImpl(args: readonly Arg[], a: WithSums<Conv2dAttrs> & InputScaled, out: OutSpec): TypedArray {
  const [x, w] = args;
  const s = a.inputScale ? args[2] : undefined;
  if (!isF32(args, out)) return planeSums(R.conv2dRefImpl([s ? scaledCopy(x, s) : x, w], a, out), out, a.sums);
  return conv2dF32(x, w, convGeometry(x.shape, w.shape, out.shape, a), out, undefined, a.sums, s);
}

const convThenAffine = R.convThenAffine(conv2dImpl);

/** y = act(conv2d(x, w)·a + b) with a, b per output channel: conv2d's float32 fast paths with the affine as their epilogue. */
export function conv2dAffineImpl(args: readonly Arg[], a: WithSums<Conv2dAffineAttrs> & InputScaled, out: OutSpec): TypedArray {
  const [x, w, sc, sh, s] = args;
  const h = wasmHeap();
  if (!h || !isF32(args, out) || !fusedAvailable() || !sgemmIsWasm()) {
    // The conv inside gets the scaled input and no sums: the sums are of the affine's output, taken after it.
    const conv = { ...a, sums: undefined, inputScale: false };
    return planeSums(convThenAffine(s ? [scaledCopy(x, s), w, sc, sh] : args, conv, out), out, a.sums);
  }
  const p = convGeometry(x.shape, w.shape, out.shape, a);
  return inHeap(f32(sc), (scale) => inHeap(f32(sh), (shift) => conv2dF32(x, w, p, out, { scale: h.ptrOf(scale), shift: h.ptrOf(shift), act: a.act }, a.sums, s)));
}

/**
 * The float32 conv2d (then `epi` on each block of output, in the kernel's task that computed it); with `sums`, the
 * sums over its output planes written there (by the depthwise kernels themselves, else by planeSums); with `s`, of
 * the input scaled per image and channel (InputScaled).
 */
function conv2dF32(x: Arg, w: Arg, p: ConvGeometry, out: OutSpec, epi?: RowEpilogue, sums?: TypedArray, s?: Arg): TypedArray {
  if (s && !scalesAsPacked(p, out)) return withScaledInput(x, s, p, (xs) => conv2dF32(xs, w, p, out, epi, sums));
  if (p.depthwise && depthwiseSimdOk(p)) return depthwiseForwardF32(f32(x), f32(w), p, heapOut(out), undefined, epi, sums as Float32Array | undefined);
  if (directConvOk(p)) return planeSums(directConvForwardF32(f32(x), f32(w), p, heapOut(out), epi), out, sums);
  if (pointwiseBatchedOk(p)) return planeSums(pointwiseForwardF32(f32(x), f32(w), p, heapOut(out), epi, s && f32(s)), out, sums);
  return planeSums(conv2dGemmF32(x, w, p, out, epi, s), out, sums);
}

/**
 * Whether a 1×1 conv's sgemm scales its input per image and channel as it packs it (the images-addressed product
 * over small planes, or one product per image into the heap): else the input is scaled into scratch first.
 */
function scalesAsPacked(p: ConvGeometry, out: OutSpec): boolean {
  if (pointwiseBatchedOk(p)) return pointwiseScalesOk(p);
  const y = into(out);
  return p.pointwise && p.groups === 1 && p.C > 0 && !!y && (wasmHeap()?.ptrOf(y) ?? -1) >= 0;
}

/** The float32 conv2d as im2col + sgemm (then `epi`); with `s` (1×1 convs writing into the heap: scalesAsPacked), of the input scaled per image and channel. */
function conv2dGemmF32(x: Arg, w: Arg, p: ConvGeometry, out: OutSpec, epi?: RowEpilogue, s?: Arg): TypedArray {
  const Y = outF32(out, false);
  const K = p.Cg * p.kh * p.kw, P = p.OH * p.OW;
  const h = wasmHeap();
  inHeap(f32(w), (wt) =>
    eachColChunk(x, p, (n0, n1, col, colOff) => {
      if (h && p.groups === 1 && K > 0 && h.ptrOf(Y) >= 0 && h.ptrOf(col) >= 0) {
        // Y[n] = W · col[n] for the whole chunk: one job over every image's stripes.
        const batch = { count: n1 - n0, strideA: 0, strideB: K * P, strideC: p.O * P };
        const run = (scaleB?: GemmRowScale) =>
          sgemmBatchPtr(false, false, p.O, P, K, 1, h.ptrOf(wt), K, h.ptrOf(col) + 4 * colOff, P, 0, h.ptrOf(Y) + 4 * n0 * p.O * P, P, batch, epi, scaleB);
        if (s) inHeap(f32(s), (sh) => run({ ptr: h.ptrOf(sh) + 4 * n0 * p.C, stride: p.C }));
        else run();
        return;
      }
      if (s) throw new Error('conv2d: an input scale needs the batched 1×1 product (scalesAsPacked)');
      for (let n = n0; n < n1; n++) {
        for (let g = 0; g < p.groups; g++) {
          // Y[n, g·Og + o, :] = W[g·Og + o, :] · col
          const at = colOff + ((n - n0) * p.groups + g) * K * P;
          sgemm(false, false, p.Og, P, K, 1, wt, g * p.Og * K, K, col, at, P, 0, Y, (n * p.O + g * p.Og) * P, P, epi && epilogueFrom(epi, g * p.Og));
        }
      }
    }),
  );
  return Y;
}

/** Runs `body` with x·s (s per image and channel) in heap scratch. */
function withScaledInput<R>(x: Arg, s: Arg, p: ConvGeometry, body: (xs: Arg) => R): R {
  const h = wasmHeap();
  if (!h) return body(scaledCopy(x, s));
  const HW = p.H * p.W;
  return inHeap(f32(x), (xh) => inHeap(f32(s), (sh) => withCol(p.N * p.C * HW, (xs) => {
    planeScalePtr(h.ptrOf(xh), h.ptrOf(sh), h.ptrOf(xs), p.N * p.C, HW);
    return body({ storage: xs, shape: x.shape, dtype: x.dtype });
  })));
}

export function conv2dGradInputImpl([ct, w]: readonly Arg[], a: Conv2dGradInputAttrs, out: OutSpec): TypedArray {
  if (!isF32([ct, w], out)) return R.conv2dGradInputRefImpl([ct, w], a, out);
  const p = convGeometry(a.inputShape, w.shape, ct.shape, a);
  if (p.depthwise && depthwiseSimdOk(p)) return depthwiseGradInputF32(f32(ct), f32(w), p, heapOut(out));
  if (pointwiseBatchedOk(p)) return pointwiseGradInputF32(f32(ct), f32(w), p, heapOut(out));
  const DX = outF32(out, !p.pointwise);
  const K = p.Cg * p.kh * p.kw, P = p.OH * p.OW;
  const h = wasmHeap();
  if (h && p.pointwise && p.groups === 1 && p.O > 0 && h.ptrOf(DX) >= 0) {
    // DX[n] = Wᵀ · G[n] for every image in one job (as the forward's batched products).
    const batch = { count: p.N, strideA: 0, strideB: p.O * P, strideC: p.C * P };
    inHeap(f32(w), (wt) => inHeap(f32(ct), (g) => sgemmBatchPtr(true, false, p.C, P, p.O, 1, h.ptrOf(wt), p.C, h.ptrOf(g), P, 0, h.ptrOf(DX), P, batch)));
    return DX;
  }
  inHeap(f32(w), (wt) =>
    withCol(p.pointwise ? 0 : K * P, (colBuf) => {
      eachGroup(p, (n, g, xOff) => {
        const col = p.pointwise ? DX : colBuf;
        // col = W[g]ᵀ · G[n, g]  (K × P)
        sgemm(true, false, K, P, p.Og, 1, wt, g * p.Og * K, K, f32(ct), (n * p.O + g * p.Og) * P, P, 0, col, p.pointwise ? xOff : 0, P);
        if (!p.pointwise) col2im(col, 0, p, DX, xOff);
      });
    }),
  );
  return DX;
}

export function conv2dGradFilterImpl([x, ct]: readonly Arg[], a: Conv2dGradFilterAttrs, out: OutSpec): TypedArray {
  if (!isF32([x, ct], out)) return R.conv2dGradFilterRefImpl([x, ct], a, out);
  const p = convGeometry(x.shape, a.filterShape, ct.shape, a);
  if (p.depthwise && depthwiseSimdOk(p)) return depthwiseGradFilterF32(f32(x), f32(ct), p, heapOut(out));
  if (pointwiseBatchedOk(p)) return pointwiseGradFilterF32(f32(x), f32(ct), p, heapOut(out));
  const DW = outF32(out, true);
  const K = p.Cg * p.kh * p.kw, P = p.OH * p.OW;
  const h = wasmHeap();
  if (h && p.groups === 1 && p.N > 0 && P > 0 && h.ptrOf(DW) >= 0) {
    // DW += Σ_n G[n] · col[n]ᵀ over a chunk of images in one job (the same sums, in the same order, as per image).
    inHeap(f32(ct), (g) =>
      eachColChunk(x, p, (n0, n1, col, colOff) => {
        const parts = { count: n1 - n0, strideA: p.O * P, strideB: K * P };
        sgemmSumPtr(false, true, p.O, K, P, 1, h.ptrOf(g) + 4 * n0 * p.O * P, P, h.ptrOf(col) + 4 * colOff, P, 1, h.ptrOf(DW), K, parts);
      }),
    );
    return DW;
  }
  eachGroupCol(x, p, (n, g, col, colOff) => {
    // DW[g] += G[n, g] · colᵀ  (Og × K)
    sgemm(false, true, p.Og, K, P, 1, f32(ct), (n * p.O + g * p.Og) * P, P, col, colOff, P, 1, DW, g * p.Og * K, K);
  });
  return DW;
}

// ---- stochastic conv ---------------------------------------------------------------------------

/**
 * The stochastic conv's image and filter (or cotangent) on the SIMD path: both float32, or a uint8 image (read
 * through its decode) with a float32 other; null when the reference runs.
 */
function stochSimdArgs(x: Arg, other: Arg, a: StochasticConv2dAttrs, out: OutSpec): { image: Float32Array | Uint8Array; decode?: Decode } | null {
  const ok = out.dtype === 'float32' && other.storage instanceof Float32Array && (x.storage instanceof Float32Array || x.storage instanceof Uint8Array);
  if (!ok) return null;
  if (!(x.storage instanceof Uint8Array)) return { image: x.storage as Float32Array };
  const C = x.shape[1];
  return { image: x.storage, decode: a.decode ?? { scale: new Array<number>(C).fill(1), shift: new Array<number>(C).fill(0) } };
}

export function stochasticConv2dImpl([x, w]: readonly Arg[], a: StochasticConv2dAttrs, out: OutSpec): TypedArray {
  const s = stochasticGeometry(x.shape, w.shape, a);
  const simd = stochasticSimdOk(s) ? stochSimdArgs(x, w, a, out) : null;
  return simd ? stochasticForwardF32(simd.image, f32(w), s, heapOut(out), simd.decode) : R.stochasticConv2dRefImpl([x, w], a, out);
}

export function stochasticConv2dGradInputImpl([ct, w]: readonly Arg[], a: StochasticConv2dGradInputAttrs, out: OutSpec): TypedArray {
  const s = stochasticGeometry(a.inputShape, w.shape, a);
  return isF32([ct, w], out) && stochasticSimdOk(s) ? stochasticGradInputF32(f32(ct), f32(w), s, heapOut(out)) : R.stochasticConv2dGradInputRefImpl([ct, w], a, out);
}

export function stochasticConv2dGradFilterImpl([x, ct]: readonly Arg[], a: StochasticConv2dGradFilterAttrs, out: OutSpec): TypedArray {
  const s = stochasticGeometry(x.shape, a.filterShape, a);
  const simd = stochasticSimdOk(s) ? stochSimdArgs(x, ct, a, out) : null;
  return simd ? stochasticGradFilterF32(simd.image, f32(ct), s, heapOut(out), simd.decode) : R.stochasticConv2dGradFilterRefImpl([x, ct], a, out);
}

export const convKernels: Record<string, Kernel<TypedArray, any>> = {
  conv2d: takesInputScale(writesSums(conv2dImpl)),
  conv2dAffine: takesInputScale(writesSums(conv2dAffineImpl)),
  conv2dGradInput: conv2dGradInputImpl,
  conv2dGradFilter: conv2dGradFilterImpl,
  stochasticConv2d: stochasticConv2dImpl,
  stochasticConv2dGradInput: stochasticConv2dGradInputImpl,
  stochasticConv2dGradFilter: stochasticConv2dGradFilterImpl,
  avgPool2d: R.avgPool2dImpl,
  avgPool2dGrad: R.avgPool2dGradImpl,
  maxPool2d: R.maxPool2dImpl,
  maxPool2dGrad: R.maxPool2dGradImpl,
  maxPool2dSelect: R.maxPool2dSelectImpl,
};

/** The reference kernels under the same names (tests compare the two). */
export const convReferenceKernels: Record<string, Kernel<TypedArray, any>> = {
  ...convKernels,
  conv2d: R.conv2dRefImpl,
  conv2dAffine: R.conv2dAffineRefImpl,
  conv2dGradInput: R.conv2dGradInputRefImpl,
  conv2dGradFilter: R.conv2dGradFilterRefImpl,
  stochasticConv2d: R.stochasticConv2dRefImpl,
  stochasticConv2dGradInput: R.stochasticConv2dGradInputRefImpl,
  stochasticConv2dGradFilter: R.stochasticConv2dGradFilterRefImpl,
};
