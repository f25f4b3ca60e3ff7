/**
 * Beyond one machine: the cells go on a BullMQ queue in Redis, and any number of workers
 * (`npm run worker`) take them. A job carries its cell by value and names its run folder by an
 * absolute path, which every worker must see (a shared file system: NFS, SMB, a mounted bucket).
 * A worker that dies stops renewing its job's lock; BullMQ's stalled-job check hands the job to
 * another worker, which resumes the run from its last checkpoint. The job id is derived from the
 * run folder, so enqueuing an experiment again never duplicates a run that is waiting or running.
 */
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import { Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { type CellJob, type CellResult, type RunningCell, cellMetrics, cellState, describeResult, prepareCell, runCell } from './cell.ts';
import type { ExperimentLog } from './log.ts';
import { type Options, fail, str } from '../cli/options.ts';

export const DEFAULT_QUEUE_NAME = 'stochconv-experiments';
/** Attempts per run: a worker killed mid-run costs one (the run then resumes elsewhere). */
export const ATTEMPTS = 5;

/** Parses `redis://HOST:PORT` (optionally with a user, password and database); a ParseError says what is wrong. */
export function redisUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return fail(`'${url}' is not a URL (expected redis://HOST:PORT)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') fail(`'${url}' must start with redis:// or rediss://`);
  if (!u.hostname) fail(`'${url}' has no host (expected redis://HOST:PORT)`);
  return url;
}

/** The queue options of `npm run experiment` (where --queue is optional) and `npm run worker`. */
export const QUEUE_OPTIONS = {
  queue: { flags: '--queue <url>', help: 'put the runs on a BullMQ queue at redis://HOST:PORT instead of running them here', parse: redisUrl, default: null },
  queueName: { flags: '--queue-name <name>', help: 'BullMQ queue name', parse: str, default: DEFAULT_QUEUE_NAME },
} satisfies Options;

/** The URL as shown in output and logs: a password becomes '***'. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

/** Connects once and pings, so an unreachable server is one clear message rather than endless retries. */
export async function pingRedis(url: string, timeoutMs = 5000): Promise<string | null> {
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs });
  let cause: string | null = null; // the socket's error (ECONNREFUSED, ENOTFOUND), more telling than the rejection
  client.on('error', (e: Error) => (cause ??= e.message));
  try {
    await client.connect();
    await client.ping();
    return null;
  } catch (e) {
    return `--queue: cannot reach Redis at ${redactUrl(url)}: ${(cause ?? (e as Error).message).split('\n')[0]}`;
  } finally {
    client.disconnect();
  }
}

const connection = (url: string) => ({ url, maxRetriesPerRequest: null });

/** The job id of a run folder: stable, and without ':' (which BullMQ reserves). */
export const jobId = (dir: string): string => `run-${createHash('sha256').update(dir).digest('hex').slice(0, 24)}`;

export interface QueueOptions {
  readonly url: string;
  readonly queueName: string;
  readonly stopRequested: () => boolean;
  readonly line: (text: string) => void;
  /** Seconds between looks at the queue. */
  readonly pollSeconds?: number;
}

/**
 * Puts every run that is not complete on the queue, then follows the jobs until each has
 * completed or failed for good, recording them in the log. Stopping this process leaves the jobs
 * to the workers; running it again follows them again.
 */
