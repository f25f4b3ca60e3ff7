/**
 * The CPU kernels of the convolution family, keyed by primitive name (spread into the CPU
 * backend's kernel map in ./index.ts).
 */
import type { Kernel, TypedArray } from '../backend.ts';
import * as R from './conv_ref.ts';

export const convKernels: Record<string, Kernel<TypedArray, any>> = {
  conv2d: R.conv2dRefImpl,
  conv2dGradInput: R.conv2dGradInputRefImpl,
  conv2dGradFilter: R.conv2dGradFilterRefImpl,
  stochasticConv2d: R.stochasticConv2dRefImpl,
  stochasticConv2dGradInput: R.stochasticConv2dGradInputRefImpl,
  stochasticConv2dGradFilter: R.stochasticConv2dGradFilterRefImpl,
  avgPool2d: R.avgPool2dImpl,
  avgPool2dGrad: R.avgPool2dGradImpl,
  maxPool2d: R.maxPool2dImpl,
  maxPool2dGrad: R.maxPool2dGradImpl,
  maxPool2dSelect: R.maxPool2dSelectImpl,
};
