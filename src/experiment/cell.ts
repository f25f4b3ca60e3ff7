/**
 * One cell of an experiment = one run of the trainer (`src/train/cli.ts`) in its own process, in
 * its own run folder. A cell is started fresh, resumed from its last checkpoint (the trainer's
 * `--resume`, which continues exactly), or skipped when its run is already complete — so whoever
 * executes it (the local pool or a queue worker) can be killed and started again at any time.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as E from 'fp-ts/lib/Either.js';
import { aucSummary, readEpochTable } from '../compare/epochs.ts';
import { parseConfigObject, resolveConfig } from '../train/config.ts';
import { renderDataError } from '../data/errors.ts';
import { syntheticSet } from '../train/run.ts';
import { readJsonFile, renderJsonFileError } from '../io/json.ts';

/** What a worker needs to run a cell: everything by value, the folder as an absolute path. */
export interface CellJob {
  readonly experiment: string;
  readonly name: string;
  /** Absolute run folder (a path every worker sees: a shared file system). */
  readonly dir: string;
  readonly config: Readonly<Record<string, unknown>>;
  /** When the run is complete (from the config). */
  readonly epochs: number;
  readonly patience: number | null;
}

export type CellState =
  | { readonly kind: 'new' }
  | { readonly kind: 'partial'; readonly epochsDone: number; readonly stepInEpoch: number }
  | { readonly kind: 'complete'; readonly epochsDone: number };

export interface CellMetrics {
  readonly epochs: number;
  readonly lastValAuc: number;
  readonly bestValAuc: number;
  readonly bestEpoch: number;
  readonly lastValLoss: number;
  readonly lastTrainAuc: number;
  readonly lastTrainLoss: number;
}

export interface CellResult {
  readonly status: 'complete' | 'failed' | 'interrupted';
  /** complete: ran now, or found complete; resumed: continued from a checkpoint at this epoch/step. */
  readonly skipped: boolean;
  readonly resumedFrom: { readonly epoch: number; readonly step: number } | null;
  readonly seconds: number;
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly error: string | null;
  readonly metrics: CellMetrics | null;
  readonly host: string;
}

export const CELL_FILE = 'cell.json';
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'child.ts');
const ROOT = path.resolve(path.dirname(CHILD), '../..');

/** Where a cell's run stands, from its last checkpoint (the same stopping rules as the loop). */
export function cellState(job: Pick<CellJob, 'dir' | 'epochs' | 'patience'>): CellState {
  const json = readJsonFile(path.join(job.dir, 'last', 'trainer.json'));
  if (E.isLeft(json)) return { kind: 'new' };
  const t = json.right as { epoch: number; stepInEpoch: number; bestEpoch: number | null };
  const endOfEpoch = t.stepInEpoch === 0;
  const stoppedEarly = job.patience !== null && t.bestEpoch !== null && t.epoch - t.bestEpoch >= job.patience;
  if (endOfEpoch && (t.epoch >= job.epochs || stoppedEarly)) return { kind: 'complete', epochsDone: t.epoch };
  return { kind: 'partial', epochsDone: t.epoch, stepInEpoch: t.stepInEpoch };
}

/** Final and best metrics of a run folder, from its per_epoch.csv (null if it has no epoch yet). */
export function cellMetrics(dir: string): CellMetrics | null {
  const t = readEpochTable(path.join(dir, 'per_epoch.csv'));
  if (E.isLeft(t)) return null;
  const s = aucSummary(t.right);
  const last = (c: string) => t.right.columns.get(c)!.at(-1)!;
  return { epochs: s.epochs, lastValAuc: s.lastAuc, bestValAuc: s.bestAuc, bestEpoch: s.bestEpoch, lastValLoss: last('Val Loss'), lastTrainAuc: last('Train RoC'), lastTrainLoss: last('Train Loss') };
}

/** A cell folder must not be reused for another config: its cell.json says what it was started with. */
export function checkCellConfig(job: Pick<CellJob, 'dir' | 'name' | 'config'>): string | null {
  const f = path.join(job.dir, CELL_FILE);
  if (!fs.existsSync(f)) return null;
  const json = readJsonFile(f);
  if (E.isLeft(json)) return renderJsonFileError(json.left, 'cell file');
  const saved = json.right as Record<string, unknown>;
  const keys = new Set([...Object.keys(saved), ...Object.keys(job.config)]);
  for (const k of keys) {
    if (JSON.stringify(saved[k]) !== JSON.stringify(job.config[k])) {
      const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
      return `run ${job.name} was started with ${k} ${show(saved[k])}, the experiment now says ${show(job.config[k])} (remove ${job.dir} or use another --out)`;
    }
  }
  return null;
}

const synthetic = new Map<string, Promise<string | null>>();

/**
 * Generates the built-in synthetic set a cell without data trains on, once per process, before
 * its runs start: runs started together would otherwise each generate it and swap the cached
 * folder under one another. Returns an error message, or null.
 */
