/**
 * Checkpoints: a folder with the weights and batch-norm state (safetensors, written by src/io),
 * the optimizer's slots (safetensors) and a JSON file with everything else (epoch, step within the
 * epoch, optimizer step, RNG key, best metric, the accumulators of a half-done epoch, and the
 * model description needed to rebuild it).
 *
 * The folder is replaced atomically: files go to a fresh sibling folder, then the old folder is
 * renamed aside, the new one renamed into place, and the old one removed. A crash between the two
 * renames leaves `<dir>.old-*`, which `loadCheckpoint` falls back to.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { pipe } from 'fp-ts/lib/function.js';
import { readTensors, saveTree, type Leaf } from '../io/safetensors.ts';
import { fsyncDir, writeFileAtomic } from '../io/atomic.ts';
import { readJsonFile, renderJsonFileError } from '../io/json.ts';
import { keystr, treeMapWithPath } from '../autograd/pytree.ts';
import { Tensor } from '../tensor/tensor.ts';
import type { OptState, OptimizerName } from './optim.ts';

export const WEIGHTS_FILE = 'weights.safetensors';
export const BN_FILE = 'bn_state.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const TRAINER_FILE = 'trainer.json';

/** Accumulators of an epoch interrupted part-way, so the resumed epoch reports the same numbers. */
export interface PartialEpoch {
  readonly lossSum: number;
  readonly count: number;
  readonly labels: number[];
  /** Row-major scores ([count] for one output, [count, classes] otherwise). */
  readonly scores: number[];
  readonly skipped: string[];
}

/** Everything of a run's position that is not a tensor. */
export interface TrainerState {
  readonly version: 1;
  /** The epoch being trained (0-based); `stepInEpoch` batches of it are done. */
  readonly epoch: number;
  readonly stepInEpoch: number;
  /** Optimizer steps taken since the start. */
  readonly globalStep: number;
  /** The run's root key (random.keyData). All randomness is folded from it by (epoch, step). */
  readonly rngKey: [number, number];
  readonly bestMetric: number | null;
  readonly bestEpoch: number | null;
  /** The epoch whose weights these are, for `best/` (null for a mid-epoch `last/`). */
  readonly weightsEpoch: number | null;
  readonly partial: PartialEpoch | null;
  /** The model and options to rebuild it (createModel's arguments, minus the key). */
  readonly model: { readonly name: string; readonly options: Record<string, unknown> };
  /** Any further data the trainer wants back (the resolved run configuration). */
  readonly extra: Record<string, unknown>;
}

export interface Checkpoint {
  readonly params: unknown;
  readonly state: unknown;
  readonly opt: OptState;
  readonly trainer: TrainerState;
}

export type CheckpointError =
  | { readonly _tag: 'CheckpointMissing'; readonly dir: string }
  | { readonly _tag: 'CheckpointCorrupt'; readonly dir: string; readonly file: string; readonly message: string }
  | { readonly _tag: 'CheckpointMismatch'; readonly dir: string; readonly message: string }
  | { readonly _tag: 'CheckpointWriteError'; readonly dir: string; readonly message: string };

export function renderCheckpointError(e: CheckpointError): string {
  switch (e._tag) {
    case 'CheckpointMissing':
      return `checkpoint: no checkpoint in ${e.dir} (expected ${TRAINER_FILE}, ${WEIGHTS_FILE}, ${BN_FILE}, ${OPTIMIZER_FILE})`;
    case 'CheckpointCorrupt':
      return `checkpoint: ${path.join(e.dir, e.file)} is unreadable: ${e.message}`;
    case 'CheckpointMismatch':
      return `checkpoint: ${e.dir} does not fit the model: ${e.message}`;
    case 'CheckpointWriteError':
      return `checkpoint: cannot write ${e.dir}: ${e.message}`;
  }
}

const uniq = () => `${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}`;

/** The optimizer slots as one tree { slot: paramsTree } (names like `square_avg.blocks.0.w`). */
const slotTree = (opt: OptState) => ({ ...opt.slots });

