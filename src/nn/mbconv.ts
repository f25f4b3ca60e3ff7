/**
 * Conv + batch norm (+ SiLU) units and the MBConv block of MobileNetV2 / EfficientNet:
 * expand 1×1 + BN + SiLU (ratio ≠ 1) → depthwise k×k + BN + SiLU → squeeze-excite →
 * project 1×1 + BN (no activation) → drop-connect + identity skip when stride 1 and in = out.
 */
import { pipe } from 'fp-ts/lib/function.js';
import type { DType } from '../backends/backend.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, split } from '../tensor/random.ts';
import { type Layer, type LayerRow, convProbe, row } from './combinators.ts';
import type { Tensor } from '../tensor/tensor.ts';
import {
  type BatchNormConfig,
  type BatchNormParams,
  type BatchNormState,
  type ConvConfig,
  type ConvParams,
  type Ctx,
  type PaddingMode,
  type SqueezeExciteConfig,
  type SqueezeExciteParams,
  batchNorm,
  conv,
  dropConnect,
  squeezeExcite,
  tapped,
} from './layers.ts';

// ---- conv + BN (+ SiLU) --------------------------------------------------------------------------

export interface ConvBnConfig {
  readonly conv: ConvConfig;
  readonly bn: BatchNormConfig;
  /** SiLU after the BN (fused into its kernel), or none. */
  readonly act?: 'silu';
}
export interface ConvBnParams {
  readonly conv: ConvParams;
  readonly bn: BatchNormParams;
}

export interface BnOptions {
  readonly padding: PaddingMode;
  readonly bnEps: number;
  readonly bnMomentum: number;
}

/** The shape of a conv-BN unit; the BN settings and padding come from the model's `BnOptions`. */
export interface ConvBnShape {
  readonly inCh: number;
  readonly outCh: number;
  readonly kernel: number;
  readonly stride?: number;
  /** 1 (default) = dense; the channel count = depthwise. */
  readonly groups?: number;
  /** 'silu' after the BN, or none. */
  readonly act?: 'silu';
}

export const convBnConfig = (c: ConvBnShape, bn: BnOptions): ConvBnConfig => ({
  conv: { inCh: c.inCh, outCh: c.outCh, kernel: c.kernel, stride: c.stride ?? 1, groups: c.groups ?? 1, bias: false, padding: bn.padding },
  bn: { channels: c.outCh, eps: bn.bnEps, momentum: bn.bnMomentum },
  act: c.act,
});

export const convBn = {
  init(key: Key, cfg: ConvBnConfig, dtype: DType): { params: ConvBnParams; state: BatchNormState } {
    const bn = batchNorm.init(cfg.bn, dtype);
    return { params: { conv: conv.init(key, cfg.conv, dtype), bn: bn.params }, state: bn.state };
  },
  apply: (cfg: ConvBnConfig, p: ConvBnParams, s: BatchNormState, x: Tensor, ctx: Ctx): [Tensor, BatchNormState] => convBn.normalize(cfg, p, s, conv.apply(cfg.conv, p.conv, x), ctx),
  /** The BN (+ SiLU, fused into one kernel) after a conv's output `y`. */
  normalize: (cfg: ConvBnConfig, p: ConvBnParams, s: BatchNormState, y: Tensor, ctx: Ctx): [Tensor, BatchNormState] => batchNorm.apply(cfg.bn, p.bn, s, y, ctx, cfg.act),
  paramCount: (cfg: ConvBnConfig): number => conv.paramCount(cfg.conv) + 2 * cfg.bn.channels,
};

// ---- MBConv --------------------------------------------------------------------------------------

export interface MBConvConfig extends BnOptions {
  readonly inCh: number;
  readonly outCh: number;
  /** Expansion ratio (1 or 6 in EfficientNet). */
  readonly expand: number;
  readonly kernel: number;
  readonly stride: number;
  /** Squeeze channels = max(1, ⌊inCh·seRatio⌋). */
  readonly seRatio: number;
  /** Drop-connect rate of the residual branch (0.2·block/blocks in EfficientNet). */
  readonly dropRate: number;
  /** Position in the network (torchvision names: features.{stage + 1}.{index}). */
  readonly stage: number;
  readonly index: number;
}
export interface MBConvParams {
  readonly expand?: ConvBnParams;
  readonly dw: ConvBnParams;
  readonly se: SqueezeExciteParams;
  readonly project: ConvBnParams;
}
export interface MBConvState {
  readonly expand?: BatchNormState;
  readonly dw: BatchNormState;
  readonly project: BatchNormState;
}

/** The parts of a block, derived from its config. */
export function mbconvParts(cfg: MBConvConfig): {
  expand: ConvBnConfig | null;
  dw: ConvBnConfig;
  se: SqueezeExciteConfig;
  project: ConvBnConfig;
  skip: boolean;
} {
  const mid = cfg.inCh * cfg.expand;
  return {
    expand: cfg.expand !== 1 ? convBnConfig({ inCh: cfg.inCh, outCh: mid, kernel: 1, act: 'silu' }, cfg) : null,
    dw: convBnConfig({ inCh: mid, outCh: mid, kernel: cfg.kernel, stride: cfg.stride, groups: mid, act: 'silu' }, cfg),
    se: { channels: mid, squeeze: Math.max(1, Math.floor(cfg.inCh * cfg.seRatio)) },
    project: convBnConfig({ inCh: mid, outCh: cfg.outCh, kernel: 1 }, cfg),
    skip: cfg.stride === 1 && cfg.inCh === cfg.outCh,
  };
}

