/**
 * A jit fusion group (src/jit/fused-group.ts) as one WGSL kernel: every member's scalar body (the
 * same `wgslExprs` the one-op kernels use) becomes a function, the group one expression over the
 * leaves, each leaf read once per output element — flat, as a scalar, or strided (broadcast).
 * Intermediates live in registers, so a chain of k elementwise ops costs one dispatch instead of k.
 *
 * Sizes and strides reach the shader through its parameter buffer (shader.ts), so the source
 * depends only on the expression and on how each leaf is read, and one pipeline serves every
 * shape of a group; the host-side kernel is cached by the group's key (expression + shapes).
 */
import type { Kernel, KernelArg } from '../backend.ts';
import type { FusedGroup, FusedOperand } from '../../jit/fused-group.ts';
import { RANK, broadcastStridesOf, coalesce, sizeOf, stridedConstants } from '../gpu/strides.ts';
import { collapseAxes } from '../../tensor/shape.ts';
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';
import { sigmoidWgsl, wgslExprs } from './elementwise.ts';
import { compute, coords, offset } from './shader.ts';

const PARAMS = ['a', 'b', 'c'];

/** Whether the group can be one kernel here: float32 (float64 runs on the CPU kernels), WGSL bodies for every member, few enough leaves to bind. */
function supported(dev: WebGpuDevice, group: FusedGroup): boolean {
  if (group.dtype !== 'float32' || group.leaves.some((l) => l.dtype !== 'float32')) return false;
  if (group.members.some((m) => m.prim !== 'broadcastTo' && !(m.prim in wgslExprs))) return false;
  // The leaves, the output and the parameter buffer are storage bindings.
  return group.leaves.length + 2 <= dev.adapter.limits.maxStorageBuffersPerShaderStage;
}

/** WGSL functions `op_<prim>` for the group's primitives. */
function helpers(group: FusedGroup): string {
  const prims = [...new Set(group.members.map((m) => m.prim).filter((p) => p !== 'broadcastTo'))];
  if (group.members.some((m) => m.prim === 'affine' && (m.attrs as { act?: string }).act === 'silu')) prims.push('silu');
  const fns = [...new Set(prims)].map((p) => {
    const [arity, body] = wgslExprs[p];
    return `fn op_${p}(${PARAMS.slice(0, arity).map((q) => `${q}: f32`).join(', ')}) -> f32 { ${body} }`;
  });
  return [sigmoidWgsl, ...fns].join('\n');
}

/** The statements of `value(i)`: leaf reads (`index(k)` is leaf k's element index), then one `let` per member. */
function body(group: FusedGroup, index: (k: number) => string): string {
  const lines = group.leaves.map((_, k) => `  let v${k} = x${k}[${index(k)}];`);
  const ref = (a: FusedOperand) => ('leaf' in a ? `v${a.leaf}` : `t${a.tmp}`);
  group.members.forEach((m, j) => {
    const args = m.args.map(ref).join(', ');
    if (m.prim === 'broadcastTo') lines.push(`  let t${j} = ${args};`);
    else if (m.prim === 'affine' && (m.attrs as { act?: string }).act === 'silu') lines.push(`  let t${j} = op_silu(op_affine(${args}));`);
    else lines.push(`  let t${j} = op_${m.prim}(${args});`);
  });
  lines.push(`  return t${group.members.length - 1};`);
  return lines.join('\n');
}

/** The group's kernel on `dev`, or null when it cannot be one (the jit then runs its ops one by one). */
function compileFused(dev: WebGpuDevice, group: FusedGroup): Kernel<WebGpuBuffer> | null {
  if (!supported(dev, group)) return null;
  const n = sizeOf(group.shape);
  const sizes = group.leaves.map((l) => sizeOf(l.shape));
  const mode = sizes.map((s) => (s === n ? 'flat' : s === 1 ? 'scalar' : 'strided'));
  const strided = mode.flatMap((m, k) => (m === 'strided' ? [k] : []));
  let ints: Record<string, number> | undefined;
  let src = body(group, (k) => (mode[k] === 'flat' ? 'i' : '0'));
  if (strided.length) {
    const strides = strided.map((k) => broadcastStridesOf(group.leaves[k].shape, group.shape));
    if (collapseAxes(group.shape, strides).shape.length > RANK) return null; // more axes than the strided index takes
    const st = coalesce(group.shape, strides, 'fused');
    ints = stridedConstants(st, strided.map((k) => `s${k}_`));
    src = `${coords()}\n${body(group, (k) => (mode[k] === 'flat' ? 'i' : mode[k] === 'scalar' ? '0' : offset(`s${k}_`)))}`;
  }
  const op = `fused ${group.members.map((m) => m.prim).join('+')}`;
  const fns = helpers(group);
  return (inputs: readonly KernelArg<WebGpuBuffer>[]) =>
    compute(dev, { op, size: n, ints, inputs: inputs.map((x, k) => [`x${k}`, x.storage] as const), helpers: fns, body: src });
}

/** The fusion hook of webgpu mode: kernels cached by group key (expression, shapes, dtypes). */
export function fuseWebGpu(dev: () => WebGpuDevice): (group: FusedGroup) => Kernel<WebGpuBuffer> | null {
  const cache = new Map<string, Kernel<WebGpuBuffer> | null>();
  return (group) => {
    let k = cache.get(group.key);
    if (k === undefined) cache.set(group.key, (k = compileFused(dev(), group)));
    return k;
  };
}
