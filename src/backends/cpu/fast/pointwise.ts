/**
 * 1×1 convs (stride 1, no padding, one group) over small planes as ONE sgemm over all images instead of one per
 * image: with P = OH·OW pixels per plane, the per-image products are O×P×C with P as small as 16 (the 4×4 planes of
 * B0's last stages at 128 px), too thin for the sgemm's panels, and the filter gradient would write its whole O×C
 * result once per image. The products are those of the channel-major layout ([N, C, P] seen as X' = [C, N·P]):
 *
 *   forward      Y' = W · X'          (O × N·P)
 *   input grad   X̄' = Wᵀ · Ȳ'         (C × N·P)
 *   filter grad  W̄  = Ȳ' · X'ᵀ        (O × C, K = N·P)
 *
 * The forward and the input gradient read and write NCHW in place where the planes fill whole panels of the sgemm
 * (4×4, 8×8) or nearly (14×14: `inPlace`): the sgemm addresses X' and Y' image by image (GemmImages), each image in
 * panels of its own, the last one ragged. Otherwise (7×7), and always for the filter gradient (its k runs over images),
 * the planes are laid out channel-major first and back after ([N, C, P] ↔ [C, N·P], copy3d jobs on the pool's
 * threads), a copy of each operand that small planes keep small next to the product. Both give the same bits: the
 * same packed panels, summed in the same k order.
 * `pointwiseBatchedOk` says when a call takes the batched path at all.
 */
import type { ConvGeometry } from '../conv_geom.ts';
import { convSimdAvailable, kernels, rangeAt, simdHeap, taskCountFor } from './convsimd.ts';
import { Job, type PoolKernel } from './pool.ts';
import { imagesWaste, sgemmPtr } from './sgemm.ts';
import type { RowEpilogue } from './activations.ts';

/**
 * Whether planes of P pixels are read and written in place (the sgemm addressing the images: GemmImages) rather
 * than relaid: when the ragged last panel of each image wastes at most 1/16 of the arithmetic. Measured (batch 8,
 * SiLU epilogue, the two forms alternated in one process): B0's 14×14 layers (2% waste) 4–8% faster in place, its
 * 7×7 layers (12.5%) 4–10% slower than relaid; 4×4 and 8×8 planes waste nothing.
 */
const inPlace = (P: number): boolean => imagesWaste(P) <= 1 / 16;

/** Planes with fewer pixels than this take the batched path. */
const SMALL_PLANE = 256;

type Geometry = Pick<ConvGeometry, 'N' | 'C' | 'O' | 'OH' | 'OW' | 'pointwise' | 'groups'>;

/** Whether the conv runs as one sgemm over all images here (a 1×1 conv of more than one image with planes under 256 pixels). */
export function pointwiseBatchedOk(p: Geometry): boolean {
  return p.pointwise && p.groups === 1 && p.N > 1 && p.OH * p.OW < SMALL_PLANE && convSimdAvailable();
}

/** dst = src with its first two axes swapped: [A, B, P] → [B, A, P] (heap addresses), rows split over the pool. */
/** The copy kernel swap01 uses (looked up once). */
let copy3d: PoolKernel | undefined;

function swap01(src: number, dst: number, A: number, B: number, P: number): void {
  copy3d ??= kernels({ cn: 1, kh: 1, kw: 1, sh: 1, sw: 1, dh: 1, dw: 1 }).copy3d;
  const job = new Job();
  const k = copy3d;
  for (let i = 0, kt = taskCountFor(B); i < kt; i++) {
    const b0 = rangeAt(i, B, kt), b1 = rangeAt(i + 1, B, kt);
    job.call(k, src + b0 * P * 4, B * P * 4, P * 4, dst + b0 * A * P * 4, P * 4, A * P * 4, A, b1 - b0, P).endTask();
  }
  job.run(0);
}

/** Runs `body` with `n` floats of heap scratch per size given. */
function withScratch(sizes: readonly number[], body: (...ptrs: number[]) => void): void {
  const h = simdHeap('pointwise conv');
  const ptrs = sizes.map((n) => h.alloc(n * 4));
  try {
    body(...ptrs);
  } finally {
    ptrs.forEach((p) => h.release(p));
  }
}

/**
 * out ([N, Co, P] at pout) = W · in ([N, Ci, P] at pin) for every image at once, with W at pw stored [O, C] as the
 * conv's filter: W itself (Co = O, Ci = C) or, with `transW`, its transpose (Co = C, Ci = O). `epi` runs on the
 * channel-major product in the sgemm's micro-kernel (sgemm_wasm.ts) as it is stored. `out` must not overlap `in`
 * (the product reads `in` in place while it writes `out`).
 */
