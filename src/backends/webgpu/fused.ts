/**
 * A jit fused group (`FusedGroup`, the webgpu mode's `Backend.fuse`) as one WGSL kernel: every node's scalar body (the
 * same `wgslExprs` the one-op kernels use) becomes a function, the group one expression over the
 * leaves, each leaf read once per output element — flat, as a scalar, or strided (broadcast).
 * Intermediates live in registers, so a chain of k elementwise ops costs one dispatch instead of k.
 *
 * Sizes and strides reach the shader through its parameter buffer (shader.ts), so the source
 * depends only on the expression and on how each leaf is read, and one pipeline serves every
 * shape of a group; jit caches the host-side kernel by the group's key (expression + shapes).
 */
import type { FusedGroup, FusedKernel, FusedOperand, KernelArg } from '../backend.ts';
import { RANK, coalesce, sizeOf, stridedConstants } from '../gpu/strides.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { sigmoidWgsl, wgslExprs } from './elementwise.ts';
import { compute, coords, offset } from './shader.ts';

const PARAMS = ['a', 'b', 'c'];

/**
 * Whether the group can be one kernel here: elementwise (a reducing group runs as its ops, the sum on the reduce
 * kernel), float32 (float64 runs on the CPU kernels), WGSL bodies for every member, few enough leaves to bind.
 */
function supported(dev: WebGpuDevice, group: FusedGroup): boolean {
  if (group.reduce) return false;
  if (group.dtype !== 'float32' || group.leaves.some((l) => l.dtype !== 'float32')) return false;
  if (group.nodes.some((m) => m.prim !== 'broadcastTo' && !(m.prim in wgslExprs))) return false;
  // The leaves, the output and the parameter buffer are storage bindings.
  return group.leaves.length + 2 <= dev.adapter.limits.maxStorageBuffersPerShaderStage;
}

/** WGSL functions `op_<prim>` for the group's primitives. */
function helpers(group: FusedGroup): string {
  const prims = new Set(group.nodes.map((m) => m.prim).filter((p) => p !== 'broadcastTo'));
  const fns = [...prims].map((p) => {
    const [arity, body] = wgslExprs[p];
    return `fn op_${p}(${PARAMS.slice(0, arity).map((q) => `${q}: f32`).join(', ')}) -> f32 { ${body} }`;
  });
  return [sigmoidWgsl, ...fns].join('\n');
}

/** The statements of `value(i)`: leaf reads (`index(k)` is leaf k's element index), then one `let` per node. */
function body(group: FusedGroup, index: (k: number) => string): string {
  const lines = group.leaves.map((_, k) => `  let v${k} = x${k}[${index(k)}];`);
  const ref = (a: FusedOperand) => ('leaf' in a ? `v${a.leaf}` : `t${a.node}`);
  group.nodes.forEach((m, j) => {
    const args = m.args.map(ref).join(', ');
    if (m.prim === 'broadcastTo') lines.push(`  let t${j} = ${args};`);
    else lines.push(`  let t${j} = op_${m.prim}(${args});`);
  });
  lines.push(`  return t${group.nodes.length - 1};`);
  return lines.join('\n');
}

/** The group's kernel on `dev`, or null when it cannot be one (the jit then runs its ops one by one). */
function compileGroup(dev: WebGpuDevice, group: FusedGroup): FusedKernel<WebGpuBuffer> | null {
  if (!supported(dev, group)) return null;
  const n = sizeOf(group.shape);
  const sizes = group.leaves.map((l) => sizeOf(l.shape));
  const mode = sizes.map((s) => (s === n ? 'flat' : s === 1 ? 'scalar' : 'strided'));
  const strided = mode.flatMap((m, k) => (m === 'strided' ? [k] : []));
  let ints: Record<string, number> | undefined;
  let src = body(group, (k) => (mode[k] === 'flat' ? 'i' : '0'));
  if (strided.length) {
    if (group.loopShape.length > RANK) return null; // more axes than the strided index takes
    const st = coalesce(group.loopShape, strided.map((k) => group.leaves[k].strides), 'fused');
    ints = stridedConstants(st, strided.map((k) => `s${k}_`));
    src = `${coords()}\n${body(group, (k) => (mode[k] === 'flat' ? 'i' : mode[k] === 'scalar' ? '0' : offset(`s${k}_`)))}`;
  }
  const op = `fused ${group.nodes.map((m) => m.prim).join('+')}`;
  const fns = helpers(group);
  const kernel = (inputs: readonly KernelArg<WebGpuBuffer>[]) =>
    compute(dev, { op, size: n, ints, inputs: inputs.map((x, k) => [`x${k}`, x.storage] as const), helpers: fns, body: src });
  return Object.assign(kernel, { via: 'wgsl' });
}

/** The fusion hook of webgpu mode (`Backend.fuse`). */
export const fuseWebGpu =
  (dev: () => WebGpuDevice) =>
  (groups: readonly FusedGroup[]): (FusedKernel<WebGpuBuffer> | null)[] =>
    groups.map((g) => compileGroup(dev(), g));
