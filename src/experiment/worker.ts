/**
 * `npm run worker -- --queue redis://HOST:PORT [--concurrency N]`: takes experiment runs from the
 * queue (see queue.ts) until stopped. Ctrl-C (or SIGTERM) interrupts the running runs at a
 * resumable checkpoint; their jobs go back on the queue for any worker to resume.
 */
import { EXIT, runIfMain, usageExit } from '../cli/program.ts';
import { commandMain, defineCommand, int, num } from '../cli/options.ts';
import { QUEUE_OPTIONS, pingRedis, redactUrl, startWorker } from './queue.ts';

export const WORKER_COMMAND = defineCommand({
  name: 'worker',
  description: 'Take experiment runs from a BullMQ queue and train them (see npm run experiment -- --help).',
  after: '\nRun folders are the absolute paths the experiment put on the queue: mount the experiment folder at the same path on every worker.',
  options: {
    queue: { ...QUEUE_OPTIONS.queue, help: 'the Redis server of the queue: redis://HOST:PORT', required: true },
    concurrency: { flags: '--concurrency <n>', help: 'runs at a time, each its own process', parse: int(1), default: 1 },
    queueName: QUEUE_OPTIONS.queueName,
    lockSeconds: { flags: '--lock-seconds <s>', help: "seconds a dead worker's run waits before another worker resumes it", parse: num(0, Infinity, true), default: 30 },
  },
});

export const main = commandMain(WORKER_COMMAND, async (parsed) => {
  const o = parsed.values;
  const unreachable = await pingRedis(o.queue);
  if (unreachable) return usageExit(unreachable);
  const say = (t: string) => process.stdout.write(`${t}\n`);
  const w = startWorker({ url: o.queue, queueName: o.queueName, concurrency: o.concurrency, lockSeconds: o.lockSeconds, line: say });
  say(`worker ${process.pid}: taking runs from ${o.queueName} at ${redactUrl(o.queue)}, ${o.concurrency} at a time (Ctrl-C to stop)`);
  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(EXIT.interrupted);
    stopping = true;
    say('stopping: interrupting the running runs at a resumable checkpoint; their jobs go back on the queue');
    void w.stop();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await w.closed;
  return stopping ? EXIT.interrupted : EXIT.ok;
});

runIfMain(import.meta.url, main, 'worker');
