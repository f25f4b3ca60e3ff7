/**
 * Models of your own from small combinators. A `Layer` is the same kind of value EfficientNet is
 * built from — `init(key) → { params, state }` and the pure `apply(params, state, x, ctx) → [y, state]`
 * over plain trees — plus `describe`, the shape inference behind `nn.summary` (output shape,
 * parameters, mult-adds and receptive field per layer, with no forward pass). The conv, batch-norm,
 * dense and dropout layers here are thin wrappers of the ones in layers.ts, so the kernels, the
 * hand-written batch-norm VJP and the initialisers are shared with EfficientNet.
 *
 * Parameter trees follow PyTorch's `nn.Sequential` naming: children by index (`'3.w'`), or by name
 * when `sequential` is given a record, so safetensors checkpoints read like a PyTorch state dict.
 * @example
 *   const { sequential, convBnAct, depthwiseSeparable, globalAvgPool, dense } = nn.layers;
 *   const net = sequential(convBnAct(1, 16, 3), depthwiseSeparable(16, 32, { stride: 2 }), globalAvgPool(), dense(32, 10));
 *   const m = nn.createNetwork(net, { key: random.key(0), inputShape: [1, 1, 28, 28] });
 *   const [logits, state] = m.layer.apply(m.params, m.state, x, { training: true, key });
 */
import type { DType } from '../backends/backend.ts';
import { avgPool2d, maxPool2d } from '../tensor/conv.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn } from '../tensor/random.ts';
import { type Shape, fmt } from '../tensor/shape.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { treeLeaves } from '../autograd/pytree.ts';
import type { ReceptiveField } from './summary.ts';
import { type ConvConfig, type Ctx, type PaddingMode, batchNorm as bn, conv as convLayer, convOutSize, dropout as dropoutFn, linear } from './layers.ts';


/** What shape inference carries from layer to layer: the input shape so far and the conv chain's receptive field. */
export interface Probe {
  readonly shape: Shape;
  readonly rf: ReceptiveField;
  /** Set once a global pooling has mixed every position (later layers see the whole input). */
  readonly global?: boolean;
}

/** One summary row: `name` is the path of the layer in the parameter tree ('' for the layer itself). */
export interface LayerRow {
  readonly name: string;
  readonly kind: string;
  readonly out: Shape;
  readonly params: number;
  readonly macs: number;
  readonly rf: ReceptiveField;
  readonly global: boolean;
}

export interface Layer<P = any, S = any> {
  /** What the summary prints, e.g. 'Conv3x3 s2 d2'. */
  readonly kind: string;
  init(key: Key, dtype?: DType): { params: P; state: S };
  apply(params: P, state: S, x: Tensor, ctx: Ctx): [Tensor, S];
  /** Output probe and summary rows for an input probe; throws naming the layer and shapes when the input does not fit. */
  describe(input: Probe): { out: Probe; rows: LayerRow[] };
}

type Empty = Record<string, never>;
const EMPTY: Empty = {};

export const row = (kind: string, out: Probe, params: number, macs: number): { out: Probe; rows: LayerRow[] } => ({
  out,
  rows: [{ name: '', kind, out: out.shape, params, macs, rf: out.rf, global: out.global ?? false }],
});

export function expectImage(kind: string, p: Probe, channels?: number): [number, number, number, number] {
  const s = p.shape;
  if (s.length !== 4 || (channels !== undefined && s[1] !== channels)) {
    throw new Error(`${kind}: expected input (N, ${channels ?? 'C'}, H, W), got ${fmt(s)}`);
  }
  return s as [number, number, number, number];
}

/** A layer with no parameters and no state, applied element-wise or by a shape-changing function. */
function stateless(kind: string, f: (x: Tensor, ctx: Ctx) => Tensor, describe: (p: Probe) => Probe): Layer<Empty, Empty> {
  return {
    kind,
    init: () => ({ params: EMPTY, state: EMPTY }),
    apply: (_p, s, x, ctx) => [f(x, ctx), s],
    describe: (p) => row(kind, describe(p), 0, 0),
  };
}

// ---- leaves --------------------------------------------------------------------------------------

export interface ConvOptions {
  readonly stride?: number;
  readonly dilation?: number;
  /** 1 = dense (default); inCh = depthwise. */
  readonly groups?: number;
  /** Default false: a BN usually follows (pass true for a conv without one). */
  readonly bias?: boolean;
  /** 'symmetric' (PyTorch's padding = dilation·(k − 1)/2, default), 'valid' (PyTorch's padding = 0) or 'same' (TensorFlow). */
  readonly padding?: PaddingMode;
}

