/**
 * EfficientNet (Tan & Le 2019) from its compound-scaling coefficients, and the Stochastic
 * Convolution architectures of the paper built on it (see PAPER.md): stochastic stem, stochastic
 * skip, full split and pure stochastic. A model's config is plain data; params and BN state are
 * plain trees; `applyEfficientNet` is a pure function of the four.
 */
import type { DType } from '../backends/backend.ts';
import { sampleWindows, stochasticConv2d } from '../tensor/conv.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, split } from '../tensor/random.ts';
import { fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import { type BatchNormParams, type BatchNormState, type Ctx, type PaddingMode, batchNorm, convOutSize, dropout, linear, type LinearParams, silu, tapped } from './layers.ts';
import { type BnOptions, type ConvBnConfig, type ConvBnParams, type MBConvConfig, type MBConvParams, type MBConvState, convBn, convBnConfig, mbconv } from './mbconv.ts';

// ---- compound scaling ----------------------------------------------------------------------------

export type Variant = 'b0' | 'b1' | 'b2' | 'b3' | 'b4' | 'b5' | 'b6' | 'b7';
export const variants: readonly Variant[] = ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7'];

export interface Scaling {
  readonly width: number;
  readonly depth: number;
  readonly resolution: number;
  readonly dropout: number;
}
/** (width, depth, resolution, dropout) of B0–B7 (Tan & Le 2019, Table / official code). */
export const SCALING: Readonly<Record<Variant, Scaling>> = {
  b0: { width: 1.0, depth: 1.0, resolution: 224, dropout: 0.2 },
  b1: { width: 1.0, depth: 1.1, resolution: 240, dropout: 0.2 },
  b2: { width: 1.1, depth: 1.2, resolution: 260, dropout: 0.3 },
  b3: { width: 1.2, depth: 1.4, resolution: 300, dropout: 0.3 },
  b4: { width: 1.4, depth: 1.8, resolution: 380, dropout: 0.4 },
  b5: { width: 1.6, depth: 2.2, resolution: 456, dropout: 0.4 },
  b6: { width: 1.8, depth: 2.6, resolution: 528, dropout: 0.5 },
  b7: { width: 2.0, depth: 3.1, resolution: 600, dropout: 0.5 },
};

export interface StageArgs {
  readonly expand: number;
  readonly kernel: number;
  readonly stride: number;
  readonly outCh: number;
  readonly repeats: number;
}
/** B0's stages: (expand, kernel, stride, out channels, repeats); stem 32, head 1280. */
export const B0_STAGES: readonly StageArgs[] = [
  [1, 3, 1, 16, 1],
  [6, 3, 2, 24, 2],
  [6, 5, 2, 40, 2],
  [6, 3, 2, 80, 3],
  [6, 5, 1, 112, 3],
  [6, 5, 2, 192, 4],
  [6, 3, 1, 320, 1],
].map(([expand, kernel, stride, outCh, repeats]) => ({ expand, kernel, stride, outCh, repeats }));
export const B0_STEM = 32;
export const B0_HEAD = 1280;
/** Drop-connect rate of the last block (rates rise linearly from 0 with the block index). */
export const DROP_CONNECT_RATE = 0.2;

/** Channels × width rounded to the nearest multiple of `divisor` (≥ divisor), never below 90 % of the scaled value. */
export function roundFilters(channels: number, width: number, divisor = 8): number {
  const v = channels * width;
  let r = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (r < 0.9 * v) r += divisor;
  return r;
}
/** Repeats × depth, rounded up. */
export const roundRepeats = (repeats: number, depth: number): number => Math.ceil(repeats * depth);

// ---- configs -------------------------------------------------------------------------------------

/**
 * plain: stem → blocks → head (b0…b7, b0-64). stochastic-stem: low-res stem ⊕ stochastic stem →
 * blocks. stochastic-skip: each stem through its own copy of the first `skipBlocks` blocks, then
 * concatenated. full-split: two whole backbones, pooled and concatenated before the dense layer.
 * pure-stochastic: only the stochastic stem.
 */
export type Arch = 'plain' | 'stochastic-stem' | 'stochastic-skip' | 'full-split' | 'pure-stochastic';
export const ARCHS: readonly Arch[] = ['plain', 'stochastic-stem', 'stochastic-skip', 'full-split', 'pure-stochastic'];

export interface ModelConfig extends BnOptions {
  /** The name it was created under, e.g. 'b0-full-split'. */
  readonly name: string;
  readonly variant: Variant;
  readonly arch: Arch;
  readonly numClasses: number;
  readonly inChannels: number;
  /** Channels of each stem (the stochastic stem has as many as the low-res one). */
  readonly stemCh: number;
  /** Blocks of one backbone; in stochastic-stem / -skip, the block after the merge takes the concatenated channels. */
  readonly blocks: readonly MBConvConfig[];
  readonly headCh: number;
  readonly dropout: number;
  /** stochastic-skip: how many leading blocks each stem has its own copy of (0 otherwise). */
  readonly skipBlocks: number;
  /** Side of the (low-res) image; for pure-stochastic, the side of its single (high-res) input. */
  readonly lowSize: number;
  /** Side of the high-res image of two-input models (null otherwise). */
  readonly highSize: number | null;
  /** Output side of the stochastic stem (null when there is none). */
  readonly stochOutSize: number | null;
  /** One window per (image, channel) rather than per channel for the whole batch. */
  readonly perImage: boolean;
  readonly dtype: DType;
  readonly headInit: 'efficientnet' | 'zeros';
}

export interface BuildOptions {
  readonly numClasses?: number;
  readonly widthMult?: number;
  readonly depthMult?: number;
  /** Stem channels before width scaling (32; 64 for b0-64). */
  readonly stem?: number;
  readonly padding?: PaddingMode;
  readonly bnEps?: number;
  readonly bnMomentum?: number;
  readonly dropout?: number;
  readonly dropConnectRate?: number;
  readonly lowSize?: number;
  readonly highSize?: number;
  readonly stochOutSize?: number;
  readonly perImage?: boolean;
  readonly skipStages?: number;
  readonly dtype?: DType;
  /**
   * The dense layer's initial weights: 'efficientnet' (official: uniform ±1/√outputs, i.e. ±1 for a
   * single logit, which gives initial logits of order ±20 on 1280–2560 features) or 'zeros'
   * (logits start at 0; the usual choice when training a one-logit head from scratch).
   */
  readonly headInit?: 'efficientnet' | 'zeros';
}

const STOCH_KERNEL = 3;
const STOCH_STRIDE = 2;

/**
 * The config of an architecture at a variant. TensorFlow conventions by default ('same' padding,
 * BN eps 1e-3, momentum 0.01); torchvision's are padding 'symmetric', eps 1e-5, momentum 0.1.
 */
export function buildConfig(name: string, variant: Variant, arch: Arch, opts: BuildOptions = {}): ModelConfig {
  const sc = SCALING[variant];
  const width = opts.widthMult ?? sc.width;
  const depth = opts.depthMult ?? sc.depth;
  const bn: BnOptions = { padding: opts.padding ?? 'same', bnEps: opts.bnEps ?? 1e-3, bnMomentum: opts.bnMomentum ?? 0.01 };
  const numClasses = opts.numClasses ?? 1;
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`${name}: numClasses must be a positive integer, got ${numClasses}`);
  const stemCh = roundFilters(opts.stem ?? B0_STEM, width);
  const dcr = opts.dropConnectRate ?? DROP_CONNECT_RATE;
  const stages = B0_STAGES.map((s) => ({ ...s, outCh: roundFilters(s.outCh, width), repeats: roundRepeats(s.repeats, depth) }));
  const total = stages.reduce((p, s) => p + s.repeats, 0);
  const skipStages = arch === 'stochastic-skip' ? (opts.skipStages ?? 3) : 0;
  if (!Number.isInteger(skipStages) || skipStages < 0 || skipStages >= stages.length) {
    throw new Error(`${name}: skipStages must be an integer in [1, ${stages.length - 1}], got ${skipStages}`);
  }
  const skipBlocks = stages.slice(0, skipStages).reduce((p, s) => p + s.repeats, 0);
  const merged = arch === 'stochastic-stem' ? 2 : 1;
  const blocks: MBConvConfig[] = [];
  let inCh = stemCh * merged;
  stages.forEach((s, si) => {
    for (let j = 0; j < s.repeats; j++) {
      const idx = blocks.length;
      if (arch === 'stochastic-skip' && idx === skipBlocks && idx > 0) inCh *= 2;
      blocks.push({ ...bn, inCh, outCh: s.outCh, expand: s.expand, kernel: s.kernel, stride: j === 0 ? s.stride : 1, seRatio: 0.25, dropRate: (dcr * idx) / total, stage: si, index: j });
      inCh = s.outCh;
    }
  });
  const two = arch === 'stochastic-stem' || arch === 'stochastic-skip' || arch === 'full-split';
  const stoch = two || arch === 'pure-stochastic';
  const res = sc.resolution;
  const lowSize = arch === 'pure-stochastic' ? (opts.highSize ?? opts.lowSize ?? 1024) : (opts.lowSize ?? res);
  const stochOutSize = stoch ? (opts.stochOutSize ?? (arch === 'pure-stochastic' ? Math.ceil(res / 2) : convOutSize({ kernel: 3, stride: 2, padding: bn.padding }, lowSize))) : null;
  const cfg: ModelConfig = {
    ...bn,
    name,
    variant,
    arch,
    numClasses,
    inChannels: 3,
    stemCh,
    blocks,
    headCh: roundFilters(B0_HEAD, width),
    dropout: opts.dropout ?? sc.dropout,
    skipBlocks,
    lowSize,
    highSize: two ? (opts.highSize ?? 1024) : null,
    stochOutSize,
    perImage: opts.perImage ?? true,
    dtype: opts.dtype ?? 'float32',
    headInit: opts.headInit ?? 'efficientnet',
  };
  if (cfg.headInit !== 'efficientnet' && cfg.headInit !== 'zeros') throw new Error(`${name}: headInit must be 'efficientnet' or 'zeros', got '${cfg.headInit as string}'`);
  checkSizes(cfg);
  return cfg;
}

