/**
 * EfficientNet (Tan & Le 2019) from its compound-scaling coefficients, and the interpreter of the
 * architectures in archs.ts (the paper's Stochastic Convolution models among them, see PAPER.md).
 * A model's config is plain data; params and BN state are plain trees; init, the forward pass, the
 * parameter count and the summary rows are all read off one plan of named parts (`plan`).
 */
import type { DType } from '../backends/backend.ts';
import { sampleWindows, stochasticConv2d } from '../tensor/conv.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, split } from '../tensor/random.ts';
import { type Shape, fmt } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { Tree } from '../autograd/pytree.ts';
import { imagenetDecode } from '../data/imagenet.ts';
import { ARCHS, type Arch, type ArchSpec } from './archs.ts';
import { type Layer, type Probe, expectImage, row } from './combinators.ts';
import { type BatchNormState, type Ctx, type LinearConfig, type PaddingMode, convOutSize, dropout, linear, tapped } from './layers.ts';
import { type BnOptions, type ConvBnConfig, type ConvBnParams, type MBConvConfig, convBn, convBnConfig, convBnLayer, mbconvBlocks } from './mbconv.ts';
import type { ReceptiveField, SummaryRow } from './summary.ts';

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

export interface ModelConfig extends BnOptions {
  /** The name it was created under, e.g. 'b0-full-split'. */
  readonly name: string;
  readonly variant: Variant;
  /** The architecture (an `ARCHS` key): its paths, where they merge, the shared trunk. */
  readonly arch: Arch;
  readonly numClasses: number;
  readonly inChannels: number;
  /** Channels of each stem (the stochastic stem has as many as the low-res one). */
  readonly stemCh: number;
  /** Blocks of one backbone; the first block after a merge takes the concatenated channels. */
  readonly blocks: readonly MBConvConfig[];
  readonly headCh: number;
  readonly dropout: number;
  /** How many leading blocks each path has its own copy of (all of them when pooled features merge). */
  readonly ownBlocks: number;
  /** The default side of each image the model reads (null for an image it does not take). */
  readonly sides: InputSides;
  /** Output side of the stochastic stem (null when there is none). */
  readonly stochOutSize: number | null;
  /** One window per (image, channel) rather than per channel for the whole batch. */
  readonly perImage: boolean;
  readonly dtype: DType;
  readonly headInit: 'efficientnet' | 'zeros';
}

