/**
 * `npm run serve -- --checkpoint DIR [--port N] [--host ADDR] [--max-upload-mb N]`: the local web
 * demo of a trained model (see server.ts). Listens on 127.0.0.1 unless --host says otherwise.
 */
import * as E from 'fp-ts/lib/Either.js';
import { EXIT, UsageExit, parseArgs, printUsage, program, runIfMain } from '../train/cliutil.ts';
import { parseValue } from '../train/config.ts';
import { restore } from '../train/restore.ts';
import { createServer } from './server.ts';

export function serveCommand() {
  return program('serve', 'Serve a trained model as a local web page and a JSON API (POST /api/predict).')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder, or a run folder (its best/ is used)')
    .option('--port <n>', 'TCP port (0: any free port) (default: 8080)')
    .option('--host <addr>', 'address to listen on; 0.0.0.0 exposes the demo to the network (default: 127.0.0.1)')
    .option('--max-upload-mb <n>', 'largest accepted image in MiB (default: 20)')
    .option('--seed <n>', "seed of the stochastic windows (default: the training run's)")
    .option('--backend <name>', 'cpu or gpu (default: cpu)');
}

function numberFlag(flag: string, raw: unknown, dflt: number, ok: (v: number) => boolean, what: string): number {
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || !ok(v)) throw new UsageExit(`invalid value '${raw}' for ${flag}: must be ${what}`);
  return v;
}

export async function main(argv: string[]): Promise<number> {
  let o: Record<string, unknown>;
  let port: number, maxUploadMb: number;
  try {
    const cmd = parseArgs(serveCommand(), argv);
    if (!cmd) return EXIT.ok;
    o = cmd.opts();
    port = numberFlag('--port', o.port, 8080, (v) => Number.isInteger(v) && v >= 0 && v < 65536, 'an integer from 0 to 65535');
    maxUploadMb = numberFlag('--max-upload-mb', o.maxUploadMb, 20, (v) => v > 0, 'a positive number');
    if (o.backend !== undefined && o.backend !== 'cpu' && o.backend !== 'gpu') throw new UsageExit(`invalid value '${o.backend}' for --backend: must be one of cpu, gpu`);
  } catch (e) {
    if (e instanceof UsageExit) return printUsage('serve', e.message);
    throw e;
  }
  const r = await restore(String(o.checkpoint), (o.backend as 'cpu' | 'gpu') ?? 'cpu');
  if (E.isLeft(r)) return printUsage('serve', r.left.message);
  const m = r.right;
  let seed = m.seed;
  if (o.seed !== undefined) {
    const s = parseValue('seed', String(o.seed));
    if (E.isLeft(s)) return printUsage('serve', s.left.message);
    seed = s.right as number;
  }
  const className = m.mc.numClasses === 1 ? (m.classes?.[1] ?? 'melanoma') : 'class';
  // The inference worker restores the checkpoint again in its own thread; this copy only validated it.
  const server = createServer({ checkpoint: m.dir, config: m.mc, backend: (o.backend as 'cpu' | 'gpu') ?? 'cpu' }, { seed, maxUploadMb, className });
  const host = String(o.host ?? '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  }).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use (choose another with --port)' : e.message}`);
  });
  const addr = server.address();
  const shown = typeof addr === 'object' && addr ? addr.port : port;
  process.stdout.write(`serving ${m.mc.name} from ${m.dir} on http://${host.includes(':') ? `[${host}]` : host}:${shown}/ (Ctrl-C stops)\n`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return EXIT.ok;
}

runIfMain(import.meta.url, main, 'serve');