/** The slice side the stochastic stem reads. */
export const stochSlice = (cfg: ModelConfig): number => (cfg.stochOutSize! - 1) * STOCH_STRIDE + STOCH_KERNEL;

function checkSizes(cfg: ModelConfig): void {
  if (cfg.stochOutSize === null) return;
  const high = cfg.arch === 'pure-stochastic' ? cfg.lowSize : cfg.highSize!;
  if (stochSlice(cfg) > high) {
    throw new Error(`${cfg.name}: the stochastic stem's output ${cfg.stochOutSize} needs windows of ${stochSlice(cfg)} px but the high-res image is only ${high} px`);
  }
}

// ---- parts ---------------------------------------------------------------------------------------

export const stemConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig(cfg.inChannels, cfg.stemCh, 3, 2, 1, true, cfg);
export const headConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig(cfg.blocks[cfg.blocks.length - 1].outCh, cfg.headCh, 1, 1, 1, true, cfg);
/** Features into the dense layer. */
export const featureCount = (cfg: ModelConfig): number => (cfg.arch === 'full-split' ? 2 : 1) * cfg.headCh;
/** Block configs of one copy of the duplicated first stages (stochastic-skip) or one full backbone. */
export const ownBlocks = (cfg: ModelConfig): readonly MBConvConfig[] => (cfg.arch === 'stochastic-skip' ? cfg.blocks.slice(0, cfg.skipBlocks) : cfg.blocks);
/** The stochastic stem as a conv-BN config (its conv is a stochastic one: no padding, random windows). */
export const stochStemConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig(cfg.inChannels, cfg.stemCh, STOCH_KERNEL, STOCH_STRIDE, 1, true, cfg);

