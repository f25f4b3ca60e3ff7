/**
 * The closed-form weights of scripts/fixtures/torch_efficientnet.py, reproduced bit-exactly in
 * float32: integer hashing (FNV-1a of the name, MurmurHash3's fmix32 of the index) and correctly
 * rounded float64 arithmetic, then one rounding to float32.
 */
import { type Tensor, tensor } from '../../src/index.ts';

export function fnv1a(name: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(name, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** u ∈ [0, 1) for each element index. */
export function uniform01(name: string, n: number): Float64Array {
  const h0 = fnv1a(name);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = (h0 ^ Math.imul(i, 0x9e3779b1)) >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b) >>> 0;
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35) >>> 0;
    x ^= x >>> 16;
    out[i] = (x >>> 8) / 16777216;
  }
  return out;
}

export function formula(name: string, shape: readonly number[]): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const u = uniform01(name, n);
  const out = new Float32Array(n);
  const fanIn = shape.slice(1).reduce((p, d) => p * d, 1);
  for (let i = 0; i < n; i++) {
    const s = 2 * u[i] - 1;
    let v: number;
    if (name.endsWith('running_var') || (name.endsWith('.weight') && shape.length === 1)) v = 0.75 + 0.5 * u[i];
    else if (name.endsWith('running_mean')) v = 0.02 * s;
    else if (name.endsWith('.bias')) v = 0.02 * s;
    else if (name.startsWith('input')) v = s;
    else if (shape.length === 4) v = s * Math.sqrt(8 / fanIn);
    else if (shape.length === 2) v = s / Math.sqrt(shape[1]);
    else throw new Error(`no formula for ${name} [${shape}]`);
    out[i] = v;
  }
  return tensor(out, shape);
}
