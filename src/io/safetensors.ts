/**
 * The safetensors format (https://github.com/huggingface/safetensors), read and written in plain
 * TypeScript:
 *
 *   [8 bytes: header length n, u64 little-endian] [n bytes: JSON header, padded with spaces] [data]
 *
 * The header maps each tensor name to `{ dtype, shape, data_offsets: [begin, end] }` (offsets into
 * the data section) and may hold `__metadata__` (string → string). Entries must tile the data
 * section exactly, as the Python library requires.
 *
 * Trees: nested records (and arrays) of tensors are flattened with their keys joined by dots
 * (`{ stem: { w } }` ↔ `stem.w`; a flat record with dotted keys, like a PyTorch state dict, is
 * written as is); loading rebuilds nested records, and a record whose keys are exactly 0 … n − 1
 * becomes an array, so `blocks.0.w` round-trips to `{ blocks: [{ w }] }`.
 *
 * Dtypes: F32 ↔ float32 tensors, F64 ↔ float64 tensors, I64 ↔ {@link Int64Array} leaves (shape +
 * BigInt64Array, kept exact and not differentiable; e.g. PyTorch's `num_batches_tracked`).
 *
 * Errors at this edge are values: the `…E` functions return fp-ts Either / TaskEither with a tagged
 * {@link SafetensorsError} that names the file; `loadSafetensors` / `saveSafetensors` throw it as an
 * Error for scripts that prefer exceptions.
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import * as TE from 'fp-ts/lib/TaskEither.js';
import { pipe } from 'fp-ts/lib/function.js';
import { type Tensor, dataSync, fromArray, isTensor } from '../tensor/tensor.ts';
import { fmt, sizeOf } from '../tensor/shape.ts';
import { writeFileAtomic } from './atomic.ts';

/** An exact 64-bit integer tensor (a safetensors I64 entry). Not a Tensor: trees treat it as static data. */
export class Int64Array {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly data: BigInt64Array,
  ) {
    this.size = sizeOf(shape);
    if (this.size !== data.length) throw new Error(`Int64Array: ${data.length} values do not fill shape ${fmt(shape)}`);
    Object.freeze(shape);
  }
}

/** What a safetensors file can hold at a leaf. */
export type Leaf = Tensor | Int64Array;
/** A nested tree of leaves (records and arrays). */
export type TensorTree = Leaf | readonly TensorTree[] | { readonly [k: string]: TensorTree };

export type SafetensorsError =
  | { readonly _tag: 'SafetensorsIOError'; readonly file: string; readonly message: string }
  | { readonly _tag: 'SafetensorsFormatError'; readonly file: string; readonly message: string }
  | { readonly _tag: 'SafetensorsTreeError'; readonly file: string; readonly message: string };

export const formatSafetensorsError = (e: SafetensorsError): string => `${e.file}: ${e.message}`;

/** The thrown form of a SafetensorsError (keeps the tagged value in `.error`). */
export class SafetensorsException extends Error {
  constructor(readonly error: SafetensorsError) {
    super(`safetensors: ${formatSafetensorsError(error)}`);
    this.name = 'SafetensorsException';
  }
}

const ioError = (file: string, message: string): SafetensorsError => ({ _tag: 'SafetensorsIOError', file, message });
const formatError = (file: string, message: string): SafetensorsError => ({ _tag: 'SafetensorsFormatError', file, message });
const treeError = (file: string, message: string): SafetensorsError => ({ _tag: 'SafetensorsTreeError', file, message });

type STDType = 'F32' | 'F64' | 'I64';
const BYTES: Record<STDType, number> = { F32: 4, F64: 8, I64: 8 };
/** Headers larger than this are refused (the Python library's limit is 100 MB). */
const MAX_HEADER = 100_000_000;

// ---- trees ↔ flat name maps --------------------------------------------------------------------

const isRecord = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && Object.getPrototypeOf(x) === Object.prototype;

/** Flattens a tree to `name → leaf` with dotted names (arrays use their indices). */
export function flattenTree(tree: unknown, file = '<tree>'): E.Either<SafetensorsError, Map<string, Leaf>> {
  const out = new Map<string, Leaf>();
  const walk = (x: unknown, prefix: string): string | null => {
    if (isTensor(x) || x instanceof Int64Array) {
      if (prefix === '') return 'the tree is a single tensor; give it a name ({ name: tensor })';
      if (out.has(prefix)) return `two leaves are both named '${prefix}'`;
      out.set(prefix, x);
      return null;
    }
    const entries: [string, unknown][] | null = Array.isArray(x)
      ? x.map((v, i) => [String(i), v])
      : isRecord(x)
        ? Object.entries(x)
        : null;
    if (!entries) return `'${prefix}' is ${x === null ? 'null' : typeof x}, not a tensor, record or array`;
    for (const [k, v] of entries) {
      if (k === '' || k.startsWith('.') || k.endsWith('.') || k.includes('..')) return `key '${k}' under '${prefix}' is empty or has an empty dotted part`;
      const err = walk(v, prefix ? `${prefix}.${k}` : k);
      if (err) return err;
    }
    return null;
  };
  const err = walk(tree, '');
  if (err) return E.left(treeError(file, err));
  if (out.has('__metadata__')) return E.left(treeError(file, `'__metadata__' is reserved`));
  return E.right(out);
}

