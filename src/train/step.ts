/**
 * One optimizer step and one pass of predictions: a batch is split into micro-batches whose
 * gradients (of the summed loss / batch size) are added up, with the batch-norm state threaded
 * through them; each micro-batch's forward and backward pass is compiled once per shape.
 *
 * Randomness: every key is folded from the run's root key by position — (epoch, step,
 * micro-batch) in training, (batch, pass, chunk) in validation — and the data loader derives its
 * order and augmentations from (seed, epoch, position). Nothing depends on what ran before, so a
 * run resumed from a checkpoint at step s of epoch e continues bit for bit.
 */
import { getBackend } from '../backends/backend.ts';
import type { Tensor } from '../tensor/tensor.ts';
import { data } from '../tensor/tensor.ts';
import * as o from '../tensor/ops.ts';
import { type Key, foldIn, key as makeKey } from '../tensor/random.ts';
import { treeMap } from '../autograd/pytree.ts';
import { valueAndGrad } from '../autograd/transforms.ts';
import { type Jitted, jit, shapeOnly } from '../jit/jit.ts';
import { apply } from '../nn/model.ts';
import { type Input, type ModelConfig, type Params, type State, inputAt, inputOf } from '../nn/efficientnet.ts';
import type { Batch } from '../data/loader.ts';
import { renderDataError } from '../data/errors.ts';
import { type LossSpec, type TargetLossFn, makeTargetLoss, probabilities, targetsFor } from './losses.ts';
import { clipByGlobalNorm, compiledUpdate, type OptState, type Optimizer } from './optim.ts';

// ---- keys ----------------------------------------------------------------------------------------

/** Streams of the run's root key, kept apart from the data loader's (which folds the epoch in first). */
const STREAM = { init: 0xe0000001, train: 0xe0000002, val: 0xe0000003 } as const;
export const rootKey = (seed: number): Key => makeKey(seed);
export const initKey = (seed: number): Key => foldIn(rootKey(seed), STREAM.init);
export const trainKey = (seed: number, epoch: number, step: number, micro: number): Key =>
  foldIn(foldIn(foldIn(foldIn(rootKey(seed), STREAM.train), epoch), step), micro);
/** Validation keys do not depend on the epoch: every epoch is scored with the same windows. */
export const evalKey = (seed: number, batch: number, pass: number, chunk: number): Key =>
  foldIn(foldIn(foldIn(foldIn(rootKey(seed), STREAM.val), batch), pass), chunk);

// ---- one step ------------------------------------------------------------------------------------

/** The model's input from a batch (rows [from, from + n)) of a loader made with the model's sides. */
export function batchInput(mc: ModelConfig, b: Batch, from = 0, n = b.labels.length): Input {
  const take = (image: 'low' | 'high') => {
    const x = b[image];
    if (mc.sides[image] === null) return null;
    if (!x) throw new Error(`${mc.name}: the loader gave no ${image}-res images (make it with the model's sides)`);
    return from === 0 && n === x.shape[0] ? x : o.slice(x, [from, 0, 0, 0], [n, x.shape[1], x.shape[2], x.shape[3]]);
  };
  return inputOf({ low: take('low'), high: take('high') });
}

export interface StepResult {
  readonly params: Params;
  readonly state: State;
  readonly opt: OptState;
  /** Sum of the per-image losses of the batch. */
  readonly lossSum: number;
  /** Host logits, row-major [B, classes]. */
  readonly logits: Float32Array;
  readonly gradNorm: number | null;
}

/**
 * Micro-batch sizes for a batch of B: `micro` each, except that a trailing single image joins
 * the previous micro-batch (batch norm in training mode needs more than one value per channel,
 * and the last feature maps of small inputs are 1 × 1).
 */
export function microBatches(B: number, micro: number): number[] {
  const out: number[] = [];
  for (let from = 0; from < B; from += micro) out.push(Math.min(micro, B - from));
  if (out.length > 1 && out[out.length - 1] === 1) {
    out.pop();
    out[out.length - 1] += 1;
  }
  return out;
}

/** What one micro-batch's forward and backward pass returns. */
interface MicroResult {
  readonly loss: Tensor;
  readonly state: State;
  readonly logits: Tensor;
  readonly grads: Params;
}

/**
 * One micro-batch's loss (scaled by `scale`, 1 / batch size), logits, new BN state and gradients,
 * as a function of tensors and a key only — the unit `jit` compiles: one entry per micro-batch
 * shape (a smaller last micro-batch compiles once more), reused across steps and epochs.
 */
