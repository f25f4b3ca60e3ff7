/**
 * torchvision `efficientnet_bN` state dicts ↔ our models. torchvision pads symmetrically
 * ((k − 1)/2 per side) and uses BN eps 1e-5 / momentum 0.1 for B0–B4 (eps 1e-3 / momentum 0.01
 * for B5–B7, whose weights were ported from TensorFlow), so an imported model carries those in its
 * config and reproduces torchvision exactly.
 *
 * Key layout: features.0 = stem (0: conv, 1: BN); features.{s+1}.{j}.block = MBConv j of stage s
 * with parts [expand (ratio ≠ 1)], depthwise, SE (fc1, fc2 with biases), project — each conv part
 * `.0.weight` + BN `.1.{weight,bias,running_mean,running_var,num_batches_tracked}`;
 * features.8 = head; classifier.1 = the dense layer (classifier.0 is dropout).
 */
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import type { DType } from '../backends/backend.ts';
import { Int64Array, type Leaf } from '../io/safetensors.ts';
import { flattenWithPath, isContainer, keystr } from '../autograd/pytree.ts';
import { cast } from '../tensor/ops.ts';
import { fmt, shapesEqual } from '../tensor/shape.ts';
import { Tensor } from '../tensor/tensor.ts';
import { type ModelConfig, type Variant, B0_STAGES, buildConfig, featureCount, headConfig, stemConfig, variants } from './efficientnet.ts';
import { conv } from './layers.ts';
import { type ConvBnConfig, mbconvParts } from './mbconv.ts';
import type { Model } from './model.ts';

type Path = readonly (string | number)[];
interface Entry {
  readonly key: string;
  /** 'params' or 'state', then the path inside that tree. */
  readonly tree: 'params' | 'state';
  readonly path: Path;
  readonly shape: readonly number[];
}

/** torchvision's BN settings per variant. */
export const torchvisionBn = (variant: Variant): { bnEps: number; bnMomentum: number } =>
  ['b5', 'b6', 'b7'].includes(variant) ? { bnEps: 1e-3, bnMomentum: 0.01 } : { bnEps: 1e-5, bnMomentum: 0.1 };

/** The config torchvision's efficientnet_bN builds (symmetric padding, its BN eps and momentum). */
export const torchvisionConfig = (variant: Variant, numClasses: number, dtype: DType = 'float32', extra: { dropout?: number; dropConnectRate?: number } = {}): ModelConfig =>
  buildConfig(variant, variant, 'plain', { numClasses, padding: 'symmetric', ...torchvisionBn(variant), dtype, ...extra });

function convBnEntries(prefix: string, cfg: ConvBnConfig, path: Path): Entry[] {
  const c = [cfg.bn.channels];
  return [
    { key: `${prefix}.0.weight`, tree: 'params', path: [...path, 'conv', 'w'], shape: conv.weightShape(cfg.conv) },
    { key: `${prefix}.1.weight`, tree: 'params', path: [...path, 'bn', 'scale'], shape: c },
    { key: `${prefix}.1.bias`, tree: 'params', path: [...path, 'bn', 'bias'], shape: c },
    { key: `${prefix}.1.running_mean`, tree: 'state', path: [...path, 'mean'], shape: c },
    { key: `${prefix}.1.running_var`, tree: 'state', path: [...path, 'var'], shape: c },
  ];
}