/** A 2-D convolution (OIHW weight `w`, optional bias `b`), layers.ts's `conv` with its initialiser. */
export function conv(inCh: number, outCh: number, kernel: number, opts: ConvOptions = {}): Layer<{ w: Tensor; b?: Tensor }, Empty> {
  const cfg: ConvConfig = { inCh, outCh, kernel, stride: opts.stride ?? 1, dilation: opts.dilation ?? 1, groups: opts.groups ?? 1, bias: opts.bias ?? false, padding: opts.padding ?? 'symmetric' };
  for (const [k, v] of Object.entries({ inCh, outCh, kernel, stride: cfg.stride, dilation: cfg.dilation!, groups: cfg.groups })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`conv: ${k} must be an integer ≥ 1, got ${v}`);
  }
  if (inCh % cfg.groups !== 0 || outCh % cfg.groups !== 0) throw new Error(`conv: channels ${inCh} → ${outCh} are not divisible by groups ${cfg.groups}`);
  const d = cfg.dilation!;
  const kind = [`Conv${kernel}x${kernel}`, cfg.groups === inCh && inCh > 1 ? 'depthwise' : cfg.groups > 1 ? `g${cfg.groups}` : '', cfg.stride > 1 ? `s${cfg.stride}` : '', d > 1 ? `d${d}` : ''].filter(Boolean).join(' ');
  return {
    kind,
    init: (key, dtype = 'float32') => ({ params: convLayer.init(key, cfg, dtype), state: EMPTY }),
    apply: (p, s, x) => [convLayer.apply(cfg, p, x), s],
    describe(p) {
      const out = convProbe(kind, cfg, p);
      return row(kind, out, convLayer.paramCount(cfg), out.shape[0] * convLayer.macs(cfg, out.shape[2], out.shape[3]));
    },
  };
}

/** The probe after a conv: (N, outCh, oh, ow), the field widened by the kernel's span and the jump by the stride. */
export function convProbe(kind: string, cfg: ConvConfig, p: Probe): Probe {
  const [n, , h, w] = expectImage(kind, p, cfg.inCh);
  const [oh, ow] = [convOutSize(cfg, h), convOutSize(cfg, w)];
  const span = (cfg.dilation ?? 1) * (cfg.kernel - 1) + 1;
  if (oh < 1 || ow < 1) throw new Error(`${kind}: input ${fmt(p.shape)} is smaller than the kernel's span ${span}`);
  return { shape: [n, cfg.outCh, oh, ow], rf: { size: p.rf.size + (span - 1) * p.rf.jump, jump: p.rf.jump * cfg.stride } };
}

export interface BatchNormOptions {
  /** Default 1e-5 (PyTorch). */
  readonly eps?: number;
  /** PyTorch convention, default 0.1. */
  readonly momentum?: number;
}

/** Batch norm over (N, C, H, W) or (N, C): γ `scale`, β `bias`; running `mean` and `var` as state. */
export function batchNorm(channels: number, opts: BatchNormOptions = {}): Layer {
  const cfg = { channels, eps: opts.eps ?? 1e-5, momentum: opts.momentum ?? 0.1 };
  const kind = 'BatchNorm';
  return {
    kind,
    init: (_key, dtype = 'float32') => bn.init(cfg, dtype),
    apply: (p, s, x, ctx) => bn.apply(cfg, p, s, x, ctx),
    describe(p) {
      if ((p.shape.length !== 4 && p.shape.length !== 2) || p.shape[1] !== channels) throw new Error(`${kind}: expected input (N, ${channels}, H, W) or (N, ${channels}), got ${fmt(p.shape)}`);
      return row(kind, p, bn.paramCount(cfg), 0);
    },
  };
}

/** Fully connected (N, in) → (N, out), PyTorch's (out, in) weight `w` and bias `b`. */
export function dense(inFeatures: number, outFeatures: number, opts: { bias?: boolean } = {}): Layer<{ w: Tensor; b?: Tensor }, Empty> {
  const cfg = { inFeatures, outFeatures, bias: opts.bias ?? true };
  const kind = 'Linear';
  return {
    kind,
    init: (key, dtype = 'float32') => ({ params: linear.init(key, cfg, dtype), state: EMPTY }),
    apply: (p, s, x) => [linear.apply(cfg, p, x), s],
    describe(p) {
      if (p.shape.length !== 2 || p.shape[1] !== inFeatures) throw new Error(`${kind}: expected input (N, ${inFeatures}), got ${fmt(p.shape)}`);
      const n = p.shape[0];
      return row(kind, { ...p, shape: [n, outFeatures] }, linear.paramCount(cfg), n * inFeatures * outFeatures);
    },
  };
}

