/** ImageNet normalisation, the one every model here is trained with: (v/255 − mean[c]) / std[c] for a byte v. */
import type { ImageDecode } from '../autograd/conv.ts';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** The normalisation as a uint8 image's decode (stochasticConv2d's `decode`): v·scale[c] + shift[c]. */
export const imagenetDecode: ImageDecode = {
  scale: IMAGENET_STD.map((s) => 1 / (255 * s)),
  shift: IMAGENET_MEAN.map((m, c) => -m / IMAGENET_STD[c]),
};