/** Every tensor of a torchvision state dict for a plain config, with where it lives in our trees. */
export function torchvisionEntries(cfg: ModelConfig): Entry[] {
  if (cfg.arch !== 'plain') throw new Error(`torchvision: only plain EfficientNets have a torchvision counterpart, not '${cfg.name}' (${cfg.arch})`);
  const out: Entry[] = [...convBnEntries('features.0', stemConfig(cfg), ['stem'])];
  cfg.blocks.forEach((b, i) => {
    const parts = mbconvParts(b);
    const prefix = `features.${b.stage + 1}.${b.index}.block`;
    let t = 0;
    const at: Path = ['blocks', i];
    if (parts.expand) out.push(...convBnEntries(`${prefix}.${t++}`, parts.expand, [...at, 'expand']));
    out.push(...convBnEntries(`${prefix}.${t++}`, parts.dw, [...at, 'dw']));
    const se = `${prefix}.${t++}`;
    const { channels: c, squeeze: q } = parts.se;
    out.push(
      { key: `${se}.fc1.weight`, tree: 'params', path: [...at, 'se', 'reduce', 'w'], shape: [q, c, 1, 1] },
      { key: `${se}.fc1.bias`, tree: 'params', path: [...at, 'se', 'reduce', 'b'], shape: [q] },
      { key: `${se}.fc2.weight`, tree: 'params', path: [...at, 'se', 'expand', 'w'], shape: [c, q, 1, 1] },
      { key: `${se}.fc2.bias`, tree: 'params', path: [...at, 'se', 'expand', 'b'], shape: [c] },
    );
    out.push(...convBnEntries(`${prefix}.${t++}`, parts.project, [...at, 'project']));
  });
  out.push(
    ...convBnEntries(`features.${B0_STAGES.length + 1}`, headConfig(cfg), ['head']),
    { key: 'classifier.1.weight', tree: 'params', path: ['fc', 'w'], shape: [cfg.numClasses, featureCount(cfg)] },
    { key: 'classifier.1.bias', tree: 'params', path: ['fc', 'b'], shape: [cfg.numClasses] },
  );
  // BN state paths: our state tree has no 'bn' level (state.stem = { mean, var }).
  return out.map((e) => (e.tree === 'state' ? { ...e, path: e.path.filter((p) => p !== 'bn') } : e));
}

/** BN buffers PyTorch keeps that we do not (accepted on import, written as 0 on export). */
const isBatchCounter = (k: string) => k.endsWith('.num_batches_tracked');

/** Flattens nested records/arrays or a flat state dict (dotted keys) or a Map to name → leaf. */
function flattenWeights(weights: unknown): Map<string, unknown> {
  if (weights instanceof Map) return new Map([...weights].map(([k, v]) => [String(k), v]));
  return new Map(flattenWithPath(weights, (x): x is unknown => !isContainer(x))[0].map(([p, x]) => [keystr(p), x]));
}

export interface KeyProblem {
  readonly key: string;
  readonly problem: 'missing' | 'unexpected' | 'shape' | 'not a tensor';
  readonly expected: readonly number[] | null;
  readonly found: readonly number[] | null;
}
export interface TorchvisionKeyError {
  readonly _tag: 'TorchvisionKeyError';
  readonly variant: string;
  readonly problems: readonly KeyProblem[];
}

export const formatTorchvisionKeyError = (e: TorchvisionKeyError): string =>
  `fromTorchvision('${e.variant}'): the weights do not match torchvision's efficientnet_${e.variant} (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}):\n` +
  e.problems
    .map((p) => `  ${p.key}: ${p.problem}${p.expected || p.found ? ` (expected ${p.expected ? fmt(p.expected) : 'nothing'}, found ${p.found ? fmt(p.found) : 'nothing'})` : ''}`)
    .join('\n');

const setPath = (root: Record<string, any>, path: Path, v: unknown) => {
  let node = root;
  path.slice(0, -1).forEach((p, i) => {
    if (node[p as string] === undefined) node[p as string] = typeof path[i + 1] === 'number' ? [] : {};
    node = node[p as string];
  });
  node[path[path.length - 1] as string] = v;
};
const getPath = (root: unknown, path: Path): unknown => path.reduce<any>((n, p) => (n == null ? n : n[p as string]), root);

