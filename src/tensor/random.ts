/**
 * Explicit, splittable random keys (JAX's design): no hidden global state. Bits come from the
 * counter-based Threefry-2x32 hash (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"),
 * so a key and a position always give the same number, on any backend, in any order.
 */
import type { DType } from '../backends/backend.ts';
import { type Shape, checkShape, sizeOf } from './shape.ts';
import { type Tensor, arrayFor, fromArray } from './tensor.ts';

export interface Key {
  readonly k0: number;
  readonly k1: number;
}

/**
 * @internal jit's hook for randomness: while a jitted function is traced, a key passed in is
 * tracked, and every draw from a tracked key (`draw(k, compute)`) is recorded so that the compiled
 * graph recomputes it from each call's key (fresh windows, masks and keys per call). Draws from
 * untracked keys (made inside the function) are constants. Host arithmetic on a drawn array is not
 * seen by the tracer: draw through these functions (or sampleWindows) instead.
 */
export interface KeyTracer {
  draw<T>(k: Key, compute: (k: Key) => T): T;
}
let keyTracer: KeyTracer | null = null;
/** @internal Installs `t` (null: none) and returns the previous tracer. */
export function setKeyTracer(t: KeyTracer | null): KeyTracer | null {
  const prev = keyTracer;
  keyTracer = t;
  return prev;
}
/** @internal `compute(k)`, recorded by the jit tracer when one is active. */
export const drawFrom = <T>(k: Key, compute: (k: Key) => T): T => (keyTracer ? keyTracer.draw(k, compute) : compute(k));

const isWord = (v: unknown): boolean => typeof v === 'number' && v >>> 0 === v;

/** Whether `x` is a key: a plain record of exactly two unsigned 32-bit words k0 and k1 (how jit tells keys from static records). */
export function isKey(x: unknown): x is Key {
  if (typeof x !== 'object' || x === null || Object.getPrototypeOf(x) !== Object.prototype) return false;
  const r = x as Record<string, unknown>;
  // The cheap tests first: records of parameters pass through here, and listing their keys would allocate.
  if (!isWord(r.k0) || !isWord(r.k1)) return false;
  let n = 0;
  for (const k in r) if (Object.hasOwn(r, k) && ++n > 2) return false;
  return n === 2;
}

/** A key from an integer seed. */
export function key(seed: number): Key {
  if (!Number.isFinite(seed)) throw new Error(`key: seed must be a finite number, got ${seed}`);
  const s = Math.trunc(seed);
  return Object.freeze({ k0: s >>> 0, k1: Math.floor(s / 2 ** 32) >>> 0 });
}
/** The key as plain numbers (for checkpoints) and back. */
export const keyData = (k: Key): [number, number] => [k.k0 >>> 0, k.k1 >>> 0];
export const keyFrom = ([a, b]: readonly [number, number]): Key => Object.freeze({ k0: a >>> 0, k1: b >>> 0 });

const rotl = (x: number, r: number) => ((x << r) | (x >>> (32 - r))) >>> 0;
const R = [13, 15, 26, 6, 17, 29, 16, 24];

const keyWord = (i: number, k0: number, k1: number, k2: number) => (i === 0 ? k0 : i === 1 ? k1 : k2);

/** Threefry-2x32 with 20 rounds: two 32-bit words from a key and a two-word counter. */
export function threefry(k: Key, c0: number, c1: number, out: Uint32Array = new Uint32Array(2)): Uint32Array {
  // The key schedule k0, k1, k2 (in locals, not an array: this runs once per drawn number).
  const k0 = k.k0 >>> 0, k1 = k.k1 >>> 0, k2 = (0x1bd11bda ^ k0 ^ k1) >>> 0;
  let x0 = (c0 + k0) >>> 0;
  let x1 = (c1 + k1) >>> 0;
  for (let g = 0; g < 5; g++) {
    const base = (g & 1) * 4;
    for (let r = 0; r < 4; r++) {
      x0 = (x0 + x1) >>> 0;
      x1 = rotl(x1, R[base + r]) ^ x0;
    }
    x0 = (x0 + keyWord((g + 1) % 3, k0, k1, k2)) >>> 0;
    x1 = (x1 + keyWord((g + 2) % 3, k0, k1, k2) + g + 1) >>> 0;
  }
  out[0] = x0;
  out[1] = x1;
  return out;
}

