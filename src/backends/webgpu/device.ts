/**
 * The main thread's handle on a WebGPU device (Dawn, the `webgpu` npm package). The GPUDevice lives
 * in a worker thread (device-worker.mjs): WebGPU's adapter, device and buffer mapping are
 * asynchronous, the engine's kernels and `dataSync` are not. Kernels are posted to the worker in
 * batches and never wait; a synchronous read-back (`readSync`) blocks on Atomics.wait until the
 * worker has mapped the buffer, the asynchronous one (`read`) awaits a message. Tensors stay in
 * GPU buffers between kernels: only reads cross back.
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface AdapterReport {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  readonly isFallbackAdapter: boolean;
  /** The device's limits (as requested from the adapter: its storage-buffer maxima). */
  readonly limits: Readonly<Record<string, number>>;
}

/** A tensor's storage on the device: a GPU buffer of `size` float32 (or int32) values. */
export class WebGpuBuffer {
  constructor(
    readonly id: number,
    readonly size: number,
  ) {}
}

type Command = readonly unknown[];

const HEADER = 8;
/** How long a synchronous read waits for the device thread before giving up (env STOCHCONV_WEBGPU_TIMEOUT_MS). */
const timeoutMs = (): number => Number(process.env.STOCHCONV_WEBGPU_TIMEOUT_MS) || 600_000;
/** Commands queued before a batch is posted without waiting for a read. */
const BATCH = 256;

/** Whether the optional `webgpu` package (Dawn for Node) is installed; null when it is, else why not. */
export function webgpuPackageMissing(): string | null {
  try {
    createRequire(import.meta.url).resolve('webgpu');
    return null;
  } catch {
    return "the optional dependency 'webgpu' (Dawn for Node) is not installed (npm install webgpu)";
  }
}

function waitAnswer(sab: SharedArrayBuffer, what: string): { state: number; bytes: number } {
  const state = new Int32Array(sab, 0, 2);
  if (Atomics.wait(state, 0, 0, timeoutMs()) === 'timed-out') {
    throw new Error(`webgpu: no answer from the device thread to ${what} within ${timeoutMs()} ms (STOCHCONV_WEBGPU_TIMEOUT_MS)`);
  }
  return { state: Atomics.load(state, 0), bytes: state[1] };
}

const decode = (sab: SharedArrayBuffer, bytes: number): { error?: string } & Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(new Uint8Array(sab, HEADER, bytes).slice()));

export class WebGpuDevice {
  readonly adapter: AdapterReport;
  private readonly worker: Worker;
  private queue: Command[] = [];
  private nextId = 1;
  private readonly pipelines = new Map<string, number>();
  private readonly pending = new Map<number, { resolve: (d: ArrayBuffer) => void; reject: (e: Error) => void }>();
  private flushScheduled = false;
  private destroyed = false;
  /** Why the device thread is gone, once it is. */
  private lost: string | null = null;
  /** Kernels dispatched and pipelines compiled so far (the bench and tests read them). */
  dispatches = 0;
  compiled = 0;
  private readonly finalizer = new FinalizationRegistry<number>((id) => {
    if (!this.destroyed) this.enqueue(['free', id]);
  });

  /** Starts the device thread and waits (synchronously) for its adapter; throws why none is available. */
  constructor(options: { dawn?: string[] } = {}) {
    const missing = webgpuPackageMissing();
    if (missing) throw new Error(`webgpu: ${missing}`);
    const init = new SharedArrayBuffer(HEADER + 64 * 1024);
    this.worker = new Worker(new URL('./device-worker.mjs', import.meta.url), { workerData: { init, options } });
    const { bytes } = waitAnswer(init, 'the adapter request');
    const report = decode(init, bytes);
    if (report.error) {
      void this.worker.terminate();
      throw new Error(`webgpu: ${report.error}`);
    }
    this.adapter = report as unknown as AdapterReport;
    this.worker.on('message', (m: { req: number; data: ArrayBuffer | null; error: string | null }) => {
      const p = this.pending.get(m.req);
      if (!p) return;
      this.pending.delete(m.req);
      if (this.pending.size === 0) this.worker.unref();
      if (m.error) p.reject(new Error(`webgpu: ${m.error}`));
      else p.resolve(m.data!);
    });
    const fail = (why: string) => {
      this.lost = why;
      for (const p of this.pending.values()) p.reject(new Error(`webgpu: ${why}`));
      this.pending.clear();
    };
    this.worker.on('error', (e) => fail(`the device thread failed: ${e.message}`));
    this.worker.on('exit', (code) => fail(`the device thread exited (code ${code})`));
    // The device thread never keeps the process alive (only a pending async read does); unref after
    // the listeners, which would otherwise ref it again.
    this.worker.unref();
  }