export interface StemParams {
  readonly conv: { readonly w: Tensor };
  readonly bn: BatchNormParams;
}
export interface Backbone {
  readonly stem: ConvBnParams;
  readonly blocks: readonly MBConvParams[];
  readonly head: ConvBnParams;
}
export interface BackboneState {
  readonly stem: BatchNormState;
  readonly blocks: readonly MBConvState[];
  readonly head: BatchNormState;
}
/** Parameters by architecture (every repeated block has its own weights). */
export type Params =
  | { readonly stem: ConvBnParams; readonly blocks: readonly MBConvParams[]; readonly head: ConvBnParams; readonly fc: LinearParams } // plain
  | { readonly stem: ConvBnParams; readonly stochStem: StemParams; readonly blocks: readonly MBConvParams[]; readonly head: ConvBnParams; readonly fc: LinearParams } // stochastic-stem
  | { readonly stem: ConvBnParams; readonly stochStem: StemParams; readonly lowBlocks: readonly MBConvParams[]; readonly stochBlocks: readonly MBConvParams[]; readonly blocks: readonly MBConvParams[]; readonly head: ConvBnParams; readonly fc: LinearParams } // stochastic-skip
  | { readonly low: Backbone; readonly stoch: Backbone; readonly fc: LinearParams } // full-split
  | { readonly stochStem: StemParams; readonly blocks: readonly MBConvParams[]; readonly head: ConvBnParams; readonly fc: LinearParams }; // pure-stochastic