export async function runOnQueue(log: ExperimentLog, jobs: readonly CellJob[], opts: QueueOptions): Promise<void> {
  const queue = new Queue<CellJob, CellResult>(opts.queueName, { connection: connection(opts.url) });
  try {
    await queue.waitUntilReady();
    const open = new Map<string, CellJob>();
    for (const job of jobs) {
      const id = jobId(job.dir);
      const old = await Job.fromId<CellJob, CellResult>(queue, id);
      if (old) {
        const state = await old.getState();
        // A finished job (e.g. failed, or complete before its folder was removed) is run afresh.
        if (state === 'completed' || state === 'failed') await old.remove();
      }
      await queue.add(job.name, job, { jobId: id, attempts: ATTEMPTS, removeOnComplete: false, removeOnFail: false });
      log.setStatus(job.name, 'queued');
      open.set(id, job);
    }
    opts.line(`queued ${open.size} runs on ${opts.queueName} at ${redactUrl(opts.url)}; start workers with: npm run worker -- --queue ${redactUrl(opts.url)}${opts.queueName === DEFAULT_QUEUE_NAME ? '' : ` --queue-name ${opts.queueName}`}`);
    while (open.size && !opts.stopRequested()) {
      for (const [id, cell] of [...open]) {
        const job = await Job.fromId<CellJob, CellResult>(queue, id);
        if (!job) {
          log.setStatus(cell.name, 'failed', `job ${id} disappeared from the queue (was it removed by hand?)`);
          open.delete(id);
          continue;
        }
        const state = await job.getState();
        const entry = log.run(cell.name);
        const host = typeof job.progress === 'object' && job.progress !== null ? String((job.progress as { host?: string }).host ?? '') : '';
        // The worker names itself in the job's progress as it starts the run.
        if (state === 'active' && host && (entry.status !== 'running' || entry.host !== host)) {
          log.started(cell.name, host);
          opts.line(`${cell.name}: running on ${host}`);
        } else if (state === 'completed') {
          open.delete(id);
          // The job was read before its state: read it again for the result the worker stored.
          const res = (await Job.fromId<CellJob, CellResult>(queue, id))?.returnvalue ?? {
            status: 'complete', skipped: false, resumedFrom: null, seconds: 0, exitCode: 0, signal: null, error: null, metrics: cellMetrics(cell.dir), host,
          };
          log.finished(cell.name, res);
          log.run(cell.name).attempts = job.attemptsStarted || log.run(cell.name).attempts;
          log.save();
          opts.line(describeResult(cell.name, res));
        } else if (state === 'failed') {
          open.delete(id);
          const res: CellResult = {
            status: 'failed', skipped: false, resumedFrom: null, seconds: 0, exitCode: null, signal: null,
            error: (await Job.fromId<CellJob, CellResult>(queue, id))?.failedReason || job.failedReason || 'the job failed', metrics: cellMetrics(cell.dir), host,
          };
          log.finished(cell.name, res);
          opts.line(describeResult(cell.name, res));
        }
      }
      if (open.size) await new Promise((r) => setTimeout(r, (opts.pollSeconds ?? 1) * 1000));
    }
    if (open.size) opts.line(`stopped following the queue; ${open.size} runs stay on it for the workers (run the experiment again to follow them)`);
  } finally {
    await queue.close();
  }
}

export interface WorkerOptions {
  readonly url: string;
  readonly queueName: string;
  readonly concurrency: number;
  /** How long a job's lock lasts without renewal: a dead worker's run moves on after this. */
  readonly lockSeconds: number;
  readonly line: (text: string) => void;
}

export interface RunningWorker {
  /** Interrupts the running cells (they save a checkpoint), then closes the worker. */
  stop(): Promise<void>;
  readonly closed: Promise<void>;
}

/** Takes jobs from the queue and runs each as a cell (see cell.ts), `concurrency` at a time. */
export function startWorker(opts: WorkerOptions): RunningWorker {
  const running = new Set<RunningCell>();
  const host = `${os.hostname()}:${process.pid}`;
  const worker = new Worker<CellJob, CellResult>(
    opts.queueName,
    async (job) => {
      const before = cellState(job.data);
      await job.updateProgress({ host });
      opts.line(`${job.data.name}: ${before.kind === 'complete' ? 'already complete' : before.kind === 'partial' ? `resuming at epoch ${before.epochsDone + 1}` : 'starting'} (${job.data.dir})`);
      const bad = await prepareCell(job.data);
      if (bad) throw new UnrecoverableError(bad);
      const cell = runCell(job.data);
      running.add(cell);
      const res = await cell.result.finally(() => running.delete(cell));
      opts.line(describeResult(job.data.name, res));
      // A failed run (bad data, a diverging loss) fails the same way every time: no retry.
      if (res.status === 'failed') throw new UnrecoverableError(res.error ?? 'the run failed');
      if (res.status === 'interrupted') throw new Error(res.error ?? 'interrupted');
      return res;
    },
    {
      connection: connection(opts.url),
      concurrency: opts.concurrency,
      lockDuration: opts.lockSeconds * 1000,
      stalledInterval: Math.max(500, (opts.lockSeconds * 1000) / 2),
      maxStalledCount: ATTEMPTS,
    },
  );
  worker.on('error', (e) => opts.line(`worker: ${e.message}`));
  let resolveClosed: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  worker.on('closed', () => resolveClosed());
  return {
    closed,
    async stop() {
      for (const c of running) c.interrupt();
      await worker.close();
    },
  };
}
