/**
 * Every command's options come from its table: --help lists each entry with its help and default
 * (or "required"), and a bad value is a usage error naming the flag.
 */
import { describe, expect, it } from 'vitest';
import { type CommandSpec, type Options, command, helpLine, parseOptions, shownDefault } from '../../src/cli/options.ts';
import { UsageExit } from '../../src/cli/program.ts';
import { TRAIN_COMMAND } from '../../src/train/cli.ts';
import { EVALUATE_COMMAND } from '../../src/train/evaluate.ts';
import { PREDICT_COMMAND } from '../../src/train/predict.ts';
import { EXPLAIN_COMMAND } from '../../src/train/explain.ts';
import { SERVE_COMMAND } from '../../src/serve/cli.ts';
import { EXPERIMENT_COMMAND } from '../../src/experiment/cli.ts';
import { WORKER_COMMAND } from '../../src/experiment/worker.ts';
import { COMPARE_COMMAND } from '../../src/compare/cli.ts';

const squash = (s: string) => s.replace(/\s+/g, ' ');
const COMMANDS: CommandSpec<Options>[] = [TRAIN_COMMAND, EVALUATE_COMMAND, PREDICT_COMMAND, EXPLAIN_COMMAND, SERVE_COMMAND, EXPERIMENT_COMMAND, WORKER_COMMAND, COMPARE_COMMAND];

describe.each(COMMANDS.map((c) => [c.name, c] as const))('npm run %s -- --help', (_, spec) => {
  it('lists every option of its table with its help and its default', () => {
    const help = squash(command(spec).helpInformation());
    for (const o of Object.values(spec.options)) {
      const line = squash((spec.helpLine ?? helpLine)(o));
      expect(help).toContain(`${o.flags} ${line}`);
      expect(line).toMatch(o.required ? /\(required\)$/ : new RegExp(`\\(default: ${shownDefault(o).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    }
  });
});

describe('parseOptions', () => {
  it('gives defaults for what is not given, the parsed value for what is, and names the flag of a bad value', () => {
    const p = parseOptions(EVALUATE_COMMAND, ['--checkpoint', 'c', '--data', 'a', '--data', 'b', '--tta', '3', '--quiet']);
    expect(p?.values).toMatchObject({ checkpoint: 'c', data: ['a', 'b'], tta: 3, quiet: true, batchSize: 16, seed: null, backend: 'cpu', limit: null });
    expect(Object.keys(p!.given).sort()).toEqual(['checkpoint', 'data', 'quiet', 'tta']);
    expect(() => parseOptions(EVALUATE_COMMAND, ['--checkpoint', 'c', '--data', 'a', '--tta', '0'])).toThrow(new UsageExit("invalid value '0' for --tta: must be an integer ≥ 1"));
    expect(() => parseOptions(SERVE_COMMAND, ['--checkpoint', 'c', '--port', '70000'])).toThrow(/invalid value '70000' for --port: must be an integer from 0 to 65535/);
    expect(() => parseOptions(EVALUATE_COMMAND, ['--checkpoint', 'c'])).toThrow(/required option '--data <dir>' not specified/);
    expect(() => parseOptions(WORKER_COMMAND, ['--queue', 'localhost:6379'])).toThrow(/for --queue: 'localhost:6379' must start with redis:\/\//);
  });
});
