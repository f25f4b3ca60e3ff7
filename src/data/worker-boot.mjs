// Worker-thread entry: registers tsx's ESM loader in this thread, then runs the TypeScript worker.
// (Passing `--import tsx` in execArgv does not work for a .ts worker entry on Node 20, so the
// entry is this plain .mjs file.)
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.entry);
