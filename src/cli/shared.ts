/**
 * Options several commands take, declared once: each command spreads the entry into its table and
 * overrides only what differs for it (the help's wording, the default). The parser, and so what a
 * valid value is and the message for a bad one, stays the same everywhere.
 */
import * as fs from 'node:fs';
import { type Option, bool, int, oneOf, orNone, str } from './options.ts';
import { usageExit } from './program.ts';

export const CHECKPOINT = { flags: '--checkpoint <dir>', help: 'checkpoint folder, or a run folder (its best/ is used)', parse: str, default: null, required: true } satisfies Option;
export const BACKEND = {
  flags: '--backend <name>',
  help: 'cpu or gpu (WebGPU where an adapter is present, else gpu.js; STOCHCONV_GPU_MODE forces a mode)',
  parse: oneOf(['cpu', 'gpu'] as const),
  default: 'cpu' as const,
} satisfies Option;
export const DATA = { flags: '--data <dir>', help: 'dataset folder (repeatable: folders are merged)', parse: str, default: [] as string[], repeatable: true } satisfies Option;
export const FORMAT = { flags: '--format <name>', help: 'force the dataset reader (isic2020, isic2019, …, folders)', parse: str, default: null, derived: 'detected per folder' } satisfies Option;
export const LIMIT = { flags: '--limit <n>', help: 'use only the first n images of the dataset (quick runs)', parse: orNone(int(2)), default: null, derived: 'all' } satisfies Option;
export const TTA = { flags: '--tta <n>', help: 'stochastic passes averaged per image', parse: int(1), default: 1 } satisfies Option;
/** The seed of the stochastic windows: by default the one the checkpoint's run trained with. */
export const SEED = { flags: '--seed <n>', help: 'seed of the stochastic windows', parse: int(0), default: null, derived: "the training run's" } satisfies Option;
export const BATCH_SIZE = { flags: '--batch-size <n>', help: 'images per batch', parse: int(1), default: 16 } satisfies Option;
export const MICRO_BATCH = { flags: '--micro-batch <n>', help: 'images per forward pass', parse: int(1), default: 16 } satisfies Option;
export const WORKERS = { flags: '--workers <n>', help: 'image-decoding worker threads (0: main thread)', parse: int(0), default: 1 } satisfies Option;
/** An output folder; each command says where it goes by default. */
export const OUT = { flags: '--out <dir>', help: 'output folder', parse: str, default: null } satisfies Option;
export const QUIET = { flags: '--quiet', help: 'no progress bar: one line per epoch (for logs)', parse: bool, default: false, boolean: true } satisfies Option;

/** The positional image arguments of predict and explain. */
export const IMAGES = ['<images...>', 'image files (JPEG or PNG)'] as const;

/** The image files named as arguments, each checked to exist (a usage error names the first that does not). */
export function existingImages(files: readonly string[]): string[] {
  for (const f of files) if (!fs.existsSync(f) || !fs.statSync(f).isFile()) usageExit(`image not found: ${f}`);
  return [...files];
}
