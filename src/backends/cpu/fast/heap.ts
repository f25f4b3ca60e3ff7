/**
 * The wasm heap: ONE WebAssembly.Memory that every CPU kernel module imports (`env.mem`), shared (a
 * SharedArrayBuffer) so the worker threads of pool.ts run kernels on it too, with an allocator over it.
 * This is the memory a compiled graph plans its buffers in; kernels read and write it in place.
 *
 *   const h = wasmHeap()!;                    // null where the engine has no wasm SIMD
 *   const r = h.reserve(n * 4);               // a long-lived region: r.ptr is a byte address in the memory
 *   r.f32().set(data);                        // a view made now: valid until the next growth (see below)
 *   siluPtr(r.ptr, r.ptr, n);                 // every kernel has a pointer entry point `...Ptr(ptrIn…, ptrOut, geom)`
 *   h.ptrOf(r.f32())                          // === r.ptr: the typed-array entry points (siluF32, sgemm, …)
 *   r.release();                              //   take views of this memory in place, copying nothing
 *
 * Addresses are bytes, 64-byte aligned; address 0 is never handed out. Growth: `alloc` grows the memory when
 * it must, and the memory never shrinks or moves, so a pointer stays valid until its region is released. Views do
 * not: with a shared memory a growth leaves old views covering only the old size (they still alias it), and with
 * the non-shared fallback (no SharedArrayBuffer: one thread) it detaches them (length 0). So never keep a view
 * across a call that may allocate; take a fresh one (`f32()`, `region.f32()`, `view(ptr, n)`), which costs nothing
 * while the memory has not grown. `ptrOf` recognises views of every buffer the memory has had.
 *
 * Limits: 4 GiB of address space (wasm32, 65536 pages), reserved up front by the engine for a shared memory but
 * committed only as it grows. The allocator keeps SLACK bytes of memory past the highest allocation, because the
 * vector kernels may read (never write) up to SLACK bytes past the end of an operand.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { type WasmMemory, wasmApi } from './wasm.ts';
import { hasSimd } from './sgemm_wasm.ts';

const PAGE = 65536;
/** Bytes a kernel may read past an operand's last element (vector blocks, tap overshoot). */
export const SLACK = 1024;
const ALIGN = 64;
const up = (x: number, a = ALIGN) => Math.ceil(x / a) * a;

/** A long-lived allocation. */
export interface Region {
  readonly ptr: number;
  readonly bytes: number;
  /** A Float32Array over the region, made from the memory's current buffer. */
  f32(): Float32Array;
  release(): void;
}

export class WasmHeap {
  readonly memory: WasmMemory;
  readonly shared: boolean;
  readonly maxPages: number;
  /** Free blocks, sorted by address, never adjacent (coalesced); the space above `top` is free too. */
  private free: { ptr: number; bytes: number }[] = [];
  private readonly sizes = new Map<number, number>();
  private top = ALIGN;
  private buffers = new WeakSet<ArrayBufferLike>();
  private cur: { buf: ArrayBufferLike; f32: Float32Array; i32: Int32Array } | undefined;
  /**
   * Bytes the typed-array entry points copied because an operand or output was not a view of this memory (`withF32`,
   * `outF32`, the sgemm's operand copies). A compiled graph whose buffers all live here adds nothing to it.
   */
  copiedBytes = 0;

  constructor(opts: { shared?: boolean; initialPages?: number; maxPages?: number } = {}) {
    const W = wasmApi;
    if (!W) throw new Error('wasm heap: this engine has no WebAssembly');
    const initial = opts.initialPages ?? 256;
    let shared = (opts.shared ?? true) && typeof SharedArrayBuffer !== 'undefined';
    let maxPages = opts.maxPages ?? 65536;
    let memory: WasmMemory | undefined;
    for (const max of [maxPages, 16384, 4096]) {
      try {
        memory = new W.Memory({ initial, maximum: max, shared });
        maxPages = max;
        break;
      } catch {
        // Address space for a large shared memory may be refused: try a smaller one, then unshared.
      }
    }
    if (!memory) {
      shared = false;
      memory = new W.Memory({ initial, maximum: maxPages });
    }
    this.memory = memory;
    this.shared = shared;
    this.maxPages = maxPages;
  }