/** What a config is built from; every field has a default. */
export interface BuildOptions {
  /** Outputs of the dense layer (1 = one melanoma logit). */
  readonly numClasses?: number;
  /** Override the compound coefficients (tiny models for tests). */
  readonly widthMult?: number;
  readonly depthMult?: number;
  /** Stem channels before width scaling (32; 64 for b0-64). */
  readonly stem?: number;
  /** 'same' (TensorFlow, default) or 'symmetric' (torchvision). */
  readonly padding?: PaddingMode;
  /** BN eps (default 1e-3) and momentum (PyTorch convention, default 0.01 = TF's 0.99). */
  readonly bnEps?: number;
  readonly bnMomentum?: number;
  /** Dropout before the dense layer (default: the variant's) and the final drop-connect rate (0.2). */
  readonly dropout?: number;
  readonly dropConnectRate?: number;
  /** Side of the (resized) low-res image of models with a low-res path (others ignore it); default the variant's resolution (224 for B0, 380 for B4). */
  readonly lowSize?: number;
  /** Side of the high-res image of models with a stochastic stem (others ignore it); default 1024. */
  readonly highSize?: number;
  /** Output side of the stochastic stem (default: the low-res stem's output, 112 for B0 and 190 for B4). */
  readonly stochOutSize?: number;
  /** A window per image and channel (default) or per channel for the whole batch. */
  readonly perImage?: boolean;
  /** Architectures whose paths own some stages: how many (stochastic-skip: default 3, B0's first 5 blocks). */
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

/** The description of a config's architecture. */
export const layoutOf = (cfg: Pick<ModelConfig, 'arch'>): ArchSpec => ARCHS[cfg.arch];
const hasInput = (spec: ArchSpec, input: 'low' | 'high'): boolean => spec.paths.some((p) => p.input === input);

/** Throws naming the architecture when its description is not one the interpreter can run. */
function checkArch(arch: string, spec: ArchSpec, stages: number): void {
  const bad = (why: string) => new Error(`architecture '${arch}': ${why}`);
  const inputs = spec.paths.map((p) => p.input).join(',');
  if (!['low', 'high', 'low,high'].includes(inputs)) throw bad(`paths must read 'low', 'high' or 'low' then 'high', not '${inputs}'`);
  const all = spec.ownStages === 'all';
  if (!all && !(Number.isInteger(spec.ownStages) && spec.ownStages >= 0 && spec.ownStages < stages)) throw bad(`ownStages must be 'all' or an integer in [0, ${stages - 1}]`);
  for (const p of spec.paths) {
    if (!p.blocks !== (spec.ownStages === 0)) throw bad(`path '${p.stem}' needs its own blocks exactly when ownStages > 0`);
    if (!p.head !== !all) throw bad(`path '${p.stem}' needs its own head exactly when ownStages is 'all'`);
  }
  if (!spec.trunk.blocks !== all || !spec.trunk.head !== all) throw bad(`the trunk has blocks and a head unless ownStages is 'all'`);
}

/** Stage by stage, repeat by repeat; the block where the paths merge takes their concatenated channels. */
function buildBlocks(stages: readonly StageArgs[], at: { inCh: number; ownBlocks: number; mergeFactor: number; dcr: number }, bn: BnOptions): MBConvConfig[] {
  const total = stages.reduce((p, s) => p + s.repeats, 0);
  const blocks: MBConvConfig[] = [];
  let inCh = at.inCh;
  stages.forEach((s, si) => {
    for (let j = 0; j < s.repeats; j++) {
      const idx = blocks.length;
      if (idx === at.ownBlocks) inCh *= at.mergeFactor;
      blocks.push({ ...bn, inCh, outCh: s.outCh, expand: s.expand, kernel: s.kernel, stride: j === 0 ? s.stride : 1, seRatio: 0.25, dropRate: (at.dcr * idx) / total, stage: si, index: j });
      inCh = s.outCh;
    }
  });
  return blocks;
}

/** The side of each image a model reads, by image; null for an image it does not take. */
export interface InputSides {
  readonly low: number | null;
  readonly high: number | null;
}

/**
 * The image sides of a config: the low-res default is the variant's resolution, the high-res one
 * 1024; the stochastic stem's output defaults to the low-res stem's (or, without a low-res path, to
 * half the variant's resolution).
 */
function defaultSides(spec: ArchSpec, variant: Variant, padding: PaddingMode, opts: BuildOptions): { sides: InputSides; stochOutSize: number | null } {
  const res = SCALING[variant].resolution;
  const low = hasInput(spec, 'low') ? (opts.lowSize ?? res) : null;
  const high = hasInput(spec, 'high') ? (opts.highSize ?? 1024) : null;
  const stochOut = low !== null ? convOutSize({ kernel: 3, stride: 2, padding }, low) : Math.ceil(res / 2);
  return { sides: { low, high }, stochOutSize: high !== null ? (opts.stochOutSize ?? stochOut) : null };
}

/**
 * The config of an architecture at a variant. TensorFlow conventions by default ('same' padding,
 * BN eps 1e-3, momentum 0.01); torchvision's are padding 'symmetric', eps 1e-5, momentum 0.1.
 */
export function buildConfig(name: string, variant: Variant, arch: Arch, opts: BuildOptions = {}): ModelConfig {
  const sc = SCALING[variant];
  const [width, depth] = [opts.widthMult ?? sc.width, opts.depthMult ?? sc.depth];
  const bn: BnOptions = { padding: opts.padding ?? 'same', bnEps: opts.bnEps ?? 1e-3, bnMomentum: opts.bnMomentum ?? 0.01 };
  const numClasses = opts.numClasses ?? 1;
  if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`${name}: numClasses must be a positive integer, got ${numClasses}`);
  const spec = layoutOf({ arch });
  const stages = B0_STAGES.map((s) => ({ ...s, outCh: roundFilters(s.outCh, width), repeats: roundRepeats(s.repeats, depth) }));
  checkArch(arch, spec, stages.length);
  const own = spec.ownStages === 'all' ? stages.length : spec.ownStages > 0 ? (opts.skipStages ?? spec.ownStages) : 0;
  if (spec.ownStages !== 'all' && spec.ownStages > 0 && !(Number.isInteger(own) && own >= 1 && own < stages.length)) {
    throw new Error(`${name}: skipStages must be an integer in [1, ${stages.length - 1}], got ${own}`);
  }
  const ownBlocks = stages.slice(0, own).reduce((p, s) => p + s.repeats, 0);
  const stemCh = roundFilters(opts.stem ?? B0_STEM, width);
  const mergeFactor = spec.ownStages === 'all' ? 1 : spec.paths.length;
  const blocks = buildBlocks(stages, { inCh: stemCh, ownBlocks, mergeFactor, dcr: opts.dropConnectRate ?? DROP_CONNECT_RATE }, bn);
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
    ownBlocks,
    ...defaultSides(spec, variant, bn.padding, opts),
    perImage: opts.perImage ?? true,
    dtype: opts.dtype ?? 'float32',
    headInit: opts.headInit ?? 'efficientnet',
  };
  if (cfg.headInit !== 'efficientnet' && cfg.headInit !== 'zeros') throw new Error(`${name}: headInit must be 'efficientnet' or 'zeros', got '${cfg.headInit as string}'`);
  checkSizes(cfg);
  return cfg;
}