export const relu = (): Layer<Empty, Empty> => stateless('ReLU', (x) => o.relu(x), (p) => p);
export const silu = (): Layer<Empty, Empty> => stateless('SiLU', (x) => o.silu(x), (p) => p);

/** Dropout with rate `rate` in training (its mask from ctx.key), identity in eval. */
export const dropout = (rate: number): Layer<Empty, Empty> => {
  if (!(rate >= 0 && rate < 1)) throw new Error(`dropout: rate must be in [0, 1), got ${rate}`);
  return stateless(`Dropout(${rate})`, (x, ctx) => dropoutFn(x, rate, ctx), (p) => p);
};

/** (N, C, H, W) → (N, C): the mean over every position. */
export const globalAvgPool = (): Layer<Empty, Empty> =>
  stateless('GlobalAvgPool', (x) => o.mean(x, [2, 3]), (p) => {
    const [n, c] = expectImage('GlobalAvgPool', p);
    return { ...p, shape: [n, c], global: true };
  });

/** (N, ...) → (N, product of the rest). */
export const flatten = (): Layer<Empty, Empty> =>
  stateless('Flatten', (x) => o.reshape(x, [x.shape[0], x.size / x.shape[0]]), (p) => ({ ...p, shape: [p.shape[0], p.shape.slice(1).reduce((a, b) => a * b, 1)] }));

const pool = (name: 'MaxPool' | 'AvgPool', f: typeof maxPool2d, kernel: number, stride: number): Layer<Empty, Empty> => {
  const kind = `${name}${kernel}x${kernel}${stride > 1 ? ` s${stride}` : ''}`;
  return stateless(kind, (x) => f(x, { kernel, stride }), (p) => {
    const [n, c, h, w] = expectImage(kind, p);
    const out = (s: number) => Math.floor((s - kernel) / stride) + 1;
    if (out(h) < 1 || out(w) < 1) throw new Error(`${kind}: input ${fmt(p.shape)} is smaller than the window`);
    return { shape: [n, c, out(h), out(w)], rf: { size: p.rf.size + (kernel - 1) * p.rf.jump, jump: p.rf.jump * stride } };
  });
};
/** Max pooling over k × k windows (no padding; stride default k). */
export const maxPool = (kernel: number, stride = kernel): Layer<Empty, Empty> => pool('MaxPool', maxPool2d, kernel, stride);
/** Average pooling over k × k windows (no padding; stride default k). */
export const avgPool = (kernel: number, stride = kernel): Layer<Empty, Empty> => pool('AvgPool', avgPool2d, kernel, stride);

// ---- composition ---------------------------------------------------------------------------------

const isLayer = (x: unknown): x is Layer => typeof x === 'object' && x !== null && typeof (x as Layer).apply === 'function' && typeof (x as Layer).describe === 'function';

/**
 * Layers applied in order. Children are named by index (`sequential(a, b, c)`: params `[pa, pb, pc]`)
 * or by key (`sequential({ stem: a, body: b })`: params `{ stem, body }`). Each child draws its
 * random choices from `foldIn(ctx.key, i)`.
 */