/** Rebuilds the nested tree from dotted names; records keyed exactly 0 … n − 1 become arrays. */
export function unflattenTree(flat: ReadonlyMap<string, Leaf>, file = '<tree>'): E.Either<SafetensorsError, Record<string, TensorTree>> {
  const root: Record<string, unknown> = {};
  for (const [name, leaf] of flat) {
    const parts = name.split('.');
    let node = root;
    for (let i = 0; i < parts.length - 1; i++) {
      const p = parts[i];
      const next = node[p];
      if (next === undefined) node = node[p] = {} as Record<string, unknown>;
      else if (isRecord(next)) node = next;
      else return E.left(treeError(file, `'${parts.slice(0, i + 1).join('.')}' is both a tensor and a prefix of '${name}'`));
    }
    const last = parts[parts.length - 1];
    if (last in node) return E.left(treeError(file, `'${name}' is both a tensor and a prefix of other names`));
    node[last] = leaf;
  }
  const arrayify = (x: unknown): unknown => {
    if (!isRecord(x)) return x;
    const keys = Object.keys(x);
    const kids = Object.fromEntries(keys.map((k) => [k, arrayify(x[k])]));
    const isArray = keys.length > 0 && keys.every((k) => /^(0|[1-9]\d*)$/.test(k)) && keys.every((_, i) => i in kids && String(i) in kids);
    return isArray ? keys.map((_, i) => kids[String(i)]) : kids;
  };
  return E.right(arrayify(root) as Record<string, TensorTree>);
}

// ---- encoding ----------------------------------------------------------------------------------

/** The bytes of a safetensors file holding `tree` (names sorted, as the Python library writes them). */
export function encodeSafetensors(
  tree: unknown,
  metadata?: Readonly<Record<string, string>>,
  file = '<memory>',
): E.Either<SafetensorsError, Uint8Array> {
  return pipe(
    flattenTree(tree, file),
    E.chain((flat) => {
      if (metadata) {
        for (const [k, v] of Object.entries(metadata)) {
          if (typeof v !== 'string') return E.left(treeError(file, `metadata '${k}' must be a string, got ${typeof v}`));
        }
      }
      const names = [...flat.keys()].sort();
      const header: Record<string, unknown> = {};
      if (metadata && Object.keys(metadata).length) header.__metadata__ = { ...metadata };
      const chunks: Uint8Array[] = [];
      let offset = 0;
      for (const name of names) {
        const leaf = flat.get(name)!;
        let dtype: STDType;
        let bytes: Uint8Array;
        if (leaf instanceof Int64Array) {
          dtype = 'I64';
          bytes = new Uint8Array(leaf.data.buffer, leaf.data.byteOffset, leaf.data.byteLength);
        } else {
          const d = dataSync(leaf);
          dtype = d instanceof Float64Array ? 'F64' : 'F32';
          bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
        }
        header[name] = { dtype, shape: [...leaf.shape], data_offsets: [offset, offset + bytes.byteLength] };
        chunks.push(bytes);
        offset += bytes.byteLength;
      }
      let json = Buffer.from(JSON.stringify(header), 'utf8');
      // Pad the header with spaces so the data section starts 8-byte aligned (as the Python library does).
      const padded = Math.ceil(json.length / 8) * 8;
      if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
      const out = new Uint8Array(8 + json.length + offset);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      let at = 8 + json.length;
      for (const c of chunks) {
        out.set(c, at);
        at += c.byteLength;
      }
      return E.right(out);
    }),
  );
}

// ---- decoding ----------------------------------------------------------------------------------

