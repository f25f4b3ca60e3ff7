/**
 * `npm run worker -- --queue redis://HOST:PORT [--concurrency N]`: takes experiment runs from the
 * queue (see queue.ts) until stopped. Ctrl-C (or SIGTERM) interrupts the running runs at a
 * resumable checkpoint; their jobs go back on the queue for any worker to resume.
 */
import { EXIT, UsageExit, parseArgs, printUsage, program, runIfMain } from '../train/cliutil.ts';
import { DEFAULT_QUEUE_NAME, checkRedisUrl, pingRedis, redactUrl, startWorker } from './queue.ts';

const positive = (flag: string, integer: boolean) => (s: string): number => {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) throw new UsageExit(`invalid value '${s}' for ${flag}: must be ${integer ? 'an integer ≥ 1' : 'a number > 0'}`);
  return n;
};

export async function main(argv: string[]): Promise<number> {
  const cmd = program('worker', 'Take experiment runs from a BullMQ queue and train them (see npm run experiment -- --help).')
    .requiredOption('--queue <url>', 'the Redis server of the queue: redis://HOST:PORT')
    .option('--concurrency <n>', 'runs at a time, each its own process', positive('--concurrency', true), 1)
    .option('--queue-name <name>', 'BullMQ queue name', DEFAULT_QUEUE_NAME)
    .option('--lock-seconds <s>', "seconds a dead worker's run waits before another worker resumes it", positive('--lock-seconds', false), 30);
  cmd.addHelpText('after', '\nRun folders are the absolute paths the experiment put on the queue: mount the experiment folder at the same path on every worker.');
  let o: { queue: string; concurrency: number; queueName: string; lockSeconds: number };
  try {
    if (!parseArgs(cmd, argv)) return EXIT.ok;
    o = cmd.opts();
    const bad = checkRedisUrl(o.queue);
    if (bad) throw new UsageExit(bad);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('worker', e.message);
    throw e;
  }
  const unreachable = await pingRedis(o.queue);
  if (unreachable) return printUsage('worker', unreachable);
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
}

runIfMain(import.meta.url, main, 'worker');