/**
 * The image whose positions a layer's spatial positions are: its path's input, and after the merge
 * the first path's (a trunk shared with a low-res path is aligned with the low-res image).
 */
export function layerImage(cfg: ModelConfig, layer: string): 'low' | 'high' {
  const spec = layoutOf(cfg);
  const owns = (name: string | undefined) => name !== undefined && (layer === name || layer.startsWith(`${name}.`));
  return (spec.paths.find((p) => owns(p.stem) || owns(p.blocks) || owns(p.head)) ?? spec.paths[0]).input;
}

/** The slice side the stochastic stem reads. */
export const stochSlice = (cfg: ModelConfig): number => (cfg.stochOutSize! - 1) * STOCH_STRIDE + STOCH_KERNEL;

function checkSizes(cfg: ModelConfig): void {
  const high = cfg.sides.high;
  if (high !== null && stochSlice(cfg) > high) {
    throw new Error(`${cfg.name}: the stochastic stem's output ${cfg.stochOutSize} needs windows of ${stochSlice(cfg)} px but the high-res image is only ${high} px`);
  }
}

// ---- parts ---------------------------------------------------------------------------------------

export const stemConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig({ inCh: cfg.inChannels, outCh: cfg.stemCh, kernel: 3, stride: 2, act: 'silu' }, cfg);
export const headConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig({ inCh: cfg.blocks[cfg.blocks.length - 1].outCh, outCh: cfg.headCh, kernel: 1, act: 'silu' }, cfg);
/** The stochastic stem as a conv-BN config (its conv is a stochastic one: no padding, random windows). */
export const stochStemConfig = (cfg: ModelConfig): ConvBnConfig => convBnConfig({ inCh: cfg.inChannels, outCh: cfg.stemCh, kernel: STOCH_KERNEL, stride: STOCH_STRIDE, act: 'silu' }, cfg);
/** Features into the dense layer (pooled features of every path when they merge after pooling). */
export const featureCount = (cfg: ModelConfig): number => (layoutOf(cfg).ownStages === 'all' ? layoutOf(cfg).paths.length : 1) * cfg.headCh;
const fcConfig = (cfg: ModelConfig): LinearConfig => ({ inFeatures: featureCount(cfg), outFeatures: cfg.numClasses, bias: true });

/** Parameters and BN state of a model: named parts (see `plan`) plus the dense layer `fc`. */
export type Params = { readonly [name: string]: Tree };
export type State = { readonly [name: string]: Tree };

/**
 * Keys for the random parts of a forward pass: a part named 'a.b' draws from ctx.key folded with
 * the tag of each name component that has one (`null`: none); the stochastic stem folds `windows`
 * in, dropout draws from `dropout`. These are the keys every trained model used; a name not listed
 * folds in a hash of itself.
 */
const KEY_TAGS: Readonly<Record<string, number | null>> = { windows: 1, dropout: 2, lowBlocks: 3, stochBlocks: 4, blocks: 5, stoch: 6, low: null, stem: null, stochStem: null, head: null };
/**
 * Init keys by part name: `split(key, 7)[i]` for [i], `split(split(key, 7)[i], 2)[j]` for [i, j]
 * (the weights every seed has drawn); a name not listed draws from a hash of itself.
 */