export function sequential(...layers: Layer[]): Layer<unknown[], unknown[]>;
export function sequential(layers: Readonly<Record<string, Layer>>): Layer<Record<string, unknown>, Record<string, unknown>>;
export function sequential(...args: unknown[]): Layer {
  const named = args.length === 1 && !isLayer(args[0]) && typeof args[0] === 'object' && args[0] !== null;
  const entries: [string, Layer][] = named ? Object.entries(args[0] as Record<string, Layer>) : (args as Layer[]).map((l, i) => [String(i), l]);
  entries.forEach(([k, l]) => {
    if (!isLayer(l)) throw new Error(`sequential: child '${k}' is not a layer (got ${typeof l})`);
  });
  if (entries.length === 0) throw new Error('sequential: needs at least one layer');
  const pack = (vals: unknown[]) => (named ? Object.fromEntries(entries.map(([k], i) => [k, vals[i]])) : vals);
  const get = (tree: any, i: number) => (named ? tree[entries[i][0]] : tree[i]);
  return {
    kind: 'Sequential',
    init(key, dtype = 'float32') {
      const inits = entries.map(([, l], i) => l.init(foldIn(key, i), dtype));
      return { params: pack(inits.map((r) => r.params)), state: pack(inits.map((r) => r.state)) };
    },
    apply(params, state, x, ctx) {
      let y = x;
      const next: unknown[] = [];
      entries.forEach(([, l], i) => {
        const [out, s] = l.apply(get(params, i), get(state, i), y, ctx.key ? { ...ctx, key: foldIn(ctx.key, i) } : ctx);
        y = out;
        next.push(s);
      });
      return [y, pack(next)];
    },
    describe(input) {
      let p = input;
      const rows: LayerRow[] = [];
      for (const [k, l] of entries) {
        const d = l.describe(p);
        rows.push(...d.rows.map((r) => ({ ...r, name: r.name ? `${k}.${r.name}` : k })));
        p = d.out;
      }
      return { out: p, rows };
    },
  };
}

/** `layer` shown as one summary row of kind `kind` (its parameters and mult-adds summed). */
export function block<P, S>(kind: string, layer: Layer<P, S>): Layer<P, S> {
  return {
    ...layer,
    kind,
    describe(input) {
      const d = layer.describe(input);
      return row(kind, d.out, d.rows.reduce((a, r) => a + r.params, 0), d.rows.reduce((a, r) => a + r.macs, 0));
    },
  };
}

/** x + body(x) (ResNet's identity shortcut); body must keep the shape. */
export function residual<P, S>(body: Layer<P, S>): Layer<P, S> {
  const kind = `Residual(${body.kind})`;
  return {
    kind,
    init: (key, dtype) => body.init(key, dtype),
    apply(p, s, x, ctx) {
      const [y, next] = body.apply(p, s, x, ctx);
      return [o.add(x, y), next];
    },
    describe(input) {
      const d = body.describe(input);
      if (fmt(d.out.shape) !== fmt(input.shape)) throw new Error(`${kind}: the body maps ${fmt(input.shape)} to ${fmt(d.out.shape)}; a residual needs the same shape`);
      const rows = d.rows.map((r, i) => (i === d.rows.length - 1 ? { ...r, kind: `${r.kind} + identity` } : r));
      return { out: d.out, rows };
    },
  };
}

export type Activation = 'relu' | 'silu' | 'none';
const activation = (act: Activation): Layer[] => (act === 'none' ? [] : [act === 'relu' ? relu() : silu()]);
const actName = (act: Activation) => (act === 'none' ? '' : act === 'relu' ? ' + ReLU' : ' + SiLU');

/** conv (no bias) → batch norm → activation, one summary row: params `{ conv, bn }`. */
export function convBnAct(inCh: number, outCh: number, kernel: number, opts: ConvOptions & BatchNormOptions & { act?: Activation } = {}): Layer {
  const act = opts.act ?? 'relu';
  const c = conv(inCh, outCh, kernel, { ...opts, bias: false });
  const layers: Record<string, Layer> = { conv: c, bn: batchNorm(outCh, opts) };
  activation(act).forEach((l) => (layers.act = l));
  return block(`${c.kind} + BN${actName(act)}`, sequential(layers));
}

export interface DepthwiseSeparableOptions extends BatchNormOptions {
  readonly kernel?: number;
  readonly stride?: number;
  readonly dilation?: number;
  readonly act?: Activation;
  readonly padding?: PaddingMode;
}

/**
 * MobileNet's depthwise-separable conv: depthwise k × k (stride, dilation) → BN → act → pointwise
 * 1 × 1 → BN → act, one summary row; params `{ dw: { conv, bn }, pw: { conv, bn } }`.
 */
export function depthwiseSeparable(inCh: number, outCh: number, opts: DepthwiseSeparableOptions = {}): Layer {
  const k = opts.kernel ?? 3;
  const dw = convBnAct(inCh, inCh, k, { ...opts, groups: inCh });
  const pw = convBnAct(inCh, outCh, 1, { eps: opts.eps, momentum: opts.momentum, act: opts.act });
  const s = opts.stride ?? 1;
  const d = opts.dilation ?? 1;
  const kind = `DWSep${k}x${k}${s > 1 ? ` s${s}` : ''}${d > 1 ? ` d${d}` : ''} ${inCh}→${outCh}`;
  return block(kind, sequential({ dw, pw }));
}

