/** The CPU backend: plain TypeScript kernels over typed arrays, the reference for every other backend. */
import { type Backend, type Kernel, registerBackend, type TypedArray, writesInto } from '../backend.ts';
import { convKernels } from './conv.ts';
import { elementwiseExprs, elementwiseKernel } from './elementwise.ts';
import * as L from './layout.ts';
import { matmulImpl } from './matmul.ts';
import { maxImpl, momentsImpl, sumImpl } from './reduce.ts';
import { sigmoidF32, siluF32 } from './fast/index.ts';

const kernels = new Map<string, Kernel<TypedArray>>();
for (const [name, [arity, expr]] of Object.entries(elementwiseExprs)) kernels.set(name, writesInto(elementwiseKernel(name, arity, expr)));
const table: Record<string, Kernel<TypedArray, any>> = {
  sum: sumImpl,
  max: maxImpl,
  moments: momentsImpl,
  matmul: matmulImpl,
  reshape: L.reshapeImpl,
  transpose: L.transposeImpl,
  broadcastTo: L.broadcastToImpl,
  slice: L.sliceImpl,
  pad: L.padImpl,
  concat: L.concatImpl,
  gather: L.gatherImpl,
  scatterAdd: L.scatterAddImpl,
  cast: L.castImpl,
  ...convKernels,
};
// Every kernel here but the convolutions' honours OutSpec.into (jit's arena slots).
for (const [name, k] of Object.entries(table)) kernels.set(name, name in convKernels ? k : writesInto(k));

// float32 SiLU and sigmoid on wasm SIMD (a vector exp; the reference loop spends ~20 ns in Math.exp per element).
for (const [name, fast] of [['silu', siluF32], ['sigmoid', sigmoidF32]] as const) {
  const ref = kernels.get(name)!;
  kernels.set(name, writesInto((ins, a, out) => (out.dtype === 'float32' ? fast(ins[0].storage as Float32Array, out.into as Float32Array | undefined) : ref(ins, a, out))));
}
// affine with a fused SiLU: the affine loop, then SiLU in place.
const affineRef = kernels.get('affine')!;
const siluRef = kernels.get('silu')!;
kernels.set('affine', writesInto((ins: Parameters<Kernel<TypedArray>>[0], a: { act?: 'silu' }, out: Parameters<Kernel>[2]) => {
  const z = affineRef(ins, a, out);
  if (a.act !== 'silu') return z;
  return out.dtype === 'float32' ? siluF32(z as Float32Array, z as Float32Array) : siluRef([{ storage: z, shape: out.shape, dtype: out.dtype }], {}, out);
}));
// siluGrad(x, ct) = ct·σ(1 + x(1 − σ)) with σ from the SIMD sigmoid, when no broadcasting is involved.
const siluGradRef = kernels.get('siluGrad')!;
kernels.set('siluGrad', writesInto((ins: Parameters<Kernel<TypedArray>>[0], a: unknown, out: Parameters<Kernel>[2]) => {
  const [x, ct] = ins.map((i) => i.storage);
  if (out.dtype !== 'float32' || x.length !== ct.length || x.length !== out.shape.reduce((p, d) => p * d, 1)) return siluGradRef(ins, a, out);
  // σ goes into the output first, so the output must not be x or ct (jit never writes this op in place).
  const s = sigmoidF32(x as Float32Array, out.into as Float32Array | undefined);
  for (let i = 0; i < s.length; i++) {
    const si = s[i];
    s[i] = ct[i] * si * (1 + x[i] * (1 - si));
  }
  return s;
}));

export const cpuBackend: Backend<TypedArray> = {
  name: 'cpu',
  upload: (data) => data,
  download: (s) => s.slice(),
  kernels,
  // jit's arena: one ArrayBuffer, storage = typed-array views into it.
  arena: (bytes) => ({ buffer: new ArrayBuffer(bytes), offset: 0 }),
  view: (buffer, byteOffset, dtype, size) => (dtype === 'float64' ? new Float64Array(buffer, byteOffset, size) : new Float32Array(buffer, byteOffset, size)),
  describe: () => 'cpu (TypeScript kernels)',
};

registerBackend(cpuBackend);