/** `n` independent keys derived from `k`. */
export function split(k: Key, n = 2): Key[] {
  return drawFrom(k, (kk) => splitKey(kk, n));
}
function splitKey(k: Key, n: number): Key[] {
  const w = new Uint32Array(2);
  return Array.from({ length: n }, (_, i) => {
    threefry(k, i, 0x9e3779b9, w);
    return Object.freeze({ k0: w[0], k1: w[1] });
  });
}

/** A key derived from `k` and an integer (e.g. a step or layer index). */
export function foldIn(k: Key, data: number): Key {
  return drawFrom(k, (kk) => foldKey(kk, data));
}
function foldKey(k: Key, data: number): Key {
  const w = threefry(k, data >>> 0, 0x7f4a7c15);
  return Object.freeze({ k0: w[0], k1: w[1] });
}

/** `n` uniform numbers in [0, 1) (53-bit resolution), in a plain Float64Array. */
export function uniformArray(k: Key, n: number): Float64Array {
  return drawFrom(k, (kk) => uniformWords(kk, n));
}
function uniformWords(k: Key, n: number): Float64Array {
  const out = new Float64Array(n);
  const w = new Uint32Array(2);
  for (let i = 0; i < n; i++) {
    threefry(k, i, 0, w);
    out[i] = ((w[0] >>> 5) * 67108864 + (w[1] >>> 6)) / 9007199254740992;
  }
  return out;
}

/** Integers uniform in [low, high) (exact: rejection-free for ranges below 2^32 by 53-bit scaling). */
export function randint(k: Key, n: number, low: number, high: number): Int32Array {
  if (!(high > low)) throw new Error(`randint: empty range [${low}, ${high})`);
  return drawFrom(k, (kk) => randintOf(kk, n, low, high));
}
function randintOf(k: Key, n: number, low: number, high: number): Int32Array {
  const u = uniformArray(k, n);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = low + Math.floor(u[i] * (high - low));
  return out;
}

/** A random permutation of 0 … n − 1 (Fisher–Yates driven by the key). */
export function permutation(k: Key, n: number): Int32Array {
  return drawFrom(k, (kk) => permutationOf(kk, n));
}
function permutationOf(k: Key, n: number): Int32Array {
  const p = Int32Array.from({ length: n }, (_, i) => i);
  const u = uniformArray(k, n);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(u[i] * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

export interface RandomOptions {
  readonly dtype?: DType;
}

/** Uniform on [low, high). */
export function uniform(k: Key, shape: Shape, low = 0, high = 1, opts: RandomOptions = {}): Tensor {
  checkShape('uniform', shape);
  return drawFrom(k, (kk) => uniformOf(kk, shape, low, high, opts));
}
function uniformOf(k: Key, shape: Shape, low: number, high: number, opts: RandomOptions): Tensor {
  const u = uniformArray(k, sizeOf(shape));
  const a = arrayFor(opts.dtype ?? 'float32', u.length);
  for (let i = 0; i < u.length; i++) a[i] = low + (high - low) * u[i];
  return fromArray(a, shape);
}

/** Normal with the given mean and standard deviation (Box–Muller). */
export function normal(k: Key, shape: Shape, mean = 0, std = 1, opts: RandomOptions = {}): Tensor {
  checkShape('normal', shape);
  return drawFrom(k, (kk) => normalOf(kk, shape, mean, std, opts));
}
function normalOf(k: Key, shape: Shape, mean: number, std: number, opts: RandomOptions): Tensor {
  const n = sizeOf(shape);
  const u = uniformArray(k, 2 * Math.ceil(n / 2));
  const a = arrayFor(opts.dtype ?? 'float32', n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u[i]));
    const t = 2 * Math.PI * u[i + 1];
    a[i] = mean + std * r * Math.cos(t);
    if (i + 1 < n) a[i + 1] = mean + std * r * Math.sin(t);
  }
  return fromArray(a, shape);
}

/** 1 with probability p, else 0. */
export function bernoulli(k: Key, p: number, shape: Shape, opts: RandomOptions = {}): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`bernoulli: p must be in [0, 1], got ${p}`);
  checkShape('bernoulli', shape);
  return drawFrom(k, (kk) => bernoulliOf(kk, p, shape, opts));
}
function bernoulliOf(k: Key, p: number, shape: Shape, opts: RandomOptions): Tensor {
  const u = uniformArray(k, sizeOf(shape));
  const a = arrayFor(opts.dtype ?? 'float32', u.length);
  for (let i = 0; i < u.length; i++) a[i] = u[i] < p ? 1 : 0;
  return fromArray(a, shape);
}