function channelProduct(pin: number, Ci: number, pw: number, transW: boolean, Co: number, pout: number, N: number, P: number, epi?: RowEpilogue, scale?: number): void {
  if (inPlace(P)) {
    const scaleB = scale === undefined ? undefined : { ptr: scale, stride: Ci };
    sgemmPtr(transW, false, Co, N * P, Ci, 1, pw, transW ? Co : Ci, pin, P, 0, pout, P, epi, { cols: P, strideB: Ci * P, strideC: Co * P }, scaleB);
    return;
  }
  if (scale !== undefined) throw new Error(`pointwise conv: an input scale needs the in-place product (planes of ${P} pixels; pointwiseScalesOk)`);
  withScratch([Ci * N * P, Co * N * P], (ic, oc) => {
    swap01(pin, ic, N, Ci, P);
    sgemmPtr(transW, false, Co, N * P, Ci, 1, pw, transW ? Co : Ci, ic, N * P, 0, oc, N * P, epi);
    swap01(oc, pout, Co, N, P);
  });
}

/**
 * y (at py, [N, O, P]) = w (at pw, [O, C]) applied to x (at px, [N, C, P]); `epi`: eval-mode batch norm folded into
 * the conv; `scale`: the heap address of N·C floats, x's plane (n, c) multiplied by the (n, c)th as it is read
 * (squeeze-excite's gate; pointwiseScalesOk geometries only).
 */
export function pointwiseForwardPtr(px: number, pw: number, py: number, p: Geometry, epi?: RowEpilogue, scale?: number): void {
  channelProduct(px, p.C, pw, false, p.O, py, p.N, p.OH * p.OW, epi, scale);
}

/** Whether the batched forward can scale its input per image and channel as the sgemm packs it (images-addressed planes). */
export function pointwiseScalesOk(p: Geometry): boolean {
  return pointwiseBatchedOk(p) && inPlace(p.OH * p.OW);
}

/** x̄ (at pdx, [N, C, P]) = wᵀ (w at pw, [O, C]) applied to ȳ (at pg, [N, O, P]). */
export function pointwiseGradInputPtr(pg: number, pw: number, pdx: number, p: Geometry): void {
  channelProduct(pg, p.O, pw, true, p.C, pdx, p.N, p.OH * p.OW);
}

/** w̄ (at pdw, [O, C]) = Σ over images and pixels of ȳ (at pg, [N, O, P]) times x (at px, [N, C, P]). */
export function pointwiseGradFilterPtr(px: number, pg: number, pdw: number, p: Geometry): void {
  const { N, C, O } = p, P = p.OH * p.OW;
  withScratch([C * N * P, O * N * P], (xc, gc) => {
    swap01(px, xc, N, C, P);
    swap01(pg, gc, N, O, P);
    sgemmPtr(false, true, O, C, N * P, 1, gc, N * P, xc, N * P, 0, pdw, C);
  });
}

const heap = () => simdHeap('pointwise conv');

/** The typed-array forms (views of the heap are used in place, `out` too). */
export function pointwiseForwardF32(X: Float32Array, Wt: Float32Array, p: Geometry, out?: Float32Array, epi?: RowEpilogue, S?: Float32Array): Float32Array {
  const h = heap();
  const run = (ps?: number) => h.withF32(X, (px) => h.withF32(Wt, (pw) => h.outF32(p.N * p.O * p.OH * p.OW, (py) => pointwiseForwardPtr(px, pw, py, p, epi, ps), out)));
  return S ? h.withF32(S, run) : run();
}

export function pointwiseGradInputF32(G: Float32Array, Wt: Float32Array, p: Geometry, out?: Float32Array): Float32Array {
  const h = heap();
  return h.withF32(G, (pg) => h.withF32(Wt, (pw) => h.outF32(p.N * p.C * p.OH * p.OW, (pdx) => pointwiseGradInputPtr(pg, pw, pdx, p), out)));
}

export function pointwiseGradFilterF32(X: Float32Array, G: Float32Array, p: Geometry, out?: Float32Array): Float32Array {
  const h = heap();
  return h.withF32(X, (px) => h.withF32(G, (pg) => h.outF32(p.O * p.C, (pdw) => pointwiseGradFilterPtr(px, pg, pdw, p), out)));
}