export interface Decoded {
  /** Tensors by their full dotted name, in file order. */
  readonly tensors: ReadonlyMap<string, Leaf>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Parses and validates the bytes of a safetensors file (`file` names it in errors). */
export function decodeSafetensors(bytes: Uint8Array, file = '<memory>'): E.Either<SafetensorsError, Decoded> {
  const bad = (m: string) => E.left(formatError(file, m));
  if (bytes.byteLength < 8) return bad(`truncated: ${bytes.byteLength} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) return bad(`header length ${n64} is implausible (corrupt file?)`);
  const n = Number(n64);
  if (8 + n > bytes.byteLength) return bad(`truncated: header claims ${n} bytes but only ${bytes.byteLength - 8} follow the length`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return bad(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isRecord(header)) return bad('the header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: STDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(v) || Object.values(v).some((s) => typeof s !== 'string')) return bad('__metadata__ must map strings to strings');
      metadata = v as Record<string, string>;
      continue;
    }
    if (!isRecord(v)) return bad(`entry '${name}' is not an object`);
    const { dtype, shape, data_offsets: off } = v as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in BYTES)) {
      return bad(`entry '${name}' has dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(BYTES).join(', ')}`);
    }
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) return bad(`entry '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(off) || off.length !== 2 || off.some((d) => !Number.isSafeInteger(d) || d < 0) || off[1] < off[0]) {
      return bad(`entry '${name}' has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const need = sizeOf(shape) * BYTES[dtype as STDType];
    if (off[1] - off[0] !== need) {
      return bad(`entry '${name}' (${dtype} ${fmt(shape)}) needs ${need} bytes but data_offsets [${off}] span ${off[1] - off[0]}`);
    }
    if (off[1] > dataLen) return bad(`truncated: entry '${name}' ends at byte ${off[1]} of the data section, which has only ${dataLen} bytes`);
    entries.push({ name, dtype: dtype as STDType, shape, begin: off[0], end: off[1] });
  }
  // Entries must tile the data section: no overlaps, no holes, nothing trailing.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) return bad(`entry '${e.name}' starts at byte ${e.begin} of the data section, expected ${at} (overlap or hole)`);
    at = e.end;
  }
  if (at !== dataLen) return bad(`the data section has ${dataLen} bytes but the entries cover ${at} (trailing bytes)`);
  const tensors = new Map<string, Leaf>();
  for (const e of entries) {
    // Copy: the source may be unaligned for the element type.
    const raw = new Uint8Array(e.end - e.begin);
    raw.set(bytes.subarray(dataStart + e.begin, dataStart + e.end));
    if (e.dtype === 'I64') tensors.set(e.name, new Int64Array(e.shape, new BigInt64Array(raw.buffer)));
    else tensors.set(e.name, fromArray(e.dtype === 'F64' ? new Float64Array(raw.buffer) : new Float32Array(raw.buffer), e.shape));
  }
  return E.right({ tensors, metadata });
}

// ---- files -------------------------------------------------------------------------------------

/** Reads and validates a file: flat names → leaves, plus metadata. */
export function readSafetensorsE(file: string): E.Either<SafetensorsError, Decoded> {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    return E.left(ioError(file, (e as Error).message));
  }
  return decodeSafetensors(bytes, file);
}

export interface Loaded {
  readonly tree: Record<string, TensorTree>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads a file as a nested tree (Either form). */
export const loadSafetensorsE = (file: string): E.Either<SafetensorsError, Loaded> =>
  pipe(
    readSafetensorsE(file),
    E.chain((d) => pipe(unflattenTree(d.tensors, file), E.map((tree) => ({ tree, metadata: d.metadata })))),
  );

/** Reads a file as a nested tree (TaskEither form, reading asynchronously). */
export const loadSafetensorsTE = (file: string): TE.TaskEither<SafetensorsError, Loaded> =>
  pipe(
    TE.tryCatch(
      () => fs.promises.readFile(file),
      (e) => ioError(file, (e as Error).message),
    ),
    TE.chainEitherK((bytes) => decodeSafetensors(bytes, file)),
    TE.chainEitherK((d) => pipe(unflattenTree(d.tensors, file), E.map((tree) => ({ tree, metadata: d.metadata })))),
  );

const orThrow = <A>(e: E.Either<SafetensorsError, A>): A =>
  pipe(
    e,
    E.getOrElse<SafetensorsError, A>((err) => {
      throw new SafetensorsException(err);
    }),
  );

/**
 * Loads a safetensors file as a nested tree; throws a {@link SafetensorsException} naming the file
 * when it is missing, truncated or corrupt.
 * @example const { stem } = io.loadSafetensors('model.safetensors')
 */
export const loadSafetensors = (file: string): Record<string, TensorTree> => orThrow(loadSafetensorsE(file)).tree;

/** The `__metadata__` of a file (read in full and validated). */
export const loadSafetensorsMetadata = (file: string): Readonly<Record<string, string>> => orThrow(readSafetensorsE(file)).metadata;

/**
 * Writes `tree` atomically: to a temporary file in the same folder, fsync'd, then renamed over
 * `file`, so a crash leaves either the old file or the new one, never half of one.
 */
export function saveSafetensorsE(file: string, tree: unknown, metadata?: Readonly<Record<string, string>>): E.Either<SafetensorsError, void> {
  return pipe(
    encodeSafetensors(tree, metadata, file),
    E.chain((bytes) => {
      try {
        writeFileAtomic(file, bytes);
      } catch (e) {
        return E.left(ioError(file, (e as Error).message));
      }
      return E.right(undefined);
    }),
  );
}

/** Writes `tree` (and string metadata) to `file` atomically; throws a {@link SafetensorsException} on failure. */
export const saveSafetensors = (file: string, tree: unknown, metadata?: Readonly<Record<string, string>>): void =>
  orThrow(saveSafetensorsE(file, tree, metadata));