// ---- a model value -------------------------------------------------------------------------------

/** A layer with its parameters and state: the counterpart of `Model` for networks of your own. */
export interface Network<P = any, S = any> {
  readonly name: string;
  readonly layer: Layer<P, S>;
  readonly params: P;
  readonly state: S;
  /** The input the summary describes by default, e.g. [1, 1, 28, 28]. */
  readonly inputShape: Shape;
}

export interface NetworkOptions {
  readonly key: Key;
  /** [N, C, H, W] (or [N, F]): checked against the layers now, so a wrong channel count fails before training. */
  readonly inputShape: Shape;
  readonly name?: string;
  readonly dtype?: DType;
}

/** Initialises `layer` into a network (and checks that `inputShape` flows through it). */
export function createNetwork<P, S>(layer: Layer<P, S>, opts: NetworkOptions): Network<P, S> {
  if (!opts || !opts.key) throw new Error('createNetwork: pass a random key ({ key: random.key(seed) })');
  describeNetwork(layer, opts.inputShape);
  const { params, state } = layer.init(opts.key, opts.dtype ?? 'float32');
  return { name: opts.name ?? layer.kind, layer, params, state, inputShape: [...opts.inputShape] };
}

/** Rows, output shape and totals of `layer` applied to `inputShape` (shape inference only). */
export function describeNetwork(layer: Layer, inputShape: Shape): { rows: LayerRow[]; out: Probe; totalParams: number; totalMacs: number } {
  const { out, rows } = layer.describe({ shape: inputShape, rf: { size: 1, jump: 1 } });
  return { rows, out, totalParams: rows.reduce((a, r) => a + r.params, 0), totalMacs: rows.reduce((a, r) => a + r.macs, 0) };
}

export const isNetwork = (m: unknown): m is Network => typeof m === 'object' && m !== null && 'layer' in m && isLayer((m as Network).layer);

/** `apply` of a network's own layer, params and state. */
export const forwardNetwork = <P, S>(net: Network<P, S>, x: Tensor, ctx: Ctx): [Tensor, S] => net.layer.apply(net.params, net.state, x, ctx);

/** The receptive field of the last layer before global pooling (the conv chain's), with the input it is measured in. */
export function receptiveField(net: Network, inputShape: Shape = net.inputShape): ReceptiveField & { covers: boolean } {
  const { rows } = describeNetwork(net.layer, inputShape);
  const last = [...rows].reverse().find((r) => !r.global) ?? rows[rows.length - 1];
  const side = Math.max(...inputShape.slice(2));
  return { ...last.rf, covers: last.rf.size >= side };
}

const num = (v: number) => v.toLocaleString('en-US');

/** The torchinfo-like table of a network, with each layer's receptive field (side, in input pixels). */
export function networkSummary(net: Network, inputShape: Shape = net.inputShape): string {
  const d = describeNetwork(net.layer, inputShape);
  const counted = treeLeaves(net.params).reduce((p, t) => p + t.size, 0);
  if (counted !== d.totalParams) throw new Error(`summary(${net.name}): rows add up to ${d.totalParams} parameters but the network has ${counted}`);
  const head = ['Layer (type)', 'Output Shape', 'Param #', 'Mult-Adds', 'RF'];
  const body = d.rows.map((r) => [`${r.name || net.name} (${r.kind})`, fmt(r.out), num(r.params), num(r.macs), r.global ? 'global' : `${r.rf.size}×${r.rf.size}`]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ');
  const rule = (ch: string) => ch.repeat(widths.reduce((p, w) => p + w, 0) + 3 * (widths.length - 1));
  const rf = receptiveField(net, inputShape);
  const state = treeLeaves(net.state).reduce((p, t) => p + t.size, 0);
  return [
    `${net.name}; input ${fmt(inputShape)}`,
    rule('='), line(head), rule('='), ...body.map(line), rule('='),
    `Total params: ${num(d.totalParams)}`,
    `Non-trainable state (BN running stats): ${num(state)}`,
    `Total mult-adds: ${(d.totalMacs / 1e6).toFixed(2)} M (${num(d.totalMacs)})`,
    `Receptive field (last layer before global pooling): ${rf.size} × ${rf.size} px (jump ${rf.jump}); ${rf.covers ? 'covers' : 'does not cover'} the ${inputShape.slice(2).join(' × ')} input`,
    rule('='),
  ].join('\n');
}