const INIT_KEYS: Readonly<Record<string, readonly number[]>> = {
  stem: [0], 'low.stem': [0], stochStem: [1], 'stoch.stem': [1], blocks: [2], 'low.blocks': [2], lowBlocks: [3, 0], stochBlocks: [3, 1],
  head: [4], 'low.head': [4], fc: [5], 'stoch.blocks': [6, 0], 'stoch.head': [6, 1],
};

/** FNV-1a of a name, above the fixed tags. */
const nameTag = (name: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return (h >>> 0) | 0x80000000;
};
const sub = (ctx: Ctx, tag: number): Ctx => (ctx.key ? { ...ctx, key: foldIn(ctx.key, tag) } : ctx);
const partCtx = (ctx: Ctx, name: string): Ctx =>
  name.split('.').reduce((c, part) => {
    const tag = part in KEY_TAGS ? KEY_TAGS[part] : nameTag(part);
    return tag === null ? c : sub(c, tag);
  }, ctx);
function initKey(key: Key, name: string): Key {
  const at = INIT_KEYS[name];
  if (!at) return foldIn(key, nameTag(name));
  const k = split(key, 7)[at[0]];
  return at.length === 1 ? k : split(k, 2)[at[1]];
}

/**
 * The stochastic stem: each output channel convolves its own random window of the high-res image, which is
 * ImageNet-normalised float, or uint8 bytes read through `imagenetDecode`.
 */
function stochStemLayer(cfg: ModelConfig, name: string): Layer<ConvBnParams, BatchNormState> {
  const sc = stochStemConfig(cfg);
  const [out, slice] = [cfg.stochOutSize!, stochSlice(cfg)];
  const kind = `StochasticConv${STOCH_KERNEL}x${STOCH_KERNEL} s${STOCH_STRIDE} (${slice}² windows${cfg.perImage ? ', per image' : ', per batch'}) + BN + SiLU`;
  return {
    kind,
    init: (key, dtype = 'float32') => convBn.init(key, sc, dtype),
    apply(p, s, x, ctx) {
      if (!ctx.key) throw new Error(`${cfg.name}: the stochastic stem draws random windows (in eval too); pass ctx.key (predict takes a key)`);
      const windows = sampleWindows(foldIn(ctx.key, KEY_TAGS.windows!), { batch: x.shape[0], channels: cfg.stemCh, inputSize: [x.shape[2], x.shape[3]], sliceSize: [slice, slice], perImage: cfg.perImage });
      // A uint8 image (the loader's highBytes) is normalised inside the conv.
      const y = stochasticConv2d(x, p.conv.w, { stride: STOCH_STRIDE, outSize: [out, out], windows, ...(x.dtype === 'uint8' ? { decode: imagenetDecode } : {}) });
      const [z, next] = convBn.normalize(sc, p, s, y, ctx);
      return [tapped(ctx, name, z, { windows }), next];
    },
    describe(input) {
      const [n] = expectImage(kind, input, cfg.inChannels);
      const rf = { size: input.rf.size + (STOCH_KERNEL - 1) * input.rf.jump, jump: input.rf.jump * STOCH_STRIDE };
      return row(kind, { shape: [n, cfg.stemCh, out, out], rf }, convBn.paramCount(sc), n * cfg.stemCh * out * out * cfg.inChannels * STOCH_KERNEL ** 2);
    },
  };
}

// ---- the plan: named parts ------------------------------------------------------------------------

interface Part {
  /** Where its params and state live ('low.stem' = params.low.stem), and its name for ctx.tap and the summary. */
  readonly name: string;
  readonly layer: Layer;
}
interface Plan {
  /** Each path's parts, in order: stem, own blocks, own head. */
  readonly paths: readonly { readonly input: 'low' | 'high'; readonly parts: readonly Part[] }[];
  /** The parts after the merge (blocks, head); empty when pooled features merge. */
  readonly trunk: readonly Part[];
  /** The paths merge after their heads and global pooling rather than along spatial channels. */
  readonly pooled: boolean;
}

