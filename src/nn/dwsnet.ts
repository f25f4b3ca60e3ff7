/**
 * A compact classifier for small grey images (Fashion-MNIST, MNIST) from depthwise-separable and
 * dilated convolutions, built with `nn.layers` — the network diagram, one line per layer:
 *
 *   28×28×1 ─ conv3×3 ─ 32 ─ dws3×3 ─ 64 ─ dws3×3/2 ─ 14×14×96 ─ dws3×3 d2 ─ 96
 *           ─ dws3×3/2 ─ 7×7×128 ─ dws3×3 d2 ─ 128 ─ dws3×3 ─ 160 ─ global avg ─ dropout ─ dense ─ 10
 *
 * Every conv is followed by BN and ReLU. The two dilated layers widen the receptive field at no
 * parameter cost: the last conv sees 43 × 43 input pixels, more than the whole 28 × 28 image.
 * bench/peers/torch_fmnist.py builds the same network in PyTorch (same parameter count).
 */
import { type Layer, convBnAct, dense, depthwiseSeparable, dropout, globalAvgPool, sequential } from './combinators.ts';

export interface DwsNetOptions {
  /** Input channels (1 for grey images). */
  readonly inChannels?: number;
  readonly numClasses?: number;
  /** Channels of the stem and of the six depthwise-separable layers. */
  readonly widths?: readonly [number, number, number, number, number, number, number];
  /** Dropout before the dense layer (default 0.1). */
  readonly dropout?: number;
}

/** The default widths: 76,330 parameters with 10 classes. */
export const DWSNET_WIDTHS = [32, 64, 96, 96, 128, 128, 160] as const;

export function dwsNet(opts: DwsNetOptions = {}): Layer {
  const [c0, c1, c2, c3, c4, c5, c6] = opts.widths ?? DWSNET_WIDTHS;
  return sequential({
    stem: convBnAct(opts.inChannels ?? 1, c0, 3),
    b1: depthwiseSeparable(c0, c1),
    b2: depthwiseSeparable(c1, c2, { stride: 2 }),
    b3: depthwiseSeparable(c2, c3, { dilation: 2 }),
    b4: depthwiseSeparable(c3, c4, { stride: 2 }),
    b5: depthwiseSeparable(c4, c5, { dilation: 2 }),
    b6: depthwiseSeparable(c5, c6),
    pool: globalAvgPool(),
    drop: dropout(opts.dropout ?? 0.1),
    fc: dense(c6, opts.numClasses ?? 10),
  });
}
