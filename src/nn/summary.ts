/**
 * A torchinfo-like summary of a model: one row per stem, MBConv block, head, pooling and dense
 * layer with its output shape, parameter count and multiply–accumulates (convs and the dense layer;
 * BN, activations and pooling are not counted, as torchinfo does for element-wise ops), then totals
 * and the receptive field of the low-res and stochastic paths. Shapes are inferred from the config,
 * with no forward pass.
 */
import { type Shape, fmt } from '../tensor/shape.ts';
import { type ModelConfig, featureCount, headConfig, isPair, MIN_LOW_SIZE, stemConfig, stochSlice, stochStemConfig } from './efficientnet.ts';
import { convOutSize, linear } from './layers.ts';
import { type ConvBnConfig, type MBConvConfig, convBn, mbconv, mbconvParts } from './mbconv.ts';
import { type Model, modelConfig, modelNames, parameterCount } from './model.ts';
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
const rfStep = (rf: ReceptiveField, k: number, s: number): ReceptiveField => ({ size: rf.size + (k - 1) * rf.jump, jump: rf.jump * s });
/**
 * The stochastic path's field when it merges into a shared trunk: the trunk's own field (in units
 * of the merge point) is recovered from the low path's (before the merge: `pre`, after: `post`)
 * and composed with the stochastic path's field at the merge (`stoch`).
 */
const afterMerge = (pre: ReceptiveField, post: ReceptiveField, stoch: ReceptiveField): ReceptiveField => {
  const rest = { size: 1 + (post.size - pre.size) / pre.jump, jump: post.jump / pre.jump };
  return { size: stoch.size + (rest.size - 1) * stoch.jump, jump: stoch.jump * rest.jump };
};

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

interface Track {
  shape: [number, number, number, number];
  rf: ReceptiveField;
}

function convBnRow(rows: SummaryRow[], name: string, kind: string, cfg: ConvBnConfig, t: Track): Track {
  const [n, , h, w] = t.shape;
  const [oh, ow] = [convOutSize(cfg.conv, h), convOutSize(cfg.conv, w)];
  rows.push({ name, kind, out: [n, cfg.conv.outCh, oh, ow], params: convBn.paramCount(cfg), macs: (n * cfg.conv.outCh * oh * ow * cfg.conv.inCh * cfg.conv.kernel ** 2) / cfg.conv.groups });
  return { shape: [n, cfg.conv.outCh, oh, ow], rf: rfStep(t.rf, cfg.conv.kernel, cfg.conv.stride) };
}

function blockRows(rows: SummaryRow[], prefix: string, blocks: readonly MBConvConfig[], offset: number, t: Track): Track {
  let cur = t;
  blocks.forEach((b, i) => {
    const p = mbconvParts(b);
    const [n, , h, w] = cur.shape;
    const [oh, ow] = [convOutSize(p.dw.conv, h), convOutSize(p.dw.conv, w)];
    const mid = p.dw.conv.outCh;
    const macs = n * ((p.expand ? b.inCh * mid * h * w : 0) + mid * b.kernel ** 2 * oh * ow + 2 * mid * p.se.squeeze + mid * b.outCh * oh * ow);
    rows.push({
      name: `${prefix}.${i + offset}`,
      kind: `MBConv${b.expand} k${b.kernel} s${b.stride}${p.skip ? ` +skip p=${b.dropRate.toFixed(3)}` : ''}`,
      out: [n, b.outCh, oh, ow],
      params: mbconv.paramCount(b),
      macs,
    });
    cur = { shape: [n, b.outCh, oh, ow], rf: rfStep(cur.rf, b.kernel, b.stride) };
  });
  return cur;
}

const inputShapes = (cfg: ModelConfig, input: SummaryInput | undefined): { low: number[] | null; high: number[] | null } => {
  const c = cfg.inChannels;
  if (input === undefined) {
    if (cfg.arch === 'pure-stochastic') return { low: null, high: [1, c, cfg.lowSize, cfg.lowSize] };
    return { low: [1, c, cfg.lowSize, cfg.lowSize], high: isPair(cfg) ? [1, c, cfg.highSize!, cfg.highSize!] : null };
  }
  const bad = (got: string) => new Error(`summary(${cfg.name}): input shape ${got} does not fit the model`);
  const check = (s: readonly number[], min: number) => {
    if (s.length !== 4 || s[1] !== c || s[2] < min || s[3] < min) throw bad(fmt(s));
    return [...s];
  };
  if (Array.isArray(input)) {
    if (isPair(cfg)) throw bad(`${fmt(input as number[])} (the model takes { low, high })`);
    return cfg.arch === 'pure-stochastic' ? { low: null, high: check(input as number[], stochSlice(cfg)) } : { low: check(input as number[], MIN_LOW_SIZE), high: null };
  }
  const pair = input as { low: readonly number[]; high: readonly number[] };
  if (!isPair(cfg)) throw bad('{ low, high } (the model takes one tensor)');
  return { low: check(pair.low, MIN_LOW_SIZE), high: check(pair.high, stochSlice(cfg)) };
};

/** The rows and totals of a summary (see `summary` for the printed table). */
export function summaryData(model: Model, input?: SummaryInput): SummaryData {
  return { ...configSummary(model.config, input), stateSize: treeLeaves(model.state).reduce((p, t) => p + t.size, 0) };
}