  /** The limits a module importing this memory declares. */
  importSpec(): { initial: number; maximum: number; shared: boolean } {
    return { initial: 1, maximum: this.maxPages, shared: this.shared };
  }

  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  private views(): { buf: ArrayBufferLike; f32: Float32Array; i32: Int32Array } {
    const buf = this.memory.buffer;
    if (this.cur?.buf !== buf) {
      this.buffers.add(buf);
      this.cur = { buf, f32: new Float32Array(buf), i32: new Int32Array(buf) };
    }
    return this.cur;
  }

  /** The memory's current buffer (registered, so `ptrOf` recognises views made on it after later growth). */
  buffer(): ArrayBufferLike {
    return this.views().buf;
  }

  /** A Float32Array over the whole memory (index = byte address / 4), fresh if the memory grew. */
  f32(): Float32Array {
    return this.views().f32;
  }

  i32(): Int32Array {
    return this.views().i32;
  }

  /** A Float32Array of `n` floats at byte address `ptr`. */
  view(ptr: number, n: number): Float32Array {
    return new Float32Array(this.views().buf, ptr, n);
  }

  /** The byte address of `a` if it is a view of this memory (any buffer it has had), else −1. */
  ptrOf(a: ArrayBufferView): number {
    this.views();
    return this.buffers.has(a.buffer) && a.buffer.byteLength > 0 ? a.byteOffset : -1;
  }