/** BN running statistics, mirroring the params tree. */
export type State = Record<string, unknown>;

/** Loose view of the params/state trees for code that handles every architecture. */
type AnyTree = Record<string, any>;

/** Trainable parameters of a config, computed from the shapes alone (equals parameterCount of a model built from it). */
export function configParameterCount(cfg: ModelConfig): number {
  const blocks = (bs: readonly MBConvConfig[]) => bs.reduce((p, b) => p + mbconv.paramCount(b), 0);
  const stem = convBn.paramCount(stemConfig(cfg));
  const stoch = convBn.paramCount(stochStemConfig(cfg));
  const head = convBn.paramCount(headConfig(cfg));
  const fc = linear.paramCount({ inFeatures: featureCount(cfg), outFeatures: cfg.numClasses, bias: true });
  switch (cfg.arch) {
    case 'plain':
      return stem + blocks(cfg.blocks) + head + fc;
    case 'pure-stochastic':
      return stoch + blocks(cfg.blocks) + head + fc;
    case 'stochastic-stem':
      return stem + stoch + blocks(cfg.blocks) + head + fc;
    case 'stochastic-skip':
      return stem + stoch + 2 * blocks(cfg.blocks.slice(0, cfg.skipBlocks)) + blocks(cfg.blocks.slice(cfg.skipBlocks)) + head + fc;
    case 'full-split':
      return stem + stoch + 2 * (blocks(cfg.blocks) + head) + fc;
  }
}

// ---- init ----------------------------------------------------------------------------------------

const initBlocks = (key: Key, blocks: readonly MBConvConfig[], dtype: DType) => {
  const ks = split(key, Math.max(blocks.length, 1));
  const inits = blocks.map((b, i) => mbconv.init(ks[i], b, dtype));
  return { params: inits.map((x) => x.params), state: inits.map((x) => x.state) };
};

/** Fresh parameters (EfficientNet's initialisers) and BN state for a config. */
export function initEfficientNet(key: Key, cfg: ModelConfig): { params: Params; state: State } {
  const d = cfg.dtype;
  const [kStem, kStoch, kBlocks, kOwn, kHead, kFc, kStochBackbone] = split(key, 7);
  const fcCfg = { inFeatures: featureCount(cfg), outFeatures: cfg.numClasses, bias: true };
  const fc = cfg.headInit === 'zeros' ? { w: o.zeros([fcCfg.outFeatures, fcCfg.inFeatures], d), b: o.zeros([fcCfg.outFeatures], d) } : linear.init(kFc, fcCfg, d);
  const stem = () => convBn.init(kStem, stemConfig(cfg), d);
  const stochStem = (k: Key) => convBn.init(k, stochStemConfig(cfg), d);
  const head = (k: Key) => convBn.init(k, headConfig(cfg), d);
  switch (cfg.arch) {
    case 'plain': {
      const [s, b, h] = [stem(), initBlocks(kBlocks, cfg.blocks, d), head(kHead)];
      return { params: { stem: s.params, blocks: b.params, head: h.params, fc }, state: { stem: s.state, blocks: b.state, head: h.state } };
    }
    case 'stochastic-stem':
    case 'pure-stochastic': {
      const s = cfg.arch === 'stochastic-stem' ? stem() : null;
      const [st, b, h] = [stochStem(kStoch), initBlocks(kBlocks, cfg.blocks, d), head(kHead)];
      const lowPart = s ? { stem: s.params } : {};
      const lowState = s ? { stem: s.state } : {};
      return {
        params: { ...lowPart, stochStem: st.params as StemParams, blocks: b.params, head: h.params, fc } as Params,
        state: { ...lowState, stochStem: st.state, blocks: b.state, head: h.state },
      };
    }
    case 'stochastic-skip': {
      const own = cfg.blocks.slice(0, cfg.skipBlocks);
      const [ko1, ko2] = split(kOwn, 2);
      const [s, st, lb, sb, b, h] = [stem(), stochStem(kStoch), initBlocks(ko1, own, d), initBlocks(ko2, own, d), initBlocks(kBlocks, cfg.blocks.slice(cfg.skipBlocks), d), head(kHead)];
      return {
        params: { stem: s.params, stochStem: st.params as StemParams, lowBlocks: lb.params, stochBlocks: sb.params, blocks: b.params, head: h.params, fc },
        state: { stem: s.state, stochStem: st.state, lowBlocks: lb.state, stochBlocks: sb.state, blocks: b.state, head: h.state },
      };
    }
    case 'full-split': {
      const [kb2, kh2] = split(kStochBackbone, 2);
      const [s, b, h] = [stem(), initBlocks(kBlocks, cfg.blocks, d), head(kHead)];
      const [st, b2, h2] = [stochStem(kStoch), initBlocks(kb2, cfg.blocks, d), head(kh2)];
      return {
        params: { low: { stem: s.params, blocks: b.params, head: h.params }, stoch: { stem: st.params, blocks: b2.params, head: h2.params }, fc },
        state: { low: { stem: s.state, blocks: b.state, head: h.state }, stoch: { stem: st.state, blocks: b2.state, head: h2.state } },
      };
    }
  }
}

