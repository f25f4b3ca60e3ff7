/**
 * A jitted call's signature (the cache key; see jit.ts) and the arguments' tensors and keys in walk order.
 * `flattenArgs` builds the signature string, the tensors' paths (for error messages) and a template of the
 * arguments' structure; `gather` checks a later call's arguments against a template and collects their tensors
 * and keys without building strings, so the steady-state call of a compiled step (hundreds of parameter
 * tensors) allocates next to nothing to find its entry.
 */
import type { DType } from '../backends/backend.ts';
import { type Key, isKey } from '../tensor/random.ts';
import { fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';

/** The structure of a call's arguments: what `gather` compares (`value`: by Object.is). */
export type Template =
  | { readonly t: 'tensor'; readonly shape: readonly number[]; readonly dtype: string }
  | { readonly t: 'key' }
  | { readonly t: 'array'; readonly items: readonly Template[] }
  | { readonly t: 'record'; readonly keys: readonly string[]; readonly items: readonly Template[] }
  | { readonly t: 'value'; readonly value: unknown };

/** The flattened arguments: tensors and keys in order, their paths, the signature string and its template. */
export interface Flat {
  readonly tensors: Tensor[];
  readonly keys: Key[];
  readonly paths: string[];
  /** Argument index of each tensor. */
  readonly argOf: number[];
  readonly sig: string;
  readonly template: Template;
}

const objectIds = new WeakMap<object, number>();
let nextObjectId = 1;
const idOf = (x: object) => {
  let id = objectIds.get(x);
  if (id === undefined) objectIds.set(x, (id = nextObjectId++));
  return id;
};

export const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && Object.getPrototypeOf(x) === Object.prototype;

/** A tensor's dtype in its signature string. */
const DTYPE_CODE: Record<DType, string> = { float32: 'f', float64: 'd', uint8: 'u' };

export function flattenArgs(args: readonly unknown[]): Flat {
  const tensors: Tensor[] = [], keys: Key[] = [], paths: string[] = [], argOf: number[] = [];
  let arg = 0;
  const walk = (x: unknown, path: string): [string, Template] => {
    if (x instanceof Tensor) {
      tensors.push(x);
      paths.push(path);
      argOf.push(arg);
      return [`T${fmt(x.shape)}${DTYPE_CODE[x.dtype]}`, { t: 'tensor', shape: x.shape, dtype: x.dtype }];
    }
    if (isKey(x)) {
      keys.push(x);
      return ['K', { t: 'key' }];
    }
    if (Array.isArray(x)) {
      const items = x.map((v, i) => walk(v, `${path}[${i}]`));
      return [`[${items.map((s) => s[0]).join(',')}]`, { t: 'array', items: items.map((s) => s[1]) }];
    }
    if (isRecord(x)) {
      const ks = Object.keys(x).sort();
      const items = ks.map((k) => walk(x[k], `${path}.${k}`));
      return [`{${ks.map((k, i) => `${k}:${items[i][0]}`).join(',')}}`, { t: 'record', keys: ks, items: items.map((s) => s[1]) }];
    }
    if (ArrayBuffer.isView(x)) throw new Error(`jit: argument ${path} is a ${x.constructor.name}; pass a tensor (typed arrays would be baked into the compiled graph)`);
    const value: Template = { t: 'value', value: x };
    if (typeof x === 'object' && x !== null) return [`#${idOf(x)}`, value];
    if (typeof x === 'function') return [`#${idOf(x)}`, value];
    return [JSON.stringify(x) ?? String(x), value];
  };
  const parts = args.map((a, i) => {
    arg = i;
    return walk(a, `argument ${i}`);
  });
  return { tensors, keys, paths, argOf, sig: parts.map((p) => p[0]).join(';'), template: { t: 'array', items: parts.map((p) => p[1]) } };
}

/**
 * Whether `x` has the structure `t` describes (then its signature is the one `t` came from); pushes its tensors
 * and keys onto `tensors` and `keys` in walk order. False means "not known to match": compute the signature.
 */
export function gather(t: Template, x: unknown, tensors: Tensor[], keys: Key[]): boolean {
  switch (t.t) {
    case 'tensor':
      if (!(x instanceof Tensor) || x.dtype !== t.dtype || x.shape.length !== t.shape.length) return false;
      for (let i = 0; i < t.shape.length; i++) if (x.shape[i] !== t.shape[i]) return false;
      tensors.push(x);
      return true;
    case 'key':
      if (!isKey(x)) return false;
      keys.push(x);
      return true;
    case 'array':
      if (!Array.isArray(x) || x.length !== t.items.length) return false;
      for (let i = 0; i < x.length; i++) if (!gather(t.items[i], x[i], tensors, keys)) return false;
      return true;
    case 'record': {
      // A record with exactly k0 and k1 may be a key (isKey looks at the values): left to the signature.
      if (!isRecord(x) || (t.keys.length === 2 && t.keys[0] === 'k0' && t.keys[1] === 'k1')) return false;
      let n = 0;
      for (const k in x) n++;
      if (n !== t.keys.length) return false;
      for (let i = 0; i < n; i++) {
        const k = t.keys[i];
        if (!Object.prototype.propertyIsEnumerable.call(x, k) || !gather(t.items[i], x[k], tensors, keys)) return false;
      }
      return true;
    }
    case 'value':
      return Object.is(x, t.value);
  }
}
