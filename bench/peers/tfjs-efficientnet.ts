/**
 * EfficientNet-B0 built from TensorFlow.js layers (NHWC, TF 'same' padding, BN eps 1e-3, SiLU,
 * squeeze-excitation), the same architecture as ours, for the model benchmarks' peer rows.
 * Drop-connect is left out (tfjs has no layer for it); dropout before the dense layer is kept.
 */
import type * as tfjs from '@tensorflow/tfjs';
import type { TF } from './tfjs.ts';

type SymT = tfjs.SymbolicTensor;

// (expand, kernel, stride, out, repeats) — B0's stages.
const STAGES: [number, number, number, number, number][] = [
  [1, 3, 1, 16, 1], [6, 3, 2, 24, 2], [6, 5, 2, 40, 2], [6, 3, 2, 80, 3], [6, 5, 1, 112, 3], [6, 5, 2, 192, 4], [6, 3, 1, 320, 1],
];

export function tfjsEfficientNetB0(tf: TF, size: number, numClasses = 1): tfjs.LayersModel {
  const L = tf.layers;
  const bn = (x: SymT) => L.batchNormalization({ epsilon: 1e-3, momentum: 0.99 }).apply(x) as SymT;
  const act = (x: SymT, a: 'swish' | 'sigmoid' = 'swish') => L.activation({ activation: a as never }).apply(x) as SymT;
  const conv = (x: SymT, filters: number, k: number, s = 1) =>
    L.conv2d({ filters, kernelSize: k, strides: s, padding: 'same', useBias: false }).apply(x) as SymT;
  const input = tf.input({ shape: [size, size, 3] });
  let x = act(bn(conv(input, 32, 3, 2)));
  let cin = 32;
  for (const [e, k, s, cout, reps] of STAGES) {
    for (let r = 0; r < reps; r++) {
      const stride = r === 0 ? s : 1;
      const inp = x;
      const mid = cin * e;
      let h = e !== 1 ? act(bn(conv(x, mid, 1))) : x;
      h = act(bn(L.depthwiseConv2d({ kernelSize: k, strides: stride, padding: 'same', useBias: false }).apply(h) as SymT));
      // Squeeze-excitation: reduce to max(1, cin/4) channels.
      let se = L.globalAveragePooling2d({}).apply(h) as SymT;
      se = L.reshape({ targetShape: [1, 1, mid] }).apply(se) as SymT;
      se = L.conv2d({ filters: Math.max(1, Math.floor(cin / 4)), kernelSize: 1, activation: 'swish' as never }).apply(se) as SymT;
      se = L.conv2d({ filters: mid, kernelSize: 1, activation: 'sigmoid' }).apply(se) as SymT;
      h = L.multiply().apply([h, se]) as SymT;
      h = bn(conv(h, cout, 1));
      x = stride === 1 && cin === cout ? (L.add().apply([h, inp]) as SymT) : h;
      cin = cout;
    }
  }
  x = act(bn(conv(x, 1280, 1)));
  x = L.globalAveragePooling2d({}).apply(x) as SymT;
  x = L.dropout({ rate: 0.2 }).apply(x) as SymT;
  const out = L.dense({ units: numClasses }).apply(x) as SymT;
  return tf.model({ inputs: input, outputs: out });
}
