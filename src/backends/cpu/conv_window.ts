/**
 * Direct "window" convolutions: one output plane from a few input planes, with every tap of the
 * kernel unrolled and its weight held in a local (code generated once per tap count and memoised,
 * like the elementwise kernels). They serve the depthwise fast path (one input plane per output
 * channel) and the stochastic conv (each output channel reads its own window of all C planes),
 * where no two output channels share an im2col matrix, so GEMM brings nothing.
 *
 * Geometry: output (i, j) reads input (oy0 + i·sh + ky·dh, ox0 + j·sw + kx·dw) of each plane.
 * Outputs whose taps are all in bounds take the unrolled loop; the rest (the padded border)
 * take a checked loop.
 */
import type { TypedArray } from '../backend.ts';

export interface Window {
  /** Input planes: offset of the first, H × W each, `cn` consecutive planes. */
  readonly xOff: number;
  readonly cn: number;
  readonly H: number;
  readonly W: number;
  readonly kh: number;
  readonly kw: number;
  readonly sh: number;
  readonly sw: number;
  readonly dh: number;
  readonly dw: number;
  /** Input coordinates of output (0, 0)'s top-left tap (−padding for a padded conv, the window corner for the stochastic one). */
  readonly oy0: number;
  readonly ox0: number;
  /** Output plane: offset, OH × OW. */
  readonly yOff: number;
  readonly OH: number;
  readonly OW: number;
  /** Filter taps for these planes: cn·kh·kw values from wOff. */
  readonly wOff: number;
}

type Fwd = (X: TypedArray, Wt: TypedArray, Y: TypedArray, g: Window, i0: number, i1: number, j0: number, j1: number, acc: boolean) => void;
type GradIn = (DX: TypedArray, Wt: TypedArray, G: TypedArray, g: Window, i0: number, i1: number, j0: number, j1: number) => void;
type GradW = (X: TypedArray, G: TypedArray, DW: TypedArray, g: Window, i0: number, i1: number, j0: number, j1: number) => void;

const taps = (cn: number, kh: number, kw: number) => {
  const t: { t: number; c: number; y: number; x: number }[] = [];
  for (let c = 0; c < cn; c++) for (let y = 0; y < kh; y++) for (let x = 0; x < kw; x++) t.push({ t: t.length, c, y, x });
  return t;
};
// Per-tap locals: offset within the planes and weight.
const prologue = (cn: number, kh: number, kw: number, withW: boolean) => `
  const HW = g.H * g.W, W = g.W, dh = g.dh, dw = g.dw, sh = g.sh, sw = g.sw, OW = g.OW;
  ${taps(cn, kh, kw).map(({ t, c, y, x }) => `const o${t} = ${c} * HW + ${y} * dh * W + ${x} * dw;${withW ? ` const w${t} = Wt[g.wOff + ${t}];` : ''}`).join('\n  ')}`;

const fwdCache = new Map<string, Fwd>();
const giCache = new Map<string, GradIn>();
const gwCache = new Map<string, GradW>();

function fwdKernel(cn: number, kh: number, kw: number): Fwd {
  const key = `${cn},${kh},${kw}`;
  let k = fwdCache.get(key);
  if (!k) {
    const sum = taps(cn, kh, kw).map(({ t }) => `w${t} * X[s + o${t}]`).join(' + ');
    const loop = (op: string) => `
      for (let i = i0; i < i1; i++) {
        let s = g.xOff + (g.oy0 + i * sh) * W + g.ox0 + j0 * sw;
        let d = g.yOff + i * OW + j0;
        for (let j = j0; j < j1; j++, s += sw, d++) Y[d] ${op} ${sum};
      }`;
    k = new Function('X', 'Wt', 'Y', 'g', 'i0', 'i1', 'j0', 'j1', 'acc', `${prologue(cn, kh, kw, true)}
      if (acc) { ${loop('+=')} } else { ${loop('=')} }`) as Fwd;
    fwdCache.set(key, k);
  }
  return k;
}

function gradInKernel(cn: number, kh: number, kw: number): GradIn {
  const key = `${cn},${kh},${kw}`;
  let k = giCache.get(key);
  if (!k) {
    const body = taps(cn, kh, kw).map(({ t }) => `DX[s + o${t}] += v * w${t};`).join(' ');
    k = new Function('DX', 'Wt', 'G', 'g', 'i0', 'i1', 'j0', 'j1', `${prologue(cn, kh, kw, true)}
      for (let i = i0; i < i1; i++) {
        let s = g.xOff + (g.oy0 + i * sh) * W + g.ox0 + j0 * sw;
        let d = g.yOff + i * OW + j0;
        for (let j = j0; j < j1; j++, s += sw, d++) { const v = G[d]; ${body} }
      }`) as GradIn;
    giCache.set(key, k);
  }
  return k;
}