// ---- input checks --------------------------------------------------------------------------------

/** The smallest low-res side the network takes (its total stride: the last feature map is then ≥ 1 × 1). */
export const MIN_LOW_SIZE = 32;

export type Input = Tensor | { readonly low: Tensor; readonly high: Tensor };

export const isPair = (cfg: ModelConfig): boolean => cfg.highSize !== null;

/** A sentence naming what the model takes, for errors. */
export function expectedInput(cfg: ModelConfig): string {
  const c = cfg.inChannels;
  if (cfg.arch === 'pure-stochastic') return `a tensor (N, ${c}, H, W) of the high-res image (default ${cfg.lowSize}×${cfg.lowSize}, at least ${stochSlice(cfg)} px for the stochastic stem's ${cfg.stochOutSize}×${cfg.stochOutSize} output)`;
  if (!isPair(cfg)) return `a tensor (N, ${c}, H, W) (default ${cfg.lowSize}×${cfg.lowSize}, at least ${MIN_LOW_SIZE} px)`;
  const match = cfg.arch === 'full-split' ? `at least ${MIN_LOW_SIZE} px` : `its stem output must be ${cfg.stochOutSize}×${cfg.stochOutSize}, the stochastic stem's`;
  return `{ low: (N, ${c}, ${cfg.lowSize}, ${cfg.lowSize}) (${match}), high: (N, ${c}, ${cfg.highSize}, ${cfg.highSize}) (at least ${stochSlice(cfg)} px) }`;
}

function checkImage(cfg: ModelConfig, what: string, x: unknown, minSide: number): asserts x is Tensor {
  const fail = (got: string) => {
    throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got ${what} ${got}`);
  };
  if (!(x instanceof Tensor)) fail(x === null || typeof x !== 'object' ? String(x) : 'a non-tensor value');
  const t = x as Tensor;
  if (t.rank !== 4 || t.shape[1] !== cfg.inChannels) fail(`of shape ${fmt(t.shape)}`);
  if (t.shape[2] < minSide || t.shape[3] < minSide) fail(`of shape ${fmt(t.shape)} (too small)`);
  if (t.dtype !== cfg.dtype) fail(`of dtype ${t.dtype} (the model is ${cfg.dtype})`);
}

/** Validates an input against the config; throws an Error naming the expected input. */
export function checkInput(cfg: ModelConfig, input: unknown): { low: Tensor | null; high: Tensor | null } {
  if (cfg.arch === 'pure-stochastic') {
    checkImage(cfg, 'input', input, stochSlice(cfg));
    return { low: null, high: input };
  }
  if (!isPair(cfg)) {
    checkImage(cfg, 'input', input, MIN_LOW_SIZE);
    return { low: input, high: null };
  }
  const pair = input as { low?: unknown; high?: unknown };
  if (input instanceof Tensor || typeof input !== 'object' || input === null || !('low' in pair) || !('high' in pair)) {
    throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got ${input instanceof Tensor ? `a single tensor ${fmt(input.shape)}` : 'something else'}`);
  }
  checkImage(cfg, 'low', pair.low, MIN_LOW_SIZE);
  checkImage(cfg, 'high', pair.high, stochSlice(cfg));
  const [low, high] = [pair.low, pair.high];
  if (low.shape[0] !== high.shape[0]) throw new Error(`${cfg.name}: low ${fmt(low.shape)} and high ${fmt(high.shape)} differ in batch size`);
  if (cfg.arch !== 'full-split') {
    const pad = { kernel: 3, stride: 2, padding: cfg.padding };
    const [oh, ow] = [convOutSize(pad, low.shape[2]), convOutSize(pad, low.shape[3])];
    if (oh !== cfg.stochOutSize || ow !== cfg.stochOutSize) {
      throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got low ${fmt(low.shape)}, whose stem output ${oh}×${ow} cannot be concatenated with the stochastic stem's ${cfg.stochOutSize}×${cfg.stochOutSize}`);
    }
  }
  return { low, high };
}

