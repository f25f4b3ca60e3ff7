/** A trained model back from a checkpoint folder (or a run folder, taking its best/), for evaluate and predict. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { setBackend } from '../backends/backend.ts';
import { createModel } from '../nn/model.ts';
import type { ModelConfig, Params, State } from '../nn/efficientnet.ts';
import { key } from '../tensor/random.ts';
import { type TrainerState, TRAINER_FILE, loadWeights, readTrainerState, renderCheckpointError, resolveCheckpointDir } from './checkpoint.ts';
import { type UsageError, usage } from './config.ts';
import { checkModel } from './run.ts';
import { usageExit } from '../cli/program.ts';
import { readJsonFile } from '../io/json.ts';

export interface Restored {
  readonly dir: string;
  readonly mc: ModelConfig;
  readonly params: Params;
  readonly state: State;
  readonly trainer: TrainerState;
  /** Class names from the run's config.json when it can be found. */
  readonly classes: readonly string[] | null;
  /** The run's seed (evaluation keys derive from it, so a run's validation numbers are reproduced). */
  readonly seed: number;
}

/** `dir` itself if it holds a checkpoint, else `dir/best`, else `dir/last`. */
export function checkpointDir(dir: string): string | null {
  for (const d of [dir, path.join(dir, 'best'), path.join(dir, 'last')]) {
    const r = resolveCheckpointDir(d);
    if (r && fs.existsSync(path.join(r, TRAINER_FILE))) return r;
  }
  return null;
}

export async function restore(dir: string, backend: 'cpu' | 'gpu' = 'cpu'): Promise<E.Either<UsageError, Restored>> {
  if (!fs.existsSync(dir)) return E.left(usage(`--checkpoint: folder not found: ${dir}`));
  const at = checkpointDir(dir);
  if (!at) return E.left(usage(`--checkpoint: no checkpoint in ${dir} (expected trainer.json and weights.safetensors, or a run folder with best/)`));
  if (backend === 'gpu') {
    await import('../backends/gpu/index.ts');
    setBackend('gpu');
  } else setBackend('cpu');
  const t = readTrainerState(at);
  if (E.isLeft(t)) return E.left(usage(`--checkpoint: ${renderCheckpointError(t.left)}`));
  const trainer = t.right;
  const spec = { name: trainer.model.name, options: trainer.model.options };
  const mcE = checkModel(spec);
  if (E.isLeft(mcE)) return mcE;
  const template = createModel(spec.name, { ...spec.options, key: key(0) });
  const w = loadWeights(at, { params: template.params, state: template.state });
  if (E.isLeft(w)) return E.left(usage(`--checkpoint: ${renderCheckpointError(w.left)}`));
  // Class names from the run's config.json, when it is there and readable.
  const runConfig = readJsonFile(path.join(path.dirname(at), 'config.json'));
  const classes = E.isRight(runConfig) ? ((runConfig.right as { data?: { classes?: string[] } } | null)?.data?.classes ?? null) : null;
  const seed = typeof trainer.extra?.seed === 'number' ? (trainer.extra.seed as number) : 1337;
  return E.right({ dir: at, mc: template.config, params: w.right.params as Params, state: w.right.state as State, trainer, classes, seed });
}

/**
 * The checkpoint a command's --checkpoint and --backend name, with the seed of its windows: --seed,
 * else the run's. A usage error (no such folder, no checkpoint in it) is thrown for `cliMain`.
 */
export async function restoreFromFlags(o: { readonly checkpoint: string; readonly backend: 'cpu' | 'gpu'; readonly seed: number | null }): Promise<Restored> {
  const r = await restore(o.checkpoint, o.backend);
  if (E.isLeft(r)) return usageExit(r.left.message);
  return { ...r.right, seed: o.seed ?? r.right.seed };
}