/** Writes a checkpoint folder atomically (see the module comment). */
export function saveCheckpoint(dir: string, ck: Checkpoint): E.Either<CheckpointError, void> {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  const tmp = path.join(parent, `.${path.basename(abs)}.tmp-${uniq()}`);
  const fail = (m: unknown): E.Either<CheckpointError, void> => {
    fs.rmSync(tmp, { recursive: true, force: true });
    return E.left({ _tag: 'CheckpointWriteError', dir: abs, message: m instanceof Error ? m.message : String(m) });
  };
  try {
    fs.mkdirSync(tmp, { recursive: true });
    for (const [file, tree, meta] of [
      [WEIGHTS_FILE, ck.params, { format: 'pt', content: 'model parameters' }],
      [BN_FILE, ck.state, { content: 'batch-norm running statistics' }],
      [OPTIMIZER_FILE, slotTree(ck.opt), { optimizer: ck.opt.name, step: String(ck.opt.step) }],
    ] as const) {
      saveTree(path.join(tmp, file), tree ?? {}, meta);
    }
    writeFileAtomic(path.join(tmp, TRAINER_FILE), JSON.stringify({ ...ck.trainer, optimizer: { name: ck.opt.name, step: ck.opt.step } }, null, 1));
    let old: string | null = null;
    if (fs.existsSync(abs)) {
      old = path.join(parent, `${path.basename(abs)}.old-${uniq()}`);
      fs.renameSync(abs, old);
    }
    fs.renameSync(tmp, abs);
    fsyncDir(parent);
    if (old) fs.rmSync(old, { recursive: true, force: true });
    return E.right(undefined);
  } catch (e) {
    return fail(e);
  }
}

/** The folder holding the checkpoint: `dir`, or a leftover `<dir>.old-*` of an interrupted swap. */
export function resolveCheckpointDir(dir: string): string | null {
  const abs = path.resolve(dir);
  if (fs.existsSync(path.join(abs, TRAINER_FILE))) return abs;
  const parent = path.dirname(abs);
  if (!fs.existsSync(parent)) return null;
  const olds = fs
    .readdirSync(parent)
    .filter((n) => n.startsWith(`${path.basename(abs)}.old-`))
    .map((n) => path.join(parent, n))
    .filter((p) => fs.existsSync(path.join(p, TRAINER_FILE)));
  return olds.length ? olds.sort().at(-1)! : null;
}

/** Reads only the JSON part (to learn which model to build before loading the tensors). */
export function readTrainerState(dir: string): E.Either<CheckpointError, TrainerState> {
  const at = resolveCheckpointDir(dir);
  if (!at) return E.left({ _tag: 'CheckpointMissing', dir: path.resolve(dir) });
  const corrupt = (message: string): E.Either<CheckpointError, TrainerState> => E.left({ _tag: 'CheckpointCorrupt', dir: at, file: TRAINER_FILE, message });
  const json = readJsonFile(path.join(at, TRAINER_FILE));
  if (E.isLeft(json)) return corrupt(renderJsonFileError(json.left));
  const t = json.right as TrainerState | null;
  if (t?.version !== 1 || typeof t.epoch !== 'number' || !t.model?.name) return corrupt('not a trainer state of version 1');
  return E.right(t);
}

/**
 * Fills `template` (a tree of tensors) with the tensors of a flat name map, checking names and
 * shapes; names missing from the file, or of another shape, are errors. The dtype of the file is
 * kept (weights saved in float64 stay float64).
 */