// ---- apply ---------------------------------------------------------------------------------------

/** Keys for the random parts of a forward pass, derived from ctx.key by fixed tags. */
const TAG = { windows: 1, dropout: 2, lowBlocks: 3, stochBlocks: 4, blocks: 5, stochBackbone: 6 } as const;
const sub = (ctx: Ctx, tag: number): Ctx => (ctx.key ? { ...ctx, key: foldIn(ctx.key, tag) } : ctx);

/** `prefix` names the block outputs for ctx.tap as nn.summary does ('blocks.0', 'low.blocks.3', …). */
function applyBlocks(blocks: readonly MBConvConfig[], params: readonly MBConvParams[], state: readonly MBConvState[], x: Tensor, ctx: Ctx, prefix: string): [Tensor, MBConvState[]] {
  const out: MBConvState[] = [];
  let h = x;
  blocks.forEach((b, i) => {
    let s: MBConvState;
    [h, s] = mbconv.apply(b, params[i], state[i], h, sub(ctx, i));
    h = tapped(ctx, `${prefix}.${i}`, h);
    out.push(s);
  });
  return [h, out];
}

/** The stochastic stem: each output channel convolves its own random window of the high-res image. */
function applyStochStem(cfg: ModelConfig, p: StemParams, s: BatchNormState, x: Tensor, ctx: Ctx, name: string): [Tensor, BatchNormState] {
  if (!ctx.key) throw new Error(`${cfg.name}: the stochastic stem draws random windows (in eval too); pass ctx.key (predict takes a key)`);
  const out = cfg.stochOutSize!;
  const slice = stochSlice(cfg);
  const windows = sampleWindows(foldIn(ctx.key, TAG.windows), {
    batch: x.shape[0],
    channels: cfg.stemCh,
    inputSize: [x.shape[2], x.shape[3]],
    sliceSize: [slice, slice],
    perImage: cfg.perImage,
  });
  const y = stochasticConv2d(x, p.conv.w, { stride: STOCH_STRIDE, outSize: [out, out], windows });
  const [z, s2] = batchNorm.apply(stochStemConfig(cfg).bn, p.bn, s, y, ctx, 'silu');
  return [tapped(ctx, name, z, { windows }), s2];
}

/** Head conv + BN + SiLU, global average pool → (N, headCh). */
function applyHead(cfg: ModelConfig, p: ConvBnParams, s: BatchNormState, x: Tensor, ctx: Ctx, name: string): [Tensor, BatchNormState] {
  const [h, s2] = convBn.apply(headConfig(cfg), p, s, x, ctx);
  return [o.mean(tapped(ctx, name, h), [2, 3]), s2];
}

/**
 * The forward pass: `[logits (N, numClasses), newState]`. Pure: the state is threaded, never mutated.
 * ctx.key drives drop-connect, dropout and the stochastic windows (which are random in eval too).
 */