export function prepareCell(job: Pick<CellJob, 'config'>): Promise<string | null> {
  const cfg = E.chain(resolveConfig)(parseConfigObject(job.config, 'the run config'));
  if (E.isLeft(cfg)) return Promise.resolve(cfg.left.message);
  if (cfg.right.data.length > 0) return Promise.resolve(null);
  const k = `${cfg.right.syntheticCount}x${cfg.right.syntheticSize}`;
  if (!synthetic.has(k)) synthetic.set(k, syntheticSet(cfg.right)().then((r) => (E.isLeft(r) ? renderDataError(r.left) : null)));
  return synthetic.get(k)!;
}

export interface RunningCell {
  readonly result: Promise<CellResult>;
  /** Asks the run to stop at the next step with a resumable checkpoint (SIGINT to the trainer). */
  interrupt(): void;
}

/**
 * Runs a cell to its end: skips it when complete, resumes it when a checkpoint exists, else starts
 * it. The trainer runs in a child process that exits as soon as this process dies (so a killed
 * worker leaves no orphan writing to the folder). Its output goes to train.log in the run folder;
 * its last stderr lines become the error.
 */
export function runCell(job: CellJob): RunningCell {
  const host = `${os.hostname()}:${process.pid}`;
  const t0 = performance.now();
  const done = (r: Omit<CellResult, 'seconds' | 'host'>): CellResult => ({ ...r, seconds: Number(((performance.now() - t0) / 1000).toFixed(2)), host });
  const mismatch = checkCellConfig(job);
  if (mismatch) {
    return { result: Promise.resolve(done({ status: 'failed', skipped: false, resumedFrom: null, exitCode: null, signal: null, error: mismatch, metrics: null })), interrupt() {} };
  }
  const state = cellState(job);
  if (state.kind === 'complete') {
    return { result: Promise.resolve(done({ status: 'complete', skipped: true, resumedFrom: null, exitCode: null, signal: null, error: null, metrics: cellMetrics(job.dir) })), interrupt() {} };
  }
  fs.mkdirSync(job.dir, { recursive: true });
  const cellFile = path.join(job.dir, CELL_FILE);
  fs.writeFileSync(cellFile, `${JSON.stringify(job.config, null, 2)}\n`);
  const args = state.kind === 'partial' ? ['--resume', job.dir, '--quiet'] : ['--config', cellFile, '--out', job.dir, '--quiet'];
  const resumedFrom = state.kind === 'partial' ? { epoch: state.epochsDone, step: state.stepInEpoch } : null;
  // stdin is a pipe the child watches: it closes when this process dies, however it dies. The
  // child has its own process group, so a Ctrl-C reaches it once, through interrupt(), and it
  // saves a resumable checkpoint instead of taking a second SIGINT as "quit now".
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: process.env, detached: true });
  const log = fs.createWriteStream(path.join(job.dir, 'train.log'), { flags: 'a' });
  log.write(`# ${new Date().toISOString()} ${host}: npm run train -- ${args.join(' ')}\n`);
  let errTail = '';
  child.stdout!.on('data', (d: Buffer) => log.write(d));
  child.stderr!.on('data', (d: Buffer) => {
    log.write(d);
    errTail = (errTail + d.toString()).slice(-4000);
  });
  const result = new Promise<CellResult>((resolve) => {
    child.on('error', (e) => resolve(done({ status: 'failed', skipped: false, resumedFrom, exitCode: null, signal: null, error: `cannot start the trainer: ${e.message}`, metrics: null })));
    child.on('close', (code, signal) => {
      log.end();
      const error = errTail.split('\n').filter((l) => l.trim() && !l.startsWith('warning:')).slice(-3).join(' | ') || null;
      const metrics = cellMetrics(job.dir);
      if (code === 0) resolve(done({ status: 'complete', skipped: false, resumedFrom, exitCode: 0, signal: null, error: null, metrics }));
      else if (code === 130 || signal === 'SIGINT' || signal === 'SIGTERM' || signal === 'SIGKILL') {
        resolve(done({ status: 'interrupted', skipped: false, resumedFrom, exitCode: code, signal, error: error ?? `interrupted (${signal ?? `exit ${code}`})`, metrics }));
      } else resolve(done({ status: 'failed', skipped: false, resumedFrom, exitCode: code, signal, error: error ?? `the trainer exited with ${signal ?? `code ${code}`}`, metrics }));
    });
  });
  return { result, interrupt: () => void child.kill('SIGINT') };
}

const f4 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(4));

/** One line per finished run. */
export function describeResult(name: string, res: CellResult): string {
  const m = res.metrics;
  const auc = m ? `best val AUC ${f4(m.bestValAuc)} at epoch ${m.bestEpoch}, last ${f4(m.lastValAuc)}` : 'no epoch finished';
  switch (res.status) {
    case 'complete':
      return `${name}: ${res.skipped ? 'already complete' : `complete in ${res.seconds.toFixed(0)} s${res.resumedFrom ? ` (resumed at epoch ${res.resumedFrom.epoch + 1})` : ''}`}; ${auc}`;
    case 'interrupted':
      return `${name}: interrupted at a resumable checkpoint (${auc})`;
    case 'failed':
      return `${name}: FAILED: ${res.error}`;
  }
}