/** summaryData from the config alone (no weights needed). */
export function configSummary(cfg: ModelConfig, input?: SummaryInput): Omit<SummaryData, 'stateSize'> {
  const { low, high } = inputShapes(cfg, input);
  const rows: SummaryRow[] = [];
  const start = (s: number[]): Track => ({ shape: s as Track['shape'], rf: { size: 1, jump: 1 } });
  const stochRow = (name: string, t: Track): Track => {
    const out = cfg.stochOutSize!;
    const n = t.shape[0];
    const sc = stochStemConfig(cfg);
    rows.push({ name, kind: `StochasticConv${sc.conv.kernel}x${sc.conv.kernel} s${sc.conv.stride} (${stochSlice(cfg)}² windows${cfg.perImage ? ', per image' : ', per batch'}) + BN + SiLU`, out: [n, cfg.stemCh, out, out], params: convBn.paramCount(sc), macs: n * cfg.stemCh * out * out * cfg.inChannels * sc.conv.kernel ** 2 });
    return { shape: [n, cfg.stemCh, out, out], rf: rfStep(t.rf, sc.conv.kernel, sc.conv.stride) };
  };
  const stemKind = `Conv3x3 s2 + BN + SiLU`;
  const head = (name: string, t: Track): Track => {
    const r = convBnRow(rows, name, 'Conv1x1 + BN + SiLU', headConfig(cfg), t);
    return r;
  };
  const concat = (name: string, a: Track, b: Track): Track => {
    const [n, c1, h, w] = a.shape;
    if (b.shape[2] !== h || b.shape[3] !== w) throw new Error(`summary(${cfg.name}): the low-res path ${fmt(a.shape)} and the stochastic path ${fmt(b.shape)} cannot be concatenated`);
    const shape: Track['shape'] = [n, c1 + b.shape[1], h, w];
    rows.push({ name, kind: 'Concat (channels)', out: shape, params: 0, macs: 0 });
    return { shape, rf: a.rf };
  };
  let rfLow: ReceptiveField | null = null;
  let rfStoch: ReceptiveField | null = null;
  let n = 0;
  switch (cfg.arch) {
    case 'plain':
    case 'pure-stochastic': {
      let t = cfg.arch === 'plain' ? convBnRow(rows, 'stem', stemKind, stemConfig(cfg), start(low!)) : stochRow('stochStem', start(high!));
      t = head('head', blockRows(rows, 'blocks', cfg.blocks, 0, t));
      if (cfg.arch === 'plain') rfLow = t.rf;
      else rfStoch = t.rf;
      n = t.shape[0];
      break;
    }
    case 'stochastic-stem': {
      const a = convBnRow(rows, 'stem', stemKind, stemConfig(cfg), start(low!));
      const b = stochRow('stochStem', start(high!));
      const t = head('head', blockRows(rows, 'blocks', cfg.blocks, 0, concat('concat', a, b)));
      [rfLow, rfStoch] = [t.rf, afterMerge(a.rf, t.rf, b.rf)];
      n = t.shape[0];
      break;
    }
    case 'stochastic-skip': {
      const own = cfg.blocks.slice(0, cfg.skipBlocks);
      const a = blockRows(rows, 'lowBlocks', own, 0, convBnRow(rows, 'stem', stemKind, stemConfig(cfg), start(low!)));
      const b = blockRows(rows, 'stochBlocks', own, 0, stochRow('stochStem', start(high!)));
      const m = concat('concat', a, b);
      const t = head('head', blockRows(rows, 'blocks', cfg.blocks.slice(cfg.skipBlocks), 0, m));
      [rfLow, rfStoch] = [t.rf, afterMerge(a.rf, t.rf, b.rf)];
      n = t.shape[0];
      break;
    }
    case 'full-split': {
      const a = head('low.head', blockRows(rows, 'low.blocks', cfg.blocks, 0, convBnRow(rows, 'low.stem', stemKind, stemConfig(cfg), start(low!))));
      const b = head('stoch.head', blockRows(rows, 'stoch.blocks', cfg.blocks, 0, stochRow('stoch.stem', start(high!))));
      [rfLow, rfStoch] = [a.rf, b.rf];
      n = a.shape[0];
      rows.push({ name: 'pool', kind: 'GlobalAvgPool ×2 + Concat', out: [n, featureCount(cfg)], params: 0, macs: 0 });
      break;
    }
  }
  if (cfg.arch !== 'full-split') rows.push({ name: 'pool', kind: 'GlobalAvgPool', out: [n, featureCount(cfg)], params: 0, macs: 0 });
  rows.push({ name: 'dropout', kind: `Dropout(${cfg.dropout})`, out: [n, featureCount(cfg)], params: 0, macs: 0 });
  const fc = { inFeatures: featureCount(cfg), outFeatures: cfg.numClasses, bias: true };
  rows.push({ name: 'fc', kind: 'Linear', out: [n, cfg.numClasses], params: linear.paramCount(fc), macs: n * fc.inFeatures * fc.outFeatures });
  return {
    rows,
    totalParams: rows.reduce((p, r) => p + r.params, 0),
    totalMacs: rows.reduce((p, r) => p + r.macs, 0),
    rfLow,
    rfStoch,
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
    const inputs =
      cfg.arch === 'pure-stochastic'
        ? `${cfg.lowSize}² (high-res only)`
        : isPair(cfg)
          ? `${cfg.lowSize}² + ${cfg.highSize}²`
          : `${cfg.lowSize}²`;
    const stoch = cfg.stochOutSize ? `${cfg.stemCh} ch, ${stochSlice(cfg)}² windows → ${cfg.stochOutSize}²` : '—';
    return `| \`${name}\` | ${cfg.arch} | ${inputs} | ${stoch} | [N, ${cfg.numClasses}] | ${num(sum.totalParams)} | ${mega(sum.totalMacs)} |`;
  });
  return [
    '| model | architecture | input (px) | stochastic stem | output | parameters (1 output) | mult-adds / image |',
    '|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}