/** The named parts of a config, read off its architecture. */
export function plan(cfg: ModelConfig): Plan {
  const spec = layoutOf(cfg);
  const part = (name: string | undefined, make: (name: string) => Layer): Part[] => (name ? [{ name, layer: make(name) }] : []);
  const head = (name: string) => convBnLayer(headConfig(cfg), 'Conv1x1 + BN + SiLU', name);
  const stem = (input: 'low' | 'high') => (name: string) => (input === 'low' ? convBnLayer(stemConfig(cfg), 'Conv3x3 s2 + BN + SiLU', name) : stochStemLayer(cfg, name));
  const paths = spec.paths.map((p) => ({
    input: p.input,
    parts: [...part(p.stem, stem(p.input)), ...part(p.blocks, (n) => mbconvBlocks(cfg.blocks.slice(0, cfg.ownBlocks), n)), ...part(p.head, head)],
  }));
  const trunk = [...part(spec.trunk.blocks, (n) => mbconvBlocks(cfg.blocks.slice(cfg.ownBlocks), n)), ...part(spec.trunk.head, head)];
  return { paths, trunk, pooled: spec.ownStages === 'all' };
}

const at = (tree: any, name: string): any => name.split('.').reduce((t, k) => t?.[k], tree);
function put(tree: Record<string, any>, name: string, value: unknown): void {
  const keys = name.split('.');
  const parent = keys.slice(0, -1).reduce((t, k) => (t[k] ??= {}), tree);
  parent[keys[keys.length - 1]] = value;
}
/**
 * The paths' parts position by position (every stem, then every path's blocks, …): the order of
 * the params and state trees, which init and apply both follow.
 */
const byPosition = (p: Plan): Part[][] => p.paths[0].parts.map((_, j) => p.paths.map((path) => path.parts[j]));

// ---- init, apply ---------------------------------------------------------------------------------

/** Fresh parameters (EfficientNet's initialisers) and BN state for a config. */
export function initEfficientNet(key: Key, cfg: ModelConfig): { params: Params; state: State } {
  const p = plan(cfg);
  const params: Record<string, unknown> = {};
  const state: Record<string, unknown> = {};
  for (const part of [...byPosition(p).flat(), ...p.trunk]) {
    const init = part.layer.init(initKey(key, part.name), cfg.dtype);
    put(params, part.name, init.params);
    put(state, part.name, init.state);
  }
  const fc = fcConfig(cfg);
  const d = cfg.dtype;
  params.fc = cfg.headInit === 'zeros' ? { w: o.zeros([fc.outFeatures, fc.inFeatures], d), b: o.zeros([fc.outFeatures], d) } : linear.init(initKey(key, 'fc'), fc, d);
  return { params: params as Params, state: state as State };
}

/**
 * The forward pass: `[logits (N, numClasses), newState]`. Pure: the state is threaded, never mutated.
 * ctx.key drives drop-connect, dropout and the stochastic windows (which are random in eval too).
 */
export function applyEfficientNet(cfg: ModelConfig, params: Params, state: State, input: Input, ctx: Ctx): [Tensor, State] {
  const images = checkInput(cfg, input);
  const p = plan(cfg);
  const next: Record<string, unknown> = {};
  const run = (part: Part, x: Tensor): Tensor => {
    const [y, s] = part.layer.apply(at(params, part.name), at(state, part.name), x, partCtx(ctx, part.name));
    put(next, part.name, s);
    return y;
  };
  const ends = byPosition(p).reduce((xs, parts) => parts.map((part, i) => run(part, xs[i])), p.paths.map((path) => images[path.input]!));
  const pool = (x: Tensor) => o.mean(x, [2, 3]);
  const merge = (xs: Tensor[]) => (xs.length === 1 ? xs[0] : o.concat(xs, 1));
  const feats = p.pooled ? merge(ends.map(pool)) : pool(p.trunk.reduce((x, part) => run(part, x), ends.length === 1 ? ends[0] : tapped(ctx, 'concat', merge(ends))));
  const logits = linear.apply(fcConfig(cfg), params.fc as any, dropout(feats, cfg.dropout, sub(ctx, KEY_TAGS.dropout!)));
  return [logits, next as State];
}

// ---- shapes: summary rows, parameter count, receptive fields --------------------------------------

