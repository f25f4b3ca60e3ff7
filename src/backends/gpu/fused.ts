/**
 * A jit fused group (`FusedGroup`, the gpu.js modes' `Backend.fuse`) as one gpu.js kernel: each primitive's scalar
 * body (the same `gpuExprs` the one-op kernels use) becomes a helper `op_<prim>`, and the kernel, generated as
 * source text, is one expression over the leaves, each read once per output element — flat (a leaf of the
 * output's size), as a scalar, or strided (broadcast, through the coordinates of the flat output index as in
 * elementwise.ts's strided kernels). gpu.js translates it to GLSL (the GL modes) or WebAssembly / JS (webasm,
 * cpu). Intermediates stay in registers, so a chain of k elementwise ops is one launch instead of k.
 *
 * Declined (jit runs the ops one by one): float64 groups (their ops run on the CPU kernels), more than
 * MAX_LEAVES leaves (each is a texture unit on GL), broadcasts over more than RANK non-mergeable axes.
 */
import type { FusedGroup, FusedKernel, KernelArg } from '../backend.ts';
import { gpuExprs } from './elementwise.ts';
import type { GpuBuffer, GpuRuntime, HelperSpec } from './runtime.ts';
import { RANK, coalesce, sizeOf, stridedConstants } from './strides.ts';

/** Leaves a fused kernel takes (GLSL ES guarantees 8 texture units to a fragment shader). */
const MAX_LEAVES = 8;
const PARAMS = ['a', 'b', 'c'];

/** Whether the group can be one kernel here: elementwise (a reducing group runs as its ops), float32, GLSL bodies, few enough leaves. */
function supported(g: FusedGroup): boolean {
  if (g.reduce) return false;
  if (g.dtype !== 'float32' || g.leaves.some((l) => l.dtype !== 'float32') || g.leaves.length > MAX_LEAVES) return false;
  return g.nodes.every((n) => n.prim === 'broadcastTo' || n.prim in gpuExprs);
}

/** The helpers `op_<prim>` of the group's primitives. */
function helpers(g: FusedGroup): HelperSpec[] {
  const prims = new Set(g.nodes.map((n) => n.prim).filter((p) => p !== 'broadcastTo'));
  return [...prims].map((p) => {
    const [arity, body] = gpuExprs[p];
    const params = PARAMS.slice(0, arity);
    return { source: `function op_${p}(${params.join(', ')}) { ${body} }`, argumentTypes: Object.fromEntries(params.map((q) => [q, 'Number'])), returnType: 'Number' };
  });
}

/** The kernel's source: coordinates (if a leaf is strided), one read per leaf, one `const` per node. */
function source(g: FusedGroup, read: readonly ('flat' | 'scalar' | 'strided')[]): string {
  const lines = ['const i = this.thread.x;'];
  if (read.includes('strided')) for (let k = 0; k < RANK; k++) lines.push(`const c${k} = coord(i, this.constants.o${k}, this.constants.d${k});`);
  read.forEach((r, k) => {
    const at = r === 'flat' ? 'i' : r === 'scalar' ? '0' : Array.from({ length: RANK }, (_, d) => `c${d} * this.constants.s${k}_${d}`).join(' + ');
    lines.push(`const v${k} = x${k}[${at}];`);
  });
  g.nodes.forEach((n, j) => {
    const args = n.args.map((a) => ('leaf' in a ? `v${a.leaf}` : `t${a.node}`)).join(', ');
    const value = n.prim === 'broadcastTo' ? args : `op_${n.prim}(${args})`;
    lines.push(`const t${j} = ${value};`);
  });
  lines.push(`return t${g.nodes.length - 1};`);
  return `function fused(${g.leaves.map((_, k) => `x${k}`).join(', ')}) {\n  ${lines.join('\n  ')}\n}`;
}

function compileGroup(rt: () => GpuRuntime, g: FusedGroup): FusedKernel<GpuBuffer> | null {
  if (!supported(g)) return null;
  const n = sizeOf(g.shape);
  const read = g.leaves.map((l) => (sizeOf(l.shape) === n ? 'flat' : sizeOf(l.shape) === 1 ? 'scalar' : 'strided'));
  const strided = read.flatMap((r, k) => (r === 'strided' ? [k] : []));
  if (strided.length && g.loopShape.length > RANK) return null;
  const constants = strided.length ? stridedConstants(coalesce(g.loopShape, strided.map((k) => g.leaves[k].strides), 'fused'), strided.map((k) => `s${k}_`)) : {};
  const fn = source(g, read);
  const functions = helpers(g);
  const key = `fused ${g.key}`;
  const kernel = (inputs: readonly KernelArg<GpuBuffer>[]) => rt().run(key, () => ({ fn, output: n, constants, functions }), inputs.map((x) => x.storage), n);
  return Object.assign(kernel, { via: 'gpu.js' });
}

/** The fusion hook of the gpu.js modes (`Backend.fuse`); gpu.js compiles each kernel on its first call. */
export const fuseGpuJs =
  (rt: () => GpuRuntime) =>
  (groups: readonly FusedGroup[]): (FusedKernel<GpuBuffer> | null)[] =>
    groups.map((g) => compileGroup(rt, g));
