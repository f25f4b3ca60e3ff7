/**
 * How every WebGPU kernel is written: a WGSL compute shader with one invocation per output element.
 * The flat row-major output index is `i` (as in the gpu.js kernels: no kernel undoes a reversed
 * axis order); sizes are `const`s baked into the source, so each (op, shape) pair is its own
 * pipeline, compiled once and cached by source text. Index arithmetic is in i32, exact for every
 * buffer a device can bind (f32 indices, as gpu.js uses, are exact only below 2²⁴).
 */
import type { WebGpuBuffer, WebGpuDevice } from './device.ts';

export const WORKGROUP = 64;

export interface ShaderSpec {
  /** The primitive, for error messages. */
  readonly op: string;
  /** Output elements. */
  readonly size: number;
  readonly ints?: Readonly<Record<string, number>>;
  readonly floats?: Readonly<Record<string, number>>;
  /** Bound in order as bindings 0…; 'i32' for index and window arrays. */
  readonly inputs: readonly (readonly [name: string, buffer: WebGpuBuffer, type?: 'i32'])[];
  /** Module-scope WGSL functions. */
  readonly helpers?: string;
  /** Statements that compute output element `i` and `return` it (the body of `fn value(i: i32) -> f32`). */
  readonly body: string;
}

/** A WGSL f32 literal, infinities included (WGSL has no literal for them). */
export function f32(v: number): string {
  if (Number.isNaN(v)) return 'bitcast<f32>(0x7fc00000u)';
  if (v === Infinity) return 'bitcast<f32>(0x7f800000u)';
  if (v === -Infinity) return 'bitcast<f32>(0xff800000u)';
  const s = Math.fround(v).toString();
  return /[.e]/.test(s) ? s : `${s}.0`;
}

const i32 = (name: string, v: number, op: string): string => {
  if (!Number.isInteger(v) || Math.abs(v) > 2 ** 31 - 1) throw new Error(`${op} (webgpu): size ${name} = ${v} is not an i32`);
  return `const ${name}: i32 = ${v};`;
};

/** Coordinate of flat index `i` along an axis of extent `d` whose row-major stride is `s`. */
const coordFn = 'fn coord(i: i32, s: i32, d: i32) -> i32 { return (i / s) % d; }';

/** The shader source for `spec` dispatched as `groupsX` rows of workgroups (a 1-D grid folded into 2-D past the per-dimension limit). */
function source(spec: ShaderSpec, groupsX: number): string {
  const lines = [i32('N_OUT', spec.size, spec.op), `const WIDTH: u32 = ${groupsX * WORKGROUP}u;`];
  for (const [k, v] of Object.entries(spec.ints ?? {})) lines.push(i32(k, v, spec.op));
  for (const [k, v] of Object.entries(spec.floats ?? {})) lines.push(`const ${k}: f32 = ${f32(v)};`);
  spec.inputs.forEach(([name, , type], b) => lines.push(`@group(0) @binding(${b}) var<storage, read> ${name}: array<${type ?? 'f32'}>;`));
  lines.push(`@group(0) @binding(${spec.inputs.length}) var<storage, read_write> y: array<f32>;`);
  lines.push(coordFn);
  if (spec.helpers) lines.push(spec.helpers);
  lines.push(`fn value(i: i32) -> f32 {\n${spec.body}\n}`);
  lines.push(
    `@compute @workgroup_size(${WORKGROUP})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    '  let t = gid.x + gid.y * WIDTH;',
    '  if (t >= u32(N_OUT)) { return; }',
    '  y[t] = value(i32(t));',
    '}',
  );
  return lines.join('\n');
}

/** Runs the kernel into a fresh buffer of `spec.size` values. */
export function compute(dev: WebGpuDevice, spec: ShaderSpec): WebGpuBuffer {
  const out = dev.alloc(spec.size, `the output of ${spec.op} (${spec.size} values)`);
  if (spec.size === 0) return out;
  const groups = Math.ceil(spec.size / WORKGROUP);
  const max = dev.adapter.limits.maxComputeWorkgroupsPerDimension;
  const rows = Math.ceil(groups / max);
  const gx = Math.ceil(groups / rows);
  if (rows > max) throw new Error(`${spec.op} (webgpu): ${spec.size} outputs need ${groups} workgroups, over maxComputeWorkgroupsPerDimension² (${max}²)`);
  dev.dispatch(source(spec, gx), [...spec.inputs.map((x) => x[1]), out], [gx, rows]);
  return out;
}

/** WGSL statements declaring c0…c5, the coordinates of `i` along the constants d0…d5 / o0…o5 (see gpu/strides.ts). */
export const coords = (): string => [0, 1, 2, 3, 4, 5].map((k) => `  let c${k} = coord(i, o${k}, d${k});`).join('\n');
/** Σₖ cₖ·<p>ₖ: the offset of operand `p` at the coordinates from `coords()`. */
export const offset = (p: string): string => [0, 1, 2, 3, 4, 5].map((k) => `c${k} * ${p}${k}`).join(' + ');
