/**
 * How every WebGPU kernel is written: a WGSL compute shader with one invocation per output element.
 * The flat row-major output index is `i` (as in the gpu.js kernels: no kernel undoes a reversed
 * axis order). Sizes are not baked into the source: they arrive in a small i32 buffer bound last
 * and are copied into module-scope variables of the same names, so one pipeline serves every shape
 * of an op (a pipeline takes ~1 s to compile on lavapipe, and a B0 has hundreds of shapes).
 * Pipelines are cached by source text. Index arithmetic is in i32, exact for every buffer a device
 * can bind (f32 indices, as gpu.js uses, are exact only below 2²⁴).
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

const checkInt = (name: string, v: number, op: string): number => {
  if (!Number.isInteger(v) || Math.abs(v) > 2 ** 31 - 1) throw new Error(`${op} (webgpu): size ${name} = ${v} is not an i32`);
  return v;
};
const f32Bits = (v: number): number => new Int32Array(Float32Array.of(v).buffer)[0];

/** Coordinate of flat index `i` along an axis of extent `d` whose row-major stride is `s`. */
const coordFn = 'fn coord(i: i32, s: i32, d: i32) -> i32 { return (i / s) % d; }';

/** The shader source; the parameter buffer holds N_OUT, WIDTH (threads per row of the 2-D grid), the ints, the floats' bits. */
function source(spec: ShaderSpec, ints: readonly string[], floats: readonly string[]): string {
  const lines = ['var<private> N_OUT: i32;', 'var<private> WIDTH: i32;'];
  for (const k of ints) lines.push(`var<private> ${k}: i32;`);
  for (const k of floats) lines.push(`var<private> ${k}: f32;`);
  spec.inputs.forEach(([name, , type], b) => lines.push(`@group(0) @binding(${b}) var<storage, read> ${name}: array<${type ?? 'f32'}>;`));
  lines.push(`@group(0) @binding(${spec.inputs.length}) var<storage, read_write> y: array<f32>;`);
  lines.push(`@group(0) @binding(${spec.inputs.length + 1}) var<storage, read> params: array<i32>;`);
  lines.push(coordFn);
  if (spec.helpers) lines.push(spec.helpers);
  lines.push(`fn value(i: i32) -> f32 {\n${spec.body}\n}`);
  lines.push(
    `@compute @workgroup_size(${WORKGROUP})`,
    'fn main(@builtin(global_invocation_id) gid: vec3<u32>) {',
    '  N_OUT = params[0];',
    '  WIDTH = params[1];',
    ...ints.map((k, j) => `  ${k} = params[${2 + j}];`),
    ...floats.map((k, j) => `  ${k} = bitcast<f32>(params[${2 + ints.length + j}]);`),
    '  let t = i32(gid.x) + i32(gid.y) * WIDTH;',
    '  if (t >= N_OUT) { return; }',
    '  y[t] = value(t);',
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
  const ints = Object.keys(spec.ints ?? {}).sort();
  const floats = Object.keys(spec.floats ?? {}).sort();
  const params = Int32Array.from([
    checkInt('N_OUT', spec.size, spec.op),
    gx * WORKGROUP,
    ...ints.map((k) => checkInt(k, spec.ints![k], spec.op)),
    ...floats.map((k) => f32Bits(spec.floats![k])),
  ]);
  const p = dev.upload(params, `${spec.op} parameters`);
  dev.dispatch(source(spec, ints, floats), [...spec.inputs.map((x) => x[1]), out, p], [gx, rows]);
  dev.dispose(p);
  return out;
}

/** WGSL statements declaring c0…c5, the coordinates of `i` along the constants d0…d5 / o0…o5 (see gpu/strides.ts). */
export const coords = (): string => [0, 1, 2, 3, 4, 5].map((k) => `  let c${k} = coord(i, o${k}, d${k});`).join('\n');
/** Σₖ cₖ·<p>ₖ: the offset of operand `p` at the coordinates from `coords()`. */
export const offset = (p: string): string => [0, 1, 2, 3, 4, 5].map((k) => `c${k} * ${p}${k}`).join(' + ');