export const mbconv = {
  init(key: Key, cfg: MBConvConfig, dtype: DType): { params: MBConvParams; state: MBConvState } {
    const parts = mbconvParts(cfg);
    const [ke, kd, ks, kp] = split(key, 4);
    const ex = parts.expand ? convBn.init(ke, parts.expand, dtype) : null;
    const dw = convBn.init(kd, parts.dw, dtype);
    const pr = convBn.init(kp, parts.project, dtype);
    const se = squeezeExcite.init(ks, parts.se, dtype);
    return {
      params: { ...(ex ? { expand: ex.params } : {}), dw: dw.params, se, project: pr.params },
      state: { ...(ex ? { expand: ex.state } : {}), dw: dw.state, project: pr.state },
    };
  },
  /** ctx.key (when training with dropRate > 0) drives the drop-connect mask of this block. */
  apply(cfg: MBConvConfig, p: MBConvParams, s: MBConvState, x: Tensor, ctx: Ctx): [Tensor, MBConvState] {
    const parts = mbconvParts(cfg);
    let h = x;
    let sEx: BatchNormState | undefined;
    if (parts.expand) [h, sEx] = convBn.apply(parts.expand, p.expand!, s.expand!, h, ctx);
    const [hd, sDw] = convBn.apply(parts.dw, p.dw, s.dw, h, ctx);
    const [hp, sPr] = convBn.apply(parts.project, p.project, s.project, squeezeExcite.apply(parts.se, p.se, hd), ctx);
    const y = parts.skip ? pipe(dropConnect(hp, cfg.dropRate, ctx), (r) => o.add(r, x)) : hp;
    return [y, { ...(sEx ? { expand: sEx } : {}), dw: sDw, project: sPr }];
  },
  paramCount(cfg: MBConvConfig): number {
    const parts = mbconvParts(cfg);
    return (parts.expand ? convBn.paramCount(parts.expand) : 0) + convBn.paramCount(parts.dw) + squeezeExcite.paramCount(parts.se) + convBn.paramCount(parts.project);
  },
  /** Multiply–accumulates for one image of input side h × w and output side oh × ow (expand, depthwise, SE, project). */
  macs(cfg: MBConvConfig, [h, w]: readonly [number, number], [oh, ow]: readonly [number, number]): number {
    const p = mbconvParts(cfg);
    const mid = p.dw.conv.outCh;
    return (p.expand ? cfg.inCh * mid * h * w : 0) + mid * cfg.kernel ** 2 * oh * ow + squeezeExcite.macs(p.se) + mid * cfg.outCh * oh * ow;
  },
};

// ---- as layers -----------------------------------------------------------------------------------

/** A conv-BN unit as an `nn.layers` Layer (state: the BN's running statistics); its output is tapped as `name`. */
export function convBnLayer(cfg: ConvBnConfig, kind: string, name: string): Layer<ConvBnParams, BatchNormState> {
  return {
    kind,
    init: (key, dtype = 'float32') => convBn.init(key, cfg, dtype),
    apply(p, s, x, ctx) {
      const [y, next] = convBn.apply(cfg, p, s, x, ctx);
      return [tapped(ctx, name, y), next];
    },
    describe(input) {
      const out = convProbe(kind, cfg.conv, input);
      return row(kind, out, convBn.paramCount(cfg), out.shape[0] * conv.macs(cfg.conv, out.shape[2], out.shape[3]));
    },
  };
}

/**
 * A run of MBConv blocks as one Layer, each block with its own weights: params and state are arrays,
 * block i draws its init key from `split(key, n)[i]` and its drop-connect key from `foldIn(ctx.key, i)`,
 * and its output is tapped (and shown in the summary) as `${name}.${i}`.
 */
export function mbconvBlocks(blocks: readonly MBConvConfig[], name: string): Layer<MBConvParams[], MBConvState[]> {
  return {
    kind: 'MBConv blocks',
    init(key, dtype = 'float32') {
      const ks = split(key, Math.max(blocks.length, 1));
      const inits = blocks.map((b, i) => mbconv.init(ks[i], b, dtype));
      return { params: inits.map((x) => x.params), state: inits.map((x) => x.state) };
    },
    apply(params, state, x, ctx) {
      const next: MBConvState[] = [];
      const y = blocks.reduce((h, b, i) => {
        const [out, s] = mbconv.apply(b, params[i], state[i], h, ctx.key ? { ...ctx, key: foldIn(ctx.key, i) } : ctx);
        next.push(s);
        return tapped(ctx, `${name}.${i}`, out);
      }, x);
      return [y, next];
    },
    describe(input) {
      const rows: LayerRow[] = [];
      const out = blocks.reduce((p, b, i) => {
        const parts = mbconvParts(b);
        const kind = `MBConv${b.expand} k${b.kernel} s${b.stride}${parts.skip ? ` +skip p=${b.dropRate.toFixed(3)}` : ''}`;
        // Spatially the block is its depthwise conv; the 1×1 convs map inCh to outCh.
        const q = convProbe(kind, { ...parts.dw.conv, inCh: b.inCh, outCh: b.outCh }, p);
        const macs = p.shape[0] * mbconv.macs(b, [p.shape[2], p.shape[3]], [q.shape[2], q.shape[3]]);
        rows.push({ ...row(kind, q, mbconv.paramCount(b), macs).rows[0], name: String(i) });
        return q;
      }, input);
      return { out, rows };
    },
  };
}
