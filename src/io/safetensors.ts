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
 Two ways in and out:
 * - raw tensors by name (`readTensors` / `writeTensors`), as the file holds them; they return fp-ts
 *   Either with a tagged {@link SafetensorsError} naming the file, for code that composes errors
 *   (checkpoints, `--init-weights`);
 * - trees (`loadTree` / `saveTree`), for scripts: they throw a {@link SafetensorsException}, which
 *   keeps the tagged error in `.error`. A tree's leaves are named by their key paths joined with
 *   dots (src/autograd/pytree.ts: `{ stem: { w } }` ↔ `stem.w`; a flat record with dotted keys, like
 *   a PyTorch state dict, is written as is); loading rebuilds nested records, and a record whose
 *   keys are exactly 0 … n − 1 becomes an array, so `blocks.0.w` round-trips to `{ blocks: [{ w }] }`.
 *
 * Dtypes: F32 ↔ float32 tensors, F64 ↔ float64 tensors, I64 ↔ {@link Int64Array} leaves (shape +
 * BigInt64Array, kept exact and not differentiable; e.g. PyTorch's `num_batches_tracked`).
 *
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import { type Tensor, dataSync, fromArray, isTensor } from '../tensor/tensor.ts';
import { fmt, sizeOf } from '../tensor/shape.ts';
import { flattenWithPath, isContainer, keystr, treeFromPaths } from '../autograd/pytree.ts';
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

// ---- trees ↔ names -----------------------------------------------------------------------------

const isLeaf = (x: unknown): x is Leaf => isTensor(x) || x instanceof Int64Array;
const describe = (x: unknown): string => (x === null ? 'null' : typeof x);

/** The leaves of a tree by dotted name (arrays use their indices); every non-container must be a leaf. */
function namedLeaves(tree: unknown, file: string): E.Either<SafetensorsError, Map<string, Leaf>> {
  if (!isContainer(tree)) return E.left(treeError(file, isLeaf(tree) ? 'the tree is a single tensor; give it a name ({ name: tensor })' : `the tree is ${describe(tree)}, not a record or array`));
  const out = new Map<string, Leaf>();
  for (const [path, x] of flattenWithPath(tree, (x): x is unknown => !isContainer(x))[0]) {
    const name = keystr(path);
    const bad = path.find((k) => typeof k === 'string' && (k === '' || k.startsWith('.') || k.endsWith('.') || k.includes('..')));
    if (bad !== undefined) return E.left(treeError(file, `key '${bad}' of '${name}' is empty or has an empty dotted part`));
    if (!isLeaf(x)) return E.left(treeError(file, `'${name}' is ${describe(x)}, not a tensor, record or array`));
    if (out.has(name)) return E.left(treeError(file, `two leaves are both named '${name}'`));
    out.set(name, x);
  }
  return E.right(out);
}

/** A name map fit to be written: no empty or reserved name, every leaf a tensor, string metadata. */
function checkNames(tensors: ReadonlyMap<string, Leaf>, metadata: Readonly<Record<string, string>> | undefined, file: string): E.Either<SafetensorsError, ReadonlyMap<string, Leaf>> {
  for (const [name, x] of tensors) {
    if (name === '' || name === '__metadata__') return E.left(treeError(file, `the tensor name '${name}' is ${name ? 'reserved' : 'empty'}`));
    if (!isLeaf(x)) return E.left(treeError(file, `'${name}' is ${describe(x)}, not a tensor`));
  }
  for (const [k, v] of Object.entries(metadata ?? {})) {
    if (typeof v !== 'string') return E.left(treeError(file, `metadata '${k}' must be a string, got ${typeof v}`));
  }
  return E.right(tensors);
}

// ---- encoding ----------------------------------------------------------------------------------

/** The bytes of a safetensors file holding `tensors` (names sorted, as the Python library writes them). */
function encode(tensors: ReadonlyMap<string, Leaf>, metadata: Readonly<Record<string, string>> | undefined, file: string): E.Either<SafetensorsError, Uint8Array> {
  return pipe(
    checkNames(tensors, metadata, file),
    E.chain((flat) => {
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

/** A JSON object (not an array). */
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Parses and validates the bytes of a safetensors file (`file` names it in errors). */
function decode(bytes: Uint8Array, file: string): E.Either<SafetensorsError, TensorFile> {
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
  if (!isObject(header)) return bad('the header is not a JSON object');
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  let metadata: Record<string, string> = {};
  const entries: { name: string; dtype: STDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(v) || Object.values(v).some((s) => typeof s !== 'string')) return bad('__metadata__ must map strings to strings');
      metadata = v as Record<string, string>;
      continue;
    }
    if (!isObject(v)) return bad(`entry '${name}' is not an object`);
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

/** A file's tensors by name, in file order, and its `__metadata__`. */
export interface TensorFile {
  readonly tensors: ReadonlyMap<string, Leaf>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Reads and validates a file: its tensors by full name (`features.0.0.weight`), and metadata. */
export function readTensors(file: string): E.Either<SafetensorsError, TensorFile> {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    return E.left(ioError(file, (e as Error).message));
  }
  return decode(bytes, file);
}

/** Writes tensors by name (and string metadata) to `file`, atomically (see `writeAtomic`). */
export function writeTensors(
  file: string,
  tensors: ReadonlyMap<string, Leaf> | Readonly<Record<string, Leaf>>,
  metadata?: Readonly<Record<string, string>>,
): E.Either<SafetensorsError, void> {
  const flat = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  return pipe(
    encode(flat, metadata, file),
    E.chain((bytes) => writeAtomic(file, bytes)),
  );
}

const orThrow = <A>(e: E.Either<SafetensorsError, A>): A =>
  pipe(
    e,
    E.getOrElse<SafetensorsError, A>((err) => {
      throw new SafetensorsException(err);
    }),
  );

/**
 * Loads a file as a nested tree, with its metadata; throws a {@link SafetensorsException} naming
 * the file when it is missing, truncated or corrupt. `T` is the tree's type as the caller knows it
 * (not checked).
 * @example const { tree, metadata } = io.loadTree('model.safetensors'); tree.stem.w
 */
export function loadTree<T = Record<string, TensorTree>>(file: string): { tree: T; metadata: Readonly<Record<string, string>> } {
  const { tensors, metadata } = orThrow(readTensors(file));
  try {
    return { tree: treeFromPaths([...tensors].map(([name, leaf]) => [name.split('.'), leaf] as const)) as T, metadata };
  } catch (e) {
    throw new SafetensorsException(treeError(file, (e as Error).message));
  }
}

/**
 * Writes `tree` (and string metadata) to `file` atomically; throws a {@link SafetensorsException}
 * naming the file and the offending key on failure.
 * @example io.saveTree('model.safetensors', { stem: { w } }, { epoch: '3' })
 */
export function saveTree(file: string, tree: unknown, metadata?: Readonly<Record<string, string>>): void {
  orThrow(
    pipe(
      namedLeaves(tree, file),
      E.chain((flat) => writeTensors(file, flat, metadata)),
    ),
  );
}

/** `writeFileAtomic` with its failure as a value naming the file. */
function writeAtomic(file: string, bytes: Uint8Array): E.Either<SafetensorsError, void> {
  try {
    writeFileAtomic(file, bytes);
    return E.right(undefined);
  } catch (e) {
    return E.left(ioError(file, (e as Error).message));
  }
}