export function fillTree<T>(template: T, flat: ReadonlyMap<string, Leaf>, what: string): E.Either<string, T> {
  const missing: string[] = [];
  let wrong: string | null = null;
  const filled = treeMapWithPath((p, l) => {
    const n = keystr(p);
    const t = flat.get(n);
    if (!t) missing.push(n);
    else if (!(t instanceof Tensor)) wrong ??= `${what}: '${n}' is an integer tensor, expected floating point`;
    else if (t.shape.length !== l.shape.length || t.shape.some((d, j) => d !== l.shape[j])) wrong ??= `${what}: '${n}' has shape [${t.shape}] in the file but [${l.shape}] in the model`;
    else return t;
    return l;
  }, template) as T;
  if (wrong) return E.left(wrong);
  if (missing.length) return E.left(`${what}: ${missing.length} tensors missing from the file (${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''})`);
  return E.right(filled);
}

export interface CheckpointTemplate {
  readonly params: unknown;
  readonly state: unknown;
  /** A fresh optimizer state (`optimizer.init(params)`) giving the slots' structure. */
  readonly opt: OptState;
}

/** Loads a checkpoint into the structure of `template` (same model, same optimizer). */
export function loadCheckpoint(dir: string, template: CheckpointTemplate): E.Either<CheckpointError, Checkpoint> {
  return pipe(
    readTrainerState(dir),
    E.chain((trainer) => {
      const at = resolveCheckpointDir(dir)!;
      const read = (file: string) =>
        pipe(
          readTensors(path.join(at, file)),
          E.mapLeft((e): CheckpointError => ({ _tag: 'CheckpointCorrupt', dir: at, file, message: e.message })),
        );
      const fill = <T>(t: T, flat: ReadonlyMap<string, Leaf>, what: string) =>
        pipe(
          fillTree(t, flat, what),
          E.mapLeft((message): CheckpointError => ({ _tag: 'CheckpointMismatch', dir: at, message })),
        );
      const savedOpt = (trainer as unknown as { optimizer?: { name: OptimizerName; step: number } }).optimizer;
      if (savedOpt && savedOpt.name !== template.opt.name) {
        return E.left<CheckpointError, Checkpoint>({
          _tag: 'CheckpointMismatch',
          dir: at,
          message: `it was trained with ${savedOpt.name}, not ${template.opt.name}`,
        });
      }
      return pipe(
        E.Do,
        E.bind('w', () => read(WEIGHTS_FILE)),
        E.bind('bn', () => read(BN_FILE)),
        E.bind('op', () => read(OPTIMIZER_FILE)),
        E.bind('params', ({ w }) => fill(template.params, w.tensors, WEIGHTS_FILE)),
        E.bind('state', ({ bn }) => fill(template.state, bn.tensors, BN_FILE)),
        E.bind('slots', ({ op }) => fill(slotTree(template.opt), op.tensors, OPTIMIZER_FILE)),
        E.map(({ params, state, slots, op }) => ({
          params,
          state,
          opt: { name: template.opt.name, step: Number(op.metadata.step ?? savedOpt?.step ?? 0), slots },
          trainer,
        })),
      );
    }),
  );
}

/** Weights only (for evaluate/predict and --init-weights from our own checkpoints). */
export function loadWeights(dir: string, template: { params: unknown; state: unknown }): E.Either<CheckpointError, { params: unknown; state: unknown }> {
  const at = resolveCheckpointDir(dir) ?? path.resolve(dir);
  const read = (file: string) =>
    pipe(
      readTensors(path.join(at, file)),
      E.mapLeft((e): CheckpointError =>
        e._tag === 'SafetensorsIOError' ? { _tag: 'CheckpointMissing', dir: at } : { _tag: 'CheckpointCorrupt', dir: at, file, message: e.message },
      ),
    );
  return pipe(
    E.Do,
    E.bind('w', () => read(WEIGHTS_FILE)),
    E.bind('bn', () => read(BN_FILE)),
    E.chain(({ w, bn }) =>
      pipe(
        E.Do,
        E.bind('params', () => fillTree(template.params, w.tensors, WEIGHTS_FILE)),
        E.bind('state', () => fillTree(template.state, bn.tensors, BN_FILE)),
        E.mapLeft((message): CheckpointError => ({ _tag: 'CheckpointMismatch', dir: at, message })),
      ),
    ),
  );
}