export interface FromTorchvisionOptions {
  /** Dtype of the model (default float32); weights are cast. */
  readonly dtype?: DType;
  /** Override torchvision's dropout / final stochastic-depth rate (e.g. 0 for gradient parity). */
  readonly dropout?: number;
  readonly dropConnectRate?: number;
}

/**
 * A model from a torchvision `efficientnet_bN` state dict (nested tree from io.loadTree, a
 * flat record with dotted keys, or a Map). The number of classes is read from classifier.1.weight.
 * Either form: a Left lists every missing, unexpected and mis-shaped key.
 */
export function fromTorchvisionE(variant: string, weights: unknown, opts: FromTorchvisionOptions = {}): E.Either<TorchvisionKeyError, Model> {
  if (!variants.includes(variant as Variant)) throw new Error(`fromTorchvision: unknown variant '${variant}' (${variants.join(', ')})`);
  const v = variant as Variant;
  const flat = flattenWeights(weights);
  const cls = flat.get('classifier.1.weight');
  const numClasses = cls instanceof Tensor && cls.rank === 2 ? cls.shape[0] : 1000;
  const config = torchvisionConfig(v, numClasses, opts.dtype ?? 'float32', opts);
  const entries = torchvisionEntries(config);
  const problems: KeyProblem[] = [];
  const trees = { params: {} as Record<string, any>, state: {} as Record<string, any> };
  const known = new Set(entries.map((e) => e.key));
  for (const e of entries) {
    const t = flat.get(e.key);
    if (t === undefined) problems.push({ key: e.key, problem: 'missing', expected: e.shape, found: null });
    else if (!(t instanceof Tensor)) problems.push({ key: e.key, problem: 'not a tensor', expected: e.shape, found: t instanceof Int64Array ? t.shape : null });
    else if (!shapesEqual(t.shape, e.shape)) problems.push({ key: e.key, problem: 'shape', expected: e.shape, found: t.shape });
    else setPath(trees[e.tree], e.path, t.dtype === config.dtype ? t : cast(t, config.dtype));
  }
  for (const [k, t] of flat) {
    if (known.has(k)) continue;
    if (isBatchCounter(k) && known.has(k.replace(/num_batches_tracked$/, 'running_mean'))) continue;
    problems.push({ key: k, problem: 'unexpected', expected: null, found: t instanceof Tensor || t instanceof Int64Array ? t.shape : null });
  }
  if (problems.length) return E.left({ _tag: 'TorchvisionKeyError', variant: v, problems });
  return E.right({ config, params: trees.params as Model['params'], state: trees.state });
}

/** fromTorchvisionE that throws one Error listing every offending key. */
export const fromTorchvision = (variant: string, weights: unknown, opts?: FromTorchvisionOptions): Model =>
  pipe(
    fromTorchvisionE(variant, weights, opts),
    E.getOrElse<TorchvisionKeyError, Model>((e) => {
      throw new Error(formatTorchvisionKeyError(e));
    }),
  );

/**
 * A torchvision state dict (flat, dotted keys; float tensors plus I64 num_batches_tracked = 0) for
 * a plain model; save it with io.writeTensors. Note torchvision pads symmetrically: a model
 * built with 'same' padding exports fine but computes differently there.
 */
export function toTorchvision(model: Model): Record<string, Leaf> {
  const out: Record<string, Leaf> = {};
  for (const e of torchvisionEntries(model.config)) {
    const t = getPath(model[e.tree], e.path);
    if (!(t instanceof Tensor) || !shapesEqual(t.shape, e.shape)) {
      throw new Error(`toTorchvision: ${e.tree}.${e.path.join('.')} should be a tensor ${fmt(e.shape)} for ${e.key}, found ${t instanceof Tensor ? fmt(t.shape) : String(t)}`);
    }
    out[e.key] = t;
    if (e.key.endsWith('.running_var')) out[e.key.replace(/running_var$/, 'num_batches_tracked')] = new Int64Array([], new BigInt64Array(1));
  }
  return out;
}
