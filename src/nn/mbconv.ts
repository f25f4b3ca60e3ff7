/**
 * Conv + batch norm (+ SiLU) units and the MBConv block of MobileNetV2 / EfficientNet:
 * expand 1×1 + BN + SiLU (ratio ≠ 1) → depthwise k×k + BN + SiLU → squeeze-excite →
 * project 1×1 + BN (no activation) → drop-connect + identity skip when stride 1 and in = out.
 */
import { pipe } from 'fp-ts/lib/function.js';
import type { DType } from '../backends/backend.ts';
import * as o from '../tensor/ops.ts';
import { type Key, split } from '../tensor/random.ts';
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
  silu,
  squeezeExcite,
} from './layers.ts';

// ---- conv + BN (+ SiLU) --------------------------------------------------------------------------

export interface ConvBnConfig {
  readonly conv: ConvConfig;
  readonly bn: BatchNormConfig;
  /** SiLU after the BN. */
  readonly act: boolean;
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

export const convBnConfig = (inCh: number, outCh: number, kernel: number, stride: number, groups: number, act: boolean, o_: BnOptions): ConvBnConfig => ({
  conv: { inCh, outCh, kernel, stride, groups, bias: false, padding: o_.padding },
  bn: { channels: outCh, eps: o_.bnEps, momentum: o_.bnMomentum },
  act,
});

export const convBn = {
  init(key: Key, cfg: ConvBnConfig, dtype: DType): { params: ConvBnParams; state: BatchNormState } {
    const bn = batchNorm.init(cfg.bn, dtype);
    return { params: { conv: conv.init(key, cfg.conv, dtype), bn: bn.params }, state: bn.state };
  },
  apply(cfg: ConvBnConfig, p: ConvBnParams, s: BatchNormState, x: Tensor, ctx: Ctx): [Tensor, BatchNormState] {
    // BN and SiLU run as one fused kernel.
    return batchNorm.apply(cfg.bn, p.bn, s, conv.apply(cfg.conv, p.conv, x), ctx, cfg.act ? 'silu' : undefined);
  },
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
    expand: cfg.expand !== 1 ? convBnConfig(cfg.inCh, mid, 1, 1, 1, true, cfg) : null,
    dw: convBnConfig(mid, mid, cfg.kernel, cfg.stride, mid, true, cfg),
    se: { channels: mid, squeeze: Math.max(1, Math.floor(cfg.inCh * cfg.seRatio)) },
    project: convBnConfig(mid, cfg.outCh, 1, 1, 1, false, cfg),
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
};
