/**
 * A torchinfo-like summary of a model: one row per stem, MBConv block, head, pooling and dense
 * layer with its output shape, parameter count and multiply–accumulates (convs and the dense layer;
 * BN, activations and pooling are not counted, as torchinfo does for element-wise ops), then totals
 * and the receptive field of the low-res and stochastic paths. Shapes are inferred from the config,
 * with no forward pass.
 */
import { type Shape, fmt } from '../tensor/shape.ts';
import { modelNames } from './archs.ts';
import { type ModelConfig, describeModel, isPair, minSide, stochSlice } from './efficientnet.ts';
import { type Model, modelConfig, parameterCount } from './model.ts';
import { treeLeaves } from '../autograd/pytree.ts';
import { type Network, isNetwork, networkSummary } from './combinators.ts';

export interface SummaryRow {
  readonly name: string;
  readonly kind: string;
  readonly out: Shape;
  readonly params: number;
  readonly macs: number;
}

/** Receptive field (side, in input pixels) and jump (input pixels per output step) of a conv chain. */
export interface ReceptiveField {
  readonly size: number;
  readonly jump: number;
}

export interface SummaryData {
  readonly rows: readonly SummaryRow[];
  readonly totalParams: number;
  readonly stateSize: number;
  readonly totalMacs: number;
  /** Conv-chain receptive field of the low-res path (null when there is none), in low-res pixels. */
  readonly rfLow: ReceptiveField | null;
  /** Of the stochastic path, in high-res pixels inside each channel's window (null when there is none). */
  readonly rfStoch: ReceptiveField | null;
}

export type SummaryInput = readonly number[] | { readonly low: readonly number[]; readonly high: readonly number[] };

/** The input shapes a summary describes: `input` checked against the model, or its default sides with N = 1. */
function inputShapes(cfg: ModelConfig, input: SummaryInput | undefined): { low: Shape | null; high: Shape | null } {
  const c = cfg.inChannels;
  const sides = cfg.sides;
  if (input === undefined) {
    const shape = (s: number | null) => (s === null ? null : [1, c, s, s]);
    return { low: shape(sides.low), high: shape(sides.high) };
  }
  const bad = (got: string) => new Error(`summary(${cfg.name}): input shape ${got} does not fit the model`);
  const check = (s: readonly number[], image: 'low' | 'high') => {
    const min = minSide(cfg, image);
    if (s.length !== 4 || s[1] !== c || s[2] < min || s[3] < min) throw bad(fmt(s));
    return [...s];
  };
  if (Array.isArray(input)) {
    if (isPair(cfg)) throw bad(`${fmt(input as number[])} (the model takes { low, high })`);
    return sides.low === null ? { low: null, high: check(input as number[], 'high') } : { low: check(input as number[], 'low'), high: null };
  }
  const pair = input as { low: readonly number[]; high: readonly number[] };
  if (!isPair(cfg)) throw bad('{ low, high } (the model takes one tensor)');
  return { low: check(pair.low, 'low'), high: check(pair.high, 'high') };
}

/** The rows and totals of a summary (see `summary` for the printed table). */
export function summaryData(model: Model, input?: SummaryInput): SummaryData {
  return { ...configSummary(model.config, input), stateSize: treeLeaves(model.state).reduce((p, t) => p + t.size, 0) };
}

/** summaryData from the config alone (no weights needed). */
export function configSummary(cfg: ModelConfig, input?: SummaryInput): Omit<SummaryData, 'stateSize'> {
  const { rows, rf } = describeModel(cfg, inputShapes(cfg, input));
  return {
    rows,
    totalParams: rows.reduce((p, r) => p + r.params, 0),
    totalMacs: rows.reduce((p, r) => p + r.macs, 0),
    rfLow: rf.low,
    rfStoch: rf.high,
  };
}

const num = (v: number) => v.toLocaleString('en-US');
const mega = (v: number) => (v >= 1e9 ? `${(v / 1e9).toFixed(2)} G` : `${(v / 1e6).toFixed(2)} M`);

/**
 * The printed table (torchinfo's layout). `input`: [N, C, H, W] for one-input models,
 * { low, high } for pair models; default: the config's sizes with N = 1. Networks built with
 * `nn.layers` get their own table, with each layer's receptive field.
 * @example console.log(nn.summary(nn.createModel('b0-full-split', { key: random.key(0) })))
 */
export function summary(model: Model | Network, input?: SummaryInput): string {
  if (isNetwork(model)) return networkSummary(model, input as readonly number[] | undefined);
  const cfg = model.config;
  const d = summaryData(model, input);
  const counted = parameterCount(model);
  if (counted !== d.totalParams) throw new Error(`summary(${cfg.name}): rows add up to ${d.totalParams} parameters but the model has ${counted}`);
  const { low, high } = inputShapes(cfg, input);
  const head = ['Layer (type)', 'Output Shape', 'Param #', 'Mult-Adds'];
  const body = d.rows.map((r) => [`${r.name} (${r.kind})`, fmt(r.out), num(r.params), num(r.macs)]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ');
  const total = widths.reduce((p, w) => p + w, 0) + 3 * (widths.length - 1);
  const rule = (ch: string) => ch.repeat(total);
  const inputs = [low ? `low ${fmt(low)}` : null, high ? `high ${fmt(high)}` : null].filter(Boolean).join(', ');
  const rf = (label: string, r: ReceptiveField | null, unit: string) =>
    r ? `Receptive field (${label}): ${r.size} × ${r.size} ${unit} (jump ${r.jump}; conv chain, before SE and pooling, which are global)` : null;
  return [
    `${cfg.name} — EfficientNet-${cfg.variant.toUpperCase()} ${cfg.arch}, ${cfg.numClasses} output${cfg.numClasses === 1 ? '' : 's'}, padding '${cfg.padding}', BN eps ${cfg.bnEps}; input: ${inputs}`,
    rule('='),
    line(head),
    rule('='),
    ...body.map(line),
    rule('='),
    `Total params: ${num(d.totalParams)}`,
    `Trainable params: ${num(d.totalParams)}`,
    `Non-trainable state (BN running stats): ${num(d.stateSize)}`,
    `Total mult-adds: ${mega(d.totalMacs)} (${num(d.totalMacs)})`,
    rule('-'),
    rf('low-res path', d.rfLow, 'px of the low-res image'),
    rf('stochastic path', d.rfStoch, `px in window coordinates of the high-res image; each stochastic channel reads one ${cfg.stochOutSize ? stochSlice(cfg) : 0} × ${cfg.stochOutSize ? stochSlice(cfg) : 0} window`),
    rule('='),
  ]
    .filter((l): l is string => l !== null)
    .join('\n');
}

/**
 * The architecture table (markdown) for the README / docs/models.md: every paper model with one
 * output at its default sizes — inputs, output shape, parameters and mult-adds per image.
 */
export function modelTable(): string {
  const rows = modelNames.map((name) => {
    const cfg = modelConfig(name);
    const sum = configSummary(cfg);
    const { low, high } = cfg.sides;
    const inputs = low === null ? `${high}² (high-res only)` : high === null ? `${low}²` : `${low}² + ${high}²`;
    const stoch = cfg.stochOutSize ? `${cfg.stemCh} ch, ${stochSlice(cfg)}² windows → ${cfg.stochOutSize}²` : '—';
    return `| \`${name}\` | ${cfg.arch} | ${inputs} | ${stoch} | [N, ${cfg.numClasses}] | ${num(sum.totalParams)} | ${mega(sum.totalMacs)} |`;
  });
  return [
    '| model | architecture | input (px) | stochastic stem | output | parameters (1 output) | mult-adds / image |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