/** The receptive field of `outer` (a chain after `inner`) measured in `inner`'s input pixels. */
const composeRf = (inner: ReceptiveField, outer: ReceptiveField): ReceptiveField => ({ size: inner.size + (outer.size - 1) * inner.jump, jump: inner.jump * outer.jump });
const IDENTITY_RF: ReceptiveField = { size: 1, jump: 1 };

/** One row per part (blocks one per block), then pooling, dropout and the dense layer; each path's receptive field. */
export function describeModel(cfg: ModelConfig, shapes: { low: Shape | null; high: Shape | null }): { rows: SummaryRow[]; rf: { low: ReceptiveField | null; high: ReceptiveField | null } } {
  const p = plan(cfg);
  const rows: SummaryRow[] = [];
  const push = (name: string, kind: string, out: Shape, params = 0, macs = 0) => rows.push({ name, kind, out, params, macs });
  const chain = (parts: readonly Part[], from: Probe): Probe =>
    parts.reduce((probe, part) => {
      const d = part.layer.describe(probe);
      d.rows.forEach((r) => push(r.name ? `${part.name}.${r.name}` : part.name, r.kind, r.out, r.params, r.macs));
      return d.out;
    }, from);
  const ends = p.paths.map((path) => chain(path.parts, { shape: shapes[path.input]!, rf: IDENTITY_RF }));
  const n = ends[0].shape[0];
  let trunk = IDENTITY_RF;
  if (p.pooled) push('pool', `GlobalAvgPool ×${ends.length} + Concat`, [n, featureCount(cfg)]);
  else {
    const [h, w] = ends[0].shape.slice(2);
    if (ends.some((e) => e.shape[2] !== h || e.shape[3] !== w)) throw new Error(`summary(${cfg.name}): the low-res path ${fmt(ends[0].shape)} and the stochastic path ${fmt(ends[1].shape)} cannot be concatenated`);
    const merged = ends.length === 1 ? ends[0].shape : [n, ends.reduce((c, e) => c + e.shape[1], 0), h, w];
    if (ends.length > 1) push('concat', 'Concat (channels)', merged);
    trunk = chain(p.trunk, { shape: merged, rf: IDENTITY_RF }).rf;
    push('pool', 'GlobalAvgPool', [n, featureCount(cfg)]);
  }
  push('dropout', `Dropout(${cfg.dropout})`, [n, featureCount(cfg)]);
  const fc = fcConfig(cfg);
  push('fc', 'Linear', [n, cfg.numClasses], linear.paramCount(fc), n * fc.inFeatures * fc.outFeatures);
  const rfOf = (input: 'low' | 'high') => {
    const i = p.paths.findIndex((path) => path.input === input);
    return i < 0 ? null : composeRf(ends[i].rf, trunk);
  };
  return { rows, rf: { low: rfOf('low'), high: rfOf('high') } };
}

/** Trainable parameters of a config, computed from the shapes alone (equals parameterCount of a model built from it). */
export function configParameterCount(cfg: ModelConfig): number {
  const { low, high } = cfg.sides;
  const side = (s: number | null) => (s === null ? null : [1, cfg.inChannels, s, s]);
  return describeModel(cfg, { low: side(low), high: side(high) }).rows.reduce((p, r) => p + r.params, 0);
}

// ---- input checks --------------------------------------------------------------------------------

/** The smallest low-res side the network takes (its total stride: the last feature map is then ≥ 1 × 1). */
export const MIN_LOW_SIZE = 32;

export type Input = Tensor | { readonly low: Tensor; readonly high: Tensor };

/**
 * A model input from its images by name (the inverse of `checkInput`): `{ low, high }` when both
 * are given, else the one that is (the low-res image of a plain model, the high-res one of a
 * pure-stochastic model).
 */
export function inputOf<T>(images: { readonly low?: T | null; readonly high?: T | null }): T | { low: T; high: T } {
  const { low, high } = images;
  if (low != null && high != null) return { low, high };
  const one = low ?? high;
  if (one == null) throw new Error('inputOf: neither a low-res nor a high-res image');
  return one;
}

/** A model input of the given sides, each image made by `make(side, image)`: e.g. `inputAt(cfg.sides, (s) => [1, 3, s, s])`. */
export const inputAt = <T>(sides: InputSides, make: (side: number, image: 'low' | 'high') => T): T | { low: T; high: T } =>
  inputOf({ low: sides.low === null ? null : make(sides.low, 'low'), high: sides.high === null ? null : make(sides.high, 'high') });