  /** Grows the memory so that [0, end + SLACK) exists. */
  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    const need = end + SLACK;
    if (need <= have) return;
    const pages = Math.ceil((need - have) / PAGE);
    const total = have / PAGE + pages;
    if (total > this.maxPages) {
      throw new Error(`wasm heap: out of memory: ${need} bytes needed, the memory's limit is ${this.maxPages * PAGE} bytes (wasm32)`);
    }
    // Grow by at least an eighth so that a run of allocations grows (and refreshes views) rarely.
    this.memory.grow(Math.min(this.maxPages - have / PAGE, Math.max(pages, Math.ceil(have / PAGE / 8))));
  }

  /** Allocates `bytes` (64-byte aligned, first fit); returns the byte address. */
  alloc(bytes: number): number {
    if (!(bytes >= 0) || !Number.isFinite(bytes)) throw new Error(`wasm heap: alloc of ${bytes} bytes`);
    const size = up(Math.max(bytes, 1));
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i];
      if (b.bytes < size) continue;
      const ptr = b.ptr;
      if (b.bytes === size) this.free.splice(i, 1);
      else this.free[i] = { ptr: ptr + size, bytes: b.bytes - size };
      this.sizes.set(ptr, size);
      return ptr;
    }
    const ptr = this.top;
    this.ensure(ptr + size);
    this.top = ptr + size;
    this.sizes.set(ptr, size);
    return ptr;
  }

  /** Returns a block from `alloc`. */
  release(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) throw new Error(`wasm heap: release of ${ptr}, which is not an allocated address`);
    this.sizes.delete(ptr);
    let i = 0;
    while (i < this.free.length && this.free[i].ptr < ptr) i++;
    this.free.splice(i, 0, { ptr, bytes: size });
    // Coalesce with the neighbours, then give a free tail back to `top`.
    if (i + 1 < this.free.length && this.free[i].ptr + this.free[i].bytes === this.free[i + 1].ptr) {
      this.free[i].bytes += this.free[i + 1].bytes;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].ptr + this.free[i - 1].bytes === this.free[i].ptr) {
      this.free[i - 1].bytes += this.free[i].bytes;
      this.free.splice(i, 1);
      i--;
    }
    const last = this.free[this.free.length - 1];
    if (last && last.ptr + last.bytes === this.top) {
      this.top = last.ptr;
      this.free.pop();
    }
  }

  private stagePtr = 0;
  private stageBytes = 0;

  /**
   * The byte address of a scratch area of at least `bytes`, shared by every caller and kept from call to call (grown
   * to the largest size asked for, never shrunk): for a kernel call's operands and outputs that live outside the heap,
   * copied in and out around it, without an allocation per call. It is only valid until the next `stage` call, so a
   * caller uses it for one synchronous kernel call, and no kernel that stages calls another that does.
   */
  stage(bytes: number): number {
    if (bytes > this.stageBytes) {
      if (this.stagePtr) this.release(this.stagePtr);
      this.stagePtr = 0;
      this.stageBytes = 0;
      const size = up(Math.max(bytes, 4096));
      this.stagePtr = this.alloc(size);
      this.stageBytes = size;
    }
    return this.stagePtr;
  }

  /**
   * The heap addresses of `arrays` for one kernel call, into addrs[0…]: an array's own where it is a view of this
   * memory, else a place in the stage (`stage`), the first `inputs` of them copied there (the others are outputs, for
   * `unstage` to copy back). Null entries are skipped. False, with nothing staged, when an array outside the memory
   * is larger than STAGE_MAX_FLOATS (the caller then runs its own path).
   */
  stageCall(arrays: readonly (Float32Array | null)[], inputs: number, addrs: number[]): boolean {
    let need = 0;
    for (let q = 0; q < arrays.length; q++) {
      const a = arrays[q];
      if (!a || (addrs[q] = this.ptrOf(a)) >= 0) continue;
      if (a.length > STAGE_MAX_FLOATS) return false;
      need += up(a.length * 4);
    }
    if (need === 0) return true;
    // Empty arrays get an address too (in the stage): a kernel may read past them, never outside the memory.
    let at = this.stage(need);
    const mem = this.f32();
    for (let q = 0; q < arrays.length; q++) {
      const a = arrays[q];
      if (!a || addrs[q] >= 0) continue;
      addrs[q] = at;
      if (q < inputs) {
        mem.set(a, at >>> 2);
        this.copiedBytes += a.length * 4;
      }
      at += up(a.length * 4);
    }
    return true;
  }

  /** Copies the outputs (arrays[inputs…]) that the last `stageCall` with these addresses placed in the stage back into their arrays. */
  unstage(arrays: readonly (Float32Array | null)[], inputs: number, addrs: readonly number[]): void {
    for (let q = inputs; q < arrays.length; q++) {
      const a = arrays[q];
      if (!a || this.ptrOf(a) >= 0) continue;
      const p = addrs[q] >>> 2;
      a.set(this.f32().subarray(p, p + a.length));
      this.copiedBytes += a.length * 4;
    }
  }

  /** A long-lived region of `bytes`. */
  reserve(bytes: number): Region {
    const ptr = this.alloc(bytes);
    let live = true;
    return {
      ptr,
      bytes,
      f32: () => this.view(ptr, bytes >>> 2),
      release: () => {
        if (live) this.release(ptr);
        live = false;
      },
    };
  }

  /** The end of the highest allocation: the memory beyond it (less SLACK) is free (a statistic for tests). */
  get highWater(): number {
    return this.top;
  }

  /** Bytes handed out and not released (a statistic for tests and the memory plan). */
  allocatedBytes(): number {
    let s = 0;
    for (const v of this.sizes.values()) s += v;
    return s;
  }

  /** Live bytes of `owned` arrays (not yet garbage-collected). */
  ownedBytes = 0;
  /**
   * At most this many bytes of budgeted `owned` arrays live at once. Their release waits for the garbage collector,
   * which sees only a small view object per array (not the memory behind it), so in a loop that allocates little
   * else on the JS heap they pile up; past the limit `owned` declines and the caller allocates on the JS heap, whose
   * external-memory accounting then prompts the collection that frees them.
   */
  ownedLimit = 1 << 30;
  private readonly disown = new FinalizationRegistry<{ ptr: number; bytes: number }>(({ ptr, bytes }) => {
    this.ownedBytes -= bytes;
    this.release(ptr);
  });
  /**
   * A view alone weighs ~100 bytes on the JS heap, so a loop that drops a 100 MB owned array per step would never
   * prompt a collection by itself. `owned` asks for a full one (`fullCollection`) after every OWNED_COLLECT_BYTES of
   * owned arrays: with V8's own trigger for external memory (a collection per 64 MB or so, which a weight of the
   * view's size would pull) a step dropping 113 MB paid ~4 collections.
   */
  private ownedSinceCollect = 0;
  /** Where the collector cannot be asked: each owned view's weight, a buffer of its size never touched. */
  private readonly weight = new WeakMap<ArrayBufferView, object>();

  /**
   * A Float32Array of `n` floats in this memory owned by the view itself: released when the view is
   * garbage-collected (keep the view, not a subarray of it, for as long as the memory is used). For eager tensors'
   * storage, which the kernels then address in place, and which reuses memory this process has touched before
   * instead of fresh pages. Null with a non-shared memory (its growth would detach the view), and, when
   * `budgeted`, once `ownedLimit` bytes of them are live or the memory is full.
   */
  owned(n: number, budgeted = true): Float32Array | null {
    return this.own(n * 4, budgeted, (ptr) => this.view(ptr, n));
  }

  /** As `owned`, a Uint8Array of `n` bytes (uint8 images). */
  ownedU8(n: number, budgeted = true): Uint8Array | null {
    return this.own(n, budgeted, (ptr) => new Uint8Array(this.views().buf, ptr, n));
  }

  private own<V extends ArrayBufferView>(n: number, budgeted: boolean, viewAt: (ptr: number) => V): V | null {
    const bytes = up(Math.max(n, 1));
    if (!this.shared || (budgeted && this.ownedBytes + bytes > this.ownedLimit)) return null;
    let ptr: number;
    try {
      ptr = this.alloc(bytes);
    } catch (e) {
      // A full memory (wasm32's 4 GiB) declines budgeted arrays: their callers have the JS heap.
      if (budgeted) return null;
      throw e;
    }
    const v = viewAt(ptr);
    this.ownedBytes += bytes;
    this.disown.register(v, { ptr, bytes });
    const gc = fullCollection();
    if (!gc) this.weight.set(v, typeof Buffer === 'function' ? Buffer.allocUnsafeSlow(bytes) : new ArrayBuffer(bytes));
    else if ((this.ownedSinceCollect += bytes) >= OWNED_COLLECT_BYTES) {
      this.ownedSinceCollect = 0;
      gc();
    }
    return v;
  }

  /**
   * Runs `body` with `a` in this memory: `a`'s own address when it is a view of it, else a temporary copy (or,
   * with `copy` false, uninitialised room of its size, for outputs). Returns the address to `body`.
   */
  withF32<R>(a: Float32Array | Uint8Array, body: (ptr: number) => R, copy = true): R {
    const p = this.ptrOf(a);
    if (p >= 0) return body(p);
    const t = this.alloc(a.byteLength);
    try {
      if (copy) {
        if (a instanceof Uint8Array) new Uint8Array(this.views().buf, t, a.length).set(a);
        else this.f32().set(a, t >>> 2);
        this.copiedBytes += a.byteLength;
      }
      return body(t);
    } finally {
      this.release(t);
    }
  }

  /**
   * Runs `body` with room for `n` floats of output at a heap address and returns them: in `out` itself when it
   * is a view of this memory (nothing copied), else copied into `out` or into a new Float32Array.
   */
  outF32(n: number, body: (ptr: number) => void, out?: Float32Array): Float32Array {
    if (out && out.length !== n) throw new Error(`wasm heap: output of ${out.length} floats given for ${n}`);
    const p = out ? this.ptrOf(out) : -1;
    if (p >= 0) {
      body(p);
      return out!;
    }
    const t = this.alloc(n * 4);
    try {
      body(t);
      const v = this.view(t, n);
      this.copiedBytes += n * 4;
      if (out) {
        out.set(v);
        return out;
      }
      return v.slice();
    } finally {
      this.release(t);
    }
  }
}

