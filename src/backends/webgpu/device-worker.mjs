// The WebGPU device thread. WebGPU acquires devices and maps buffers only asynchronously, while the
// engine's kernels and `dataSync` are synchronous; so the GPUDevice lives here, the main thread
// (src/backends/webgpu/device.ts) posts batches of commands, and blocks with Atomics.wait only
// when it needs an answer (the adapter at start-up, a synchronous read-back).
//
// Commands (arrays, in order): ['alloc', id, bytes] · ['upload', id, ArrayBuffer] ·
// ['pipeline', pid, wgsl] · ['dispatch', pid, [ids…], groupsX, groupsY] · ['free', id] ·
// ['read', id, bytes, SharedArrayBuffer | null, req]. Dispatches go into one compute pass; the
// pass is submitted before any read, and at the end of each batch.
import { parentPort, workerData } from 'node:worker_threads';

const STORAGE = 0x80;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;

/** Header of every SharedArrayBuffer answer: [state (0 pending, 1 done, 2 error), byte length of the payload]. */
const HEADER = 8;

function answer(sab, payload) {
  const state = new Int32Array(sab, 0, 2);
  const bytes = new TextEncoder().encode(JSON.stringify(payload));
  new Uint8Array(sab, HEADER).set(bytes.subarray(0, sab.byteLength - HEADER));
  state[1] = bytes.length;
  Atomics.store(state, 0, payload.error ? 2 : 1);
  Atomics.notify(state, 0);
}

async function acquire(options) {
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create(options.dawn ?? []);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null (no WebGPU adapter: on Linux install a Vulkan driver, e.g. mesa-vulkan-drivers from bookworm-backports)');
  const limits = {};
  for (const k in adapter.limits) if (typeof adapter.limits[k] === 'number') limits[k] = adapter.limits[k];
  // The spec's default device limits cap storage bindings at 128 MiB whatever the hardware: ask for what the adapter has.
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: limits.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: limits.maxComputeWorkgroupsPerDimension,
    },
  });
  const info = adapter.info ?? {};
  const deviceLimits = {};
  for (const k in device.limits) if (typeof device.limits[k] === 'number') deviceLimits[k] = device.limits[k];
  return {
    gpu,
    device,
    report: {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      device: info.device ?? '',
      description: info.description ?? '',
      isFallbackAdapter: !!adapter.isFallbackAdapter,
      limits: deviceLimits,
    },
  };
}

class DeviceThread {
  constructor(gpu, device) {
    // The instance must stay reachable: Dawn keeps polling it, and a collected one crashes the process.
    this.gpu = gpu;
    this.device = device;
    this.buffers = new Map();
    this.pipelines = new Map();
    /** Freed buffers by byte size, reused for the next allocation of that size. */
    this.pool = new Map();
    this.encoder = null;
    this.pass = null;
    this.pendingFree = [];
    this.errors = [];
    device.onuncapturederror = (e) => this.errors.push(e.error.message);
    device.lost.then((info) => {
      if (info.reason !== 'destroyed') this.errors.push(`device lost: ${info.message}`);
    });
  }

  alloc(id, bytes) {
    const free = this.pool.get(bytes);
    const buf = free?.pop() ?? this.device.createBuffer({ size: Math.max(4, bytes), usage: STORAGE | COPY_SRC | COPY_DST });
    this.buffers.set(id, buf);
    return buf;
  }

  computePass() {
    this.encoder ??= this.device.createCommandEncoder();
    this.pass ??= this.encoder.beginComputePass();
    return this.pass;
  }

  submit() {
    if (this.pass) this.pass.end();
    if (this.encoder) this.device.queue.submit([this.encoder.finish()]);
    this.pass = null;
    this.encoder = null;
    // Buffers freed while the pass still used them are recycled only now that it is submitted.
    for (const [bytes, buf] of this.pendingFree) {
      const list = this.pool.get(bytes) ?? [];
      list.push(buf);
      this.pool.set(bytes, list);
    }
    this.pendingFree = [];
  }

  run(cmd) {
    switch (cmd[0]) {
      case 'alloc':
        this.alloc(cmd[1], cmd[2]);
        break;
      case 'upload': {
        const data = cmd[2];
        const buf = this.alloc(cmd[1], data.byteLength);
        this.device.queue.writeBuffer(buf, 0, data);
        break;
      }
      case 'pipeline': {
        const module = this.device.createShaderModule({ code: cmd[2] });
        this.pipelines.set(cmd[1], this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } }));
        break;
      }
      case 'dispatch': {
        const pipeline = this.pipelines.get(cmd[1]);
        const entries = cmd[2].map((id, binding) => ({ binding, resource: { buffer: this.buffers.get(id) } }));
        const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
        const pass = this.computePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(cmd[3], cmd[4]);
        break;
      }
      case 'free': {
        const buf = this.buffers.get(cmd[1]);
        this.buffers.delete(cmd[1]);
        if (buf) this.pendingFree.push([buf.size, buf]);
        break;
      }
      case 'read':
        this.read(cmd[1], cmd[2], cmd[3], cmd[4]);
        break;
      case 'destroy':
        this.submit();
        this.device.destroy();
        break;
      default:
        throw new Error(`webgpu device thread: unknown command ${cmd[0]}`);
    }
  }

  read(id, bytes, sab, req) {
    const staging = this.device.createBuffer({ size: Math.max(4, bytes), usage: MAP_READ | COPY_DST });
    const src = this.buffers.get(id);
    this.computePass();
    this.pass.end();
    this.pass = null;
    if (bytes > 0) this.encoder.copyBufferToBuffer(src, 0, staging, 0, bytes);
    this.submit();
    const errors = () => (this.errors.length ? this.errors.splice(0).join('; ') : null);
    staging.mapAsync(MAP_READ).then(
      () => {
        const data = staging.getMappedRange(0, Math.max(4, bytes)).slice(0, bytes);
        staging.unmap();
        staging.destroy();
        const error = errors();
        if (sab) {
          new Uint8Array(sab, HEADER, bytes).set(new Uint8Array(data));
          const state = new Int32Array(sab, 0, 2);
          state[1] = bytes;
          if (error) answer(sab, { error });
          else {
            Atomics.store(state, 0, 1);
            Atomics.notify(state, 0);
          }
        } else parentPort.postMessage({ req, data, error }, [data]);
      },
      (e) => {
        const error = `mapAsync failed: ${e.message}${this.errors.length ? `; ${errors()}` : ''}`;
        if (sab) answer(sab, { error });
        else parentPort.postMessage({ req, data: null, error });
      },
    );
  }
}

let thread = null;
const { init } = workerData;
try {
  const { gpu, device, report } = await acquire(workerData.options ?? {});
  thread = new DeviceThread(gpu, device);
  answer(init, report);
} catch (e) {
  answer(init, { error: e instanceof Error ? e.message : String(e) });
}

parentPort.on('message', (batch) => {
  if (!thread) return;
  for (const cmd of batch) {
    try {
      thread.run(cmd);
    } catch (e) {
      thread.errors.push(`${cmd[0]}: ${e instanceof Error ? e.message : String(e)}`);
      if (cmd[0] === 'read' && cmd[3]) answer(cmd[3], { error: thread.errors.splice(0).join('; ') });
    }
  }
  thread.submit();
});