  /** One line naming the adapter, e.g. `llvmpipe (mesa, software), maxStorageBufferBindingSize 128 MiB`. */
  describe(): string {
    const a = this.adapter;
    const name = a.description || a.device || a.architecture || 'unknown adapter';
    const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
    const kind = a.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(`${name} ${a.architecture}`) ? ', software' : '';
    return `${name} (${a.vendor || 'unknown vendor'}${kind}); limits: maxStorageBufferBindingSize ${mib(a.limits.maxStorageBufferBindingSize)}, maxBufferSize ${mib(a.limits.maxBufferSize)}, maxComputeWorkgroupsPerDimension ${a.limits.maxComputeWorkgroupsPerDimension}, maxStorageBuffersPerShaderStage ${a.limits.maxStorageBuffersPerShaderStage}`;
  }

  private enqueue(cmd: Command): void {
    if (this.destroyed) throw new Error('webgpu: the device was destroyed');
    if (this.lost) throw new Error(`webgpu: ${this.lost}`);
    this.queue.push(cmd);
    if (this.queue.length >= BATCH) this.flush();
    else if (!this.flushScheduled) {
      // Keeps the device busy while the main thread computes, without a post per kernel.
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      }).unref();
    }
  }

  flush(): void {
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    const transfer = batch.flatMap((c) => (c[0] === 'upload' ? [c[2] as ArrayBuffer] : []));
    this.worker.postMessage(batch, transfer);
  }

  /** Throws, naming the limit, when a buffer of `bytes` cannot be bound on this device. */
  checkSize(bytes: number, what: string): void {
    const { maxStorageBufferBindingSize: bind, maxBufferSize: buf } = this.adapter.limits;
    if (bytes > bind || bytes > buf) {
      const limit = bytes > bind ? `maxStorageBufferBindingSize (${bind} bytes)` : `maxBufferSize (${buf} bytes)`;
      throw new Error(`webgpu: ${what} needs ${bytes} bytes, over this adapter's ${limit}; use a smaller batch or image size`);
    }
  }

  private track(size: number): WebGpuBuffer {
    const buf = new WebGpuBuffer(this.nextId++, size);
    this.finalizer.register(buf, buf.id, buf);
    return buf;
  }

  /** A buffer holding a copy of `data` (float32 or int32 values). */
  upload(data: Float32Array | Int32Array, what = 'an upload'): WebGpuBuffer {
    this.checkSize(data.byteLength, what);
    const buf = this.track(data.length);
    const bytes = data.byteLength === data.buffer.byteLength && data.byteOffset === 0 ? data.buffer.slice(0) : data.slice().buffer;
    this.enqueue(['upload', buf.id, bytes]);
    return buf;
  }

  /** An uninitialised buffer of `size` 4-byte values. */
  alloc(size: number, what: string): WebGpuBuffer {
    this.checkSize(size * 4, what);
    const buf = this.track(size);
    this.enqueue(['alloc', buf.id, size * 4]);
    return buf;
  }

  /** Runs compute shader `wgsl` (entry `main`, bindings 0… = `buffers` in order) over `groups` workgroups. */
  dispatch(wgsl: string, buffers: readonly WebGpuBuffer[], groups: readonly [number, number]): void {
    let pid = this.pipelines.get(wgsl);
    if (pid === undefined) {
      const max = this.adapter.limits.maxStorageBuffersPerShaderStage;
      if (buffers.length > max) throw new Error(`webgpu: a kernel binds ${buffers.length} storage buffers, over this adapter's maxStorageBuffersPerShaderStage (${max})`);
      pid = this.pipelines.size;
      this.pipelines.set(wgsl, pid);
      this.enqueue(['pipeline', pid, wgsl]);
      this.compiled++;
    }
    this.dispatches++;
    this.enqueue(['dispatch', pid, buffers.map((b) => b.id), groups[0], groups[1]]);
  }

  dispose(buf: WebGpuBuffer): void {
    if (this.destroyed) return;
    this.finalizer.unregister(buf);
    this.enqueue(['free', buf.id]);
  }

  /** The buffer's first `size` values, waiting synchronously for the device. */
  readSync(buf: WebGpuBuffer, size = buf.size): ArrayBuffer {
    const bytes = size * 4;
    const sab = new SharedArrayBuffer(HEADER + Math.max(bytes, 64 * 1024));
    this.enqueue(['read', buf.id, bytes, sab, 0]);
    this.flush();
    const ans = waitAnswer(sab, `a read of ${size} values`);
    if (ans.state === 2) throw new Error(`webgpu: ${decode(sab, ans.bytes).error}`);
    return new Uint8Array(sab, HEADER, bytes).slice().buffer;
  }

  /** The buffer's first `size` values, without blocking the main thread. */
  read(buf: WebGpuBuffer, size = buf.size): Promise<ArrayBuffer> {
    const req = this.nextId++;
    const p = new Promise<ArrayBuffer>((resolve, reject) => this.pending.set(req, { resolve, reject }));
    this.worker.ref();
    this.enqueue(['read', buf.id, size * 4, null, req]);
    this.flush();
    return p;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.enqueue(['destroy']);
    this.flush();
    this.destroyed = true;
    void this.worker.terminate();
  }
}