function gradWKernel(cn: number, kh: number, kw: number): GradW {
  const key = `${cn},${kh},${kw}`;
  let k = gwCache.get(key);
  if (!k) {
    const ts = taps(cn, kh, kw);
    k = new Function('X', 'G', 'DW', 'g', 'i0', 'i1', 'j0', 'j1', `${prologue(cn, kh, kw, false)}
      ${ts.map(({ t }) => `let a${t} = 0;`).join(' ')}
      for (let i = i0; i < i1; i++) {
        let s = g.xOff + (g.oy0 + i * sh) * W + g.ox0 + j0 * sw;
        let d = g.yOff + i * OW + j0;
        for (let j = j0; j < j1; j++, s += sw, d++) { const v = G[d]; ${ts.map(({ t }) => `a${t} += v * X[s + o${t}];`).join(' ')} }
      }
      ${ts.map(({ t }) => `DW[g.wOff + ${t}] += a${t};`).join(' ')}`) as GradW;
    gwCache.set(key, k);
  }
  return k;
}

/** Outputs [lo, hi) along one axis whose taps all lie in [0, n). */
function interior(o0: number, s: number, d: number, k: number, n: number, count: number): [number, number] {
  const lo = o0 >= 0 ? 0 : Math.min(count, Math.ceil(-o0 / s));
  const last = o0 + (k - 1) * d; // tap of output 0 furthest along
  const hi = last > n - 1 ? 0 : Math.min(count, Math.floor((n - 1 - last) / s) + 1);
  return [lo, Math.max(lo, hi)];
}

/** Calls f(i, j) for every output outside the interior rectangle. */
function eachBorder(g: Window, i0: number, i1: number, j0: number, j1: number, f: (i: number, j: number) => void): void {
  for (let i = 0; i < g.OH; i++) {
    if (i >= i0 && i < i1) {
      for (let j = 0; j < j0; j++) f(i, j);
      for (let j = j1; j < g.OW; j++) f(i, j);
    } else for (let j = 0; j < g.OW; j++) f(i, j);
  }
}

/** Calls f(xIndex, tap) for every in-bounds tap of output (i, j). */
function eachTap(g: Window, i: number, j: number, f: (x: number, t: number) => void): void {
  let t = 0;
  for (let c = 0; c < g.cn; c++) {
    for (let ky = 0; ky < g.kh; ky++) {
      const y = g.oy0 + i * g.sh + ky * g.dh;
      for (let kx = 0; kx < g.kw; kx++, t++) {
        const x = g.ox0 + j * g.sw + kx * g.dw;
        if (y >= 0 && y < g.H && x >= 0 && x < g.W) f(g.xOff + (c * g.H + y) * g.W + x, t);
      }
    }
  }
}

const ranges = (g: Window) => [...interior(g.oy0, g.sh, g.dh, g.kh, g.H, g.OH), ...interior(g.ox0, g.sw, g.dw, g.kw, g.W, g.OW)] as const;

/** Y plane (+)= window conv of the `cn` planes. */
export function windowForward(X: TypedArray, Wt: TypedArray, Y: TypedArray, g: Window, acc: boolean): void {
  const [i0, i1, j0, j1] = ranges(g);
  if (i1 > i0 && j1 > j0) fwdKernel(g.cn, g.kh, g.kw)(X, Wt, Y, g, i0, i1, j0, j1, acc);
  eachBorder(g, i1 > i0 && j1 > j0 ? i0 : 0, i1 > i0 && j1 > j0 ? i1 : 0, j0, j1, (i, j) => {
    let s = 0;
    eachTap(g, i, j, (x, t) => (s += X[x] * Wt[g.wOff + t]));
    const d = g.yOff + i * g.OW + j;
    Y[d] = acc ? Y[d] + s : s;
  });
}

/** DX planes += the adjoint of windowForward applied to the G plane. */
export function windowGradInput(DX: TypedArray, Wt: TypedArray, G: TypedArray, g: Window): void {
  const [i0, i1, j0, j1] = ranges(g);
  const inner = i1 > i0 && j1 > j0;
  if (inner) gradInKernel(g.cn, g.kh, g.kw)(DX, Wt, G, g, i0, i1, j0, j1);
  eachBorder(g, inner ? i0 : 0, inner ? i1 : 0, j0, j1, (i, j) => {
    const v = G[g.yOff + i * g.OW + j];
    eachTap(g, i, j, (x, t) => (DX[x] += v * Wt[g.wOff + t]));
  });
}

/** DW taps (from g.wOff) += Σ over outputs of G · the input each tap reads. */
export function windowGradFilter(X: TypedArray, G: TypedArray, DW: TypedArray, g: Window): void {
  const [i0, i1, j0, j1] = ranges(g);
  const inner = i1 > i0 && j1 > j0;
  if (inner) gradWKernel(g.cn, g.kh, g.kw)(X, G, DW, g, i0, i1, j0, j1);
  eachBorder(g, inner ? i0 : 0, inner ? i1 : 0, j0, j1, (i, j) => {
    const v = G[g.yOff + i * g.OW + j];
    eachTap(g, i, j, (x, t) => (DW[g.wOff + t] += v * X[x]));
  });
}

/** Channels per unrolled pass: at most ~32 taps per generated kernel. */
export const channelChunk = (C: number, kh: number, kw: number): number => Math.max(1, Math.min(C, Math.floor(32 / (kh * kw))));