export function applyEfficientNet(cfg: ModelConfig, params: Params, state: State, input: Input, ctx: Ctx): [Tensor, State] {
  const { low, high } = checkInput(cfg, input);
  const P = params as AnyTree;
  const S = state as AnyTree;
  const k = (tag: number) => sub(ctx, tag);
  const lowStem = (name: string, p: ConvBnParams, s: BatchNormState): [Tensor, BatchNormState] => {
    const [x, s2] = convBn.apply(stemConfig(cfg), p, s, low!, ctx);
    return [tapped(ctx, name, x), s2];
  };
  let feats: Tensor;
  let next: AnyTree;
  switch (cfg.arch) {
    case 'plain': {
      const [x0, sStem] = lowStem('stem', P.stem, S.stem);
      const [x1, sBlocks] = applyBlocks(cfg.blocks, P.blocks, S.blocks, x0, k(TAG.blocks), 'blocks');
      const [f, sHead] = applyHead(cfg, P.head, S.head, x1, ctx, 'head');
      [feats, next] = [f, { stem: sStem, blocks: sBlocks, head: sHead }];
      break;
    }
    case 'pure-stochastic': {
      const [x0, sSt] = applyStochStem(cfg, P.stochStem, S.stochStem, high!, ctx, 'stochStem');
      const [x1, sBlocks] = applyBlocks(cfg.blocks, P.blocks, S.blocks, x0, k(TAG.blocks), 'blocks');
      const [f, sHead] = applyHead(cfg, P.head, S.head, x1, ctx, 'head');
      [feats, next] = [f, { stochStem: sSt, blocks: sBlocks, head: sHead }];
      break;
    }
    case 'stochastic-stem': {
      const [a, sStem] = lowStem('stem', P.stem, S.stem);
      const [b, sSt] = applyStochStem(cfg, P.stochStem, S.stochStem, high!, ctx, 'stochStem');
      const [x1, sBlocks] = applyBlocks(cfg.blocks, P.blocks, S.blocks, tapped(ctx, 'concat', o.concat([a, b], 1)), k(TAG.blocks), 'blocks');
      const [f, sHead] = applyHead(cfg, P.head, S.head, x1, ctx, 'head');
      [feats, next] = [f, { stem: sStem, stochStem: sSt, blocks: sBlocks, head: sHead }];
      break;
    }
    case 'stochastic-skip': {
      const own = cfg.blocks.slice(0, cfg.skipBlocks);
      const [a0, sStem] = lowStem('stem', P.stem, S.stem);
      const [b0, sSt] = applyStochStem(cfg, P.stochStem, S.stochStem, high!, ctx, 'stochStem');
      // Both copies use the same block configs, so their drop-connect rates match; their keys differ.
      const [a1, sLow] = applyBlocks(own, P.lowBlocks, S.lowBlocks, a0, k(TAG.lowBlocks), 'lowBlocks');
      const [b1, sStb] = applyBlocks(own, P.stochBlocks, S.stochBlocks, b0, k(TAG.stochBlocks), 'stochBlocks');
      const rest = cfg.blocks.slice(cfg.skipBlocks);
      // Rest blocks keep their global indices for the key tags (offset by skipBlocks).
      const [x2, sBlocks] = applyBlocks(rest, P.blocks, S.blocks, tapped(ctx, 'concat', o.concat([a1, b1], 1)), k(TAG.blocks), 'blocks');
      const [f, sHead] = applyHead(cfg, P.head, S.head, x2, ctx, 'head');
      [feats, next] = [f, { stem: sStem, stochStem: sSt, lowBlocks: sLow, stochBlocks: sStb, blocks: sBlocks, head: sHead }];
      break;
    }
    case 'full-split': {
      const [a0, sA0] = lowStem('low.stem', P.low.stem, S.low.stem);
      const [a1, sA1] = applyBlocks(cfg.blocks, P.low.blocks, S.low.blocks, a0, k(TAG.blocks), 'low.blocks');
      const [fa, sA2] = applyHead(cfg, P.low.head, S.low.head, a1, ctx, 'low.head');
      const sctx = k(TAG.stochBackbone);
      const [b0, sB0] = applyStochStem(cfg, P.stoch.stem, S.stoch.stem, high!, sctx, 'stoch.stem');
      const [b1, sB1] = applyBlocks(cfg.blocks, P.stoch.blocks, S.stoch.blocks, b0, sub(sctx, TAG.blocks), 'stoch.blocks');
      const [fb, sB2] = applyHead(cfg, P.stoch.head, S.stoch.head, b1, ctx, 'stoch.head');
      feats = o.concat([fa, fb], 1);
      next = { low: { stem: sA0, blocks: sA1, head: sA2 }, stoch: { stem: sB0, blocks: sB1, head: sB2 } };
      break;
    }
  }
  const dropped = dropout(feats, cfg.dropout, k(TAG.dropout));
  const logits = linear.apply({ inFeatures: featureCount(cfg), outFeatures: cfg.numClasses, bias: true }, P.fc, dropped);
  return [logits, next];
}

