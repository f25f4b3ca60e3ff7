/**
 * `experiment.json`, the experiment's log: the spec (base and grid), how it is executed, and per run
 * its status, attempts, timings, final and best metrics, and the error of a failed run. Only the
 * process that drives the experiment writes it (atomically, after every change); workers write
 * only inside their run folders.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { writeFileAtomic } from '../io/atomic.ts';
import type { Cell, ExperimentSpec } from './grid.ts';
import type { CellMetrics, CellResult } from './cell.ts';
import { readJsonFile } from '../io/json.ts';

export type RunStatus = 'pending' | 'queued' | 'running' | 'complete' | 'failed' | 'interrupted';

export interface RunEntry {
  readonly name: string;
  readonly dir: string;
  readonly axes: Readonly<Record<string, unknown>>;
  status: RunStatus;
  /** Processes started for this run (over every invocation of the experiment). */
  attempts: number;
  started: string | null;
  finished: string | null;
  /** Wall-clock seconds of the run's attempts: all of them locally, the completing one on a queue. */
  seconds: number;
  resumedFrom: { epoch: number; step: number } | null;
  host: string | null;
  metrics: CellMetrics | null;
  error: string | null;
}

/** The spec as given, then how it runs and where each run stands. */
export interface ExperimentLogFile extends ExperimentSpec {
  executor: { kind: 'local'; parallel: number } | { kind: 'queue'; queue: string; queueName: string };
  created: string;
  updated: string;
  counts: Record<RunStatus, number>;
  runs: RunEntry[];
}

export const LOG_FILE = 'experiment.json';

export class ExperimentLog {
  readonly file: string;
  readonly data: ExperimentLogFile;

  /** Opens the log of `dir`, keeping what an earlier invocation recorded for runs still in the grid. */
  constructor(readonly dir: string, spec: ExperimentSpec, cells: readonly Cell[], executor: ExperimentLogFile['executor']) {
    this.file = path.join(dir, LOG_FILE);
    fs.mkdirSync(dir, { recursive: true });
    const json = readJsonFile(this.file);
    const old = E.isRight(json) ? (json.right as ExperimentLogFile | null) : null;
    const oldRuns = new Map((old?.runs ?? []).map((r) => [r.name, r]));
    const now = new Date().toISOString();
    this.data = {
      name: spec.name,
      description: spec.description,
      source: spec.source,
      base: spec.base,
      grid: spec.grid,
      executor,
      created: old?.created ?? now,
      updated: now,
      counts: emptyCounts(),
      runs: cells.map((c) => {
        const o = oldRuns.get(c.name);
        return {
          name: c.name,
          dir: c.name,
          axes: c.axes,
          status: o?.status === 'complete' ? 'complete' : 'pending',
          attempts: o?.attempts ?? 0,
          started: o?.started ?? null,
          finished: o?.finished ?? null,
          seconds: o?.seconds ?? 0,
          resumedFrom: o?.resumedFrom ?? null,
          host: o?.host ?? null,
          metrics: o?.metrics ?? null,
          error: o?.status === 'failed' ? o.error : null,
        };
      }),
    };
    this.save();
  }

  run(name: string): RunEntry {
    const r = this.data.runs.find((x) => x.name === name);
    if (!r) throw new Error(`experiment log: no run '${name}'`);
    return r;
  }

  started(name: string, host: string | null): void {
    const r = this.run(name);
    r.status = 'running';
    r.attempts++;
    r.started ??= new Date().toISOString();
    r.host = host;
    this.save();
  }

  /** Records a finished attempt (a skipped complete run keeps its earlier timings). */
  finished(name: string, res: CellResult): void {
    const r = this.run(name);
    r.status = res.status;
    if (!res.skipped) {
      r.seconds = Number((r.seconds + res.seconds).toFixed(2));
      r.finished = new Date().toISOString();
      r.host = res.host;
      if (res.resumedFrom) r.resumedFrom = res.resumedFrom;
    }
    r.metrics = res.metrics ?? r.metrics;
    r.error = res.status === 'complete' ? null : res.error;
    this.save();
  }

  setStatus(name: string, status: RunStatus, error: string | null = null): void {
    const r = this.run(name);
    r.status = status;
    r.error = error;
    this.save();
  }

  save(): void {
    this.data.updated = new Date().toISOString();
    const counts = emptyCounts();
    for (const r of this.data.runs) counts[r.status]++;
    this.data.counts = counts;
    writeFileAtomic(this.file, `${JSON.stringify(this.data, null, 2)}\n`);
  }
}

const emptyCounts = (): Record<RunStatus, number> => ({ pending: 0, queued: 0, running: 0, complete: 0, failed: 0, interrupted: 0 });
