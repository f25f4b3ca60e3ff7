/**
 * `npm run serve -- --checkpoint DIR [--port N] [--host ADDR] [--max-upload-mb N]`: the local web
 * demo of a trained model (see server.ts). Listens on 127.0.0.1 unless --host says otherwise.
 */
import { EXIT, runIfMain } from '../cli/program.ts';
import { commandMain, defineCommand, int, num, str } from '../cli/options.ts';
import { BACKEND, CHECKPOINT, SEED } from '../cli/shared.ts';
import { restoreFromFlags } from '../train/restore.ts';
import { createServer } from './server.ts';

export const SERVE_COMMAND = defineCommand({
  name: 'serve',
  description: 'Serve a trained model as a local web page and a JSON API (POST /api/predict).',
  options: {
    checkpoint: CHECKPOINT,
    port: { flags: '--port <n>', help: 'TCP port (0: any free port)', parse: int(0, 65535), default: 8080 },
    host: { flags: '--host <addr>', help: 'address to listen on; 0.0.0.0 exposes the demo to the network', parse: str, default: '127.0.0.1' },
    maxUploadMb: { flags: '--max-upload-mb <n>', help: 'largest accepted image in MiB', parse: num(0, Infinity, true), default: 20 },
    seed: SEED,
    backend: BACKEND,
  },
});

export const main = commandMain(SERVE_COMMAND, async (parsed) => {
  const { port, host, maxUploadMb, backend } = parsed.values;
  const m = await restoreFromFlags(parsed.values);
  const seed = m.seed;
  const className = m.mc.numClasses === 1 ? (m.classes?.[1] ?? 'melanoma') : 'class';
  // The inference worker restores the checkpoint again in its own thread; this copy only validated it.
  const server = createServer({ checkpoint: m.dir, config: m.mc, backend }, { seed, maxUploadMb, className });
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
});

runIfMain(import.meta.url, main, 'serve');