/**
 * Float32 arrays of at least this many elements (1 MiB) are worth keeping in the heap as eager storage (`owned`):
 * below it, fresh pages cost little next to the kernel, and the allocator's bookkeeping would not pay.
 */
export const OWNED_MIN_FLOATS = 1 << 18;

/**
 * Operands outside the heap of up to this many floats (1 MiB, OWNED_MIN_FLOATS: below it eager storage lives on the
 * JS heap) are worth copying into the stage (`WasmHeap.stage`) for a wasm kernel call instead of running a JS
 * loop or allocating scratch per call; the stage then holds at most a few of them.
 */
export const STAGE_MAX_FLOATS = OWNED_MIN_FLOATS;

let theHeap: WasmHeap | null | undefined;

/** Owned arrays' bytes between the full collections `owned` asks for. */
export const OWNED_COLLECT_BYTES = 256 << 20;

let collector: (() => void) | null | undefined;
/**
 * V8's full collection, run now (its finalizers, which release collected owned arrays, run at the event loop's
 * next turn), or null where it cannot be had. Node exposes it under --expose-gc only: the flag set at run time gives
 * a new context's global `gc` (as Jest gets it).
 */
function fullCollection(): (() => void) | null {
  if (collector === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      collector = runInNewContext('gc') as () => void;
    } catch {
      collector = null;
    }
  }
  return collector;
}

/** The process-wide heap every kernel module imports, or null without wasm SIMD (callers use their TS kernels). */
export function wasmHeap(): WasmHeap | null {
  if (theHeap === undefined) theHeap = wasmApi !== undefined && hasSimd() ? new WasmHeap() : null;
  return theHeap;
}
