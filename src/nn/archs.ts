/**
 * The model zoo as data. An architecture is a list of input paths (each with its own stem and
 * possibly its own copy of the first stages, or of the whole backbone), the point where they are
 * concatenated along channels, and the shared trunk after it. One interpreter (efficientnet.ts)
 * derives init, apply, parameter count, mult-adds, receptive fields and the summary from it; a
 * named model is an architecture at an EfficientNet variant. Adding a model is one `MODELS` entry,
 * adding an architecture one `ARCHS` entry.
 */
import type { Variant } from './efficientnet.ts';

/**
 * One input path. `input` 'low': a 3×3 stride-2 conv stem on the low-res image; 'high': the
 * stochastic stem on the high-res image. The names are where the path's parts live in the
 * params/state trees (dotted: 'low.stem' is params.low.stem); they are also the names `ctx.tap`
 * and `nn.summary` use, and they fix the random keys each part draws (see efficientnet.ts).
 */
export interface PathSpec {
  readonly input: 'low' | 'high';
  readonly stem: string;
  /** This path's own copy of the first `ArchSpec.ownStages` stages (needed when ownStages > 0). */
  readonly blocks?: string;
  /** This path's own head (needed when ownStages is 'all'). */
  readonly head?: string;
}

export interface ArchSpec {
  /** One path, or a low and a high path (in that order), concatenated along channels where they end. */
  readonly paths: readonly PathSpec[];
  /**
   * How much of the backbone each path has its own copy of: the stem only (0), the stem and the
   * first N stages, or all of it, head and global pooling included ('all': pooled features merge).
   */
  readonly ownStages: number | 'all';
  /** The shared rest after the merge: the remaining blocks and the head (both absent for 'all'). */
  readonly trunk: { readonly blocks?: string; readonly head?: string };
}

const shared = { blocks: 'blocks', head: 'head' } as const;

/** The paper's architectures (PAPER.md): a plain EfficientNet and the four Stochastic Convolution ones. */
export const ARCHS = {
  /** stem → blocks → head. */
  plain: { paths: [{ input: 'low', stem: 'stem' }], ownStages: 0, trunk: shared },
  /** Low-res stem ⊕ stochastic stem → blocks → head. */
  'stochastic-stem': { paths: [{ input: 'low', stem: 'stem' }, { input: 'high', stem: 'stochStem' }], ownStages: 0, trunk: shared },
  /** Each stem through its own copy of the first three stages, then concatenated. */
  'stochastic-skip': {
    paths: [
      { input: 'low', stem: 'stem', blocks: 'lowBlocks' },
      { input: 'high', stem: 'stochStem', blocks: 'stochBlocks' },
    ],
    ownStages: 3,
    trunk: shared,
  },
  /** Two whole backbones, pooled and concatenated before the dense layer. */
  'full-split': {
    paths: [
      { input: 'low', stem: 'low.stem', blocks: 'low.blocks', head: 'low.head' },
      { input: 'high', stem: 'stoch.stem', blocks: 'stoch.blocks', head: 'stoch.head' },
    ],
    ownStages: 'all',
    trunk: {},
  },
  /** Only the stochastic stem, on the high-res image. */
  'pure-stochastic': { paths: [{ input: 'high', stem: 'stochStem' }], ownStages: 0, trunk: shared },
} as const satisfies Record<string, ArchSpec>;

export type Arch = keyof typeof ARCHS;
export const archNames = Object.keys(ARCHS) as Arch[];

/** A named model: an architecture at a variant, with the stem's channels (before width scaling) when not 32. */
export interface ModelEntry {
  readonly variant: Variant;
  readonly arch: Arch;
  readonly stem?: number;
}

/** Every named model `createModel` takes: B0–B7 and the paper's models, plus B2 with a stochastic stem. */
export const MODELS = {
  b0: { variant: 'b0', arch: 'plain' },
  b1: { variant: 'b1', arch: 'plain' },
  b2: { variant: 'b2', arch: 'plain' },
  b3: { variant: 'b3', arch: 'plain' },
  b4: { variant: 'b4', arch: 'plain' },
  b5: { variant: 'b5', arch: 'plain' },
  b6: { variant: 'b6', arch: 'plain' },
  b7: { variant: 'b7', arch: 'plain' },
  /** B0 with a 64-channel stem: the stochastic stem's channel count without its windows (the paper's control). */
  'b0-64': { variant: 'b0', arch: 'plain', stem: 64 },
  'b0-stochastic-stem': { variant: 'b0', arch: 'stochastic-stem' },
  'b2-stochastic-stem': { variant: 'b2', arch: 'stochastic-stem' },
  'b4-stochastic-stem': { variant: 'b4', arch: 'stochastic-stem' },
  'b0-stochastic-skip': { variant: 'b0', arch: 'stochastic-skip' },
  'b0-full-split': { variant: 'b0', arch: 'full-split' },
  'b4-full-split': { variant: 'b4', arch: 'full-split' },
  'b0-pure-stochastic': { variant: 'b0', arch: 'pure-stochastic' },
} as const satisfies Record<string, ModelEntry>;

export type ModelName = keyof typeof MODELS;
/** The names of `MODELS`, in order: the one list of models (CLI help, docs/models.md, tests). */
export const modelNames = Object.keys(MODELS) as ModelName[];

/**
 * The entry of a model name (variant, architecture, stem): a `MODELS` name, or any variant followed by an architecture
 * ('b3-full-split'); throws listing both.
 */
export function parseModelName(name: string): ModelEntry {
  const e = (MODELS as Record<string, ModelEntry>)[name];
  if (e) return e;
  const m = /^(b[0-7])-(.+)$/.exec(name);
  if (m && m[2] in ARCHS) return { variant: m[1] as Variant, arch: m[2] as Arch };
  throw new Error(`createModel: unknown model '${name}'; models: ${modelNames.join(', ')} (or bN-<architecture>: ${archNames.join(', ')})`);
}
