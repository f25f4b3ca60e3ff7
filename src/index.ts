/**
 * @stochconv/engine — tensors, reverse-mode autograd, convolution kernels on CPU and gpu.js, and
 * the EfficientNet / Stochastic Convolution models, in TypeScript.
 */
export * from './tensor/index.ts';
export * from './tensor/conv.ts';
export * from './autograd/index.ts';
export { jit, shapeOnly, arenaBytes, formatProfile, type JitOptions, type Jitted, type Lowered, type Profile, type ProfileRow } from './jit/index.ts';
export * as io from './io/index.ts';
export * as nn from './nn/index.ts';
// `data` is taken by the tensor download function E.data(t), so the data pipeline is E.datasets.
export * as datasets from './data/index.ts';
export * as inspect from './inspect/index.ts';
export { setBackend, getBackend, listBackends, registerBackend, registerKernel, type Backend, type DType, type TypedArray } from './backends/backend.ts';
export { gpuMode, gpuAdapter, configureGpu, createGpuBackend, gpuModes, gpuModeAvailable, gpuModeUnavailableReason, type GpuMode, type GpuBackend } from './backends/gpu/index.ts';
export * as classifier from './train/classifier.ts';
