/**
 * `npm run experiment -- FILE.json [--out DIR] [--parallel N] [--preset NAME] [--queue redis://HOST:PORT]`:
 * expands a grid of training runs, runs those not complete (locally, or through a queue of
 * workers), and keeps `experiment.json` up to date. Exit codes: 0 every run complete, 1 a run
 * failed, 2 usage error, 130 interrupted (start it again to continue).
 */
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { EXIT, runIfMain, usageExit } from '../cli/program.ts';
import { bool, commandMain, defineCommand, int, str } from '../cli/options.ts';
import { OUT } from '../cli/shared.ts';
import { cellJobs, expandGrid, presetFile, presetNames, readExperimentFile } from './grid.ts';
import { cellMetrics, cellState, checkCellConfig } from './cell.ts';
import { ExperimentLog, LOG_FILE } from './log.ts';
import { runLocal } from './local.ts';
import { QUEUE_OPTIONS, pingRedis, redactUrl, runOnQueue } from './queue.ts';

const HELP = `
The file: {"name": "…", "description": "…", "base": {config keys}, "grid": {key: [values], …}}
with the keys of npm run train -- --config (camelCase or kebab-case; not out, resume, config, quiet).
Every combination of the grid's values is one run, named after its values (b0_seed-1), in its own
folder DIR/<run>/ (the trainer's outputs plus cell.json and train.log). DIR/${LOG_FILE} records each
run's status, attempts, timings, final and best validation AUC, and the error of a failed run.

Restartable: a complete run is skipped, an unfinished one resumes from its last checkpoint.
With --queue the runs go on a BullMQ queue in Redis; workers on any machine take them:
  npm run worker -- --queue redis://HOST:PORT [--concurrency N]
DIR must then be on a file system every worker sees at the same absolute path.

Presets (experiments/*.json): ${presetNames().join(', ')}

Examples:
  npm run experiment -- --preset thesis-synthetic
  npm run experiment -- my-grid.json --out runs/my-grid --parallel 2
  npm run experiment -- --preset isic-sample --out /shared/exp/isic --queue redis://10.0.0.5:6379
  npm run compare -- runs/thesis-synthetic --by model --baseline b0`;

export const EXPERIMENT_COMMAND = defineCommand({
  name: 'experiment',
  description: 'Run a grid of training runs (variants × seeds …) and log them in one experiment folder.',
  args: [['[file]', 'experiment file (JSON)']],
  after: HELP,
  options: {
    out: { ...OUT, help: 'experiment folder', derived: 'runs/<name>' },
    parallel: { flags: '--parallel <n>', help: 'runs at a time on this machine, each its own process', parse: int(1), default: 1 },
    preset: { flags: '--preset <name>', help: `a committed experiment: ${presetNames().join(', ')}`, parse: str, default: null },
    ...QUEUE_OPTIONS,
    dryRun: { flags: '--dry-run', help: 'print the runs and their state, run nothing', parse: bool, default: false, boolean: true },
  },
});

export const main = commandMain(EXPERIMENT_COMMAND, async (parsed) => {
  const args = { ...parsed.values, file: parsed.args[0] ?? null };
  if (args.file && args.preset) usageExit('give an experiment file or --preset, not both');
  if (!args.file && !args.preset) usageExit('missing the experiment file (or --preset NAME)');
  const fileE = args.preset ? presetFile(args.preset) : E.right(args.file!);
  if (E.isLeft(fileE)) return usageExit(fileE.left.message);
  const specE = readExperimentFile(fileE.right, args.preset ? `preset ${args.preset}` : fileE.right);
  if (E.isLeft(specE)) return usageExit(specE.left.message);
  const spec = specE.right;
  const cells = expandGrid(spec);
  if (E.isLeft(cells)) return usageExit(cells.left.message);
  const dir = path.resolve(args.out ?? path.join('runs', spec.name));
  const jobs = cellJobs(spec, cells.right, dir);
  for (const j of jobs) {
    const mismatch = checkCellConfig(j);
    if (mismatch) return usageExit(mismatch);
  }
  const states = jobs.map((j) => cellState(j));
  const todo = jobs.filter((_, i) => states[i].kind !== 'complete');
  const say = (t: string) => process.stdout.write(`${t}\n`);

  say(
    `experiment ${spec.name}: ${jobs.length} runs (${Object.entries(spec.grid).map(([k, v]) => `${k} × ${v.length}`).join(', ')}); ` +
      `${jobs.length - todo.length} complete, ${todo.length} to run${args.queue ? ` on the queue ${redactUrl(args.queue)}` : `, ${args.parallel} at a time`}`,
  );
  say(`experiment folder: ${dir} (log: ${path.join(dir, LOG_FILE)})`);
  if (args.dryRun) {
    jobs.forEach((j, i) => {
      const s = states[i];
      say(`  ${j.name}: ${s.kind === 'partial' ? `partial (${s.epochsDone}/${j.epochs} epochs)` : s.kind}`);
    });
    return EXIT.ok;
  }
  if (args.queue) {
    const unreachable = await pingRedis(args.queue);
    if (unreachable) return usageExit(unreachable);
  }
  const executor = args.queue ? { kind: 'queue' as const, queue: redactUrl(args.queue), queueName: args.queueName } : { kind: 'local' as const, parallel: args.parallel };
  const log = new ExperimentLog(dir, spec, cells.right, executor);
  jobs.forEach((j, i) => {
    if (states[i].kind === 'complete' && log.run(j.name).status !== 'complete') {
      log.finished(j.name, { status: 'complete', skipped: true, resumedFrom: null, seconds: 0, exitCode: null, signal: null, error: null, metrics: cellMetrics(j.dir), host: '' });
    }
  });

  let stop = false;
  let interruptAll = () => {};
  const onSigint = () => {
    if (stop) process.exit(EXIT.interrupted);
    stop = true;
    process.stderr.write('\ninterrupt: stopping the running runs at a resumable checkpoint (start the experiment again to continue; Ctrl-C again to quit at once)\n');
    interruptAll();
  };
  process.on('SIGINT', onSigint);
  try {
    if (args.queue) {
      await runOnQueue(log, todo, { url: args.queue, queueName: args.queueName, stopRequested: () => stop, line: say });
    } else {
      await runLocal(log, todo, { parallel: args.parallel, stopRequested: () => stop, onStop: (f) => (interruptAll = f), line: say });
    }
  } finally {
    process.off('SIGINT', onSigint);
  }
  const c = log.data.counts;
  say(`experiment ${spec.name}: ${c.complete}/${jobs.length} complete${c.failed ? `, ${c.failed} failed (errors in ${log.file})` : ''}${c.interrupted + c.pending + c.queued + c.running ? `, ${c.interrupted + c.pending + c.queued + c.running} unfinished` : ''}`);
  if (c.complete) say(`compare: npm run compare -- ${path.relative(process.cwd(), dir) || '.'}${'model' in spec.grid ? ' --by model' : ''}`);
  if (stop) return EXIT.interrupted;
  return c.failed ? EXIT.failure : c.complete === jobs.length ? EXIT.ok : EXIT.interrupted;
});

runIfMain(import.meta.url, main, 'experiment');