function microStep(mc: ModelConfig, loss: TargetLossFn) {
  return (params: Params, state: State, input: Input, targets: Tensor, scale: Tensor, key: Key): MicroResult => {
    const [[lossT, aux], grads] = valueAndGrad(
      (p: Params) => {
        const [lg, ns] = apply(mc, p, state, input, { training: true, key });
        return [o.mul(loss(lg, targets), scale), { state: ns, logits: lg }] as [Tensor, { state: State; logits: Tensor }];
      },
      { hasAux: true },
    )(params);
    return { loss: lossT, state: aux.state, logits: aux.logits, grads };
  };
}

/** The compiled micro-step of a model and loss, made once and kept while both live. */
type MicroStep = ReturnType<typeof microStep>;
const compiledSteps = new WeakMap<ModelConfig, WeakMap<LossSpec, Jitted<Parameters<MicroStep>, MicroResult>>>();
function compiledStep(mc: ModelConfig, spec: LossSpec): Jitted<Parameters<MicroStep>, MicroResult> {
  let byLoss = compiledSteps.get(mc);
  if (!byLoss) compiledSteps.set(mc, (byLoss = new WeakMap()));
  let f = byLoss.get(spec);
  if (!f) byLoss.set(spec, (f = jit(microStep(mc, makeTargetLoss(spec)))));
  return f;
}

/**
 * The bytes a compiled micro-step may keep in wasm32 linear memory (which ends at 4 GiB on Node 20
 * without memory64): its arena of intermediates, with 256 MiB left for the kernels' own buffers.
 * Inputs (the 1024² images too), parameters and outputs live outside the arena.
 */
export const MICRO_BATCH_BUDGET_BYTES = 4 * 2 ** 30 - 256 * 2 ** 20;

/** Live intermediate bytes of the compiled train micro-step at micro-batch `n` (traced on shapes only; the entry is kept for the run). */
export function microStepArenaBytes(mc: ModelConfig, spec: LossSpec, params: Params, state: State, n: number): number {
  const input = inputAt(mc.sides, (s, image) => shapeOnly([n, 3, s, s], image === 'high' && highBytes() ? 'uint8' : mc.dtype));
  const targets = shapeOnly([n, spec.numClasses === 1 ? 1 : spec.numClasses], mc.dtype);
  return compiledStep(mc, spec).lower(params, state, input, targets, shapeOnly([], mc.dtype), makeKey(0)).memory.intermediateBytes;
}

/**
 * Whether the trainer's loaders give the high-res view as uint8 bytes (`highBytes`): on the cpu backend, whose
 * stochastic kernels read bytes (a quarter of the memory and reads); the gpu backend's read floats.
 */
export const highBytes = (): boolean => getBackend().name === 'cpu';

/**
 * The largest micro-batch ≤ `micro` whose step fits `budget` bytes (`bytesAt(n)`): intermediates
 * grow linearly with the batch, so each try scales n by budget / bytes (and at least one less).
 * At least 2 (batch norm needs two values per channel); throws if even 2 does not fit.
 */
export function fitMicroBatch(bytesAt: (n: number) => number, micro: number, budget = MICRO_BATCH_BUDGET_BYTES): number {
  for (let n = micro; ; ) {
    const b = bytesAt(n);
    if (b <= budget) return n;
    if (n <= 2) throw new Error(`micro-batch: even 2 images need ${(b / 2 ** 30).toFixed(2)} GiB of intermediates, over the ${(budget / 2 ** 30).toFixed(2)} GiB budget; lower --img-size or --hr-size`);
    n = Math.max(2, Math.min(n - 1, Math.floor((n * budget) / b)));
  }
}

/**
 * One optimizer step over a batch with gradient accumulation over micro-batches. Each
 * micro-batch's forward and backward pass runs compiled (`jit`, unless `jit: false`), and so does
 * the optimizer update (`compiledUpdate`: the learning rate and step-count terms go in as scalar
 * tensors); the accumulation and clipping run eagerly. The logits and the loss are read back
 * asynchronously (`data`), so a device backend does not block the thread.
 */
