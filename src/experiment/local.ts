/** The embedded executor: the cells on this machine, `parallel` processes at a time. */
import type { ExperimentLog } from './log.ts';
import { type CellJob, type RunningCell, describeResult, prepareCell, runCell } from './cell.ts';

export interface LocalOptions {
  readonly parallel: number;
  readonly stopRequested: () => boolean;
  /** Called once when a stop is requested, to pass it on to the running cells. */
  readonly onStop: (interruptAll: () => void) => void;
  readonly line: (text: string) => void;
}

/** Runs every job not yet complete; resolves when all have ended or a stop was requested. */
export async function runLocal(log: ExperimentLog, jobs: readonly CellJob[], opts: LocalOptions): Promise<void> {
  const queue = [...jobs];
  const running = new Set<RunningCell>();
  opts.onStop(() => {
    for (const r of running) r.interrupt();
  });
  const next = async (): Promise<void> => {
    for (let job = queue.shift(); job && !opts.stopRequested(); job = queue.shift()) {
      const bad = await prepareCell(job);
      if (bad) {
        log.finished(job.name, { status: 'failed', skipped: false, resumedFrom: null, seconds: 0, exitCode: null, signal: null, error: bad, metrics: null, host: '' });
        opts.line(`${job.name}: FAILED: ${bad}`);
        continue;
      }
      log.started(job.name, null);
      const cell = runCell(job);
      running.add(cell);
      const res = await cell.result;
      running.delete(cell);
      log.finished(job.name, res);
      opts.line(describeResult(job.name, res));
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.parallel, jobs.length)) }, next));
}