/** Whether the model takes `{ low, high }` (a low-res and a high-res path) rather than one tensor. */
export const isPair = (cfg: ModelConfig): boolean => layoutOf(cfg).paths.length === 2;

/** The smallest side of each image: MIN_LOW_SIZE for the low-res one, the stochastic stem's window for the high-res one. */
export const minSide = (cfg: ModelConfig, image: 'low' | 'high'): number => (image === 'low' ? MIN_LOW_SIZE : stochSlice(cfg));

/** A sentence naming what the model takes, for errors. */
export function expectedInput(cfg: ModelConfig): string {
  const c = cfg.inChannels;
  const { low, high } = cfg.sides;
  if (low === null) return `a tensor (N, ${c}, H, W) of the high-res image (default ${high}×${high}, at least ${stochSlice(cfg)} px for the stochastic stem's ${cfg.stochOutSize}×${cfg.stochOutSize} output)`;
  if (high === null) return `a tensor (N, ${c}, H, W) (default ${low}×${low}, at least ${MIN_LOW_SIZE} px)`;
  const match = layoutOf(cfg).ownStages === 'all' ? `at least ${MIN_LOW_SIZE} px` : `its stem output must be ${cfg.stochOutSize}×${cfg.stochOutSize}, the stochastic stem's`;
  return `{ low: (N, ${c}, ${low}, ${low}) (${match}), high: (N, ${c}, ${high}, ${high}) (at least ${stochSlice(cfg)} px) }`;
}

function checkImage(cfg: ModelConfig, what: string, x: unknown, minSide: number): asserts x is Tensor {
  const fail = (got: string) => {
    throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got ${what} ${got}`);
  };
  if (!(x instanceof Tensor)) fail(x === null || typeof x !== 'object' ? String(x) : 'a non-tensor value');
  const t = x as Tensor;
  if (t.rank !== 4 || t.shape[1] !== cfg.inChannels) fail(`of shape ${fmt(t.shape)}`);
  if (t.shape[2] < minSide || t.shape[3] < minSide) fail(`of shape ${fmt(t.shape)} (too small)`);
  // The high-res image may also be bytes (the stochastic stem decodes them).
  if (t.dtype !== cfg.dtype && !(what === 'high' && t.dtype === 'uint8')) fail(`of dtype ${t.dtype} (the model is ${cfg.dtype})`);
}

/** Validates an input against the config; throws an Error naming the expected input. */
export function checkInput(cfg: ModelConfig, input: unknown): { low: Tensor | null; high: Tensor | null } {
  const spec = layoutOf(cfg);
  if (!isPair(cfg)) {
    const image = spec.paths[0].input;
    checkImage(cfg, 'input', input, minSide(cfg, image));
    return image === 'low' ? { low: input, high: null } : { low: null, high: input };
  }
  const pair = input as { low?: unknown; high?: unknown };
  if (input instanceof Tensor || typeof input !== 'object' || input === null || !('low' in pair) || !('high' in pair)) {
    throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got ${input instanceof Tensor ? `a single tensor ${fmt(input.shape)}` : 'something else'}`);
  }
  checkImage(cfg, 'low', pair.low, MIN_LOW_SIZE);
  checkImage(cfg, 'high', pair.high, stochSlice(cfg));
  const [low, high] = [pair.low, pair.high];
  if (low.shape[0] !== high.shape[0]) throw new Error(`${cfg.name}: low ${fmt(low.shape)} and high ${fmt(high.shape)} differ in batch size`);
  if (spec.ownStages !== 'all') {
    const stem = { kernel: 3, stride: 2, padding: cfg.padding };
    const [oh, ow] = [convOutSize(stem, low.shape[2]), convOutSize(stem, low.shape[3])];
    if (oh !== cfg.stochOutSize || ow !== cfg.stochOutSize) {
      throw new Error(`${cfg.name}: expected ${expectedInput(cfg)}; got low ${fmt(low.shape)}, whose stem output ${oh}×${ow} cannot be concatenated with the stochastic stem's ${cfg.stochOutSize}×${cfg.stochOutSize}`);
    }
  }
  return { low, high };
}