export async function trainStep(args: {
  mc: ModelConfig;
  params: Params;
  state: State;
  opt: OptState;
  optimizer: Optimizer;
  loss: LossSpec;
  batch: Batch;
  lr: number;
  microBatch: number;
  clip: number | null;
  keyFor: (micro: number) => Key;
  jit?: boolean;
}): Promise<StepResult> {
  const { mc, batch } = args;
  const B = batch.labels.length;
  const C = mc.numClasses;
  const step = args.jit === false ? microStep(mc, makeTargetLoss(args.loss)) : compiledStep(mc, args.loss);
  let state = args.state;
  let grads: Params | null = null;
  let lossSum = 0;
  const logits = new Float32Array(B * C);
  const chunks = microBatches(B, args.microBatch);
  for (let m = 0, from = 0; m < chunks.length; from += chunks[m], m++) {
    const n = chunks[m];
    const input = batchInput(mc, batch, from, n);
    const targets = targetsFor(args.loss, batch.labels.subarray(from, from + n), mc.dtype);
    const r = step(args.params, state, input, targets, o.full([], 1 / B, mc.dtype), args.keyFor(m));
    state = r.state;
    logits.set(await data(r.logits), from * C);
    lossSum += (await data(r.loss))[0] * B;
    grads = grads ? (treeMap((a: Tensor, b: Tensor) => o.add(a, b), grads, r.grads) as Params) : r.grads;
  }
  let gradNorm: number | null = null;
  if (args.clip !== null) [grads, gradNorm] = await clipByGlobalNorm(grads!, args.clip);
  const update = args.jit === false ? args.optimizer.update : compiledUpdate(args.optimizer);
  const [params, opt] = update(grads!, args.opt, args.params, args.lr);
  return { params, state, opt, lossSum, logits, gradNorm };
}

// ---- prediction over a loader --------------------------------------------------------------------

export interface Predictions {
  readonly names: string[];
  readonly labels: number[];
  /** Probabilities averaged over the passes, row-major [N, classes]. */
  readonly probs: Float64Array;
  /** With one pass, the logits (for exact losses); null otherwise. */
  readonly logits: Float64Array | null;
  readonly skipped: { name: string; path: string; reason: string }[];
}

/** The eval-mode logits as a function of tensors and a key (compiled per micro-batch shape). */
const evalForward = (mc: ModelConfig) => (params: Params, state: State, input: Input, key: Key): Tensor =>
  apply(mc, params, state, input, { training: false, key })[0];
const compiledForwards = new WeakMap<ModelConfig, ReturnType<typeof evalForward>>();
function compiledForward(mc: ModelConfig): ReturnType<typeof evalForward> {
  let f = compiledForwards.get(mc);
  if (!f) compiledForwards.set(mc, (f = jit(evalForward(mc))));
  return f;
}

/** The eval-mode logits of one input, through the same compiled forward `predictAll` runs (so the numbers equal predict's). */
export const evalLogits = (mc: ModelConfig, params: Params, state: State, input: Input, key: Key): Tensor =>
  compiledForward(mc)(params, state, input, key);

/**
 * Eval-mode predictions over a loader, averaging `tta` passes with different keys (the stochastic
 * windows differ; deterministic models give identical passes). Returns null if `stop()` says so.
 */
export async function predictAll(args: {
  mc: ModelConfig;
  params: Params;
  state: State;
  loader: AsyncIterable<Batch>;
  tta: number;
  microBatch: number;
  seed: number;
  onBatch?: (done: number) => void;
  stop?: () => boolean;
  jit?: boolean;
}): Promise<Predictions | null> {
  const { mc } = args;
  const C = mc.numClasses;
  const forward = args.jit === false ? evalForward(mc) : compiledForward(mc);
  const names: string[] = [];
  const labels: number[] = [];
  const probRows: number[] = [];
  const logitRows: number[] = [];
  const skipped: Predictions['skipped'] = [];
  for await (const b of args.loader) {
    for (const s of b.skipped) skipped.push({ name: s.name, path: s.path, reason: renderDataError(s.error) });
    const B = b.labels.length;
    const sum = new Float64Array(B * C);
    for (let pass = 0; pass < args.tta; pass++) {
      for (let from = 0, chunk = 0; from < B; from += args.microBatch, chunk++) {
        const n = Math.min(args.microBatch, B - from);
        const lg = forward(args.params, args.state, batchInput(mc, b, from, n), evalKey(args.seed, b.index, pass, chunk));
        const host = await data(lg);
        if (args.tta === 1) for (const v of host) logitRows.push(v);
        const p = probabilities(host, C);
        for (let i = 0; i < p.length; i++) sum[from * C + i] += p[i] / args.tta;
      }
    }
    for (const v of sum) probRows.push(v);
    names.push(...b.names);
    for (const l of b.labels) labels.push(l);
    args.onBatch?.(names.length);
    if (args.stop?.()) return null;
  }
  return { names, labels, probs: Float64Array.from(probRows), logits: args.tta === 1 ? Float64Array.from(logitRows) : null, skipped };
}

